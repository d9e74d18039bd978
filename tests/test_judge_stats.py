"""The statistics behind ``bench compare``, each property checked on its own (seeded).

Paired ratios (bench.judge.pairing), the bootstrap standard error and the
t tails (bench.judge.stats), Holm and the between-run spread
(bench.judge.familywise), the per-implementation mean over shapes
(bench.judge.aggregate), and the validation harness (bench.judge.validate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from bench.judge import synthetic as S
from bench.judge import validate as V
from bench.judge.aggregate import level, shape_mean
from bench.judge.familywise import between_run_sd, holm, split_holm
from bench.judge.pairing import estimates, paired_log_ratios
from bench.judge.runs import Bench, params_key
from bench.judge.stats import (
    MEDIAN_ONLY,
    PAIRED,
    SAMPLES,
    decide,
    p_two_sided,
    summarize,
    trimmed,
    welch_df,
)

# ------------------------------------------------------------------ pairing


def test_paired_ratios_cancel_what_a_round_shares():
    rng = np.random.default_rng(0)
    load = np.exp(rng.normal(0, 0.5, 30))  # a heavy load, common to the round
    ref = 2e-3 * load * np.exp(rng.normal(0, 0.01, 30))
    x = 1.2 * 2e-3 * load * np.exp(rng.normal(0, 0.01, 30))
    r = np.arange(30)
    lr = paired_log_ratios(x, r, ref, r)
    assert lr.size == 30 and np.median(lr) == pytest.approx(math.log(1.2), abs=0.01)
    assert lr.std() < 0.03  # the load is gone: only the per-sample noise is left
    # dividing by the reference's median keeps the load (the old rule's statistic)
    assert (np.log(x) - np.log(np.median(ref))).std() > 0.3


def test_sparse_and_dense_series_pair_by_nearest_round():
    ref = np.array([1.0, 2.0, 4.0])
    ref_rounds = np.array([0, 5, 9])
    x = np.array([2.0, 2.0, 8.0, 8.0, 8.0, 16.0])  # 2x the reference in each neighbourhood
    x_rounds = np.array([0, 1, 4, 5, 6, 9])
    lr = paired_log_ratios(x, x_rounds, ref, ref_rounds)
    # x's 0,1 join ref's round 0; 4,5,6 join round 5; 9 joins 9: one ratio per ref sample
    assert np.allclose(lr, np.log([2.0, 4.0, 4.0]))
    # the sign follows the argument order, whichever series is sparser
    assert np.allclose(paired_log_ratios(ref, ref_rounds, x, x_rounds), -lr)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 30), m=st.integers(2, 30), shift=st.integers(0, 5),
    seed=st.integers(0, 10**6),
)  # fmt: skip
def test_pairing_uses_every_sample_once_and_is_invariant_to_a_round_factor(n, m, shift, seed):
    rng = np.random.default_rng(seed)
    total = max(n, m) + shift
    xr = np.sort(rng.choice(total, n, replace=False))
    rr = np.sort(rng.choice(total, m, replace=False))
    x, ref = rng.lognormal(0, 0.2, n), rng.lognormal(0, 0.2, m)
    lr = paired_log_ratios(x, xr, ref, rr)
    assert 1 <= lr.size <= min(n, m)
    factor = rng.lognormal(0, 1.0, total)  # any factor per round: affects both alike
    lr2 = paired_log_ratios(x * factor[xr], xr, ref * factor[rr], rr)
    if np.array_equal(xr, rr):
        assert np.allclose(lr2, lr)  # same rounds: the factor cancels exactly
    # a constant factor on the benchmark moves every ratio by exactly its log
    assert np.allclose(paired_log_ratios(3.0 * x, xr, ref, rr), lr + math.log(3.0))


def _bench(values, rounds=None):
    v = np.asarray(values, float)
    r = None if rounds is None else np.asarray(rounds, np.int64)
    return Bench((("k", 0),), {}, "", "", {}, summarize(v, float(np.median(v))), r)


def test_the_ratio_statistic_is_on_paired_ratios_not_on_raw_samples():
    """A benchmark exactly 1.5× its reference in every round, under a load that
    moves both tenfold from round to round: the ratio statistic is log 1.5 with
    no spread; the benchmark's own samples (the absolute statistic) keep the load."""
    rng = np.random.default_rng(7)
    load = np.exp(rng.normal(0, 1.0, 12))
    ref = 1e-3 * load
    rounds = np.arange(12)
    b, r = _bench(1.5 * ref, rounds), _bench(ref, rounds)
    (ratio,) = estimates([(b, r)])
    assert ratio.method == PAIRED and ratio.n == 12
    assert ratio.value == pytest.approx(math.log(1.5), abs=1e-12)
    assert ratio.se == pytest.approx(0.0, abs=1e-12)
    (absolute,) = estimates([(b, None)])
    assert absolute.method == SAMPLES and absolute.se > 0.1
    assert absolute.value == pytest.approx(trimmed(np.log(1.5 * ref))[0])
    # without round indices: unpaired, the reference's noise counted in the se
    (unpaired,) = estimates([(_bench(1.5 * ref), _bench(ref))])
    assert unpaired.value == pytest.approx(math.log(1.5), abs=1e-12) and unpaired.se > 0.1


