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
  fits steps (:mod:`bench.judge.steps`) per block of equal thread count.
  Each point's level is taken over the shapes its record shares with the
  latest record (a shape set that changed, e.g. one shape failed one night,
  does not hide a step: the levels on either side are over the same shapes);
  a point sharing fewer than :data:`MIN_COMMON` shapes with the latest record
  keeps its own level and block, and no step is fitted across it.
* A *regression step* is an upward step of the ratio larger than the
  threshold. It stays **open** while the latest fitted level is still more
  than the threshold above the level before the step: the report fails every
  night until the series returns or the step is acknowledged in the reviewed
  file ``results/history/acknowledged.toml`` (:func:`load_acknowledged`:
  commit, implementation, reason). An implementation whose series has no
  point at the latest record (it crashed, vanished, lost its reference) fails
  too.
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
MIN_COMMON = 3  # shapes a point must share with the latest record to be levelled on them


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
    latest_regression: Step | None = None  # a regression step starting at the latest commit
    open_regressions: list = field(default_factory=list)  # [(Step, acknowledgement or None)]
    missing_latest: bool = False  # no point at the latest record
    retired: Acknowledgement | None = None  # its last commit acknowledged: missing on purpose

    @property
    def failing(self) -> list[str]:
        """Why this series fails the report (empty: it does not)."""
        out = []
        if self.missing_latest and self.retired is None:
            out.append(f"missing from the latest record (last seen at "
                       f"{self.points[-1].commit[:10]})")  # fmt: skip
        for step, ack in self.open_regressions:
            if ack is None:
                at = self.points[step.index]
                out.append(f"open regression step {step.change * 100:+.1f} % since "
                           f"{at.commit[:10]} (not returned, not acknowledged)")  # fmt: skip
        return out

    @property
    def label(self) -> str:
        return " ".join(p for p in self.key if p)


def _shape_ratios(rec: dict, key: tuple) -> dict:
    """``{shape id: (log ratio, se)}`` of one implementation group in a record."""
    impl, *rest = key
    wanted = [str(x) for x in rest if x]
    out = {}
    for shape, per_impl in (rec.get("benchmarks") or {}).items():
        entry = per_impl.get(impl) if isinstance(per_impl, dict) else None
        if not entry or not isinstance(entry[1], (int, float)) or entry[1] <= 0:
            continue
        tokens = str(shape).split("-")
        if all(w in tokens for w in wanted):
            se = entry[2] if isinstance(entry[2], (int, float)) else math.nan
            out[shape] = (math.log(entry[1]), se)
    return out


def _relevelled(rec: dict, entry: dict, key: tuple, common: set | None):
    """``(log level, se, shapes id)`` of a point: over the shapes ``common`` to it and
    the latest record when there are at least :data:`MIN_COMMON`, else its own."""
    if common is not None:
        mine = _shape_ratios(rec, key)
        shared = sorted(set(mine) & common)
        if len(shared) >= MIN_COMMON:
            y, se = level([mine[c][0] for c in shared], [mine[c][1] for c in shared])
            if math.isfinite(y):
                return y, (se if math.isfinite(se) else float(entry.get("se") or 0.0)), "latest"
    return float(entry["log"]), float(entry.get("se") or 0.0), entry.get("shapes_id")


def _series(records: list[dict]) -> dict[tuple, Series]:
    out: dict[tuple, Series] = {}
    latest = records[-1] if records else {}
    common_of: dict[tuple, set] = {}
    for gkey in latest.get("implementations") or {}:
        key = tuple(gkey.split("|"))
        common_of[key] = set(_shape_ratios(latest, key))
    for rec in records:
        m = rec.get("machine") or {}
        for gkey, entry in rec["implementations"].items():
            if not isinstance(entry, dict) or not isinstance(entry.get("log"), (int, float)):
                continue
            key = tuple(gkey.split("|"))
            s = out.setdefault(key, Series(key, str(entry.get("versus", ""))))
            y, se, shapes = _relevelled(rec, entry, key, common_of.get(key))
            p = Point(str(rec["commit"]), str(rec.get("date", "")), y, se,
                      bool(m.get("disturbed")), (shapes, m.get("threads")),
                      str(m.get("torch")))  # fmt: skip
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


