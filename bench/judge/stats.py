"""Statistics behind ``python -m bench compare``: robust summaries and verdicts.

No torch here, and scipy is imported only when a test is actually run.

The decision for one pair of latency summaries (base, new):

* ``change = median(new) / median(base) - 1``.
* ``noisy`` when the interquartile range over the median exceeds
  ``NOISE_LIMIT`` (10 %) on either side.
* Significance: two-sided Mann-Whitney U on the raw per-round samples. The
  direction is read from the sign of the median change, so at level ``alpha``
  each direction (regression, improvement) is tested at ``alpha / 2``. Two-sided
  keeps regressions and improvements symmetric and is the conservative choice:
  pytest-benchmark's rounds are not independent draws (the machine drifts
  within a run), so p-values are optimistic and the effect threshold is the
  real guard against false alarms.
* A regression needs ``p < alpha`` *and* ``change > bar``; an improvement needs
  ``p < alpha`` and ``new / base < 1 / (1 + bar)`` (the same step in log space,
  so undoing a regression counts as an improvement). ``bar`` is the threshold,
  raised to the larger relative IQR of the two sides when the pair is noisy:
  on a noisy pair only an effect bigger than the noise band counts.
* Without raw samples (or without scipy) there is no test: the decision uses
  the medians and the threshold alone, and says so (``method = "median-only"``).
* Otherwise the verdict is ``noisy`` for a noisy pair and for an effect
  beyond ``bar`` that the test does not confirm (too few or too scattered
  samples: inconclusive), and ``unchanged`` for the rest.
* With very few rounds no outcome reaches ``p < alpha`` (two-sided, the
  smallest possible p is ``2 / C(n + m, n)``: 0.0079 for 5 against 5, 0.029
  for 4 against 4); ``min_p`` gives that floor so the report can say so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NOISE_LIMIT = 0.10  # IQR / median above this on either side: "noisy"

MANN_WHITNEY = "mann-whitney"
MEDIAN_ONLY = "median-only"


@dataclass(frozen=True)
class Summary:
    """One benchmark's latency in one run."""

    median: float
    rel_iqr: float | None  # IQR / median; None when unknown
    values: np.ndarray | None  # raw per-round samples (seconds), None when absent

    @property
    def n(self) -> int:
        return 0 if self.values is None else int(self.values.size)


def summarize(values: np.ndarray | None, median: float, iqr: float | None = None) -> Summary:
    """Summary from raw samples when there are any, else from the given median/IQR."""
    if values is not None and values.size:
        q1, med, q3 = np.percentile(values, [25, 50, 75])
        med = float(med)
        rel = float(q3 - q1) / med if med > 0 else math.inf
        return Summary(med, rel, values)
    rel = None if iqr is None or median <= 0 else float(iqr) / median
    return Summary(float(median), rel, None)


def ratio_summary(s: Summary, ref: Summary) -> Summary:
    """``s`` expressed as a multiple of the reference median of the same run.

    The per-round samples are divided by the reference *median* (a constant of
    the run), so the Mann-Whitney test on the ratios tests the benchmark's
    samples, and ignores the uncertainty of the reference median itself; the
    noise of the reference enters through ``rel_iqr`` (the larger of the two).
    """
    values = None
    if s.values is not None and ref.values is not None:
        values = s.values / ref.median
    rels = [r for r in (s.rel_iqr, ref.rel_iqr) if r is not None]
    return Summary(s.median / ref.median, max(rels) if rels else None, values)


_mannwhitneyu = None


def scipy_available() -> bool:
    global _mannwhitneyu
    if _mannwhitneyu is None:
        try:
            from scipy.stats import mannwhitneyu
        except ImportError:
            _mannwhitneyu = False
        else:
            _mannwhitneyu = mannwhitneyu
    return _mannwhitneyu is not False


def min_p(n: int, m: int) -> float:
    """Smallest two-sided Mann-Whitney p-value possible with n and m samples (no ties)."""
    if not (n and m):
        return 1.0
    c = math.comb(n + m, n)
    return min(1.0, 2.0 / c) if c < 1e300 else 0.0


def p_values(pairs: list[tuple[Summary, Summary]]) -> list[float | None]:
    """Two-sided Mann-Whitney U p-value of each (base, new) pair of raw samples.

    None where a side has no raw samples or scipy is not installed. Pairs with
    the same sample counts go to scipy as one batch (``axis=1``): one call per
    batch instead of one per pair.
    """
    out: list[float | None] = [None] * len(pairs)
    if not scipy_available():
        return out
    batches: dict[tuple[int, int], list[int]] = {}
    for i, (a, b) in enumerate(pairs):
        if a.values is not None and b.values is not None:
            batches.setdefault((a.n, b.n), []).append(i)
    for idx in batches.values():
        a = np.stack([pairs[i][0].values for i in idx])
        b = np.stack([pairs[i][1].values for i in idx])
        ps = np.atleast_1d(_mannwhitneyu(a, b, alternative="two-sided", axis=1).pvalue)
        for i, p in zip(idx, ps, strict=True):
            out[i] = 1.0 if math.isnan(p) else float(p)  # nan: nothing to rank
    return out


@dataclass(frozen=True)
class Decision:
    verdict: str  # "regression" | "improvement" | "unchanged" | "noisy"
    change: float  # median(new) / median(base) - 1
    p_value: float | None
    method: str  # MANN_WHITNEY | MEDIAN_ONLY
    noisy: bool
    bar: float  # the effect size that had to be exceeded

    def as_dict(self) -> dict:
        return {
            "verdict": self.verdict,
            "change": self.change,
            "p_value": self.p_value,
            "method": self.method,
            "noisy": self.noisy,
            "bar": self.bar,
        }


def decide(
    base: Summary,
    new: Summary,
    threshold: float,
    alpha: float,
    p_value: float | None,
    noise_limit: float = NOISE_LIMIT,
) -> Decision:
    """Verdict for one pair, given its p-value (None: no test, medians only).

    See the module docstring for the rule.
    """
    change = new.median / base.median - 1.0
    rels = [r for r in (base.rel_iqr, new.rel_iqr) if r is not None]
    noise = max(rels) if rels else 0.0
    noisy = noise > noise_limit
    bar = max(threshold, noise) if noisy else threshold

    p = p_value
    method = MEDIAN_ONLY if p is None else MANN_WHITNEY
    significant = p is None or p < alpha

    slower, faster = change > bar, (1.0 + change) * (1.0 + bar) < 1.0
    if significant and slower:
        verdict = "regression"
    elif significant and faster:
        verdict = "improvement"
    elif noisy or slower or faster:  # scattered, or an effect the test does not confirm
        verdict = "noisy"
    else:
        verdict = "unchanged"
    return Decision(verdict, change, p, method, noisy, bar)


def decide_all(
    pairs: list[tuple[Summary, Summary]], threshold: float, alpha: float
) -> list[Decision]:
    """``decide`` for many pairs, with their p-values computed in batches."""
    ps = p_values(pairs)
    return [decide(a, b, threshold, alpha, p) for (a, b), p in zip(pairs, ps, strict=True)]
