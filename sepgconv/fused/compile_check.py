"""Compile every fused kernel and autotune configuration for a GPU, without a GPU: a gate.

``python -m sepgconv.fused.compile_check [--arch 90] [--k 1 3 5 7] [--dtype fp32 fp16]``

For representative layer shapes it compiles each kernel with each of its
autotune configurations through ``triton.compile`` for ``sm_<arch>`` (Triton
ships its own ptxas; no driver is needed) and prints the resources of the
cubin: registers and stack per thread, the local-memory instructions of its SASS
(``STL``/``LDL``: spills), shared memory per program. A configuration whose shared
memory exceeds the device's limit cannot launch (the autotuner skips it); local
loads and stores mean spills (a stack frame nothing reads or writes, e.g. a dead
2-byte alloca LLVM left, is printed but is no spill). This is the GPU-readiness
check available on a CPU-only machine; it says nothing about speed.

It is a gate: the exit status is 1 when any *shipped* configuration (the
``launch._KERNELS`` autotune lists) spills registers (local loads or stores in its
SASS) or exceeds shared memory at a checked shape, unless that (kernel, k) is listed in
:data:`KNOWN_SPILLS` with its reason (an exception is explicit, never silent;
its rows print ``KNOWN``). Defaults: k = 1, 3, 5, 7 (the sweep profiles' kernel
sizes), fp32 and fp16, C = 64, 32×32. Each configuration is one compile
(seconds each on a CPU): the full gate takes minutes.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
import subprocess
import tempfile

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sepgconv.fused import launch
from sepgconv.fused.tiling import input_plan, next_pow2, plan

#: shared memory a program may use on sm_80/sm_90 (bytes)
SMEM_LIMIT = {80: 163 * 1024, 86: 99 * 1024, 89: 99 * 1024, 90: 227 * 1024}
_DTYPES = {
    "fp32": ("*fp32", tl.float32),
    "fp16": ("*fp16", tl.float32),
    "bf16": ("*bf16", tl.float32),
    "fp64": ("*fp64", tl.float64),
}


def _constexprs(name, gc, k, c_in, g_in, size, acc):
    """The constexpr arguments ``launch`` passes to kernel ``name`` (besides the config)."""
    common = dict(STRIDE=1, PAD=k // 2, K=k, ACC=acc)
    pl = plan(k, 1, k // 2, size, size, c_in * g_in if gc else g_in)
    halo = dict(TH=pl.th, TW=pl.tw, ES=pl.es, HH=pl.hh, HW=pl.hw, HALO_PIX=pl.halo_pix,
                OUT_PIX=pl.out_pix)  # fmt: skip
    tih, tiw = input_plan(size, size)
    prec = "ieee" if acc == tl.float64 else "tf32"
    if name == "fwd":
        return dict(common, G_IN=g_in, IS_GC=gc, USE_DOT=gc and c_in * g_in >= 16,
                    HAS_BIAS=True, PRECISION=prec, **halo)  # fmt: skip
    if name == "g_dot":
        return dict(common, G_IN=g_in, HAS_BIAS=True, PRECISION=prec, UPCAST=False)
    if name == "g_dx":
        return dict(common, G_IN=g_in, G_PAD=next_pow2(g_in), TIH=tih, TIW=tiw)
    if name == "gc_dx" or name == "gc_dw":
        return dict(common, TIH=tih, TIW=tiw, PRECISION=prec)
    if name == "g_wgrad":
        return dict(common, G_IN=g_in, G_PAD=next_pow2(g_in), KK_PAD=next_pow2(k * k), **halo)
    return dict(common, KK_PAD=next_pow2(k * k), USE_DOT=c_in * g_in >= 16, PRECISION=prec,
                **halo)  # fmt: skip


def _resources(kernel) -> dict:
    tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        out = subprocess.run([tool, "-res-usage", f.name], capture_output=True, text=True).stdout
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True).stdout
        # local-memory traffic: what a spill costs (a stack frame nothing reads or writes,
        # e.g. a dead 2-byte LLVM alloca, is reported but is no spill)
        local_ops = len(re.findall(r"\b(?:STL|LDL)\b", sass))
    finally:
        os.unlink(f.name)
    found = dict(re.findall(r"(REG|STACK):(\d+)", out))
    return {"regs": int(found.get("REG", -1)), "stack_bytes": int(found.get("STACK", -1)),
            "local_ops": local_ops, "smem_bytes": kernel.metadata.shared}  # fmt: skip


def compile_one(name, config, constexprs, ptr_type, arch):
    """Compile kernel ``name`` with ``config`` for ``sm_<arch>``; its resources."""
    return _resources(compile_kernel(name, config, constexprs, ptr_type, arch))


def compile_kernel(name, config, constexprs, ptr_type, arch):
    """The compiled kernel (``.asm["ptx"]``, ``.asm["cubin"]``, ``.metadata``)."""
    raw = launch._KERNELS[name][0]
    names = list(inspect.signature(raw).parameters)
    consts = dict(constexprs, **config.kwargs)
    part_type = "*fp64" if constexprs["ACC"] == tl.float64 else "*fp32"
    sig = {
        n: "constexpr" if n in consts else
        (part_type if n.endswith(("_part_ptr", "_scratch_ptr")) else
         "*i32" if n == "counter_ptr" else ptr_type)
        if n.endswith("_ptr") else "i32"
        for n in names
    }  # fmt: skip
    src = ASTSource(
        triton.jit(launch.bind(raw, interpret=False)),
        sig,
        constexprs={(names.index(k),): v for k, v in consts.items()},
    )
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


#: (kernel label, k) or (kernel label, k, dtype) -> why every shipped configuration
#: spills there (reported, not failed)
KNOWN_SPILLS: dict[tuple, str] = {}  # none since the taps are shifted loads (was 10 entries)


def labels(name: str) -> list[tuple[str, bool]]:
    """The variants a kernel is checked in: ``(label, gc)``; the forward serves both."""
    if name == "fwd":
        return [("fwd", False), ("fwd[gc]", True)]
    return [(name, name.startswith("gc"))]


def check(kernels, ks, dtypes, *, arch=90, channels=64, size=32, configs=None, out=print):
    """Compile each (dtype, k, kernel, shipped config); return the rows with their verdicts.

    A row: ``dict(dtype, k, kernel, config, regs, stack_bytes, local_ops, smem_bytes, flags,
    known)``;
    ``flags`` lists ``"spills"`` / ``"smem"``; ``known`` is the KNOWN_SPILLS reason or None.
    ``configs`` (name -> list of triton.Config) replaces the shipped lists (tests).
    """
    limit = SMEM_LIMIT.get(arch, 99 * 1024)
    rows = []
    for dtype in dtypes:
        ptr_type, acc = _DTYPES[dtype]
        for k in ks:
            for name in kernels:
                for label, gc in labels(name):
                    consts = _constexprs(name, gc, k, channels, 4, size, acc)
                    listed = (configs or {}).get(name)
                    narrow = gc and name == "fwd" and dtype in ("fp16", "bf16")
                    halo_pix = consts.get("HALO_PIX", 0)
                    cfgs = launch.shipped(launch._KERNELS[name][1], 1 << 16, k, narrow, halo_pix)
                    for config in listed or cfgs:
                        r = compile_one(name, config, consts, ptr_type, arch)
                        flags = (["spills"] if r["local_ops"] > 0 else []) + (
                            ["smem"] if r["smem_bytes"] > limit else []
                        )
                        known = KNOWN_SPILLS.get((label, k, dtype), KNOWN_SPILLS.get((label, k)))
                        known = known if flags else None
                        row = dict(dtype=dtype, k=k, kernel=label, config=_short(config),
                                   **r, flags=flags, known=known)  # fmt: skip
                        rows.append(row)
                        verdict = ("  KNOWN: " + known) if known else ""
                        verdict = verdict or ("  FAIL: " + "+".join(flags) if flags else "")
                        res = f"regs={r['regs']:3d} stack={r['stack_bytes']:5d}"
                        res += f" local_ops={r['local_ops']:4d}"
                        res += f" smem={r['smem_bytes']:6d}"
                        out(f"{dtype} k={k} {label:8s} {row['config']:28s} {res}{verdict}")
    return rows


def _short(config) -> str:
    blocks = ",".join(f"{k[6:] if k.startswith('BLOCK_') else k}={v}"
                      for k, v in config.kwargs.items())  # fmt: skip
    return f"{blocks} w{config.num_warps} s{config.num_stages}"


def failures(rows) -> list[dict]:
    """The rows that fail the gate: flagged and not a listed exception."""
    return [r for r in rows if r["flags"] and not r["known"]]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 3, 5, 7])
    parser.add_argument("--dtype", nargs="+", default=["fp32", "fp16"], choices=sorted(_DTYPES))
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kernels", nargs="+", default=list(launch._KERNELS))
    args = parser.parse_args(argv)
    rows = check(args.kernels, args.k, args.dtype, arch=args.arch, channels=args.channels,
                 size=args.size)  # fmt: skip
    bad = failures(rows)
    known = sum(bool(r["known"]) for r in rows)
    print(f"{len(rows)} configuration(s) compiled, {len(bad)} failing the gate, "
          f"{known} flagged as known exceptions (KNOWN_SPILLS)")  # fmt: skip
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
