"""Paired in-run ratios: the statistic of the ratio rule (DESIGN §4).

Timing is interleaved per shape (:func:`bench.measure.timing.time_interleaved`):
each round takes at most one sample of every implementation of a (shape,
pass, dtype), back to back, and ``stats.data_rounds`` keeps each sample's
round. Whatever load hit the machine during a round hit the benchmark and its
reference alike, so the *per-round* ratio ``benchmark / reference`` cancels
it; a ratio of two medians does not, and dividing each sample by the
reference's median (the old rule) pretends the reference had no noise.

**Pairing.** Implementations of one shape may have different sample counts
(each gets ``budget / time per sample`` samples, spread evenly over the
rounds). The sparser of the two series sets the pairs: each sample of the
denser one joins the sparser sample nearest in round (ties: the earlier),
and a pair's ratio is the sparser sample against the geometric mean of the
denser samples that joined it. With equal counts and rounds this is exactly
one ratio per round; no sample is dropped and none is used twice.

**The statistic of a run** is the 10 % trimmed mean of its log paired
ratios, with Yuen's standard error and dof (:func:`bench.judge.stats.trimmed`):
robust to spikes like a median, with a standard error stable enough for the
far tails a family-wise correction reaches. Files without round indices
(older runs) fall back to the *unpaired* estimate ``tmean(log b) - tmean(log
r)``, the two squared standard errors added (Yuen-Welch), so the reference's
own noise counts; the report says which method each run used.

**Which reference.** ``--reference-impl`` (default ``full/naive``) of the
same shape, i.e. the same params but ``variant``/``impl``. The reference
itself is judged against the *anchor* (default ``dense/torch``, the plain
``nn.Conv2d`` with the same MACs): a slowdown of the reference then shows as
a regression of the reference, not only as every other implementation
"improving".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .runs import Bench, Run, params_key
from .stats import MEDIAN_ONLY, MIN_SAMPLES, PAIRED, SAMPLES, UNPAIRED, trimmed, welch_df


@dataclass(frozen=True)
class Estimate:
    """One benchmark's statistic in one run, in natural-log units.

    ``value``: the 10 % trimmed mean of the log samples (absolute rule) or of
    the log paired ratios (ratio rule); ``se``: its standard error (nan when
    unknown); ``dof``: the degrees of freedom of ``se``; ``n``: samples or
    pairs; ``method``: PAIRED, UNPAIRED, SAMPLES or MEDIAN_ONLY.
    """

    value: float
    se: float
    n: int
    method: str
    dof: float = 0.0


def paired_log_ratios(
    x: np.ndarray, x_rounds: np.ndarray, ref: np.ndarray, ref_rounds: np.ndarray
) -> np.ndarray:
    """Log ratios ``x / ref`` paired by interleaving round (see the module doc).

    Args:
        x: the benchmark's samples (seconds, > 0).
        x_rounds: their rounds.
        ref: the reference's samples.
        ref_rounds: their rounds.

    Returns:
        One log ratio per pair, in round order of the sparser series.
    """
    lx, lr = np.log(x), np.log(ref)
    if x.size <= ref.size:
        sparse_log, sparse_rounds, dense_log, dense_rounds, sign = lx, x_rounds, lr, ref_rounds, 1
    else:
        sparse_log, sparse_rounds, dense_log, dense_rounds, sign = lr, ref_rounds, lx, x_rounds, -1
    order = np.argsort(sparse_rounds, kind="stable")
    sr, sl = sparse_rounds[order], sparse_log[order]
    # nearest sparse round for every dense sample (ties go to the earlier round)
    pos = np.searchsorted(sr, dense_rounds, side="left")
    right = np.clip(pos, 0, sr.size - 1)
    left = np.clip(pos - 1, 0, sr.size - 1)
    take_left = np.abs(dense_rounds - sr[left]) <= np.abs(sr[right] - dense_rounds)
    nearest = np.where(take_left, left, right)
    sums = np.bincount(nearest, weights=dense_log, minlength=sr.size)
    counts = np.bincount(nearest, minlength=sr.size)
    has = counts > 0
    return sign * (sl[has] - sums[has] / counts[has])


def denominator(
    bench: Bench, run: Run, reference: tuple, anchor: tuple | None
) -> tuple[Bench | None, str]:
    """The benchmark the ratio rule divides ``bench`` by in ``run``, or why there is none.

    Args:
        bench: the benchmark (of ``run``).
        run: the run it belongs to.
        reference: ``(variant, impl)`` of the reference.
        anchor: ``(variant, impl)`` the reference itself is divided by, or None.

    Returns:
        ``(denominator, "")``, or ``(None, reason)``.
    """
    p = bench.params
    if "variant" not in p or "impl" not in p:
        return None, "no variant/impl params"
    if (p["variant"], p["impl"]) == tuple(reference):
        if anchor is None:
            return None, "is the reference"
        key = params_key(dict(p, variant=anchor[0], impl=anchor[1]))
        other = run.benches.get(key)
        return (other, "") if other is not None else (None, "is the reference (no anchor)")
    key = params_key(dict(p, variant=reference[0], impl=reference[1]))
    other = run.benches.get(key)
    return (other, "") if other is not None else (None, "no reference")


def estimates(items: list[tuple[Bench, Bench | None]]) -> list[Estimate]:
    """The per-run statistic of each ``(bench, denominator)``; denominator None: absolute.

    Args:
        items: ``(benchmark, denominator or None)`` pairs, all from one run or several.

    Returns:
        One :class:`Estimate` per item.
    """
    out = []
    for b, r in items:
        bv = b.summary.values
        rv = None if r is None else r.summary.values
        if bv is None or (r is not None and rv is None):
            den = 1.0 if r is None else r.summary.median
            out.append(Estimate(math.log(b.summary.median / den), math.nan, 0, MEDIAN_ONLY))
            continue
        if r is None:
            m, v, dof = trimmed(np.log(bv))
            n, method = bv.size, SAMPLES
        elif b.rounds is not None and r.rounds is not None:
            lr = paired_log_ratios(bv, b.rounds, rv, r.rounds)
            m, v, dof = trimmed(lr)
            n, method = lr.size, PAIRED
        else:
            mb, vb, db = trimmed(np.log(bv))
            mr, vr, dr = trimmed(np.log(rv))
            m, v, dof = mb - mr, vb + vr, welch_df([vb, vr], [db, dr])
            n, method = min(bv.size, rv.size), UNPAIRED
        se = math.sqrt(v) if n >= MIN_SAMPLES and math.isfinite(v) else math.nan
        out.append(Estimate(m, se, int(n), method, dof))
    return out


def ratio_items(run: Run, keys: list, reference: tuple, anchor: tuple | None):
    """``(items, reasons)`` for :func:`estimates`: each key's benchmark and denominator.

    Args:
        run: the run.
        keys: benchmark keys of ``run`` to judge.
        reference: ``(variant, impl)`` of the reference.
        anchor: ``(variant, impl)`` of the reference's own denominator, or None.

    Returns:
        ``items``: ``[(key, bench, denominator)]`` for the keys that have one;
        ``reasons``: ``{key: why not}`` for the others.
    """
    items, reasons = [], {}
    for k in keys:
        den, why = denominator(run.benches[k], run, reference, anchor)
        if den is None:
            reasons[k] = why
        else:
            items.append((k, run.benches[k], den))
    return items, reasons
