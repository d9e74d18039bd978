"""The CPU allocator's state, fixed for a run, so that a row's latency does not depend
on what ran before it in the process.

glibc's malloc serves a block above its *mmap threshold* with a fresh ``mmap`` (page
faults on first touch, ``munmap`` on free) and one below it from the heap. The
threshold is dynamic: it starts at 128 KiB and rises to the size of each mmapped
block that is freed (up to 32 MiB), and the heap is trimmed back to the OS above the
*trim threshold*. So whether a layer's X̃ costs page faults on every call depends on
which larger blocks earlier rows freed: measured on this project's AMD EPYC VM
(one thread, torch 2.13.0), g/rearranged p4m C = 32, k = 1, 32×32 (a 32 MiB X̃)
ran at 43–47 ms in fresh processes and 17–20 ms with both thresholds fixed high,
and two quiet quick runs of unchanged code disagreed by up to 2.3× on such rows.

:func:`steady` fixes both thresholds (``mallopt``) at the start of a CPU run: large
blocks then come from a heap that keeps its pages, as a caching allocator keeps
GPU memory, and every row sees the same allocator whatever ran before. What the
run used is recorded in ``env.json`` (``malloc``). It leaves the allocator alone
when the user chose one: ``MALLOC_*`` / ``GLIBC_TUNABLES`` in the environment, an
allocator in ``LD_PRELOAD`` (jemalloc, tcmalloc, mimalloc), or ``mode="system"``
(``SEPGCONV_BENCH_MALLOC=system``), and on C libraries other than glibc.

Peak-memory figures do not depend on it: they come from torch.profiler's
allocation events, not from the process's resident size.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

#: mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks up to 1 GiB come from the heap; freed memory is kept (trim at 2 GiB)
MMAP_THRESHOLD = 1 << 30
TRIM_THRESHOLD = (1 << 31) - 1
MODES = ("steady", "system")
_USER_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_",
             "MALLOC_MMAP_MAX_", "GLIBC_TUNABLES")  # fmt: skip
_PRELOADED = ("jemalloc", "tcmalloc", "mimalloc")

_state: dict | None = None


def _glibc():
    name, version = platform.libc_ver()
    if name != "glibc":
        return None, None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), version
    except OSError:
        return None, version


def state() -> dict:
    """What :func:`steady` did in this process (``{"mode": "untouched", ...}`` before)."""
    if _state is not None:
        return dict(_state)
    _, version = _glibc()
    return {"library": f"glibc {version}" if version else platform.libc_ver()[0] or "unknown",
            "mode": "untouched"}  # fmt: skip


def steady(mode: str | None = None) -> dict:
    """Fix glibc's mmap and trim thresholds for the rest of the process (idempotent)
    unless the user chose an allocator; return what was done (for ``env.json``).
    ``mode`` defaults to ``$SEPGCONV_BENCH_MALLOC`` or ``"steady"``."""
    global _state
    mode = mode or os.environ.get("SEPGCONV_BENCH_MALLOC") or "steady"
    if mode not in MODES:
        raise ValueError(f"malloc mode {mode!r}: choose one of {MODES}")
    if _state is not None:
        return dict(_state)
    libc, version = _glibc()
    info = {"library": f"glibc {version}" if version else platform.libc_ver()[0] or "unknown"}
    preload = os.environ.get("LD_PRELOAD", "")
    user_env = sorted(k for k in _USER_ENV if os.environ.get(k))
    if any(p in preload for p in _PRELOADED):
        info.update(mode="preloaded", preload=preload)
    elif user_env:
        info.update(mode="environment", variables=user_env)
    elif mode == "system":
        info.update(mode="system")
    elif libc is None:
        info.update(mode="system", reason="not glibc: left as it is")
    else:
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(MMAP_THRESHOLD))) and bool(
            libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(TRIM_THRESHOLD))
        )
        info.update(mode="steady" if ok else "system", mmap_threshold=MMAP_THRESHOLD,
                    trim_threshold=TRIM_THRESHOLD)  # fmt: skip
        if not ok:
            info["reason"] = "mallopt refused the thresholds"
    _state = info
    return dict(info)
