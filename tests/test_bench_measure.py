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
class _Event:
    """One event of a fake profiler trace: what cpu_peak_bytes reads of kineto's."""

    def __init__(self, t_ns, nbytes, name="[memory]", device="DeviceType.CPU"):
        self._t, self._n, self._name, self._dev = t_ns, nbytes, name, device

    def start_ns(self):
        return self._t

    def nbytes(self):
        return self._n

    def name(self):
        return self._name

    def device_type(self):
        return self._dev


def _fake_profile(events, calls):
    """A stand-in for torch.profiler.profile whose trace is ``events``."""

    class Profile:
        def __init__(self, **kwargs):
            self.profiler = type("P", (), {})()
            self.profiler.kineto_results = type("K", (), {"events": lambda _: events})()

        def __enter__(self):
            calls.append("enter")
            return self

        def __exit__(self, *exc):
            calls.append("exit")
            return False

    return Profile


def test_cpu_peak_replays_the_allocation_events_in_time_order(monkeypatch):
    """The replay itself, on a trace known event by event: the peak of the running sum
    of +alloc/-free in time order, CPU memory events only, the step's release() first."""
    events = [  # listed out of time order, as a trace may be
        _Event(30, -4_000),  # free a
        _Event(10, 4_000),  # alloc a
        _Event(20, 8_000),  # alloc b: 12,000 live
        _Event(25, 1_000_000, name="aten::empty"),  # not a memory event
        _Event(26, 1_000_000, device="DeviceType.CUDA"),  # not CPU memory
        _Event(40, 2_000),  # alloc c: 10,000 live
        _Event(50, -8_000),  # free b
        _Event(60, 3_000),  # 5,000 live
    ]
    calls: list = []
    monkeypatch.setattr(torch.profiler, "profile", _fake_profile(events, calls))

    def step():
        calls.append("step")

    step.release = lambda: calls.append("release")
    assert memory.cpu_peak_bytes(step) == 12_000
    assert calls == ["release", "enter", "step", "exit"]
    ignoring_frees = _fake_profile([e for e in events if e.nbytes() > 0], [])
    monkeypatch.setattr(torch.profiler, "profile", ignoring_frees)
    assert memory.cpu_peak_bytes(lambda: None) == 4_000 + 8_000 + 2_000 + 3_000


