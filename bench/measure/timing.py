"""Timing primitives: the timed step and interleaved timing (DESIGN §4).

* :class:`Timing` — how long to time one implementation of one shape and pass.
* :func:`make_step` — the callable timed for a pass: ``fwd`` is inference
  (``eval()`` + ``no_grad``: GConv layers use their cached expanded weights);
  ``fwdbwd`` is a training step (``train()``: filter construction included,
  then ``y.backward(grad_out)`` with a fixed random ``grad_out``, which is the
  gradient of the scalar ``(y * grad_out).sum()`` without materialising it;
  parameter grads — and the input's, for group layers, whose input needs a
  gradient inside a network — are set to None at the start of every call).
* :func:`time_interleaved` — latency samples of several callables, interleaved
  round-robin so drifting machine load hits all alike.
* :class:`Samples` — the raw per-call samples and the latency columns of a row.
* :func:`without_frames` — an exception fit to keep: its frames (and the failed
  call's tensors) let go.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np
import torch

NOISE_LIMIT = 0.10  # IQR / median above this: noisy
#: a callable whose warm-up estimate is this many times the reference's (full/naive
#: of the same shape) and whose planned samples would take over SLOW_FLOOR_S gets
#: only SLOW_SAMPLES samples, stated in ``Samples.reduced`` (never dropped silently)
SLOW_FACTOR = 20.0
SLOW_SAMPLES = 3
SLOW_FLOOR_S = 0.05


@dataclass(frozen=True)
class Timing:
    """How long to time one implementation of one shape and pass.

    CPU: a sample is a block of ``ceil(block_s / t_call)`` calls (per-call time
    = block / n). CUDA: a sample is one call between two events. The number of
    samples is ``budget_s / sample time`` clamped to ``[min_samples, max_samples]``.
    Warm-up: one untimed call, then at least ``warmup_calls`` calls and
    ``warmup_s`` seconds (these give the per-call estimate).
    """

    budget_s: float = 0.25
    block_s: float = 0.005
    min_samples: int = 5
    max_samples: int = 30
    warmup_calls: int = 1
    warmup_s: float = 0.02


# ---------------------------------------------------------------------- #
# what is timed
# ---------------------------------------------------------------------- #
def make_step(
    module: torch.nn.Module, x: torch.Tensor, pass_: str, grad_out: torch.Tensor | None = None
) -> Callable[[], object]:
    """The callable timed for ``pass_`` (``"fwd"`` or ``"fwdbwd"``); see the module doc.

    For ``fwdbwd`` pass an ``x`` that requires grad when the input gradient is
    part of the cost (group layers); ``grad_out`` defaults to a seeded normal
    tensor of the output's shape.
    """
    if pass_ == "fwd":
        module.eval()

        def fwd():
            with torch.no_grad():
                return module(x)

        return fwd
    if pass_ != "fwdbwd":
        raise ValueError(f"unknown pass {pass_!r}; valid choices: ['fwd', 'fwdbwd']")
    module.train()
    if grad_out is None:
        grad_out = _output_like(module, x)  # the output's shape and memory layout
        g = torch.Generator(device=x.device).manual_seed(1234)
        grad_out.copy_(torch.randn(grad_out.shape, generator=g, device=x.device))
    params = [p for p in module.parameters() if p.requires_grad]

    def release():
        """Free the previous call's gradients (the step does it too, first thing)."""
        for p in params:
            p.grad = None
        if x.requires_grad:
            x.grad = None

    def fwdbwd():
        release()
        module(x).backward(grad_out)

    fwdbwd.release = release
    return fwdbwd


