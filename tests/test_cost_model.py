"""The sweep's cost model (bench.sweep.cost) against the first GPU run's evidence.

``tests/data/h200_sweep_*_2026-12-04`` are the rows and per-shape wall times of the
H200 run (shared/evidence/h200-2026-12-04): the constants of ``cost.H200`` must be
what those rows give, and the model must reproduce the shapes' wall times.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from bench.measure.timing import Timing
from bench.sweep import cost, profiles
from bench.sweep.shapes import REFERENCE, Impl, Shape

DATA = Path(__file__).parent / "data"
ROWS = list(csv.DictReader((DATA / "h200_sweep_rows_2026-12-04.csv").open()))
WALLS = json.loads((DATA / "h200_sweep_walls_2026-12-04.json").read_text())
EVIDENCE_TIMING = Timing(
    budget_s=0.1, min_samples=10, max_samples=100, warmup_calls=3, warmup_s=0.02
)  # fmt: skip  (the full profile's CUDA timing then)


def _shape(r: dict) -> Shape:
    h = int(r["h"])
    return Shape(r["group"], r["layer"], int(r["c_in"]), int(r["c_out"]), int(r["k"]), h, h,
                 int(r["batch"]), r["dtype"], "cuda")  # fmt: skip


def test_the_h200_rates_are_the_evidence_fitted():
    fitted = cost.fit_rates(ROWS, cost.H200.call_floor_s)
    assert set(fitted) == {k for k in cost.H200.rates if "*" not in k}
    for key, rate in fitted.items():
        assert cost.H200.rates[key] == pytest.approx(rate, rel=0.06), key


def test_predicted_calls_are_within_a_factor_two_of_the_measured_ones():
    for r in ROWS:
        if r["impl"] == "auto":
            continue
        t = cost.call_s(_shape(r), Impl(r["variant"], r["impl"]), r["pass"], cost.H200)
        measured = float(r["latency_ms_median"]) * 1e-3
        assert 0.5 < t / measured < 2.0, (r["variant"], r["impl"], r["pass"], t, measured)


def test_the_row_model_reproduces_each_shapes_wall_time():
    # measured rows: per-row fixed cost + the calls the timing rules of the time made
    # (no stated reduction then) + the auto rows' measured tuning
    n = WALLS["rows_per_group"]
    for g, wall in enumerate(WALLS["groups"]):
        rows = ROWS[g * n : (g + 1) * n]
        calls = 0.0
        for r in rows:
            t = float(r["latency_ms_median"]) * 1e-3
            calls += cost.row_calls(t, None, EVIDENCE_TIMING, True) * t
        tuning = sum(float(r["tuning_s"] or 0) for r in rows)
        model = n * cost.H200.row_fixed_s + calls + tuning
        assert model == pytest.approx(wall["wall_s"], abs=3.0), (g, model, wall)


def test_the_compile_model_reproduces_the_first_shapes_auto_tuning(monkeypatch):
    # the launcher of the time: Triton's default 25 + 100 ms benchmarks, its 56
    # configurations, keys with H, W and B, sizes specialised (the model's fallback)
    monkeypatch.setattr(cost, "_launch", lambda: None)
    # the first shape's auto rows paid every Triton compile: 12 fwd configurations
    # (g: 15.5 s, gc: 17.0 s measured), then g's backward kernels (11.3 s)
    first = _shape(ROWS[0])
    for variant, pass_, measured in (("g", "fwd", 15.5), ("gc", "fwd", 17.0),
                                     ("g", "fwdbwd", 11.3)):  # fmt: skip
        cases = [profiles.Case(first, Impl(variant, "fused"), "fwd")]
        if pass_ == "fwdbwd":
            cases.append(profiles.Case(first, Impl(variant, "fused"), "fwdbwd"))
        est = cost.estimate(cases, EVIDENCE_TIMING, cost.H200)
        if pass_ == "fwdbwd":
            fwd_only = cost.estimate(cases[:1], EVIDENCE_TIMING, cost.H200)
            est.compile_s -= fwd_only.compile_s
        cost_configs = dict(cost.DEFAULT_CONFIGS)
        assert est.compile_s == pytest.approx(measured, rel=0.35), (variant, pass_, cost_configs)


def test_slow_rows_take_the_stated_few_samples_in_the_model_too():
    t = Timing(budget_s=0.05, min_samples=10, max_samples=60, warmup_calls=2, warmup_s=0.01)
    fast = cost.row_calls(2e-4, 2e-4, t, False)
    slow = cost.row_calls(0.3, 2e-4, t, False)
    assert slow == 1 + 2 + 1 + 3  # check, one warm-up and one timed warm-up, memory, 3 samples
    assert fast > slow
    s = Shape("p4", "group", 32, 32, 3, 128, 128, 32, "float32", "cuda")
    assert cost.call_s(s, Impl("g", "rearranged"), "fwdbwd", cost.H200) > 20 * cost.call_s(
        s, REFERENCE, "fwdbwd", cost.H200
    )
