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


def dot_precision(device, dtype: torch.dtype) -> str:
    """``tl.dot``'s input precision for fp32: ``"tf32"`` where cuDNN's convolutions (the
    naive path) may use TF32 (``torch.backends.cudnn.allow_tf32`` on CUDA), else ``"ieee"``."""
    kind = torch.device(device).type
    if kind == "cuda" and dtype != torch.float64 and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "ieee"


#: ``SEPGCONV_FUSED_G_FORWARD``: ``"dot"`` or ``"staged"`` forces the g forward's path
#: (tests: the interpreter runs the tl.dot path in fp32 "ieee" and fp64); unset or
#: ``"auto"``: :func:`forward_path`'s rule
G_FORWARD_ENV = "SEPGCONV_FUSED_G_FORWARD"
#: the tl.dot g forward needs this many input channels ``C_in·G_in`` (one tl.dot's
#: contraction, ``BLOCK_J ≥ 16``; fewer would be mostly masked lanes)
DOT_MIN_CG = 16


def forward_path(gc: bool, dtype: torch.dtype, device, cg: int) -> str:
    """The forward kernel a fused call runs: ``"fwd"`` (the staged kernel: gc, and g
    with X̃ per input channel on CUDA cores) or ``"g_dot"`` (g as an implicit GEMM on
    tensor cores, :mod:`sepgconv.fused.kernels_dot`; the full GConv's MACs).

    g takes ``"g_dot"`` where tensor cores run the dense conv: bf16/fp16, or fp32
    with TF32 allowed (:func:`dot_precision`'s rule, what cuDNN follows), and
    ``cg = C_in·G_in ≥`` :data:`DOT_MIN_CG`. :data:`G_FORWARD_ENV` overrides the rule
    for g (``"dot"`` / ``"staged"``); gc always takes ``"fwd"``."""
    if gc:
        return "fwd"
    forced = os.environ.get(G_FORWARD_ENV, "auto").strip().lower()
    if forced in ("dot", "staged"):
        return "g_dot" if forced == "dot" else "fwd"
    if forced != "auto":
        raise ValueError(f"{G_FORWARD_ENV}={forced!r}: expected 'dot', 'staged' or 'auto'")
    tensor_cores = dtype in (torch.float16, torch.bfloat16) or (
        dtype == torch.float32 and dot_precision(device, dtype) == "tf32"
    )
    return "g_dot" if tensor_cores and cg >= DOT_MIN_CG else "fwd"
