"""What a sweep costs before it runs: a per-row cost model fitted to measured runs.

A run's wall time is, shape by shape (:func:`estimate`)::

    rows × ROW_FIXED_S                        build, check against the reference, fvcore's
                                              count, bookkeeping (per row)
    + Σ_rows calls(row) · t(row)              the row's own calls: the check, the first
                                              call, the warm-up, the memory call and the
                                              samples (bench.measure.timing's rules,
                                              including the stated 3 samples of a row
                                              20× slower than full/naive)
    + Σ_auto rows tuning(row)                 impl="auto": each candidate's warm-up and
                                              first timed call; candidates far behind
                                              the best are abandoned, the rest take the
                                              tuner's rounds
    + Σ_new Triton kernels configs · COMPILE_S   fused rows: one compile per kernel ×
    + Σ_new autotune keys  configs · BENCH_S     compile-time constants × autotune config,
                                              one benchmark per autotune key × config

plus ``SETUP_S`` (environment, roofline ceilings, the warm-up of the GPU) and the
per-operator profile. ``t(row)`` is predicted from the MACs the implementation
executes and a rate per implementation and pass fitted to the device's evidence
(:data:`H200`), plus a per-call floor (launches).

The constants of :data:`H200` come from the first GPU run
(``shared/evidence/h200-2026-12-04``; the rows and the per-shape wall times are in
``tests/data/h200_sweep_*``): the per-row remainder after the calls and the
tuning was 0.00–0.07 s over its 8 shape-passes (median 0.01 s; 0.03 s is taken);
the tuning of the auto rows was 92 % of the run and was almost all Triton:
12 fwd configurations compiled and benchmarked took 15.5 s (g) and 17.0 s (gc),
1.6 s when only benchmarked (a new autotune key, same compiled kernels).
``tests/test_cost_model.py`` refits and checks them against those rows.
What the model does not know: a new kernel's speed (it uses the evidence's rates),
and Triton's compile time on another host CPU.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable

import sepgconv
from sepgconv import counting

from ..measure import timing as timing_rules
from ..measure.timing import Timing
from .shapes import DENSE, REFERENCE, Case, Impl, Shape


@dataclasses.dataclass(frozen=True)
class DeviceCosts:
    """Fitted constants of one device (seconds; rates in MAC/s of executed MACs)."""

    name: str
    row_fixed_s: float
    setup_s: float
    call_floor_s: dict  # pass -> the shortest call (launches; fwdbwd: autograd, F̃ build)
    compile_s: tuple  # one Triton kernel × configuration compiled: a + b·k² (taps unrolled)
    bench_s: float  # one autotune benchmark of one configuration (at least)
    rates: dict  # (variant, impl, pass) -> executed MAC/s; "*" impl: any other
    task_s: float = 0.5  # a precompile task's own cost: a process's layer and input
    tuner_rounds: int = 3
    abandon_factor: float = 3.0  # a candidate this many times the best stops after 1 call


#: NVIDIA H200, torch 2.11 + cu130, Triton 3.6, fp32 with PyTorch's defaults (cuDNN
#: TF32): the rates are :func:`fit_rates` of the evidence's rows (rounded to 2 digits;
#: tests/test_cost_model.py refits them). Low precision is costed at these rates.
H200 = DeviceCosts(
    name="NVIDIA H200 (evidence 2026-12-04)",
    row_fixed_s=0.03,
    setup_s=15.0,
    call_floor_s={"fwd": 2.5e-5, "fwdbwd": 5e-4},
    compile_s=(0.12, 0.115),
    bench_s=0.13,
    rates={
        ("dense", "torch", "fwd"): 8.7e13,
        ("dense", "torch", "fwdbwd"): 9.9e13,
        ("full", "naive", "fwd"): 8.4e13,
        ("full", "naive", "fwdbwd"): 9.8e13,
        ("g", "fused", "fwd"): 2.45e12,  # fused: the evidence's times (of the gather
        # kernels) over today's MAC count (larger tiles since the gather-free kernels:
        # less halo recompute); the new kernels are not yet measured on a GPU
        ("g", "fused", "fwdbwd"): 1.4e12,
        ("g", "naive", "fwd"): 8.3e13,
        ("g", "naive", "fwdbwd"): 9.8e13,
        ("g", "rearranged", "fwd"): 2.5e11,
        ("g", "rearranged", "fwdbwd"): 2.6e11,
        ("gc", "fused", "fwd"): 7.8e12,
        ("gc", "fused", "fwdbwd"): 4.8e12,
        ("gc", "naive", "fwd"): 8.4e13,
        ("gc", "naive", "fwdbwd"): 1.0e14,
        ("gc", "rearranged", "fwd"): 1.8e13,
        ("gc", "rearranged", "fwdbwd"): 9.6e12,
        ("*", "*", "fwd"): 8.4e13,
        ("*", "*", "fwdbwd"): 9.8e13,
    },
)


def fit_rates(rows: Iterable[dict], floors: dict[str, float]) -> dict[tuple, float]:
    """Executed MAC/s per ``(variant, impl, pass)``: the median of ``MACs / (t − floor)``
    over result rows (``results.csv`` dicts) whose latency exceeds twice the floor."""
    import statistics

    from .shapes import Shape

    found: dict[tuple, list[float]] = {}
    for r in rows:
        if r["impl"] == "auto" or r.get("status", "ok") != "ok":
            continue
        h = int(r["h"])
        shape = Shape(r["group"], r["layer"], int(r["c_in"]), int(r["c_out"]), int(r["k"]),
                      h, int(r.get("w") or h), int(r["batch"]), r["dtype"], "cuda")  # fmt: skip
        t, floor = float(r["latency_ms_median"]) * 1e-3, floors[r["pass"]]
        if t > 2 * floor:
            m = executed_macs(shape, Impl(r["variant"], r["impl"]), r["pass"])
            found.setdefault((r["variant"], r["impl"], r["pass"]), []).append(m / (t - floor))
    return {k: statistics.median(v) for k, v in found.items()}


#: fused kernels a pass launches, by variant
FUSED_KERNELS = {
    ("g", "fwd"): ("fwd",),
    ("gc", "fwd"): ("fwd",),
    ("g", "fwdbwd"): ("fwd", "g_dx", "g_wgrad"),
    ("gc", "fwdbwd"): ("fwd", "gc_dx", "gc_dk", "gc_dw"),
}
#: BLOCK_NH of each autotune configuration per kernel of the evidence's launcher (the
#: model's fallback where Triton cannot be imported)
DEFAULT_CONFIGS = {
    "fwd": [16, 16, 16, 16, 32, 32, 32, 32, 64, 64, 64, 64],
    "g_dx": [16, 16, 32, 32, 64, 64],
    "gc_dx": [32, 32, 32, 32, 64, 64, 64, 64],
    "g_wgrad": [16, 16, 32, 32],
    "gc_dk": [16, 16, 32, 32, 64, 64],
    "gc_dw": [32, 32, 32, 32, 64, 64, 64, 64],
}


def fused_kernels(shape: Shape, variant: str, pass_: str) -> tuple[str, ...]:
    """The fused kernels a row launches: :data:`FUSED_KERNELS`, with g's forward as the
    launcher picks it (``launch.forward_path``: ``"g_dot"``, the tl.dot forward, in
    bf16/fp16 and TF32 fp32 on CUDA); without Triton, the staged ``"fwd"``."""
    kernels = FUSED_KERNELS[(variant, pass_)]
    launch = _launch()
    if launch is None or not hasattr(launch, "forward_path"):
        return kernels
    cg = shape.c_in * shape.g_in
    fwd = launch.forward_path(variant == "gc", shape.torch_dtype, shape.device, cg)
    return tuple(fwd if k == "fwd" else k for k in kernels)


def _launch():
    """The fused kernels' launcher, or None where Triton does not import (the model then
    counts with the evidence's launcher: :data:`DEFAULT_CONFIGS`, :data:`DEFAULT_KEYS`)."""
    try:
        from sepgconv.fused import launch
    except Exception:  # noqa: BLE001 - no Triton here
        return None
    return launch


