"""bench.measure / bench.subjects / bench.sweep: timing, memory, counts, checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sepgconv
from bench.measure import macs, memory, timing
from bench.measure.timing import Timing
from bench.pipeline import driver
from bench.store import record
from bench.sweep import guard, profiles, shapes, subject, subjects
from bench.sweep.shapes import Case, Shape
from sepgconv import counting

pytestmark = pytest.mark.usefixtures("one_thread")


def _gconv(variant, impl, c=8, group="p4"):
    torch.manual_seed(0)
    return sepgconv.GConv2d(c, c, 3, group=group, variant=variant, impl=impl, padding=1)


# ---------------------------------------------------------------- memory
def test_cpu_peak_replays_the_allocations_exactly():
    """A call whose allocations are known byte for byte (no oneDNN, no workspace)."""

    def step():
        a = torch.empty(1000)  # 4,000 bytes
        b = torch.empty(2000)  # 8,000: 12,000 live
        del a  # 8,000 live
        c = torch.empty(500)  # 10,000 live
        del b
        return c  # the output counts: it is allocated during the call

    assert memory.cpu_peak_bytes(step) == 12_000
    assert memory.cpu_peak_bytes(lambda: torch.empty(250)) == 1_000


@pytest.mark.parametrize("h", [16, 32, 64])
def test_cpu_peak_counts_the_output_and_repeats_exactly(h):
    # what follows from the code whatever algorithm oneDNN picks on this CPU: the
    # output is allocated during the call, and the same call allocates the same
    # bytes again (a monotone trend over H is one library's accident, not a rule)
    conv = nn.Conv2d(8, 8, 3, padding=1)
    step = timing.make_step(conv, torch.randn(1, 8, h, h), "fwd")
    step()
    peaks = {memory.cpu_peak_bytes(step) for _ in range(3)}
    assert len(peaks) == 1
    assert peaks.pop() >= 8 * h * h * 4


def test_cpu_peak_of_rearranged_g_holds_x_tilde_and_its_copy():
    layer = _gconv("g", "rearranged")
    h, batch = 32, 2
    x = torch.randn(batch, 8, 4, h, h)
    step = timing.make_step(layer, x, "fwd")
    step()
    peak = memory.cpu_peak_bytes(step)
    inter = counting.intermediate_bytes(layer, h, h, batch)
    # the transpose copies X̃ while X̃ itself is still referenced: both are alive
    assert peak >= inter["activations"] == 2 * batch * 8 * 8 * 4 * h * h * 4


def test_cpu_peak_fwdbwd_holds_x_tilde_its_gradient_and_the_output():
    layer = _gconv("gc", "rearranged")
    x = torch.randn(1, 8, 4, 16, 16)
    x_tilde = 1 * 8 * 4 * 16 * 16 * 4  # gc: C_out·G_out channels, stride 1
    fwd = timing.make_step(layer, x, "fwd")
    fwd()
    bwd = timing.make_step(layer, x.clone().requires_grad_(True), "fwdbwd")
    bwd()
    # fwd: X̃ and the output are alive together
    assert memory.cpu_peak_bytes(fwd) >= 2 * x_tilde
    # fwdbwd: the depthwise conv's backward makes grad X̃ while X̃ (saved for the
    # weight gradient) and the output (the expression being differentiated) live
    assert memory.cpu_peak_bytes(bwd) >= 3 * x_tilde


def test_peak_memory_on_cpu_has_no_cuda_fields():
    mem = memory.peak_memory(lambda: torch.randn(1000), "cpu")
    assert mem.peak_mem_bytes >= 4000
    assert mem.mem_reserved_bytes is None and mem.nvml_used_bytes is None


# ---------------------------------------------------------------- timing
def test_time_interleaved_samples_and_interleaves():
    calls = []

    def slow():
        calls.append("slow")
        torch.randn(20000).sum()

    def fast():
        calls.append("fast")

    t = Timing(budget_s=0.005, block_s=0.001, min_samples=4, max_samples=8, warmup_s=0.0)
    out = timing.time_interleaved({"slow": slow, "fast": fast}, "cpu", t)
    for key in ("slow", "fast"):
        s = out[key]
        assert isinstance(s, timing.Samples)
        assert 4 <= s.n <= 8 and all(t > 0 for t in s.per_call_s)
        assert s.median_s > 0 and s.iqr_s >= 0
    assert out["fast"].iterations > out["slow"].iterations  # short calls are blocked
    timed = calls[4:]  # after the warm-ups: one untimed + one timed call each
    switches = sum(a != b for a, b in zip(timed, timed[1:], strict=False))
    assert switches >= 3, "the implementations were not interleaved"


def test_time_interleaved_records_a_failure_and_goes_on():
    def boom():
        raise RuntimeError("kaput")

    out = timing.time_interleaved(
        {"ok": lambda: None, "bad": boom}, "cpu", Timing(budget_s=0.001, warmup_s=0.0)
    )
    assert isinstance(out["bad"], RuntimeError)
    assert isinstance(out["ok"], timing.Samples) and out["ok"].n >= 5


def test_time_interleaved_adapts_when_calls_turn_slow():
    import time

    count = {"n": 0}

    def turns_slow():  # fast during warm-up, then 0.5 ms per call (a loaded machine)
        count["n"] += 1
        if count["n"] > 3:
            time.sleep(0.0005)

    t = Timing(budget_s=0.01, block_s=0.0005, min_samples=5, max_samples=30, warmup_s=0.0)
    t0 = time.perf_counter()
    s = timing.time_interleaved({"x": turns_slow}, "cpu", t)["x"]
    assert s.iterations < 10 and s.n >= 5  # blocks shrank after the first one
    assert time.perf_counter() - t0 < 3.0  # and the time spent stayed bounded
    assert min(s.per_call_s) >= 0.0004


def test_samples_noisy_flag():
    assert timing.Samples([1.0, 1.0, 1.0, 1.0], 1).noisy is False
    assert timing.Samples([1.0, 1.5, 2.0, 2.5], 1).noisy is True


def test_fwdbwd_step_resets_grads():
    layer = _gconv("g", "naive")
    x = torch.randn(1, 8, 4, 8, 8, requires_grad=True)
    step = timing.make_step(layer, x, "fwdbwd")
    step()
    first = layer.kernel.grad.clone()
    step()
    torch.testing.assert_close(layer.kernel.grad, first)  # not accumulated
    assert x.grad is not None and layer.training


# ---------------------------------------------------------------- counts, checks
def test_count_macs_of_dense_conv_matches_formula():
    shape = Shape("p4", "group", 4, 6, 3, 8, 8, 2)
    full = subjects.reference_layer(shape, "full")
    dense = subjects.dense_subject(full, shape)
    x = subject.random_input(shape)
    counted, unsupported = macs.count_macs(dense.module, dense.to_input(x))
    assert counted == dense.macs_formula == counting.dense_macs(shape.layer_shape())
    assert unsupported == ""


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("layer", ["group", "lifting"])
def test_every_implementation_passes_its_check(group, layer):
    shape = Shape(group, layer, 3, 4, 3, 8, 8, 2)
    x = subject.random_input(shape)
    refs: dict = {}
    references = subjects.References(shape, x, refs)
    for im in profiles.implementations():
        if guard.unavailable_reason(Case(shape, im, "fwd")):
            continue  # e.g. Triton kernels without a GPU: tested in their own module
        for fmt in shapes.FORMATS if profiles.runs_in(im, "channels_last") else ["contiguous"]:
            subj = subjects.build(shape, im.eager(fmt), refs)
            assert subjects.check(subj, references) is None, (im, fmt)


def test_check_catches_a_wrong_output():
    shape = Shape("p4m", "group", 3, 4, 3, 8, 8, 1)
    x = subject.random_input(shape)
    refs: dict = {}
    subj = subjects.build(shape, shapes.Impl("gc", "rearranged"), refs)
    with torch.no_grad():
        subj.module.kernel[0, 0, 0] += 0.5  # a different filter than the reference's
    msg = subjects.check(subj, subjects.References(shape, x, refs))
    assert msg and "gc/rearranged" in msg


def test_random_input_is_seeded_and_not_zero():
    shape = Shape("p4", "group", 3, 4, 3, 8, 8, 1)
    a, b = subject.random_input(shape), subject.random_input(shape)
    torch.testing.assert_close(a, b)
    assert a.abs().sum() > 0 and a.std() > 0.5


def test_derive_reference_speedup_is_exactly_one():
    r = driver.base_result(Shape("p4", "group", 4, 4, 3, 8, 8, 1), shapes.REFERENCE, "fwd")
    r.set_samples(timing.Samples([0.003, 0.001, 0.002], 1))
    record.derive(r, r.latency_ms_median, r.macs_formula)
    assert r.speedup_vs_full == 1.0 and r.theoretical_speedup == 1.0 and r.efficiency == 1.0
    assert r.gmacs_per_s == pytest.approx(r.macs_formula / 0.002 / 1e9)


# ---------------------------------------------------------------- sweep definitions
def test_profiles_iterate_the_registry_and_the_dense_reference():
    impls = profiles.implementations(include_peers=False)
    assert impls[0] == shapes.REFERENCE
    assert set(sepgconv.implementations()) <= {im[:2] for im in impls}
    assert shapes.DENSE in impls
    for name, prof in profiles.PROFILES.items():
        cases = prof.cases("cpu", impls)
        assert len({c.key() for c in cases}) == len(cases), name
        ks = {c.shape.k for c in cases}
        assert all(k % 2 == 1 for k in ks)
    full = profiles.PROFILES["full"]
    dtypes = {s.dtype for s in full.shapes("cuda")}
    assert dtypes == {"float32", "float16", "bfloat16"}
    assert {s.dtype for s in full.shapes("cpu")} == {"float32"}
    hs = {s.h for s in profiles.PROFILES["quick"].shapes("cpu")}
    assert min(hs) == 8 and max(hs) == 128
    assert {s.k for s in profiles.PROFILES["quick"].shapes("cpu")} == {1, 3, 5, 7}


def test_memory_guard_skips_what_cannot_fit():
    case = Case(
        Shape("p4m", "group", 64, 64, 3, 64, 64, 32), shapes.Impl("g", "rearranged"), "fwdbwd"
    )
    need = guard.memory_estimate_bytes(case.shape, "g", "rearranged", "fwdbwd")
    assert need > 4 * 2**30  # X̃ alone: 32·64·64·8·64·64·4 bytes = 4 GiB
    assert "GiB" in guard.skip_reason(case, available=2**30)
    assert guard.skip_reason(case, available=2**40) is None
    prepared = driver.prepare_case(case) if need > guard.available_memory_bytes("cpu") else None
    if prepared is not None:
        assert prepared.result.status == "skipped" and prepared.step is None


def test_measure_shape_records_a_shape_that_cannot_fit():
    shape = Shape("p4", "group", 4, 4, 3, 8, 8, 1)
    impls = profiles.implementations(include_peers=False)
    groups = list(driver.measure_shape(shape, impls, shapes.PASSES, Timing(), available=1))
    assert [len(g) for g in groups] == [len(impls)] * 2
    assert all(r.status == "skipped" for g in groups for r in g)
    # those that cannot run here at all say so; the others, that they would not fit
    assert all(("GiB" in r.error) != ("cannot run here" in r.error) for g in groups for r in g)


def test_time_interleaved_keeps_the_round_of_every_sample():
    t = Timing(budget_s=0.002, block_s=0.0005, min_samples=5, max_samples=9, warmup_s=0.0)
    out = timing.time_interleaved({"a": lambda: None, "b": lambda: torch.ones(50).sum()}, "cpu", t)
    for s in out.values():
        assert len(s.rounds) == s.n and s.rounds == sorted(set(s.rounds))  # one sample a round
    shared = set(out["a"].rounds) & set(out["b"].rounds)
    assert len(shared) >= t.min_samples  # enough paired rounds for an in-run ratio
