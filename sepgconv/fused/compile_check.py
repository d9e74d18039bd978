"""Compile every fused kernel and autotune configuration for a GPU, without a GPU.

``python -m sepgconv.fused.compile_check [--arch 90] [--k 3 7] [--dtype fp32 bf16]``

For representative layer shapes it compiles each kernel with each of its
autotune configurations through ``triton.compile`` for ``sm_<arch>`` (Triton
ships its own ptxas; no driver is needed) and prints the resources of the
cubin: registers and stack (local memory: spills) per thread, shared memory
per program. A configuration whose shared memory exceeds the device's limit
cannot launch (the autotuner skips it); heavy stack use means spills. This is
the GPU-readiness check available on a CPU-only machine; it says nothing
about speed.
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
    finally:
        os.unlink(f.name)
    found = dict(re.findall(r"(REG|STACK):(\d+)", out))
    return {"regs": int(found.get("REG", -1)), "stack_bytes": int(found.get("STACK", -1)),
            "smem_bytes": kernel.metadata.shared}  # fmt: skip


def compile_one(name, config, constexprs, ptr_type, arch):
    raw = launch._KERNELS[name][0]
    names = list(inspect.signature(raw).parameters)
    consts = dict(constexprs, **config.kwargs)
    part_type = "*fp64" if constexprs["ACC"] == tl.float64 else "*fp32"
    sig = {
        n: "constexpr" if n in consts else
        (part_type if n.endswith("_part_ptr") else ptr_type) if n.endswith("_ptr") else "i32"
        for n in names
    }  # fmt: skip
    src = ASTSource(
        triton.jit(raw), sig, constexprs={(names.index(k),): v for k, v in consts.items()}
    )
    options = {"num_warps": config.num_warps, "num_stages": config.num_stages}
    return _resources(triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", type=int, default=90)
    parser.add_argument("--k", type=int, nargs="+", default=[3])
    parser.add_argument("--dtype", nargs="+", default=["fp32"], choices=sorted(_DTYPES))
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--kernels", nargs="+", default=list(launch._KERNELS))
    args = parser.parse_args(argv)
    limit = SMEM_LIMIT.get(args.arch, 99 * 1024)
    bad = 0
    for dtype in args.dtype:
        ptr_type, acc = _DTYPES[dtype]
        for k in args.k:
            for name in args.kernels:
                gc = name.startswith("gc") or name == "fwd"
                for variant_gc in [False, True] if name == "fwd" else [gc]:
                    consts = _constexprs(name, variant_gc, k, args.channels, 4, args.size, acc)
                    for config in launch._KERNELS[name][1]:
                        r = compile_one(name, config, consts, ptr_type, args.arch)
                        flag = "  SMEM>LIMIT" if r["smem_bytes"] > limit else ""
                        flag += "  LOCAL-MEMORY(spills)" if r["stack_bytes"] > 0 else ""
                        bad += bool(flag)
                        label = f"{name}{'[gc]' if name == 'fwd' and variant_gc else ''}"
                        print(f"{dtype} k={k} {label:10s} {config}: {r}{flag}", flush=True)
    print(f"{bad} configuration(s) flagged")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