def bench_scale() -> float:
    """The launcher's autotune benchmark time over Triton's default 25 + 100 ms (what
    the evidence's ``bench_s`` was measured with)."""
    launch = _launch()
    if launch is None:
        return 1.0
    ms = getattr(launch, "AUTOTUNE_WARMUP_MS", 25) + getattr(launch, "AUTOTUNE_REP_MS", 100)
    return ms / 125


def configs_run(kernel: str, nh: int, k: int) -> int:
    """Configurations the autotuner tries for ``kernel`` at ``nh`` output channels and
    kernel size ``k``: the launcher's own pruning (``launch.shipped``); without it, the
    evidence's rule (blocks wider than the padded channel count dropped)."""
    launch = _launch()
    if launch is not None and hasattr(launch, "shipped"):
        return len(launch.shipped(launch._KERNELS[kernel][1], nh, k))
    cap = max(16, 1 << max(nh - 1, 0).bit_length())
    return sum(b <= cap for b in DEFAULT_CONFIGS[kernel]) or 1


def executed_macs(shape: Shape, impl: Impl, pass_: str) -> int:
    """MACs one call of the row executes (fwdbwd: the nominal 3× / 2× lifting)."""
    ls = shape.layer_shape()
    if (impl.variant, impl.impl) in sepgconv.implementations() and impl.impl != "auto":
        fwd = sepgconv.get_implementation(impl.variant, impl.impl).macs(ls)
    else:
        fwd = counting.dense_macs(ls)
    factor = 1 if pass_ == "fwd" else (2 if shape.layer == "lifting" else 3)
    return fwd * factor