def judge_history(
    records: list[dict], threshold: float = DEFAULT_THRESHOLD, acknowledged=(), slug: str = ""
) -> list[Series]:
    """Series and steps of one device's records (see the module doc).

    Args:
        records: the device's history records, in file order.
        threshold: smallest upward step of a ratio that counts as a regression.
        acknowledged: :class:`Acknowledgement` entries (:func:`load_acknowledged`).
        slug: the device's slug (an acknowledgement may name one).

    Returns:
        One :class:`Series` per implementation, sorted by key.
    """
    latest = str(records[-1]["commit"]) if records else None
    out = []
    for _, s in sorted(_series(records).items()):
        s.missing_latest = bool(s.points) and s.points[-1].commit != latest
        if s.missing_latest:
            s.retired = _acknowledgement(acknowledged, s, Step(len(s.points) - 1, 0, 0, 0), slug)
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
            s.open_regressions = [
                (step, _acknowledgement(acknowledged, s, step, slug))
                for step in open_steps(s, threshold)
            ]
        out.append(s)
    return out


def open_steps(s: Series, threshold: float) -> list[Step]:
    """The upward steps above ``threshold`` the series has not come back from: the
    latest fitted level is still more than ``threshold`` above the level before the
    step. Only steps in the latest block count (an earlier block is levelled on
    other shapes or threads)."""
    if s.fit is None or not s.used:
        return []
    now = s.fit.levels[-1]
    if not math.isfinite(now):
        return []
    block = s.points[s.used[-1]].block
    return [
        step
        for step, _ in s.steps
        if step.change > threshold
        and s.points[step.index].block == block
        and math.expm1(now - step.before) > threshold
    ]


@dataclass(frozen=True)
class Acknowledgement:
    """A reviewed step: it no longer fails the report (``acknowledged.toml``)."""

    commit: str
    implementation: str
    reason: str
    device: str = ""


def load_acknowledged(path) -> list[Acknowledgement]:
    """The ``[[step]]`` tables of a reviewed TOML file (none when it does not exist).

    Each needs ``commit`` (the step's first commit, or a prefix of 7+ characters),
    ``implementation`` (``variant/impl``, or a series label such as
    ``gc/rearranged fwd float32 cpu``) and a non-empty ``reason``; ``device`` (a
    history slug) is optional.

    Raises:
        ValueError: malformed TOML or an entry missing a field (the message says which).
    """
    from pathlib import Path

    import tomllib

    p = Path(path)
    if not p.is_file():
        return []
    try:
        doc = tomllib.loads(p.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{p}: not valid TOML ({e})") from None
    out = []
    for i, t in enumerate(doc.get("step") or []):
        fields = {k: str(t.get(k) or "").strip() for k in ("commit", "implementation", "reason")}
        missing = [k for k, v in fields.items() if not v]
        if missing or len(fields["commit"]) < 7:
            raise ValueError(
                f"{p}: [[step]] #{i + 1} needs commit (7+ characters), implementation and "
                f"reason; missing or short: {missing or ['commit']}"
            )
        out.append(Acknowledgement(**fields, device=str(t.get("device") or "")))
    return out


def _acknowledgement(acks, s: Series, step: Step, slug: str) -> Acknowledgement | None:
    commit = s.points[step.index].commit
    for a in acks:
        same_commit = commit.startswith(a.commit) or a.commit.startswith(commit)
        same_impl = a.implementation in (s.key[0], s.label)
        if same_commit and same_impl and a.device in ("", slug):
            return a
    return None
