"""The history, judged: compact records of runs, trend series and their steps.

* :func:`record_of` turns a run into the compact record that
  ``python -m bench history add`` appends (:mod:`bench.store.history`): per
  benchmark, grouped by shape, its median latency and its paired ratio to the
  reference (with the ratio's standard error and the sample count); per
  implementation (variant/impl, pass, dtype, device) its *level* — the
  geometric mean of that ratio over its shapes — with its measurement
  uncertainty (:func:`bench.judge.aggregate.level`) and an id of the shape set it averages over.
* :func:`judge_history` makes one series per implementation from a device's
  records, in the order they were added (consecutive records of one commit
  merged), leaves disturbed runs out of the fit (they are still drawn), and
  fits steps (:mod:`bench.judge.steps`) per block of equal shape set and
  thread count. A *regression step* is an upward step of the ratio larger
  than the threshold; the report fails when the latest commit starts one.
"""

from __future__ import annotations

import datetime
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from .aggregate import group_of, level
from .comparable import contention, cpu_model
from .labels import PARAM_ORDER
from .pairing import estimates, ratio_items
from .runs import Run
from .steps import Fit, Step, fit

DEFAULT_THRESHOLD = 0.05


def case_id(params: dict, fallback: str = "") -> str:
    """A benchmark's id in the history: its param values in label order, ``-``-joined."""
    if not params:
        return fallback
    keys = [k for k in PARAM_ORDER if k in params] + sorted(set(params) - set(PARAM_ORDER))
    return "-".join(str(params[k]) for k in keys)


def _sig(x: float, digits: int = 5):
    return None if x is None or not math.isfinite(x) else float(f"{x:.{digits}g}")


def record_of(run: Run, *, commit: str, date: str | None = None, reference=("full", "naive"),
              anchor=("dense", "torch")) -> dict:  # fmt: skip
    """The compact history record of ``run`` (see :mod:`bench.store.history`).

    Args:
        run: the run.
        commit: the commit it measured.
        date: ISO date (default: the run's, else now).
        reference: ``(variant, impl)`` of the ratio's reference.
        anchor: what the reference's own ratio is to, or None.

    Returns:
        The record (JSON-ready).
    """
    env = run.env
    c = contention(run)
    keys = list(run.benches)
    items, _ = ratio_items(run, keys, tuple(reference), tuple(anchor) if anchor else None)
    ests = dict(
        zip([k for k, _, _ in items], estimates([(b, d) for _, b, d in items]), strict=True)
    )
    benches, groups = {}, {}  # benches: {shape id: {variant/impl: [t, r, se, n]}}
    for k, b in run.benches.items():
        cid = case_id(b.params, b.fullname or b.name)
        e = ests.get(k)
        p = b.params
        shape = case_id({q: v for q, v in p.items() if q not in ("variant", "impl")}, cid)
        impl = f"{p['variant']}/{p['impl']}" if "variant" in p and "impl" in p else ""
        benches.setdefault(shape, {})[impl] = [
            _sig(b.summary.median, 4), _sig(math.exp(e.value), 4) if e else None,
            _sig(e.se, 2) if e else None, b.summary.n,
        ]  # fmt: skip
        g = group_of(b.params)
        if g is not None:
            groups.setdefault(g, []).append((cid, b, e))
    impls = {}
    ref = f"{reference[0]}/{reference[1]}"
    for g, members in sorted(groups.items()):
        with_ratio = [(cid, e) for cid, _, e in members if e is not None]
        entry = {"abs_s": _sig(math.exp(np.mean([math.log(b.summary.median)
                                                 for _, b, _ in members])))}  # fmt: skip
        if with_ratio:
            y, se = level([e.value for _, e in with_ratio], [e.se for _, e in with_ratio])
            ids = "\n".join(sorted(cid for cid, _ in with_ratio)).encode()
            entry |= {
                "ratio": _sig(math.exp(y)), "log": _sig(y, 8), "se": _sig(se, 4),
                "lo": _sig(math.exp(y - 1.96 * se)), "hi": _sig(math.exp(y + 1.96 * se)),
                "shapes": len(with_ratio), "shapes_id": hashlib.sha1(ids).hexdigest()[:12],
                "versus": f"{anchor[0]}/{anchor[1]}" if anchor and g[0] == ref else ref,
            }  # fmt: skip
        impls["|".join(g)] = entry
    date = date or env.get("date") or datetime.datetime.now(datetime.timezone.utc).isoformat()
    return {
        "schema": 1, "commit": commit, "date": date, "source": run.source,
        "machine": {
            "device_slug": env.get("device_slug"), "device": env.get("device"),
            "device_name": env.get("device_name"), "cpu_model": cpu_model(run),
            "torch": env.get("torch"), "threads": env.get("threads"),
            "profile": env.get("profile"), "disturbed": None if c is None else bool(c["disturbed"]),
            "disturbed_reasons": [] if c is None else list(c.get("reasons") or []),
        },
        "reference": ref, "anchor": f"{anchor[0]}/{anchor[1]}" if anchor else None,
        "paired": run.paired, "benchmarks": benches, "implementations": impls,
    }  # fmt: skip