def _output_like(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor with the output's shape, dtype and memory layout.

    A training step's ``grad_out`` must be laid out as the output is, as the
    gradient arriving from the next layer is in a network: a channels_last
    layer given a contiguous ``grad_out`` pays a full-size NCHW→NHWC copy in
    every backward that a real training step never pays (seen on the H200: a
    115 µs copy in a 0.6 ms gc step). A GConv layer's output is known from its
    own shape arithmetic and format (a call would make ``impl="auto"`` choose
    for a pass that is never timed); anything else is called once.
    """
    import sepgconv
    from sepgconv import layout

    layer = getattr(module, "_orig_mod", module)  # under a torch.compile wrapper
    if isinstance(layer, sepgconv.GConv2d):
        s = layer.layer_shape(x.shape[-2], x.shape[-1], x.shape[0])
        flat = torch.empty(
            x.shape[0], layer.out_channels * layer.g_out, s.h_out, s.w_out,
            dtype=x.dtype, device=x.device, memory_format=layout.torch_format(layer._format),
        )  # fmt: skip
        return flat.view(x.shape[0], layer.out_channels, layer.g_out, s.h_out, s.w_out)
    with torch.no_grad():
        return torch.empty_like(module(x))


def without_frames(e: BaseException) -> BaseException:
    """``e`` without its traceback and chained exceptions (changed in place, returned).

    A kept exception holds, through its traceback's frames, every local of the
    failed call: on a GPU the tensors of an out-of-memory call (a multi-GB X̃)
    would stay allocated while the other implementations are timed, and one OOM
    would breed more. A row needs only the exception's type and text.
    """
    e.__traceback__ = None
    e.__context__ = None
    e.__cause__ = None
    return e


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------- #
# timing
# ---------------------------------------------------------------------- #
@dataclass
class Samples:
    """Per-call latencies (seconds); each sample is one block of ``iterations`` calls.

    ``rounds[i]`` is the round of :func:`time_interleaved` that took sample
    ``i``: samples of different callables with the same round index were taken
    back to back, so their ratio is a *paired* in-run comparison.
    """

    per_call_s: list[float]
    iterations: int
    rounds: list[int] = field(default_factory=list)
    reduced: str | None = None  # why this callable got fewer samples than the budget's

    @property
    def n(self) -> int:
        return len(self.per_call_s)

    def quantiles_s(self) -> tuple[float, float, float]:
        q1, med, q3 = np.percentile(np.asarray(self.per_call_s), [25, 50, 75])
        return float(q1), float(med), float(q3)

    @property
    def median_s(self) -> float:
        return self.quantiles_s()[1]

    @property
    def iqr_s(self) -> float:
        q1, _, q3 = self.quantiles_s()
        return q3 - q1

    @property
    def noisy(self) -> bool:
        return self.iqr_s > NOISE_LIMIT * self.median_s

    def latency_ms(self) -> dict:
        """The latency columns of a result row (``latency_ms_*``, ``n_samples``, ``noisy``)."""
        q1, med, q3 = self.quantiles_s()
        return dict(
            latency_ms_median=med * 1e3, latency_ms_q1=q1 * 1e3, latency_ms_q3=q3 * 1e3,
            latency_ms_iqr=(q3 - q1) * 1e3, n_samples=self.n, noisy=self.iqr_s > NOISE_LIMIT * med,
        )  # fmt: skip


def _call_s(step: Callable, device: torch.device) -> float:
    synchronize(device)
    t0 = time.perf_counter_ns()
    step()
    synchronize(device)
    return (time.perf_counter_ns() - t0) * 1e-9


def _l2_flusher(device: torch.device) -> Callable[[], None]:
    """A callable that evicts the GPU's L2 cache by writing twice its size."""
    size = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 64 * 2**20)
    buf = torch.empty(max(2 * size, 2**20), dtype=torch.uint8, device=device)
    return lambda: buf.zero_()


def _warm_up(step: Callable, device: torch.device, timing: Timing) -> float:
    """One untimed call, then timed calls (``warmup_calls``, ``warmup_s``); the fastest.

    A slow callable stops after one timed call once its calls took 10× ``warmup_s``:
    a 300 ms call needs no three warm-up calls to be warm."""
    step()
    times: list[float] = []
    while not warm_enough(len(times), sum(times), timing):
        times.append(_call_s(step, device))
    return max(min(times), 1e-9)


def warm_enough(calls: int, seconds: float, timing: Timing) -> bool:
    """Whether the timed warm-up may stop after ``calls`` calls that took ``seconds``
    (:func:`_warm_up`'s rule; the cost model of :mod:`bench.sweep.cost` counts with it)."""
    if calls == 0:
        return False
    done = calls >= max(1, timing.warmup_calls) and seconds >= timing.warmup_s
    return done or calls >= 1000 or seconds >= 10 * max(timing.warmup_s, 1e-3)