def test_cpu_peak_counts_what_is_live_together_and_what_is_freed():
    """The real profiler: tensors alive together count together, freed ones do not
    (bounds with room for anything else the allocator might report)."""
    mb = 2**20

    def step():
        a = torch.empty(mb // 4)  # 1 MiB
        b = torch.empty(mb // 2)  # 2 MiB: 3 MiB live
        del a
        c = torch.empty(mb // 8)  # 0.5 MiB: 2.5 MiB live
        del b
        return c  # the output counts: it is allocated during the call

    assert 3 * mb <= memory.cpu_peak_bytes(step) < 3.5 * mb

    def churn():
        for _ in range(10):
            t = torch.empty(mb // 4)  # 1 MiB, freed before the next one
            del t

    assert mb <= memory.cpu_peak_bytes(churn) < 2 * mb  # frees counted: not 10 MiB


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
    # X̃ is built block by block (sepgconv.impls.g_rearranged_blocks); within a block
    # the transpose copies X̃ while X̃ itself is still referenced: both are alive
    from sepgconv.impls import g_rearranged_blocks

    bb, nb, cb = g_rearranged_blocks(layer.layer_shape(h, h, batch))
    assert peak >= inter["activations"] == 2 * bb * nb * 4 * cb * h * h * 4


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


def test_time_interleaved_rotates_the_order_of_every_round():
    """Each round visits every callable once, and over the rounds each callable takes
    each place in the order equally often: no one is always first after another's
    cache-cold call, or always last when a drift builds up within a round."""
    keys = ["a", "b", "c"]
    calls = []
    steps = {k: (lambda k=k: calls.append(k)) for k in keys}
    # one call per sample (a block of 1e-9 s is one call) and exactly 6 samples each
    t = Timing(budget_s=0.001, block_s=1e-9, min_samples=6, max_samples=6, warmup_s=0.0)
    out = timing.time_interleaved(steps, "cpu", t)
    assert all(out[k].n == 6 and out[k].rounds == list(range(6)) for k in keys)
    assert calls[: 2 * len(keys)] == [k for k in keys for _ in range(2)]  # warm-ups
    timed = calls[2 * len(keys) :]
    rounds = [timed[i : i + 3] for i in range(0, len(timed), 3)]
    assert len(rounds) == 6 and all(sorted(r) == keys for r in rounds)
    places = {(k, r.index(k)) for r in rounds for k in keys}
    counts = {kp: sum(r.index(kp[0]) == kp[1] for r in rounds) for kp in places}
    assert len(places) == 9 and set(counts.values()) == {2}, rounds


def test_time_interleaved_records_a_failure_and_goes_on():
    def boom():
        raise RuntimeError("kaput")

    out = timing.time_interleaved(
        {"ok": lambda: None, "bad": boom}, "cpu", Timing(budget_s=0.001, warmup_s=0.0)
    )
    assert isinstance(out["bad"], RuntimeError)
    assert isinstance(out["ok"], timing.Samples) and out["ok"].n >= 5


class _Clock:
    """A virtual clock for timing.time: time passes only when a step says so."""

    def __init__(self):
        self.ns = 0

    def perf_counter_ns(self):
        return self.ns

    def perf_counter(self):
        return self.ns * 1e-9


def test_time_interleaved_adapts_when_calls_turn_slow(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(timing, "time", clock)
    count = {"n": 0}

    def turns_slow():  # 1 µs during warm-up, then 0.5 ms per call (a loaded machine)
        count["n"] += 1
        clock.ns += 1_000 if count["n"] <= 3 else 500_000

    t = Timing(budget_s=0.01, block_s=0.0005, min_samples=5, max_samples=30, warmup_s=0.0)
    s = timing.time_interleaved({"x": turns_slow}, "cpu", t)["x"]
    # warm-up: 1 µs per call, so the first block is ceil(0.5 ms / 1 µs) = 500 calls
    # (≈ 0.25 s); that block took over 10× block_s, so the blocks after it shrank ...
    assert s.iterations < 10
    # ... and having spent over 3× budget_s, it stopped at min_samples
    assert s.n == t.min_samples
    assert count["n"] <= 2 + 500 + (t.min_samples - 1) * 10
    assert clock.ns * 1e-9 < 0.3  # not 30 samples × 500 calls × 0.5 ms = 7.5 s
    assert min(s.per_call_s) >= 0.0004 and max(s.per_call_s) <= 0.0005


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


@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("layer_kind", ["group", "dense"])
def test_fwdbwd_grad_out_is_laid_out_as_the_output(fmt, layer_kind):
    """A channels_last layer gets a channels_last grad_out (a real network's next layer
    sends one), with the same values as the contiguous one: no NCHW→NHWC copy is timed."""
    if layer_kind == "group":
        layer = sepgconv.GConv2d(3, 5, 3, variant="gc", impl="rearranged", memory_format=fmt)
        x = sepgconv.to_memory_format(torch.randn(2, 3, 4, 6, 7), fmt)
    else:
        layer = torch.nn.Conv2d(6, 5, 3).to(memory_format=sepgconv.layout.torch_format(fmt))
        x = torch.randn(2, 6, 8, 7).contiguous(memory_format=sepgconv.layout.torch_format(fmt))
    seen = []

    def watch(module, inputs, y):  # returns None: the output is not replaced
        if y.requires_grad:  # (a no_grad call to learn the output's layout is not watched)
            y.register_hook(seen.append)

    handle = layer.register_forward_hook(watch)
    timing.make_step(layer, x.requires_grad_(True), "fwdbwd")()
    handle.remove()
    with torch.no_grad():
        y = layer(x)
    (grad,) = seen
    assert grad.shape == y.shape and grad.stride() == y.stride()
    g = torch.Generator().manual_seed(1234)
    torch.testing.assert_close(grad, torch.randn(y.shape, generator=g), rtol=0, atol=0)


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


@pytest.mark.parametrize("variant", ["g", "gc"])
def test_derive_measures_naive_and_auto_against_the_variants_promise(variant):
    """A naive row (or an auto row that chose naive) executes the full MACs; its
    efficiency is still its speedup ÷ the variant's §3.4 cut, as rearranged's is."""
    shape = Shape("p4", "group", 16, 16, 3, 8, 8, 1)
    full_macs = counting.dense_macs(shape.layer_shape())
    promise = counting.macs_section34("full", 16, 16, 4, 4, 3, 8, 8) / counting.macs_section34(
        variant, 16, 16, 4, 4, 3, 8, 8
    )
    for impl in ("naive", "rearranged"):
        r = driver.base_result(shape, shapes.Impl(variant, impl), "fwd")
        r.status = "ok"
        r.set_samples(timing.Samples([0.002] * 3, 1))  # 2 ms; the full GConv 3 ms
        record.derive(r, 3.0, full_macs)
        assert r.efficiency == pytest.approx(1.5 / promise)
        assert record.promised_speedup(r) == pytest.approx(promise)
    assert r.theoretical_speedup == pytest.approx(promise)  # rearranged executes the promise


def test_random_input_is_seeded_and_not_zero():
    shape = Shape("p4", "group", 3, 4, 3, 8, 8, 1)
    a, b = subject.random_input(shape), subject.random_input(shape)
    torch.testing.assert_close(a, b)
    assert a.abs().sum() > 0 and a.std() > 0.5


def test_derive_against_a_reference_that_is_not_itself():
    shape = Shape("p4", "group", 4, 4, 3, 8, 8, 1)
    r = driver.base_result(shape, shapes.Impl("gc", "rearranged"), "fwd")
    r.status = "ok"
    r.set_samples(timing.Samples([0.003, 0.001, 0.002], 1))  # median 2 ms
    full_macs = counting.dense_macs(shape.layer_shape())
    record.derive(r, 5.0, full_macs)  # the full GConv of this shape: 5 ms
    gc = counting.gc_rearranged_macs(shape.layer_shape())
    assert r.macs_formula == gc < full_macs
    assert r.speedup_vs_full == pytest.approx(2.5)
    assert r.theoretical_speedup == pytest.approx(full_macs / gc)
    assert r.efficiency == pytest.approx(2.5 * gc / full_macs)
    assert r.gmacs_per_s == pytest.approx(gc / 0.002 / 1e9)  # fwd: the MACs once
    # a row that did not run has its MAC promise but no measured ratios
    failed = driver.base_result(shape, shapes.Impl("gc", "rearranged"), "fwd")
    failed.fail("error", "boom")
    record.derive(failed, 5.0, full_macs)
    assert failed.theoretical_speedup == pytest.approx(full_macs / gc)
    assert failed.speedup_vs_full is None and failed.efficiency is None


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


def test_memory_guard_skips_what_cannot_fit(monkeypatch):
    case = Case(
        Shape("p4m", "group", 64, 64, 3, 64, 64, 32), shapes.Impl("g", "rearranged"), "fwdbwd"
    )
    need = guard.memory_estimate_bytes(case.shape, "g", "rearranged", "fwdbwd")
    assert need > 2**30  # a 64-channel p4m map of 64×64 at batch 32, F̃, blocks of X̃
    assert "GiB" in guard.skip_reason(case, available=need // 4)
    assert guard.skip_reason(case, available=2**40) is None
    # prepare_case asks the machine what is free: on any host, with too little, it skips
    monkeypatch.setattr(guard, "available_memory_bytes", lambda device: need // 4)
    prepared = driver.prepare_case(case)
    assert prepared.result.status == "skipped" and prepared.step is None
    assert "GiB" in prepared.result.error


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


def test_a_row_far_behind_the_reference_gets_a_stated_few_samples(monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(timing, "time", clock)
    calls = {"ref": 0, "slow": 0, "near": 0}

    def costs(name, ns):
        def step():
            calls[name] += 1
            clock.ns += ns

        return step

    steps = {"ref": costs("ref", 1_000_000), "slow": costs("slow", 300_000_000),
             "near": costs("near", 15_000_000)}  # fmt: skip
    t = Timing(budget_s=0.1, block_s=0.005, min_samples=10, max_samples=100, warmup_s=0.01)
    out = timing.time_interleaved(steps, "cpu", t, reference="ref")
    assert out["slow"].n == timing.SLOW_SAMPLES  # 300x the reference's call: 3 samples ...
    assert "300x the reference" in out["slow"].reduced  # ... and the row says so
    # warm-up: one untimed call and one timed call (0.3 s > 10x warmup_s), then 3 samples
    assert calls["slow"] == 2 + timing.SLOW_SAMPLES
    assert out["near"].reduced is None and out["near"].n >= t.min_samples  # 15x: not slow
    assert out["ref"].reduced is None and out["ref"].n >= t.min_samples
    # without a reference nothing is reduced
    again = timing.time_interleaved(steps, "cpu", t)
    assert again["slow"].reduced is None and again["slow"].n == t.min_samples


def test_auto_chooses_after_the_implementations_it_times_are_warm(monkeypatch):
    order = []
    real = driver.first_call_s

    def noted(step, device):
        order.append(step)
        return real(step, device)

    monkeypatch.setattr(driver, "first_call_s", noted)
    made = {}
    real_step = driver.step_for

    def step_for(subj, x, shape, pass_):
        step = real_step(subj, x, shape, pass_)
        made[step] = subj.impl
        return step

    monkeypatch.setattr(driver, "step_for", step_for)
    shape = Shape("p4", "group", 4, 4, 3, 8, 8, 1)
    impls = [shapes.Impl("gc", "auto"), shapes.Impl("gc", "rearranged"), shapes.REFERENCE]
    t = Timing(budget_s=0.002, block_s=0.0005, min_samples=3, max_samples=3, warmup_s=0.0)
    rows = [r for g in driver.measure_shape(shape, impls, ("fwd",), t) for r in g]
    assert [r.impl for r in rows] == ["auto", "rearranged", "naive"]  # rows keep their order
    assert [made[s] for s in order] == ["rearranged", "naive", "auto"]  # auto warms last


def test_an_auto_training_row_that_chose_differently_is_counted_on_its_choice(monkeypatch):
    from bench.pipeline import rows as rowfill
    from sepgconv import autotune

    shape = Shape("p4", "group", 4, 4, 3, 8, 8, 1)
    im = shapes.Impl("gc", "auto")
    subj = subjects.build(shape, im, {})
    x = subject.random_input(shape)
    r = rowfill.base_result(shape, im, "fwdbwd")
    naive = sepgconv.get_implementation("gc", "naive").macs(shape.layer_shape())
    r.macs_formula, r.macs_measured, r.macs_match = naive, naive, True  # the inference count
    chosen = autotune.Choice("rearranged", "contiguous")
    monkeypatch.setattr(subj.module, "choice", lambda inp: chosen)
    rowfill.note_choice(r, subj, x, shape, "fwdbwd")
    rearranged = sepgconv.get_implementation("gc", "rearranged").macs(shape.layer_shape())
    assert r.auto_choice == "rearranged" and r.macs_formula == rearranged != naive
    assert r.macs_measured == rearranged and r.macs_match is True  # not left empty