@dataclass
class Point:
    """One commit of one series."""

    commit: str
    date: str
    y: float  # log ratio level
    se: float
    disturbed: bool
    block: tuple  # (shapes_id, threads): no step is fitted across a change
    torch: str


@dataclass
class Series:
    """One implementation's history on one device, judged."""

    key: tuple  # (impl, pass, dtype, device)
    versus: str
    points: list = field(default_factory=list)
    fit: Fit | None = None
    used: list = field(default_factory=list)  # indices of points in the fit
    steps: list = field(default_factory=list)  # [(Step with index into points, note)]
    latest_regression: Step | None = None

    @property
    def label(self) -> str:
        return " ".join(p for p in self.key if p)


def _series(records: list[dict]) -> dict[tuple, Series]:
    out: dict[tuple, Series] = {}
    for rec in records:
        m = rec.get("machine") or {}
        for gkey, entry in rec["implementations"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("log"), (int, float)):
                continue
            key = tuple(gkey.split("|"))
            s = out.setdefault(key, Series(key, str(entry.get("versus", ""))))
            p = Point(str(rec["commit"]), str(rec.get("date", "")), float(entry["log"]),
                      float(entry.get("se") or 0.0), bool(m.get("disturbed")),
                      (entry.get("shapes_id"), m.get("threads")), str(m.get("torch")))  # fmt: skip
            last = s.points[-1] if s.points else None
            if last and last.commit == p.commit and last.block == p.block and not p.disturbed:
                if last.disturbed:  # a quiet rerun replaces a disturbed one
                    s.points[-1] = p
                else:  # a rerun of the same commit: averaged
                    last.y = 0.5 * (last.y + p.y)
                    last.se = 0.5 * math.hypot(last.se, p.se)
                continue
            s.points.append(p)
    return out


def judge_history(records: list[dict], threshold: float = DEFAULT_THRESHOLD) -> list[Series]:
    """Series and steps of one device's records (see the module doc).

    Args:
        records: the device's history records, in file order.
        threshold: smallest upward step of a ratio that counts as a regression.

    Returns:
        One :class:`Series` per implementation, sorted by key.
    """
    latest = str(records[-1]["commit"]) if records else None
    out = []
    for _, s in sorted(_series(records).items()):
        s.used = [i for i, p in enumerate(s.points) if not p.disturbed]
        if s.used:
            pts = [s.points[i] for i in s.used]
            s.fit = fit([p.y for p in pts], [p.se for p in pts], [p.block for p in pts])
            for st in s.fit.steps:
                at, before = s.points[s.used[st.index]], s.points[s.used[st.index - 1]]
                step = Step(s.used[st.index], st.before, st.after, st.se)
                notes = []
                if at.torch != before.torch:
                    notes.append(f"torch {before.torch} -> {at.torch} here")
                s.steps.append((step, "; ".join(notes)))
            last = s.steps[-1][0] if s.steps else None
            if (
                last is not None
                and last.index == len(s.points) - 1
                and s.points[-1].commit == latest
                and last.change > threshold
            ):
                s.latest_regression = last  # fmt: skip
        out.append(s)
    return out