def test_decide_needs_both_significance_and_an_effect_above_the_threshold():
    kw = dict(alpha=0.01, threshold=0.10, method=PAIRED)
    up, down, small = math.log(1.2), math.log(1 / 1.2), math.log(1.05)
    assert decide(up, 1e-6, **kw).verdict == "regression"
    assert decide(down, 1e-6, **kw).verdict == "improvement"
    # beyond the threshold, but inside the noise: not confirmed by the test
    assert decide(up, 0.3, **kw).verdict == "noisy"
    assert decide(down, 0.3, **kw).verdict == "noisy"
    assert decide(up, 0.0100001, **kw).verdict == "noisy"
    # significant but below the threshold: too small to count
    assert decide(small, 1e-12, **kw).verdict == "unchanged"
    assert decide(small, 0.5, **kw).verdict == "unchanged"
    # no test (too few samples): never a regression on its own
    assert decide(up, None, **kw).verdict == "noisy"
    # no raw samples at all: the threshold alone decides
    assert decide(up, None, alpha=0.01, threshold=0.10, method=MEDIAN_ONLY).verdict == (
        "regression"
    )
    d = decide(up, 0.3, **kw)
    assert d.change == pytest.approx(0.2) and d.bar == 0.10


# ------------------------------------------------------- standard error, tails


def test_trimmed_mean_se_is_calibrated_and_its_tails_are_t():
    rng = np.random.default_rng(1)
    sigma, n = 0.1, 30
    arrays = [rng.normal(0, sigma, n) for _ in range(2000)]
    stats = [trimmed(a) for a in arrays]
    means = np.array([m for m, _, _ in stats])
    se = np.sqrt([v for _, v, _ in stats])
    assert {d for _, _, d in stats} == {23.0}  # n = 30: 3 trimmed each side, h = 24
    assert np.median(se) == pytest.approx(means.std(), rel=0.1)
    # the studentized trimmed mean follows t with h - 1 dof, far into the tails
    t = np.abs(means / se)
    for alpha in (1e-2, 1e-3):
        crit = brentq(lambda z, a=alpha: p_two_sided(z, 23) - a, 0.1, 50)
        assert (t > crit).mean() == pytest.approx(alpha, rel=0.5, abs=5e-4)
    # spikes move a median little and a trimmed mean little; a mean a lot
    spiky = np.r_[rng.normal(0, 0.01, 27), [1.0, 1.5, 2.0]]
    assert abs(trimmed(spiky)[0]) < 0.02 < abs(spiky.mean())
    assert math.isnan(trimmed(np.array([1.0]))[1])


def test_t_tails_match_scipy_and_the_approximation_is_conservative(monkeypatch):
    scipy_stats = pytest.importorskip("scipy.stats")
    import bench.judge.stats as stats

    for z, df in [(2.0, 4), (4.5, 9), (5.0, 29), (3.0, math.inf), (6.0, 1e9)]:
        exact = 2 * scipy_stats.t.sf(z, df) if math.isfinite(df) else 2 * scipy_stats.norm.sf(z)
        assert p_two_sided(z, df) == pytest.approx(exact, rel=1e-6)
    monkeypatch.setattr(stats, "_stdtr", False)
    for z, df in [(2.0, 4), (4.5, 9), (5.0, 29), (8.0, 4)]:
        exact = 2 * scipy_stats.t.sf(z, df)
        assert exact <= p_two_sided(z, df) <= 1.2 * exact


def test_welch_df():
    assert welch_df([1.0, 1.0], [9, 9]) == pytest.approx(18.0)
    assert welch_df([1.0, 0.0], [4, math.inf]) == pytest.approx(4.0)
    assert welch_df([1.0, 1e6], [4, math.inf]) > 1e9  # a known component dominates: ~normal
    assert welch_df([0.0, 1.0], [4, math.inf]) == math.inf


