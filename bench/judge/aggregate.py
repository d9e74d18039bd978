"""Per-implementation verdicts: one implementation's change across all its shapes.

A real regression usually moves every shape of an implementation (a slower
kernel, an extra copy), while each shape alone may be too noisy to say so.
For each (implementation, pass, dtype, device) — an implementation being a
``variant/impl`` pair — the per-shape log changes ``d_s`` of one rule (the
change of its paired ratio to the reference, or of its absolute latency) are
averaged: ``exp(mean d_s) - 1`` is the change of the *geometric mean* over
shapes.

**Uncertainty: a bootstrap over shapes.** The shapes are resampled with
replacement (``N_BOOT_SHAPES`` times, seeded): the spread of the resampled
means is the standard error, and its 2.5 / 97.5 % quantiles are the 95 %
interval reported. Each ``d_s`` carries all of that shape's noise — within
both runs and between them — so the interval needs no model of either. The
test is ``t = mean / se`` against Student's t with ``shapes - 1`` dof (a
one-sample t-test with a bootstrap standard error: with few shapes the tails
are heavy, and no verdict is given below ``MIN_SHAPES``). The implementations
form one Holm family (:mod:`bench.judge.familywise`); a regression needs the
adjusted p below alpha and the geometric-mean change above the threshold.

What this cannot see: a shift common to *all* shapes of an implementation
that comes from the run, not the code (a loaded machine slowing one kind of
kernel more than the reference). No single pair of runs can tell those apart;
the threshold, the contention check (:mod:`bench.judge.comparable`) and the
history (:mod:`bench.judge.steps`) are the guards.

:func:`level` gives the other quantity the history needs: an implementation's
*level* in one run (the geometric mean of its ratio over a fixed set of
shapes), whose uncertainty is measurement noise only — the shapes are not a
sample there, so its standard error is ``sqrt(sum se_s²) / shapes``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .stats import p_two_sided

N_BOOT_SHAPES = 2000
MIN_SHAPES = 3  # fewer shapes: the change is shown, not tested


def group_of(params: dict) -> tuple | None:
    """``(variant/impl, pass, dtype, device)`` of a benchmark, or None without variant/impl.

    Args:
        params: the benchmark's params.

    Returns:
        The group key, or None.
    """
    if "variant" not in params or "impl" not in params:
        return None
    return (
        f"{params['variant']}/{params['impl']}",
        str(params.get("pass", "")),
        str(params.get("dtype", "")),
        str(params.get("device", "")),
    )


def group_label(group: tuple) -> str:
    """``"g/rearranged fwd float32 cpu"`` (empty parts dropped)."""
    return " ".join(str(g) for g in group if g)


@dataclass(frozen=True)
class ShapeMean:
    """The mean of the per-shape log changes of one group, with its bootstrap uncertainty."""

    n: int  # shapes
    mean: float  # log
    se: float  # bootstrap standard error of the mean (log)
    lo: float  # 2.5 % bootstrap quantile of the mean (log)
    hi: float  # 97.5 % quantile
    p_value: float | None  # two-sided, t with n - 1 dof; None below MIN_SHAPES


def shape_mean(d: np.ndarray, rng: np.random.Generator, n_boot: int = N_BOOT_SHAPES) -> ShapeMean:
    """Mean of per-shape log changes with a bootstrap over shapes.

    Args:
        d: per-shape log changes (finite).
        rng: random generator (seeded by the caller).
        n_boot: bootstrap resamples.

    Returns:
        A :class:`ShapeMean`.
    """
    d = np.asarray(d, float)
    n = int(d.size)
    mean = float(d.mean()) if n else math.nan
    if n < 2:
        return ShapeMean(n, mean, math.nan, mean, mean, None)
    boot = d[rng.integers(0, n, size=(n_boot, n))].mean(axis=1)
    se = float(boot.std(ddof=1))
    lo, hi = (float(q) for q in np.quantile(boot, [0.025, 0.975]))
    if n < MIN_SHAPES:
        p = None
    elif se > 0:
        p = p_two_sided(mean / se, n - 1)
    else:
        p = 0.0 if mean != 0 else 1.0
    return ShapeMean(n, mean, se, lo, hi, p)


def level(values: np.ndarray, ses: np.ndarray) -> tuple[float, float]:
    """One run's level of an implementation over a fixed set of shapes.

    Args:
        values: per-shape log ratios (trimmed mean of the paired log ratios).
        ses: their standard errors (nan where unknown).

    Returns:
        ``(mean log ratio, its standard error)``; the se is nan when any shape's is.
    """
    values, ses = np.asarray(values, float), np.asarray(ses, float)
    if not values.size:
        return math.nan, math.nan
    return float(values.mean()), float(math.sqrt(float((ses * ses).sum())) / values.size)
