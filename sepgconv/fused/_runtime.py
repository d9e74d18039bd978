"""Where the fused kernels can run: answered without importing Triton.

Triton decides at ``triton.jit`` decoration time whether a kernel is compiled
or interpreted, from the ``TRITON_INTERPRET`` environment variable. sepgconv
reads the variable at *call* time instead (the kernels are decorated lazily,
once per mode, in :mod:`sepgconv.fused.launch`), so a test can switch the
interpreter on with ``monkeypatch.setenv("TRITON_INTERPRET", "1")``.
"""

from __future__ import annotations

import functools
import importlib.util
import os

import torch

#: values Triton's ``getenv_bool`` reads as true (case-insensitive)
_TRUE = {"1", "true", "on", "y", "yes"}


def interpret_enabled() -> bool:
    """``TRITON_INTERPRET`` is set to a true value (Triton's spelling rules)."""
    return os.environ.get("TRITON_INTERPRET", "").strip().lower() in _TRUE


@functools.lru_cache(maxsize=1)
def triton_installed() -> bool:
    """Triton is importable (checked once, without importing it)."""
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):  # a broken or stubbed-out installation
        return False


def unavailable_reason(device) -> str | None:
    """Why the fused kernels cannot run on ``device`` in this process, or None."""
    if not triton_installed():
        return (
            "impl='fused' needs Triton, which is not installed "
            "(pip install 'sepgconv[fused]' or pip install triton)"
        )
    kind = torch.device(device).type
    if interpret_enabled():
        if kind in ("cpu", "cuda"):
            return None
        return f"impl='fused' runs on CUDA or, interpreted, on the CPU; not on {kind!r}"
    if kind == "cuda":
        return None
    if kind == "cpu":
        return (
            "impl='fused' runs Triton kernels on a CUDA GPU; on the CPU only in Triton's "
            "interpreter, a slow correctness tool: set TRITON_INTERPRET=1 to use it"
        )
    return f"impl='fused' runs Triton kernels on a CUDA GPU, not on {kind!r}"


def check_available(device) -> None:
    """Raise a RuntimeError naming what is missing when the kernels cannot run here."""
    reason = unavailable_reason(device)
    if reason is not None:
        raise RuntimeError(reason)
