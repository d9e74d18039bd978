"""Kernel launchers: decorate the kernels per mode, pick tiles and blocks, launch.

Imported (and Triton with it) only when a fused layer runs. Two kernel sets,
built on first use and cached:

* compiled (``TRITON_INTERPRET`` unset): ``triton.jit`` plus ``triton.autotune``
  over a few channel-block / warp configurations, keyed on the layer shape;
* interpreted (``TRITON_INTERPRET=1``): ``triton.jit`` under the interpreter, one
  fixed configuration (:data:`INTERPRETER_META`; the autotuner would time every
  configuration, and interpreted timings mean nothing).

The spatial tiles are not autotuned: they come from
:func:`sepgconv.fused.tiling.plan`, a function of the shape only, so the MAC
count of a call does not depend on the device.

Index arithmetic: per-image / per-channel bases are int64 in the kernels;
in-plane offsets (``< H·W``, ``< H_out·W_out``) and weight offsets
(``< C_in·G_in·C_out·G_out·k²``) are int32, checked here.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import types

import torch
import triton
import triton.language as tl

from sepgconv.fused import common, kernels_bwd, kernels_dot, kernels_fwd
from sepgconv.fused._runtime import (  # noqa: F401 - forward_path & co.: launch's API too
    DOT_MIN_CG,
    G_FORWARD_ENV,
    check_available,
    dot_precision,
    forward_path,
    interpret_enabled,
)
from sepgconv.fused.tiling import cdiv, input_plan, next_pow2, plan

#: the one configuration the interpreter runs (tests may monkeypatch smaller
#: blocks to exercise the multi-block loops)
INTERPRETER_META = {"BLOCK_NH": 64, "BLOCK_K": 16, "BLOCK_CG": 16, "BLOCK_P": 32, "BLOCK_J": 16}
#: how many ways the interpreter splits the weight-gradient reduction
INTERPRETER_SPLITS = 2
#: programs of the forward's persistent grid in the interpreter (tests may change it)
INTERPRETER_PROGRAMS = 3
#: programs of the forward's persistent grid per SM when compiled: each owns one X̃
#: staging slot, so the scratch is ``PROGRAMS_PER_SM · SMs`` slots whatever the shape
#: (on an H200, 132 SMs: 528 slots of at most 32 × 128 fp32 = 16 KB, 8.4 MB, L2-resident).
#: ``SEPGCONV_FUSED_PROGRAMS_PER_SM`` overrides it (for the GPU run to measure; not yet
#: measured: fewer programs than fit on an SM leave it idle, more than fit run in waves)
PROGRAMS_PER_SM = 4
_INT32_MAX = 2**31 - 1


# ---------------------------------------------------------------------- #
# kernel sets
# ---------------------------------------------------------------------- #
#: from this kernel size on, only the narrowest channel block ships: the wider ones
#: spill there (compile_check, sm_90, fp32: at k = 5 the gc forward and the g dX
#: spill 64 B/thread with 32 channels and none with 16; at k = 7 the gc forward
#: 144 B/thread with 32 and none with 16)
NARROW_FROM_K = 5


#: above this many halo lanes only the narrowest channel block ships: a tile of
#: ``BLOCK_NH × HALO_PIX`` values per tensor stays ≤ 16 × 256 = 32 × 128 (compile_check,
#: sm_90: 32 channels on 256-lane halos spilled 56-592 B/thread in the g forward at k = 1
#: and the g weight gradient at k = 1 and 3; 16 channels none)
NARROW_ABOVE_HALO = 128


def shipped(configs, nh: int, k: int, narrow: bool = False, halo_pix: int = 0) -> list:
    """The configurations the autotuner may try for ``NH = nh`` at kernel size ``k``
    (``narrow``: the 16-channel block only, as from :data:`NARROW_FROM_K` on and above
    :data:`NARROW_ABOVE_HALO` halo lanes)."""
    # a channel block wider than the padded channel count only adds masked lanes
    cap = max(16, next_pow2(nh))
    if "BLOCK_P" in configs[0].kwargs:  # the tl.dot g forward: no halo, taps a loop
        return [c for c in configs if c.kwargs["BLOCK_NH"] <= max(32, cap)] or configs[:1]
    if narrow or k >= NARROW_FROM_K or halo_pix > NARROW_ABOVE_HALO:
        cap = 16
    kept = [c for c in configs if c.kwargs["BLOCK_NH"] <= cap]
    return kept or configs[:1]


def _prune_nh(configs, named_args, **kwargs):
    k = kwargs.get("K", named_args.get("K", 0))
    halo_pix = kwargs.get("HALO_PIX", named_args.get("HALO_PIX", 0))
    # the gc forward in fp16/bf16 spills with 32 channels (40 B/thread at k = 3)
    gc = kwargs.get("IS_GC", named_args.get("IS_GC", False))
    narrow = bool(gc) and named_args["x_ptr"].element_size() == 2
    return shipped(configs, named_args["NH"], k, narrow, halo_pix)


def _cfg(warps: int, **blocks) -> triton.Config:
    # num_stages=1: the loops load k² shifted tiles per step, and software pipelining
    # them (the default 3 stages) overflows shared memory (checked on sm_90)
    return triton.Config(blocks, num_warps=warps, num_stages=1)


#: the autotune key's shape part. H and W are not in it: a new resolution reuses the
#: configuration tuned at the first one (the block choice follows the channel count,
#: and the tile plan comes from the shape anyway), so it costs at most one compile per
#: kernel (its constexpr tile sizes), not one per configuration plus a benchmark.
_SHAPE = ["NH", "STRIDE", "PAD", "K"]
#: name -> (raw kernel, autotune configs, autotune key: argument names).
#: Two configurations per kernel, each spill-free for sm_90 at k = 1, 3, 5, 7 in fp32
#: and fp16 (``python -m sepgconv.fused.compile_check`` gates it; its KNOWN_SPILLS
#: lists the exceptions). A narrow block with 4 warps and a wider one with 8: the
#: wider blocks (64 channels, or 4 warps at 32) spilled 8-2,224 B/thread at k = 3.
_KERNELS = {
    "fwd": (
        kernels_fwd.fused_gconv_fwd_kernel,
        [_cfg(4, BLOCK_NH=16, BLOCK_K=32), _cfg(8, BLOCK_NH=32, BLOCK_K=32)],
        ["C_IN", "G_IN", "IS_GC", *_SHAPE],
    ),
    "g_dot": (
        kernels_dot.fused_g_dot_fwd_kernel,
        # not yet timed on a GPU; spill-free for sm_90 at k = 1-7 in fp32, fp16 and bf16
        # (32 × 64 pixels with 4 warps spilled 8 B/thread in fp16 at k = 5)
        [
            _cfg(4, BLOCK_NH=32, BLOCK_P=128, BLOCK_J=16),
            _cfg(8, BLOCK_NH=64, BLOCK_P=128, BLOCK_J=32),
        ],
        ["C_IN", "G_IN", *_SHAPE],
    ),
    "g_dx": (
        kernels_bwd.fused_g_dx_kernel,
        [_cfg(4, BLOCK_NH=16), _cfg(8, BLOCK_NH=32)],
        ["C_IN", "G_IN", *_SHAPE],
    ),
    "gc_dx": (
        kernels_bwd.fused_gc_dx_kernel,
        [_cfg(4, BLOCK_NH=16, BLOCK_CG=32), _cfg(8, BLOCK_NH=32, BLOCK_CG=16)],
        ["CG", *_SHAPE],
    ),
    "g_wgrad": (
        kernels_bwd.fused_g_wgrad_kernel,
        [_cfg(8, BLOCK_NH=16), _cfg(8, BLOCK_NH=32)],  # 16 with 4 warps spills at k = 5
        ["C_IN", "G_IN", *_SHAPE],
    ),
    "gc_dk": (
        kernels_bwd.fused_gc_dk_kernel,
        [_cfg(4, BLOCK_NH=16, BLOCK_K=32), _cfg(8, BLOCK_NH=32, BLOCK_K=32)],
        ["CG", *_SHAPE],
    ),
    "gc_dw": (
        kernels_bwd.fused_gc_dw_kernel,
        [_cfg(8, BLOCK_NH=16, BLOCK_CG=32), _cfg(8, BLOCK_NH=16, BLOCK_CG=16)],
        ["CG", *_SHAPE],
    ),
}


#: Triton's autotuner benchmarks each configuration for 25 + 100 ms by default: 0.13 s a
#: configuration per new key, 10 % of the first H200 sweep's time. 5 + 20 ms suffice
#: to rank configurations whose calls take micro- to milliseconds.
AUTOTUNE_WARMUP_MS, AUTOTUNE_REP_MS = 5, 20


def _autotune_bench(kernel_call, quantiles):
    from triton.testing import do_bench

    return do_bench(
        kernel_call, warmup=AUTOTUNE_WARMUP_MS, rep=AUTOTUNE_REP_MS, quantiles=quantiles
    )


def runtime_ints(raw) -> list[str]:
    """The kernel's integer runtime arguments (sizes): compiled without Triton's value
    specialisation (divisible by 16, equal to 1), so a new size is no new compile."""
    params = inspect.signature(raw).parameters.values()
    return [
        p.name for p in params
        if not p.name.endswith("_ptr") and "constexpr" not in str(p.annotation)
    ]  # fmt: skip


def _autotune(configs, key, reset_to_zero=None):
    kw = dict(configs=configs, key=key, prune_configs_by={"early_config_prune": _prune_nh})
    if reset_to_zero:  # before each benchmark run and before the tuned launch
        kw["reset_to_zero"] = reset_to_zero
    if "do_bench" in inspect.signature(triton.autotune).parameters:
        kw["do_bench"] = _autotune_bench  # 5 + 20 ms a configuration, not 25 + 100
    if "cache_results" in inspect.signature(triton.autotune).parameters:
        kw["cache_results"] = True  # the tuned choice persists in Triton's cache dir
    return triton.autotune(**kw)


def _with_globals(fn, namespace: dict):
    """``fn`` with ``namespace`` as its globals (same code, source and name)."""
    out = types.FunctionType(fn.__code__, namespace, fn.__name__, fn.__defaults__, fn.__closure__)
    out.__module__, out.__qualname__, out.__doc__ = fn.__module__, fn.__qualname__, fn.__doc__
    out.__annotations__ = dict(fn.__annotations__)
    return out


@functools.lru_cache(maxsize=2)
def _helpers(interpret: bool) -> dict:
    """:mod:`sepgconv.fused.common`'s helpers decorated with ``triton.jit`` in one mode,
    each seeing the others (decorated the same way) in its globals."""
    from triton.runtime.interpreter import InterpretedFunction
    from triton.runtime.jit import JITFunction

    decorate = InterpretedFunction if interpret else JITFunction  # what triton.jit picks
    namespace = dict(vars(common))
    for name in common.__all__:
        namespace[name] = decorate(_with_globals(getattr(common, name), namespace))
    return {name: namespace[name] for name in common.__all__}


def bind(raw, interpret: bool):
    """A kernel (plain function) whose calls to the :mod:`sepgconv.fused.common` helpers
    reach the helpers decorated in this mode: a compiled kernel calls only
    ``@triton.jit`` functions, and the interpreter refuses compiled-mode ones. Decorate
    the result with ``triton.jit`` (``TRITON_INTERPRET`` as ``interpret`` says)."""
    return _with_globals(raw, {**raw.__globals__, **_helpers(interpret)})


@functools.lru_cache(maxsize=2)
def _kernel_set(interpret: bool) -> dict:
    """The kernels of one mode. ``triton.jit`` reads ``TRITON_INTERPRET`` when it
    decorates, so the decoration happens here, with the variable as the caller saw it."""
    out = {}
    for name, (raw, configs, key) in _KERNELS.items():
        fn = bind(raw, interpret)
        if interpret:
            out[name] = triton.jit(fn)
        else:
            reset = ["counter_ptr"] if "counter_ptr" in inspect.signature(raw).parameters else None
            out[name] = _autotune(configs, key, reset)(
                triton.jit(fn, do_not_specialize=runtime_ints(raw))
            )
    return out


class _CompileOnly:
    """A kernel whose launches only compile it (every autotune configuration)."""

    def __init__(self, kernel, wanted: bool):
        self.kernel, self.wanted = kernel, wanted

    def __getitem__(self, grid):
        if not self.wanted:
            return lambda *args, **kwargs: None
        return lambda *args, **kwargs: self.kernel.warmup(*args, grid=grid, **kwargs)


_compile_only: list = [None]  # None: launch; else the kernel names to compile (all: ())


@contextlib.contextmanager
def compile_only(kernels: tuple[str, ...] = ()):
    """Inside: fused calls compile their kernels (each autotune configuration, into
    Triton's on-disk cache) and launch nothing; their outputs are garbage.
    ``kernels``: compile only these (names of ``_KERNELS``; empty: all). The
    benchmark compiles a sweep's kernels this way in parallel processes before it
    times anything (``bench.pipeline.precompile``)."""
    saved = _compile_only[0]
    _compile_only[0] = tuple(kernels)
    try:
        yield
    finally:
        _compile_only[0] = saved


def _kernels():
    interpret = interpret_enabled()
    kernels = _kernel_set(interpret)
    only = _compile_only[0]
    if only is not None and not interpret:
        kernels = {name: _CompileOnly(k, not only or name in only) for name, k in kernels.items()}
    return kernels, interpret


def _meta(interpret: bool, nh: int, *names: str) -> dict:
    """Explicit block sizes in the interpreter; {} when autotuned."""
    if not interpret:
        return {}
    meta = {n: INTERPRETER_META[n] for n in names}
    if "BLOCK_NH" in meta:
        meta["BLOCK_NH"] = min(meta["BLOCK_NH"], max(16, next_pow2(nh)))
    return meta


def _num_sms(device: torch.device) -> int:
    return torch.cuda.get_device_properties(device).multi_processor_count


def _splits(interpret: bool, device, items: int, programs_per_split: int) -> int:
    """Ways to split the (b, tile) items of a weight-gradient reduction."""
    if interpret:
        return max(1, min(INTERPRETER_SPLITS, items))
    target = 4 * _num_sms(device)
    return max(1, min(items, cdiv(target, max(1, programs_per_split)), 256))


def _acc_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _precision(device: torch.device, dtype: torch.dtype) -> str:
    # tl.dot in fp32 follows the switch cuDNN's convolutions (the naive path) follow
    return dot_precision(device, dtype)


def _check_sizes(x: torch.Tensor, wt: torch.Tensor, kt: torch.Tensor, nh: int, h_out, w_out):
    h, w = x.shape[-2:]
    if h * w > _INT32_MAX or h_out * w_out > _INT32_MAX or wt.numel() > _INT32_MAX:
        raise ValueError("impl='fused': a feature map plane or the weights exceed 2**31 elements")
    if kt.numel() > _INT32_MAX:
        raise ValueError("impl='fused': the spatial weights exceed 2**31 elements")
    if x.shape[0] > 65535:
        raise ValueError("impl='fused': batch sizes above 65535 are not supported (grid axis 2)")


def _plan(variant_gc: bool, k, stride, padding, h, w, c_in, g_in):
    return plan(k, stride, padding, h, w, c_in * g_in if variant_gc else g_in)


# ---------------------------------------------------------------------- #
# forward
# ---------------------------------------------------------------------- #
def forward_programs(interpret: bool, device) -> int:
    """Programs of the forward's persistent grid (at most; fewer when there are fewer
    items): a function of the device, never of the shape."""
    if interpret:
        return INTERPRETER_PROGRAMS
    per_sm = int(os.environ.get("SEPGCONV_FUSED_PROGRAMS_PER_SM", PROGRAMS_PER_SM))
    return max(1, per_sm) * _num_sms(device)


def forward_scratch_elements(halo_pix: int, block_nh: int, programs: int) -> int:
    """The forward's X̃ staging scratch (accumulation dtype): one ``block_nh × halo_pix``
    slot per program, ``≤ programs · 32 · 128`` elements whatever the batch or map size."""
    return programs * block_nh * halo_pix


def _forward_dot(kernels, interpret, x, wt, kt, bias, *, k, stride, padding, g_in):
    """The tl.dot g forward (:mod:`sepgconv.fused.kernels_dot`)."""
    b, cg, h, w = x.shape
    c_in, nh = cg // g_in, wt.shape[1]
    h_out = (h + 2 * padding - k) // stride + 1
    w_out = (w + 2 * padding - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input {h}×{w} with padding {padding} is smaller than k={k}")
    _check_sizes(x, wt, kt, nh, h_out, w_out)
    y = torch.empty(b, nh, h_out, w_out, device=x.device, dtype=x.dtype)
    has_bias = bias is not None
    bias = bias.contiguous() if has_bias else wt  # any pointer when there is no bias

    def grid(meta):
        return (cdiv(h_out * w_out, meta["BLOCK_P"]), cdiv(nh, meta["BLOCK_NH"]), b)

    kernels["g_dot"][grid](
        x, wt, kt, bias, y, c_in, nh, h, w, h_out, w_out,
        STRIDE=stride, PAD=padding, K=k, G_IN=g_in, HAS_BIAS=has_bias,
        ACC=_acc_dtype(x.dtype), PRECISION=_precision(x.device, x.dtype),
        UPCAST=interpret and x.dtype == torch.bfloat16,  # the interpreter's bf16 tl.dot is wrong
        **_meta(interpret, nh, "BLOCK_NH", "BLOCK_P", "BLOCK_J"),
    )  # fmt: skip
    return y


def forward(x, wt, kt, bias, *, gc: bool, k: int, stride: int, padding: int, g_in: int):
    """``y [B, NH, H_out, W_out]`` from ``x [B, C_in·G_in, H, W]`` (layouts: kernels_fwd).
    The kernel: :func:`forward_path`."""
    check_available(x.device)
    kernels, interpret = _kernels()
    x = x.contiguous()  # e.g. channels_last input: the kernel indexes NCHW
    wt, kt = wt.contiguous(), kt.contiguous()
    b, cg, h, w = x.shape
    if forward_path(gc, x.dtype, x.device, cg) == "g_dot":
        return _forward_dot(kernels, interpret, x, wt, kt, bias, k=k, stride=stride,
                            padding=padding, g_in=g_in)  # fmt: skip
    c_in, nh = cg // g_in, wt.shape[1]
    pl = _plan(gc, k, stride, padding, h, w, c_in, g_in)
    _check_sizes(x, wt, kt, nh, pl.h_out, pl.w_out)
    y = torch.empty(b, nh, pl.h_out, pl.w_out, device=x.device, dtype=x.dtype)
    has_bias = bias is not None
    bias = bias.contiguous() if has_bias else wt  # any pointer when there is no bias
    meta = _meta(interpret, nh, "BLOCK_NH", "BLOCK_K")
    programs = forward_programs(interpret, x.device)
    narrow = gc and x.element_size() == 2  # as _prune_nh
    tried = shipped(_KERNELS["fwd"][1], nh, k, narrow, pl.halo_pix)
    block = meta.get("BLOCK_NH", max(c.kwargs["BLOCK_NH"] for c in tried))
    items = b * pl.tiles * cdiv(nh, 16)  # the most items any shipped block gives
    if items + programs > _INT32_MAX:  # the queue's head counts past the last item
        raise ValueError("impl='fused': batch × tiles × channel blocks exceed 2**31")
    scratch = torch.empty(
        forward_scratch_elements(pl.halo_pix, block, programs),
        device=x.device,
        dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
    )
    counter = torch.zeros(1, device=x.device, dtype=torch.int32)  # the work queue's head

    def grid(meta):
        return (min(programs, b * pl.tiles * cdiv(nh, meta["BLOCK_NH"])),)

    kernels["fwd"][grid](
        x, wt, kt, bias, y, scratch, counter,
        c_in, nh, h, w, pl.h_out, pl.w_out, pl.tiles_w, pl.tiles, b,
        STRIDE=stride, PAD=padding, K=k, G_IN=g_in,
        TH=pl.th, TW=pl.tw, ES=pl.es, HH=pl.hh, HW=pl.hw,
        HALO_PIX=pl.halo_pix, OUT_PIX=pl.out_pix,
        IS_GC=gc, USE_DOT=gc and cg >= 16, HAS_BIAS=has_bias,
        ACC=_acc_dtype(x.dtype), PRECISION=_precision(x.device, x.dtype),
        **meta,
    )  # fmt: skip
    return y


# ---------------------------------------------------------------------- #
# backward
# ---------------------------------------------------------------------- #
def backward(dy, x, wt, kt, *, gc, k, stride, padding, g_in, need_x: bool, need_w: bool):
    """``(dx, dwt, dkt)`` for the derived weights; ``None`` for what is not needed.

    ``dwt``/``dkt`` have the shapes of ``wt``/``kt``; the bias gradient is a
    plain ``dy.sum((0, 2, 3))`` in the caller.
    """
    check_available(dy.device)
    kernels, interpret = _kernels()
    dy, x = dy.contiguous(), x.contiguous()
    wt, kt = wt.contiguous(), kt.contiguous()
    b, cg, h, w = x.shape
    c_in, nh = cg // g_in, wt.shape[1]
    h_out, w_out = dy.shape[-2:]
    _check_sizes(x, wt, kt, nh, h_out, w_out)
    acc, prec = _acc_dtype(x.dtype), _precision(x.device, x.dtype)
    acc_torch = torch.float64 if x.dtype == torch.float64 else torch.float32
    common = dict(STRIDE=stride, PAD=padding, K=k, ACC=acc)
    dx = dwt = dkt = None

    if need_x:
        tih, tiw = input_plan(h, w)
        tiles_w = cdiv(w, tiw)
        tiles = cdiv(h, tih) * tiles_w
        dx = torch.empty_like(x)
        if gc:

            def grid(meta):
                return (tiles, cdiv(cg, meta["BLOCK_CG"]), b)

            kernels["gc_dx"][grid](
                dy, wt, kt, dx, cg, nh, h, w, h_out, w_out, tiles_w,
                TIH=tih, TIW=tiw, PRECISION=prec, **common,
                **_meta(interpret, nh, "BLOCK_NH", "BLOCK_CG"),
            )  # fmt: skip
        else:

            def grid(meta):
                return (tiles, c_in, b)

            kernels["g_dx"][grid](
                dy, wt, kt, dx, c_in, nh, h, w, h_out, w_out, tiles_w,
                G_IN=g_in, G_PAD=next_pow2(g_in), TIH=tih, TIW=tiw, **common,
                **_meta(interpret, nh, "BLOCK_NH"),
            )  # fmt: skip

    if need_w:
        pl = _plan(gc, k, stride, padding, h, w, c_in, g_in)
        halo = dict(
            TH=pl.th, TW=pl.tw, ES=pl.es, HH=pl.hh, HW=pl.hw,
            HALO_PIX=pl.halo_pix, OUT_PIX=pl.out_pix, KK_PAD=next_pow2(k * k),
        )  # fmt: skip
        nh_blocks = cdiv(nh, 32)  # what the split count assumes; the grid uses the real block
        if gc:
            s = _splits(interpret, x.device, b * pl.tiles, nh_blocks)
            dk_part = torch.empty(s, k * k, nh, device=x.device, dtype=acc_torch)

            def grid(meta):
                return (cdiv(nh, meta["BLOCK_NH"]), s)

            kernels["gc_dk"][grid](
                x, dy, wt, dk_part, b, cg, nh, h, w, h_out, w_out, pl.tiles_w, pl.tiles, s,
                USE_DOT=cg >= 16, PRECISION=prec, **halo, **common,
                **_meta(interpret, nh, "BLOCK_NH", "BLOCK_K"),
            )  # fmt: skip
            dkt = dk_part.sum(0).to(kt.dtype)

            tih, tiw = input_plan(h, w)
            tiles_w = cdiv(w, tiw)
            tiles = cdiv(h, tih) * tiles_w
            s = _splits(interpret, x.device, b * tiles, nh_blocks * cdiv(cg, 32))
            dw_part = torch.empty(s, cg, nh, device=x.device, dtype=acc_torch)

            def grid(meta):
                return (cdiv(nh, meta["BLOCK_NH"]), cdiv(cg, meta["BLOCK_CG"]), s)

            kernels["gc_dw"][grid](
                x, dy, kt, dw_part, b, cg, nh, h, w, h_out, w_out, tiles_w, tiles, s,
                TIH=tih, TIW=tiw, PRECISION=prec, **common,
                **_meta(interpret, nh, "BLOCK_NH", "BLOCK_CG"),
            )  # fmt: skip
            dwt = dw_part.sum(0).to(wt.dtype)
        else:
            s = _splits(interpret, x.device, b * pl.tiles, nh_blocks * c_in)
            dk_part = torch.empty(s, c_in, k * k, nh, device=x.device, dtype=acc_torch)
            dw_part = torch.empty(s, cg, nh, device=x.device, dtype=acc_torch)

            def grid(meta):
                return (cdiv(nh, meta["BLOCK_NH"]), c_in, s)

            kernels["g_wgrad"][grid](
                x, dy, wt, kt, dw_part, dk_part,
                b, c_in, nh, h, w, h_out, w_out, pl.tiles_w, pl.tiles, s,
                G_IN=g_in, G_PAD=next_pow2(g_in), **halo, **common,
                **_meta(interpret, nh, "BLOCK_NH"),
            )  # fmt: skip
            dkt = dk_part.sum(0).to(kt.dtype)
            dwt = dw_part.sum(0).to(wt.dtype)
    return dx, dwt, dkt