def call_s(shape: Shape, impl: Impl, pass_: str, dev: DeviceCosts) -> float:
    """Predicted seconds of one call (auto: its fastest candidate's)."""
    if impl.impl == "auto":
        cands = candidates(impl.variant)
        return min(call_s(shape, Impl(impl.variant, c), pass_, dev) for c in cands)
    rate = dev.rates.get((impl.variant, impl.impl, pass_)) or dev.rates[("*", "*", pass_)]
    return dev.call_floor_s[pass_] + executed_macs(shape, impl, pass_) / rate


def candidates(variant: str) -> list[str]:
    """The implementations ``impl="auto"`` times for ``variant`` on a GPU."""
    return [i for v, i in sepgconv.implementations() if v == variant and i != "auto"]


def row_calls(t: float, t_ref: float | None, timing: Timing, is_ref: bool) -> float:
    """Calls of one row: check, first call, warm-up, memory call, samples, by the rules
    of :mod:`bench.measure.timing` (one call a sample, as on CUDA)."""
    warm = 0
    while not timing_rules.warm_enough(warm, warm * t, timing):
        warm += 1
    n = timing_rules.planned_samples(t, 1, timing)
    n = min(n, max(timing.min_samples, math.ceil(3 * timing.budget_s / t)))  # the 3× stop
    if not is_ref and timing_rules.is_far_behind(t, t_ref, n):
        n = timing_rules.SLOW_SAMPLES
    return 1 + 1 + warm + 1 + n


def tuning_s(shape: Shape, impl: Impl, pass_: str, dev: DeviceCosts) -> float:
    """Seconds ``impl="auto"`` spends choosing (compiling aside: the fused rows pay it)."""
    times = [call_s(shape, Impl(impl.variant, c), pass_, dev) for c in candidates(impl.variant)]
    if len(times) < 2:
        return 0.0
    best = min(times)
    total = 0.0
    for t in times:
        total += 2 * t  # warm-up and the first timed call
        if t < dev.abandon_factor * best:
            total += dev.tuner_rounds * t
    return total


@dataclasses.dataclass
class Estimate:
    """An estimate's parts (seconds) and counts."""

    rows: int = 0
    shapes: int = 0
    fixed_s: float = 0.0
    calls_s: float = 0.0
    tuning_s: float = 0.0
    compile_s: float = 0.0
    setup_s: float = 0.0
    compiles: int = 0
    autotune_keys: int = 0
    slow_rows: int = 0

    @property
    def total_s(self) -> float:
        return self.setup_s + self.fixed_s + self.calls_s + self.tuning_s + self.compile_s

    def summary(self) -> str:
        return (
            f"{self.rows} rows, {self.shapes} shapes: ~{self.total_s:.0f} s = setup "
            f"{self.setup_s:.0f} + per-row {self.fixed_s:.0f} + calls {self.calls_s:.0f} "
            f"+ auto tuning {self.tuning_s:.0f} + Triton {self.compile_s:.0f} "
            f"({self.compiles} compiles, {self.autotune_keys} autotune keys); "
            f"{self.slow_rows} rows sampled 3 times (20x slower than full/naive)"
        )


#: the autotune keys' size arguments per kernel at the time of the evidence
DEFAULT_KEYS = {
    "fwd": ["C_IN", "G_IN", "IS_GC", "NH", "H", "W", "STRIDE", "PAD", "K"],
    "g_dx": ["C_IN", "G_IN", "NH", "H", "W", "STRIDE", "PAD", "K"],
    "gc_dx": ["CG", "NH", "H", "W", "STRIDE", "PAD", "K"],
    "g_wgrad": ["B", "C_IN", "G_IN", "SPLITS", "NH", "H", "W", "STRIDE", "PAD", "K"],
    "gc_dk": ["B", "CG", "SPLITS", "NH", "H", "W", "STRIDE", "PAD", "K"],
    "gc_dw": ["B", "CG", "SPLITS", "NH", "H", "W", "STRIDE", "PAD", "K"],
}


def launcher_facts() -> tuple[dict[str, list[str]], bool]:
    """``({kernel: autotune key names}, sizes specialised)`` of the launcher (Triton
    needed), or of the evidence's launcher: keys with H, W, B and specialised sizes."""
    launch = _launch()
    if launch is None:
        return DEFAULT_KEYS, True
    keys = {name: list(entry[2]) for name, entry in launch._KERNELS.items()}
    return keys, not hasattr(launch, "runtime_ints")


