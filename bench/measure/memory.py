"""Working memory of one call: the CUDA allocator and NVML on a GPU, the profiler's
allocation events on the CPU (a measurement, never only a formula; DESIGN §4).

* :func:`peak_memory` — working memory of one call (CUDA: ``max_memory_allocated``
  above what was allocated before, ``max_memory_reserved`` above what was reserved
  before (the cache emptied first), NVML's device-used figure; CPU:
  :func:`cpu_peak_bytes`).
* :func:`is_oom` — tell an out-of-memory error from other failures.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from . import env


# ---------------------------------------------------------------------- #
# memory
# ---------------------------------------------------------------------- #
def cpu_peak_bytes(step: Callable[[], object]) -> int:
    """Peak live bytes allocated during one call of ``step`` on the CPU (measured).

    Runs ``step`` under ``torch.profiler`` with ``profile_memory=True`` and
    replays the allocator's events (``[memory]`` events: ``+nbytes`` per
    allocation, ``-nbytes`` per free) in time order; the peak of the running
    sum is the working memory of the call (the output included, tensors
    allocated before the call excluded — the CPU analogue of CUDA's
    ``max_memory_allocated() - memory_allocated()``). Allocations made outside
    the c10 allocator (e.g. oneDNN scratch buffers) are not seen.

    A ``step`` with a ``release()`` method (the training step of
    :func:`bench.measure.timing.make_step`) is released first, so the previous
    call's gradients are freed *before* the profiled call. Freed inside it,
    they would count as a negative allocation when the profiler had seen them
    allocated (the CPU allocator keeps the sizes of blocks allocated under any
    earlier profiler session) and as nothing otherwise, so the same row gave
    two figures depending on whether it had been profiled before (measured:
    22,064 or 26,592 bytes for a small gc layer's training step).
    """
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")  # silence kineto's start/stop lines
    from torch.profiler import ProfilerActivity, profile

    release = getattr(step, "release", None)
    if release is not None:
        release()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            result = step()
            del result
    events = [
        (e.start_ns(), e.nbytes())
        for e in prof.profiler.kineto_results.events()
        if e.name() == "[memory]" and str(e.device_type()).endswith("CPU")
    ]
    live = peak = 0
    for _, nbytes in sorted(events, key=lambda ev: ev[0]):
        live += nbytes
        peak = max(peak, live)
    return int(peak)


@dataclass
class Memory:
    """Memory of one call. Bytes; None when not available on the device."""

    peak_mem_bytes: int | None = None  # working memory of the call
    mem_reserved_bytes: int | None = None  # CUDA: reserved peak - allocated before (see below)
    nvml_used_bytes: int | None = None  # CUDA: NVML device memory used


def peak_memory(step: Callable[[], object], device: torch.device | str) -> Memory:
    """Working memory of one call of ``step`` (call it once before, to warm up).

    CUDA, with the allocator's cache emptied first (``empty_cache()``: blocks that
    earlier rows left cached are not this call's):

    * ``peak_mem_bytes``: ``max_memory_allocated()`` after ``reset_peak_memory_stats()``,
      minus ``memory_allocated()`` before the call: the bytes the call itself held at
      its peak (its working memory).
    * ``mem_reserved_bytes``: ``max_memory_reserved()`` during the call minus the
      bytes *allocated* before it: the reserve the allocator needed to run the call
      over what was live before it. It is at least ``peak_mem_bytes`` by
      construction (reserved >= allocated at every instant); the excess is the
      allocator's rounding and fragmentation, the free space of the segments that
      hold the earlier tensors included. (Segment *growth* during the call, the
      previous definition, read 0 whenever the call fit into the free space of a
      segment holding its input: 0 on half the rows of the first H200 run.)
    * ``nvml_used_bytes``: NVML's device-used figure (None without NVML).

    CPU: :func:`cpu_peak_bytes`; the CUDA-only fields are None.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return Memory(peak_mem_bytes=cpu_peak_bytes(step))
    release = getattr(step, "release", None)
    if release is not None:  # the previous call's gradients: not part of this call
        release()
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()  # earlier calls' cached blocks: not this call's reserve
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    result = step()
    torch.cuda.synchronize(device)
    del result
    return Memory(
        peak_mem_bytes=int(torch.cuda.max_memory_allocated(device) - before),
        mem_reserved_bytes=int(torch.cuda.max_memory_reserved(device) - before),
        nvml_used_bytes=env.nvml_used_bytes(device),
    )


def is_oom(e: BaseException) -> bool:
    """An out-of-memory error (CUDA's OutOfMemoryError, or the CPU allocator's)."""
    if isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e).lower()
    return isinstance(e, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text or "not enough memory" in text
    )
