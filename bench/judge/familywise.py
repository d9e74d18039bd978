"""Family-wise control: Holm's step-down adjustment and the between-run spread.

**Why Holm, not Benjamini-Hochberg.** A nightly job lives with one number:
the probability that a run of unchanged code fails (exits 1). That is the
family-wise error rate (FWER) over all the run's tests, and Holm controls it
at ``alpha`` under *any* dependence between the tests (the benchmarks of one
shape share their reference, so their ratio tests are dependent). BH
controls the false discovery rate; when nothing changed that equals the
FWER too, but once one implementation really regresses (its ~100 benchmarks
rightly flagged) BH's threshold loosens by the number of discoveries, and
noise elsewhere gets flagged alongside: the report would blame implementations
that did not change. Holm never does that. The price is per-benchmark power,
which the per-implementation verdict (:mod:`bench.judge.aggregate`) recovers:
a change that moves all shapes of an implementation is caught there.

**Two families, ``alpha`` split.** The per-benchmark tests of a run (every
rule) form one family and the per-implementation tests another; each is
adjusted by Holm at ``alpha / 2``, so the chance that a run of unchanged code
fails is at most ``alpha`` (Bonferroni over the two). Reported adjusted
p-values are Holm's times 2: a test is significant when ``p_adj < alpha``.

**Between-run spread (tau).** A test built from one run's samples knows the
noise *within* the run; two runs of unchanged code also differ by a
run-to-run shift of each benchmark's ratio (memory layout, frequency, what
else the machine did), which no within-run sample shows. Ignoring it made
every such shift "significant". :func:`between_run_sd` estimates that spread
from the run pair itself, as a random effect: the standard deviation ``tau``
at which the standardized changes ``(d_i - median d) / sqrt(se_i² + tau²)``
have a robust scale (1.4826 · median absolute value) of exactly 1 — a
robust form of the Paule-Mandel estimator of meta-analysis. The changes are
centred per implementation (each group's own median), so a real regression
of one implementation on all its shapes, or a machine that is uniformly
slower (every absolute change shifted alike), is centred away rather than
mistaken for spread; and the median absolute value ignores the rest of what
changed, up to half of the benchmarks. Estimated from ``m`` tests, ``tau²``
carries about ``0.37 m`` degrees of freedom (the MAD's efficiency), which the
tests' Satterthwaite dof take into account (:func:`tau_dof`).
"""

from __future__ import annotations

import math

import numpy as np

MIN_FOR_TAU = 20  # fewer tests than this: tau is not estimated (0, and the report says so)
MIN_GROUP = 10  # a group this large is centred on its own median
# the median absolute deviation of k normal values about their own median is
# sqrt(1 - CENTRING / k) times the true scale (simulated, k = 10 ... 84)
CENTRING = 2.3
MAD_SCALE = 1.4826  # 1 / Phi^-1(3/4): the MAD of a standard normal is 1 after this factor
MAD_EFFICIENCY = 0.37  # the MAD's efficiency at the normal: tau from m tests has ~0.37 m dof


def holm(p: list) -> list:
    """Holm's step-down adjusted p-values (None entries stay None).

    Args:
        p: raw p-values (or None for "no test").

    Returns:
        Adjusted p-values, monotone in the raw ones, capped at 1: rejecting
        those with ``adj < alpha`` controls the FWER at ``alpha``.
    """
    idx = [i for i, v in enumerate(p) if v is not None and not math.isnan(v)]
    out: list = [None] * len(p)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda i: p[i])):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def split_holm(p: list, families: int = 2) -> list:
    """Holm within one family, times ``families`` (Bonferroni across families).

    Args:
        p: raw p-values of one family (None: no test).
        families: how many families share ``alpha``.

    Returns:
        Adjusted p-values to compare with the overall ``alpha``.
    """
    return [None if v is None else min(1.0, families * v) for v in holm(p)]


def tau_dof(m: int) -> float:
    """Degrees of freedom of ``tau²`` estimated from ``m`` tests by the MAD."""
    return max(1.0, MAD_EFFICIENCY * m)


def between_run_sd(
    d: np.ndarray, se: np.ndarray, groups: list | None = None, min_count: int = MIN_FOR_TAU
) -> float | None:
    """The run-to-run standard deviation of the changes, beyond their standard errors.

    Args:
        d: log changes (NEW minus BASE), one per test; nan entries are ignored.
        se: their within-run standard errors.
        groups: optional label per test (its implementation): a group of at least
            ``MIN_GROUP`` tests is centred on its own median, so a change common to
            all of one implementation's shapes is not mistaken for spread.
        min_count: fewest usable tests for an estimate.

    Returns:
        ``tau >= 0`` (log units), or None when there are fewer than ``min_count``
        usable tests.
    """
    d, se = np.asarray(d, float), np.asarray(se, float)
    ok = np.isfinite(d) & np.isfinite(se)
    if ok.sum() < min_count:
        return None
    labels = np.array([str(g) for g in (groups if groups is not None else [0] * d.size)])[ok]
    d, se = d[ok], se[ok]
    centre, size = np.full(d.size, np.median(d)), np.full(d.size, float(d.size))
    for g in set(labels.tolist()):
        mask = labels == g
        if mask.sum() >= MIN_GROUP:
            centre[mask], size[mask] = np.median(d[mask]), mask.sum()
    # deviations from a sample's own median are smaller than from its true centre
    r = np.abs(d - centre) / np.sqrt(1.0 - CENTRING / size)

    def scale(tau: float) -> float:
        return MAD_SCALE * float(np.median(r / np.sqrt(se * se + tau * tau + 1e-300)))

    if scale(0.0) <= 1.0:
        return 0.0
    lo, hi = 0.0, max(MAD_SCALE * float(np.median(r)), 1e-12)
    while scale(hi) > 1.0:  # scale(tau) ~ MAD / tau for large tau
        hi *= 2.0
    for _ in range(60):  # bisection: scale is decreasing in tau
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if scale(mid) > 1.0 else (lo, mid)
    return 0.5 * (lo + hi)


#: an implementation's own between-run spread is used when it exceeds the pooled one
#: by this factor (about 2.5 standard errors of a MAD estimate from 20-40 shapes, so
#: homoscedastic runs keep the pooled, better-estimated spread)
OWN_SPREAD_FACTOR = 1.5


def spread_per_test(d: np.ndarray, se: np.ndarray, groups: list) -> tuple:
    """The pooled between-run spread and, per test, the ``(tau, count)`` to use.

    The run-to-run spread differs by implementation (two quiet quick runs on the
    AMD VM: rearranged g/gc ratios moved ~3x more than naive ones, and one pooled
    spread called their tails changes), so a group (implementation) with at least
    ``MIN_FOR_TAU`` tests whose own spread exceeds ``OWN_SPREAD_FACTOR`` times the
    pooled one uses its own; every other test the pooled one (``count``: the tests
    it was estimated from, for its degrees of freedom).
    """
    d, se = np.asarray(d, float), np.asarray(se, float)
    pooled = between_run_sd(d, se, groups)
    m = int(np.sum(np.isfinite(d) & np.isfinite(se)))
    own = {}
    for g in {g for g in groups if g is not None}:
        idx = [i for i, lab in enumerate(groups) if lab == g]
        t_g = between_run_sd(d[idx], se[idx])
        if t_g is not None and t_g > OWN_SPREAD_FACTOR * (pooled or 0.0):
            own[g] = (t_g, len(idx))
    return pooled, [own.get(g, (pooled, m)) for g in groups]
