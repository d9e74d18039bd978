"""Which timing setup gives the steadiest ratios? Run-to-run spread of the in-run ratios.

The suite reports each implementation as a ratio to the full GConv of the
same shape, measured in the same interleaved rounds. What matters for a
verdict is how much that ratio moves when *nothing* changed: between repeated
runs of the same code. Given several runs per setting (threads, CPU affinity),
:func:`spread` measures, for every benchmark, the standard deviation across
runs of its log ratio under three estimators:

* ``paired``: the 10 % trimmed mean of the per-round log ratios
  (:func:`bench.judge.pairing.paired_log_ratios`) — what ``bench compare`` uses;
* ``paired-median``: the median of the per-round log ratios;
* ``medians``: log of the ratio of the two medians;
* ``minima``: log of the ratio of the two fastest samples (min-of-blocks).

and :func:`summarize` reports, per setting and estimator, the median and the
90th percentile over benchmarks of that spread (in %: 100·(e^σ − 1)). Lower is
steadier. ``python -m bench stability`` runs the sweeps and prints the table.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .pairing import paired_log_ratios
from .runs import Run, load_run, params_key
from .stats import trimmed

ESTIMATORS = ("paired", "paired-median", "medians", "minima")
REFERENCE = ("full", "naive")


def log_ratios(run: Run, reference: tuple = REFERENCE) -> dict[tuple, dict[str, float]]:
    """``{benchmark key: {estimator: log ratio to the reference}}`` of one run."""
    out = {}
    for key, b in run.benches.items():
        p = b.params
        if "variant" not in p or (p["variant"], p["impl"]) == tuple(reference):
            continue
        ref = run.benches.get(params_key(dict(p, variant=reference[0], impl=reference[1])))
        if ref is None or b.summary.values is None or ref.summary.values is None:
            continue
        x, r = b.summary.values, ref.summary.values
        est = {
            "medians": math.log(np.median(x) / np.median(r)),
            "minima": math.log(x.min() / r.min()),
        }
        if b.rounds is not None and ref.rounds is not None:
            pairs = paired_log_ratios(x, b.rounds, r, ref.rounds)
            est["paired"] = trimmed(pairs)[0]
            est["paired-median"] = float(np.median(pairs))
        out[key] = est
    return out


def spread(runs: list[Run]) -> dict[str, np.ndarray]:
    """Per estimator, the standard deviation across ``runs`` of every benchmark's
    log ratio (benchmarks present in all runs)."""
    per_run = [log_ratios(r) for r in runs]
    keys = set.intersection(*(set(d) for d in per_run)) if per_run else set()
    out = {}
    for est in ESTIMATORS:
        sds = [
            float(np.std([d[k][est] for d in per_run], ddof=1))
            for k in sorted(keys, key=str)
            if all(est in d[k] for d in per_run)
        ]
        out[est] = np.asarray(sds)
    return out


def summarize(runs_by_setting: dict[str, list[Run]]) -> list[dict]:
    """Rows ``{setting, estimator, benchmarks, median_pct, p90_pct}`` (see the module doc)."""
    rows = []
    for setting, runs in runs_by_setting.items():
        if len(runs) < 2:
            continue
        for est, sds in spread(runs).items():
            if sds.size:
                med, p90 = np.percentile(sds, [50, 90])
                rows.append(
                    dict(
                        setting=setting,
                        estimator=est,
                        runs=len(runs),
                        benchmarks=int(sds.size),
                        median_pct=100 * math.expm1(med),
                        p90_pct=100 * math.expm1(p90),
                    )
                )
    return rows


def load_runs(folders: list[Path]) -> list[Run]:
    return [load_run(f) for f in folders]


def render(rows: list[dict], walls: dict[str, list[float]] | None = None) -> str:
    """A markdown table of :func:`summarize`'s rows (and the runs' wall times)."""
    head = "| setting | estimator | runs | benchmarks | median spread | 90th pct spread |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['estimator']} | {r['runs']} | {r['benchmarks']} | "
            f"{r['median_pct']:.1f} % | {r['p90_pct']:.1f} % |"
        )
    if walls:
        lines += ["", "| setting | wall per run (s) |", "|---|---|"]
        lines += [f"| {s} | {', '.join(f'{w:.0f}' for w in ws)} |" for s, ws in walls.items()]
    return "\n".join(lines) + "\n"
