"""The up-front guard: rows that cannot run here or cannot fit are ``status=skipped``,
not a crash.

An implementation that cannot run on this machine (its class's
``unavailable_reason``, e.g. Triton kernels without a GPU) is skipped with
that reason.

:func:`memory_estimate_bytes` is a formula of what one row allocates (input,
output, weights, intermediates from ``sepgconv.counting.intermediate_bytes``,
gradients for ``fwdbwd``, the correctness reference); :func:`skip_reason`
compares it with :func:`available_memory_bytes` (CUDA: ``mem_get_info``; CPU:
a fraction of ``MemAvailable``). Rows that fit by formula but still run out of
memory are recorded as ``status=oom`` by the driver.
"""

from __future__ import annotations

import functools
import os

import torch

import sepgconv

from .shapes import REFERENCE, Case, Shape

#: fraction of the free memory a row may plan to use (CPU: of MemAvailable)
MEMORY_FRACTION = {"cpu": 0.5, "cuda": 0.9}


def _intermediates(shape: Shape, variant: str, impl: str) -> dict[str, int]:
    """Formula bytes of the intermediates (``counting.intermediate_bytes``;
    dense/torch and peers: like the full GConv; ``auto``: the largest of the
    implementations it may choose)."""
    if impl == "auto":
        options = [i for v, i in sepgconv.implementations() if v == variant and i != "auto"]
        sizes = [_intermediates(shape, variant, i) for i in options]
        return max(sizes, key=lambda d: d["filter"] + d["activations"])
    v, i = (variant, impl) if (variant, impl) in sepgconv.implementations() else REFERENCE[:2]
    layer = _stand_in(shape.group, shape.layer, shape.c_in, shape.c_out, shape.k, v)
    cls = sepgconv.get_implementation(v, i)  # (counted even where it cannot be built here)
    elements = cls.intermediate_elements(layer.layer_shape(shape.h, shape.w, shape.batch))
    return {name: n * shape.itemsize for name, n in elements.items()}


@functools.lru_cache(maxsize=256)
def _stand_in(group, layer, c_in, c_out, k, variant) -> sepgconv.GConv2d:
    """A CPU layer of this configuration, for its ``layer_shape`` only (the same for
    every implementation: built as the variant's first, which runs anywhere; cached)."""
    shape = Shape(group, layer, c_in, c_out, k, k, k, 1)
    return sepgconv.GConv2d(**shape.layer_kwargs(variant, sepgconv.impls_of(variant)[0]))


def memory_estimate_bytes(shape: Shape, variant: str, impl: str, pass_: str) -> int:
    """What one row may hold at once, by formula (bytes).

    ``fwd``: input + output + weights + intermediates, plus the correctness
    check's reference output and expanded filter. ``fwdbwd`` doubles the
    activations, weights and intermediates (gradients, saved tensors) and adds
    the fixed ``grad_out``. A 25 % margin covers convolution workspaces.
    """
    s = shape.layer_shape()
    item = shape.itemsize
    x = s.batch * s.c_in * s.g_in * s.h_in * s.w_in * item
    y = s.batch * s.c_out * s.g_out * s.h_out * s.w_out * item
    dense_filter = s.c_out * s.g_out * s.c_in * s.g_in * s.k**2 * item
    inter = _intermediates(shape, variant, impl)
    work = inter["filter"] + inter["activations"]
    weights = dense_filter  # an upper bound for every variant
    total = x + y + weights + work + (y + dense_filter)  # + reference check
    if pass_ == "fwdbwd":
        total += x + 2 * y + weights + work
    return int(total * 1.25)


def available_memory_bytes(device: str) -> int:
    """Memory a row may plan to use: CUDA ``mem_get_info`` free bytes plus the
    caching allocator's unused reserve, CPU ``MemAvailable``; each times
    :data:`MEMORY_FRACTION`."""
    if device.startswith("cuda"):
        dev = torch.device(device)
        free, _ = torch.cuda.mem_get_info(dev)
        cached = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int((free + cached) * MEMORY_FRACTION["cuda"])
    return int(_cpu_available_bytes() * MEMORY_FRACTION["cpu"])


def _cpu_available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def unavailable_reason(case: Case) -> str | None:
    """Why the implementation of ``case`` cannot run on its device in this process
    (e.g. Triton kernels on a CPU without the interpreter), or None."""
    key = (case.variant, case.impl.impl)
    if key not in sepgconv.implementations():
        return None  # dense/torch and peers run wherever torch does
    cls = sepgconv.get_implementation(*key)
    why = cls.unavailable_reason(case.shape.device)
    if why is None and getattr(cls, "is_interpreted", lambda d: False)(case.shape.device):
        why = "Triton's interpreter: a correctness tool, never timed"
    return None if why is None else f"cannot run here: {why}"


def skip_reason(case: Case, available: int | None = None) -> str | None:
    """Why ``case`` is skipped up front (cannot run here, or would not fit), or None."""
    why = unavailable_reason(case)
    if why:
        return why
    need = memory_estimate_bytes(case.shape, case.variant, case.impl.impl, case.pass_)
    have = available_memory_bytes(case.shape.device) if available is None else available
    if need > have:
        return f"needs ~{need / 2**30:.2f} GiB by formula, {have / 2**30:.2f} GiB available"
    return None
