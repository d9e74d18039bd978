"""Compile the sweep's Triton kernels up front, in parallel, outside every timed region.

On the first H200 run Triton was 92 % of the sweep's time: every new shape of a
fused row compiled each kernel in each autotune configuration (0.2–6 s apiece,
one after the other on one CPU core) before its first call. The GPU machine has
16 cores. Before the sweep, :func:`precompile` gives each distinct *compile
signature* of the profile's fused rows (:func:`signatures`: the kernels'
compile-time constants of one kernel, as :mod:`bench.sweep.cost` counts them) to
a pool of worker processes; each worker runs the fused layer of one
representative shape with the launcher in compile-only mode
(``sepgconv.fused.launch.compile_only``: that kernel's every autotune
configuration is compiled, nothing is launched), which leaves the binaries in
Triton's on-disk cache. The sweep's own first calls then load them
instead of compiling. The time it took is ``env.json`` → ``triton_precompile``;
a signature whose worker failed is compiled by the sweep as before (and named).
"""

from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import time

from ..sweep import cost
from ..sweep.shapes import Case, Impl, Shape


def signatures(cases: list[Case]) -> dict[tuple, tuple[Shape, str, str, str]]:
    """``{compile key: (shape, variant, pass, kernel)}``: one task per kernel and set of
    compile-time constants (as :mod:`bench.sweep.cost` counts them), with the first
    fused row that needs it; the heaviest (largest k) first, so the pool's long poles
    start early."""
    out: dict[tuple, tuple[Shape, str, str, str]] = {}
    for c in cases:
        if c.impl.impl != "fused" or c.impl.compiled:
            continue
        keys, _ = cost._fused_keys(c.shape, c.impl.variant, c.pass_)
        for key in keys:
            out.setdefault(key, (c.shape, c.impl.variant, c.pass_, key[0]))
    return dict(sorted(out.items(), key=lambda kv: -kv[1][0].k))


def _compile_one(shape: Shape, variant: str, pass_: str, kernel: str) -> float:
    """Worker: one fused row's layer in compile-only mode, compiling ``kernel``."""
    import torch

    import sepgconv
    from sepgconv.fused import launch

    from ..sweep.subject import random_input

    t0 = time.perf_counter()
    dtype = getattr(torch, shape.dtype)
    layer = sepgconv.GConv2d(
        shape.c_in, shape.c_out, shape.k, group=shape.group, lifting=shape.lifting,
        variant=variant, impl="fused", padding=shape.k // 2, device=shape.device, dtype=dtype,
    )  # fmt: skip
    x = random_input(shape)
    if pass_ == "fwdbwd" and not shape.lifting:
        x.requires_grad_(True)
    with launch.compile_only((kernel,)):
        y = layer(x) if pass_ == "fwdbwd" else layer.eval()(x)
        if pass_ == "fwdbwd":
            y.backward(torch.ones_like(y))
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def default_workers() -> int:
    """Compile workers: the cores less two (the sweep's process and the system)."""
    return max(1, min(16, (os.cpu_count() or 2) - 2))


def precompile(cases: list[Case], workers: int | None = None, timeout_s: float = 300.0,
               log=print) -> dict:  # fmt: skip
    """Compile the fused kernels of ``cases`` in ``workers`` processes; the record for
    ``env.json`` (``{"signatures", "workers", "wall_s", "failed": {label: error}}``).

    Does nothing (``{"signatures": 0}``) without fused rows, without
    ``launch.compile_only`` (an older sepgconv) or when the kernels are interpreted."""
    sigs = signatures(cases)
    record: dict = {"signatures": len(sigs), "workers": 0, "wall_s": 0.0, "failed": {}}
    if not sigs:
        return record
    try:
        from sepgconv.fused import _runtime, launch
    except Exception as e:  # noqa: BLE001 - no Triton: the fused rows are skipped anyway
        record["skipped"] = f"{type(e).__name__}: {e}"
        return record
    if not hasattr(launch, "compile_only") or _runtime.interpret_enabled():
        record["skipped"] = "no compile-only mode (or the kernels are interpreted)"
        return record
    devices = {rep[0].device for rep in sigs.values()}
    if any(not d.startswith("cuda") for d in devices):
        record["skipped"] = f"the kernels compile for CUDA only, not for {sorted(devices)}"
        return record
    n = min(workers or default_workers(), len(sigs))
    record["workers"] = n
    log(f"precompiling the fused kernels: {len(sigs)} signatures on {n} processes")
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    pool = futures.ProcessPoolExecutor(max_workers=n, mp_context=ctx)
    pending: set = set()
    try:
        jobs = {pool.submit(_compile_one, *rep): rep for rep in sigs.values()}
        done, pending = futures.wait(jobs, timeout=timeout_s)
        for job in pending:
            shape, variant, pass_, kernel = jobs[job]
            record["failed"][f"{shape.label()} {variant} {kernel}"] = "timed out"
        for job in done:
            shape, variant, pass_, kernel = jobs[job]
            try:
                job.result()
            except Exception as e:  # noqa: BLE001 - the sweep compiles it itself then
                error = f"{type(e).__name__}: {e}"
                record["failed"][f"{shape.label()} {variant} {kernel}"] = error[:200]
    finally:
        if pending:  # a worker still compiling past the limit is stopped
            procs = getattr(pool, "_processes", None) or {}
            for proc in list(procs.values()):
                if proc.is_alive():
                    proc.terminate()
        # waited for: the workers' CPU time counts as this run's own, not a neighbour's
        pool.shutdown(wait=True, cancel_futures=True)
    record["wall_s"] = round(time.perf_counter() - t0, 1)
    log(f"precompiled in {record['wall_s']} s ({len(record['failed'])} failed)")
    return record


__all__ = ["Impl", "default_workers", "precompile", "signatures"]