def planned_samples(t: float, iters: int, timing: Timing) -> int:
    """Samples a callable of ``t`` seconds a call, ``iters`` calls a sample, is given."""
    return int(min(max(timing.budget_s // (t * iters), timing.min_samples), timing.max_samples))


def is_far_behind(t: float, t_ref: float | None, planned: int) -> bool:
    """Whether a callable gets :data:`SLOW_SAMPLES` instead of ``planned`` samples: its
    call is :data:`SLOW_FACTOR` × the reference's or more and its samples would take
    over :data:`SLOW_FLOOR_S`."""
    slow = t_ref is not None and t >= SLOW_FACTOR * t_ref
    return slow and planned > SLOW_SAMPLES and planned * t > SLOW_FLOOR_S


def time_interleaved(
    steps: dict[Hashable, Callable[[], object]],
    device: torch.device | str,
    timing: Timing,
    flush_l2: bool = False,
    reference: Hashable | None = None,
) -> dict[Hashable, Samples | BaseException]:
    """Latency samples of several callables, interleaved.

    Warm-up (per callable): one untimed call, then ``timing.warmup_calls``
    calls and at least ``timing.warmup_s`` seconds; their fastest call is the
    per-call estimate ``t``. CPU: a sample is a block of ``ceil(block_s / t)``
    calls timed with ``time.perf_counter_ns`` (gc disabled), per-call time =
    block / n. CUDA: a sample is one call between two ``torch.cuda.Event``s,
    read after the round's ``synchronize`` (optionally after an L2 flush,
    outside the events). Each callable gets ``budget_s / sample time`` samples,
    clamped to ``[min_samples, max_samples]``, spread evenly over the rounds;
    every round visits the callables in a rotated order.

    Guards for a loaded machine, where calls can turn out far slower than
    their warm-up: a CPU block that took over 10× ``block_s`` shrinks the
    following blocks of that callable (``Samples.iterations`` is the last block
    size; every sample stays a per-call time), and a callable stops sampling
    once it has ``min_samples`` and has spent 3× ``budget_s``.

    A callable far behind ``reference`` (the key of full/naive, when given): when
    its estimate is :data:`SLOW_FACTOR` × the reference's or more and its planned
    samples would take over :data:`SLOW_FLOOR_S`, it gets :data:`SLOW_SAMPLES`
    samples, and ``Samples.reduced`` says so (the row's ``sampling`` column): a
    g/rearranged call of 333 ms next to a 3 ms reference costs seconds per sample.

    Returns:
        ``{key: Samples}``; a callable that raised maps to its exception, kept
        without its frames (:func:`without_frames`; the others go on).
        ``KeyboardInterrupt`` propagates.
    """
    device = torch.device(device)
    cuda = device.type == "cuda"
    plan: dict[Hashable, int] = {}  # key -> samples wanted
    spent: dict[Hashable, float] = {}  # key -> seconds of timed calls so far
    estimate: dict[Hashable, float] = {}  # key -> per-call estimate from the warm-up
    out: dict[Hashable, Samples | BaseException] = {}
    for key, step in steps.items():
        try:
            t = _warm_up(step, device, timing)
        except Exception as e:  # noqa: BLE001 - recorded per implementation
            out[key] = without_frames(e)
            continue
        iters = 1 if cuda else max(1, math.ceil(timing.block_s / t))
        plan[key] = planned_samples(t, iters, timing)
        out[key] = Samples([], iters)
        spent[key] = 0.0
        estimate[key] = t
    if not plan:
        return out
    ref_t = estimate.get(reference)
    for key, t in estimate.items():
        if key != reference and is_far_behind(t, ref_t, plan[key]):
            plan[key] = SLOW_SAMPLES
            out[key].reduced = (
                f"{SLOW_SAMPLES} samples: {t / ref_t:.0f}x the reference's call "
                f"({t * 1e3:.3g} ms vs {ref_t * 1e3:.3g} ms)"
            )
    flush = _l2_flusher(device) if cuda and flush_l2 else None
    keys = list(plan)
    rounds = max(plan.values())

    def wanted(key, r: int) -> bool:
        s, n = out[key], plan[key]
        if not isinstance(s, Samples) or (r * n) // rounds == ((r + 1) * n) // rounds:
            return False  # failed, or not its turn: n samples spread over the rounds
        return s.n < min(timing.min_samples, n) or spent[key] < 3 * timing.budget_s

    gc_was = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            shift = r % len(keys)
            pending = []
            for key in keys[shift:] + keys[:shift]:
                if not wanted(key, r):
                    continue
                step, samples = steps[key], out[key]
                try:
                    if cuda:
                        if flush is not None:
                            flush()
                        start = torch.cuda.Event(enable_timing=True)
                        end = torch.cuda.Event(enable_timing=True)
                        # the events go on the timed device's stream, not the current device's
                        stream = torch.cuda.current_stream(device)
                        start.record(stream)
                        step()
                        end.record(stream)
                        pending.append((key, start, end))
                        continue
                    iters = samples.iterations
                    t0 = time.perf_counter_ns()
                    for _ in range(iters):
                        step()
                    block = (time.perf_counter_ns() - t0) * 1e-9
                except Exception as e:  # noqa: BLE001
                    out[key] = without_frames(e)
                    continue
                samples.per_call_s.append(block / iters)
                samples.rounds.append(r)
                spent[key] += block
                if iters > 1 and block > 10 * timing.block_s:
                    samples.iterations = max(1, math.ceil(timing.block_s * iters / block))
            if cuda:
                try:
                    torch.cuda.synchronize(device)
                except Exception as e:  # noqa: BLE001 - an async error poisons the round
                    for key, _, _ in pending:
                        out[key] = without_frames(e)
                    continue
                for key, start, end in pending:
                    if isinstance(out[key], Samples):
                        t = start.elapsed_time(end) * 1e-3
                        out[key].per_call_s.append(t)
                        out[key].rounds.append(r)
                        spent[key] += t
    finally:
        if gc_was:
            gc.enable()
    return out