def _fused_keys(shape: Shape, variant: str, pass_: str, specialize: bool | None = None):
    """(compile keys, autotune keys) of a fused row: the kernels' compile-time
    constants (tile plan, k, groups, dtype; when the launcher lets Triton specialise
    integer arguments, their divisibility by 16) and their autotune keys (the
    launcher's key arguments)."""
    from sepgconv.fused import tiling

    key_names, specialised = launcher_facts()
    if specialize is None:
        specialize = specialised
    ls = shape.layer_shape()
    tile = tiling.plan_for(ls, variant)
    base = (variant, shape.k, shape.g_in, shape.dtype, tile.th, tile.tw, tile.halo_pix)
    const = base
    sizes = (shape.c_in, shape.c_out * shape.g_out, shape.h, shape.w)
    if specialize:
        ints = (*sizes, tile.tiles_w, ls.h_out * ls.w_out)
        const += tuple((v % 16 == 0, v == 1) for v in ints)
    values = {
        "C_IN": shape.c_in, "G_IN": shape.g_in, "NH": shape.c_out * shape.g_out,
        "CG": shape.c_in * shape.g_in, "H": shape.h, "W": shape.w, "B": shape.batch,
        "K": shape.k, "STRIDE": 1, "PAD": shape.k // 2, "IS_GC": variant == "gc",
        "SPLITS": shape.batch,  # stands in: the split count follows the batch
    }  # fmt: skip
    kernels = fused_kernels(shape, variant, pass_)
    # the tl.dot forward has no tile plan: its compile constants are k, G_in and dtype
    dot_const = (variant, shape.k, shape.g_in, shape.dtype, *const[len(base) :])
    compiles = [(k, *(dot_const if k == "g_dot" else const)) for k in kernels]
    tunes = [
        (k, shape.dtype, *(values.get(n) for n in key_names.get(k) or DEFAULT_KEYS[k]))
        for k in kernels
    ]
    return compiles, tunes


def estimate(
    cases: Iterable[Case],
    timing: Timing,
    dev: DeviceCosts = H200,
    warm_triton: bool = False,
    specialize: bool | None = None,
    workers: int = 1,
) -> Estimate:
    """The cost of running ``cases`` (one process, in order) on ``dev``.

    Args:
        cases: the sweep's rows (:meth:`bench.sweep.profiles.Profile.cases`).
        timing: the profile's timing on that device.
        warm_triton: Triton's on-disk cache already holds the compiled kernels (a
            second run on the same machine): autotune benchmarks, no compiles.
        specialize: the kernels let Triton specialise their size arguments (each
            new divisibility-by-16 pattern is a new compile); default: as the
            launcher does.
        workers: processes compiling before the sweep (``--precompile-workers``):
            the compile time is then the longest of the workers' shares.
    """
    est = Estimate(setup_s=dev.setup_s)
    a, b = dev.compile_s
    bench = dev.bench_s * bench_scale()
    compile_total = compile_longest = 0.0
    compiled: set = set()
    tuned: set = set()
    by_shape: dict[Shape, list[Case]] = {}
    for c in cases:
        by_shape.setdefault(c.shape, []).append(c)
    est.shapes = len(by_shape)
    for shape, rows in by_shape.items():
        for c in rows:
            im, p = c.impl, c.pass_
            est.rows += 1
            est.fixed_s += dev.row_fixed_s
            t = call_s(shape, im, p, dev)
            t_ref = call_s(shape, REFERENCE, p, dev)
            calls = row_calls(t, t_ref, timing, im in (REFERENCE, DENSE))
            est.slow_rows += calls < 3 + timing.min_samples
            est.calls_s += calls * t
            if im.impl == "auto":
                est.tuning_s += tuning_s(shape, im, p, dev)
            if im.impl == "fused":
                nh = shape.c_out * shape.g_out
                new_compiles, new_keys = _fused_keys(shape, im.variant, p, specialize)
                for key in new_compiles:  # one precompile task per kernel (precompile)
                    if key not in compiled:
                        compiled.add(key)
                        n = configs_run(key[0], nh, shape.k)
                        est.compiles += n
                        task = n * (a + b * shape.k**2) + dev.task_s
                        compile_total += task
                        compile_longest = max(compile_longest, task)
                for key in new_keys:
                    if key not in tuned:
                        tuned.add(key)
                        est.autotune_keys += 1
                        n = configs_run(key[0], nh, shape.k)
                        if not warm_triton:  # warm: cache_results has the choice on disk
                            est.compile_s += n * max(bench, 6 * t)
    if not warm_triton:
        spawn = 8.0 if workers > 1 else 0.0  # start the pool: import torch and Triton
        est.compile_s += spawn + max(compile_total / max(workers, 1), compile_longest)
    return est


__all__ = [
    "DeviceCosts", "Estimate", "H200", "call_s", "configs_run", "estimate", "fit_rates",
    "fused_kernels", "row_calls", "tuning_s",
]  # fmt: skip