# ------------------------------------------------------- family-wise control


def test_holm_adjusts_step_down():
    assert holm([0.01, 0.04, 0.03, None, 0.5]) == pytest.approx([0.04, 0.09, 0.09, None, 0.5])
    assert split_holm([0.001, 0.2]) == pytest.approx([0.004, 0.4])
    assert holm([]) == []


def test_holm_keeps_the_family_wise_error_at_alpha():
    rng = np.random.default_rng(3)
    runs_failed = [any(p < 0.05 for p in holm(list(rng.random(500)))) for _ in range(2000)]
    raw_failed = [any(p < 0.05 for p in rng.random(500)) for _ in range(200)]
    assert np.mean(runs_failed) <= 0.06 and np.mean(raw_failed) == 1.0


def test_between_run_sd_recovers_the_spread_and_ignores_a_regressed_fifth():
    rng = np.random.default_rng(4)
    se = rng.uniform(0.005, 0.03, 800)
    d = rng.normal(0, np.sqrt(se**2 + 0.03**2))
    assert between_run_sd(d, se) == pytest.approx(0.03, rel=0.12)
    d2 = d.copy()
    d2[:160] += 0.22  # one implementation of five, 25 % slower
    assert between_run_sd(d2, se) == pytest.approx(0.03, rel=0.6)  # robust, inflated
    groups = np.repeat(np.arange(5), 160)  # ...unless centred per implementation
    assert between_run_sd(d2, se, groups) == pytest.approx(0.03, rel=0.12)
    d3 = d + 0.2  # every benchmark shifted alike (a slower machine, absolute rule)
    assert between_run_sd(d3, se) == pytest.approx(between_run_sd(d, se), rel=1e-9)
    assert between_run_sd(rng.normal(0, se), se) < 0.005  # no excess spread: ~0
    assert between_run_sd(d[:5], se[:5]) is None


# ------------------------------------------------------------ aggregation


def test_mean_over_shapes_interval_covers_and_test_is_level():
    rng = np.random.default_rng(5)
    covered, rejected = 0, 0
    for _ in range(200):
        d = rng.normal(0.05, 0.1, 40)
        m = shape_mean(d, rng, n_boot=500)
        covered += m.lo <= 0.05 <= m.hi
        rejected += shape_mean(d - 0.05, rng, n_boot=500).p_value < 0.05
    assert 0.90 <= covered / 200 <= 0.99
    assert rejected / 200 <= 0.1
    assert shape_mean(np.array([0.1, 0.2]), rng).p_value is None  # too few shapes to test


def test_level_uncertainty_is_measurement_only():
    y, se = level([0.1, 0.3], [0.02, 0.02])
    assert y == pytest.approx(0.2) and se == pytest.approx(math.sqrt(2) * 0.02 / 2)


# ------------------------------------------------------ validation harness


def test_resampling_keeps_the_pairing():
    """A sample's value encodes its source round: after resampling, every implementation
    of a shape must hold the same source round under each new round index."""
    params = S.grid(passes=("fwd",), channels=(8,), k_h=S.K_H[:2])
    run = S.synthetic_run(params, S.world(params, 0), 0)
    for b in run.benches.values():
        b.summary.values[:] = 1.0 + b.rounds  # value = source round + 1
    out = V.resample_run(run, np.random.default_rng(0))
    by_shape = {}
    for b in out.benches.values():
        shape = params_key({k: v for k, v in b.params.items() if k not in ("variant", "impl")})
        for r, v in zip(b.rounds, b.summary.values, strict=True):
            assert by_shape.setdefault((shape, int(r)), v) == v
    assert len({v for v in by_shape.values()}) < len(by_shape)  # some rounds drawn twice


@pytest.mark.slow
def test_the_harness_counts_false_alarms_and_detections():
    params = S.grid(channels=(8, 16), k_h=S.K_H[:3])
    world = S.world(params, 0)

    def pair(i):
        return S.synthetic_run(params, world, 10 * i), S.synthetic_run(params, world, 10 * i + 1)

    out = V.scenarios(pair, 6, ("ratio", "deterministic"), np.random.default_rng(0))
    assert (out["null"].runs, out["null"].fails) == (6, 0)
    assert out["impl"].caught == out["impl"].clean == 6
    assert out["bench"].caught >= 5
