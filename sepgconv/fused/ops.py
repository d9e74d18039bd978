"""The fused GConv as a PyTorch custom operator with its autograd formula.

``torch.ops.sepgconv.fused_gconv(x, wt, kt, bias, gc, k, stride, padding, g_in)``
is opaque to ``torch.compile`` (it traces one node, with the shape rule in
:func:`_fused_gconv_fake`) and to ``torch.jit.trace`` (one node that a MAC
counter can be given a handle for: :func:`fvcore_handle`). Triton is imported
only inside the implementations, when a kernel runs.

Autograd: the op saves ``x`` (the layer input, which the caller's graph holds
anyway), ``wt`` and ``kt`` (the derived weights, small) — no activation of its
own. The backward is a second custom op, ``fused_gconv_backward``, running the
Triton backward kernels; gradients flow on from ``wt``/``kt`` to the layer's
parameters through the ordinary autograd of the filter construction. The
backward is not itself differentiable (no double backward).
"""

from __future__ import annotations

import torch
from torch import Tensor

from sepgconv.counting import output_size
from sepgconv.fused._runtime import check_available


@torch.library.custom_op("sepgconv::fused_gconv", mutates_args=())
def fused_gconv(
    x: Tensor,
    wt: Tensor,
    kt: Tensor,
    bias: Tensor | None,
    gc: bool,
    k: int,
    stride: int,
    padding: int,
    g_in: int,
) -> Tensor:
    """``y [B, C_out·G_out, H', W']`` from ``x [B, C_in·G_in, H, W]``.

    ``wt [C_in·G_in, C_out·G_out]``: w̃; ``kt``: ``T_h(K)`` as ``[C_in, k², C_out·G_out]``
    (g) or ``[k², C_out·G_out]`` (gc); ``bias [C_out·G_out]`` or None.
    """
    check_available(x.device)  # before importing Triton: a clear error where it cannot run
    from sepgconv.fused import launch

    return launch.forward(x, wt, kt, bias, gc=gc, k=k, stride=stride, padding=padding, g_in=g_in)


@fused_gconv.register_fake
def _fused_gconv_fake(x, wt, kt, bias, gc, k, stride, padding, g_in):
    b, _, h, w = x.shape
    h_out, w_out = output_size(h, k, stride, padding), output_size(w, k, stride, padding)
    return x.new_empty(b, wt.shape[1], h_out, w_out)


@torch.library.custom_op("sepgconv::fused_gconv_backward", mutates_args=())
def fused_gconv_backward(
    dy: Tensor,
    x: Tensor,
    wt: Tensor,
    kt: Tensor,
    gc: bool,
    k: int,
    stride: int,
    padding: int,
    g_in: int,
    need_x: bool,
    need_w: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """``(dx, dwt, dkt)``; a gradient that is not needed comes back empty (``numel() == 0``)."""
    check_available(x.device)
    from sepgconv.fused import launch

    dx, dwt, dkt = launch.backward(
        dy, x, wt, kt, gc=gc, k=k, stride=stride, padding=padding, g_in=g_in,
        need_x=need_x, need_w=need_w,
    )  # fmt: skip
    empty = x.new_empty(0)
    return (
        empty if dx is None else dx,
        empty.clone() if dwt is None else dwt,
        empty.clone() if dkt is None else dkt,
    )


@fused_gconv_backward.register_fake
def _fused_gconv_backward_fake(dy, x, wt, kt, gc, k, stride, padding, g_in, need_x, need_w):
    return (
        torch.empty_like(x) if need_x else x.new_empty(0),
        torch.empty_like(wt) if need_w else x.new_empty(0),
        torch.empty_like(kt) if need_w else x.new_empty(0),
    )


def _setup_context(ctx, inputs, output):
    x, wt, kt, bias, gc, k, stride, padding, g_in = inputs
    ctx.save_for_backward(x, wt, kt)
    ctx.conf = (gc, k, stride, padding, g_in)


def _backward(ctx, dy):
    x, wt, kt = ctx.saved_tensors
    need_x = ctx.needs_input_grad[0]
    need_w = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    dx = dwt = dkt = None
    if need_x or need_w:
        dx, dwt, dkt = fused_gconv_backward(dy, x, wt, kt, *ctx.conf, need_x, need_w)
        dx = dx if need_x else None
        dwt = dwt if ctx.needs_input_grad[1] else None
        dkt = dkt if ctx.needs_input_grad[2] else None
    dbias = dy.sum((0, 2, 3)) if ctx.needs_input_grad[3] else None
    return dx, dwt, dkt, dbias, None, None, None, None, None


fused_gconv.register_autograd(_backward, setup_context=_setup_context)


def fvcore_handle(inputs, outputs) -> int:
    """fvcore handle for ``sepgconv::fused_gconv``: the MACs the kernel executes
    (:func:`sepgconv.fused.tiling.fused_macs`), from the traced shapes."""
    from sepgconv.fused.tiling import macs_from_sizes

    b, cg, h, w = inputs[0].type().sizes()
    nh = inputs[1].type().sizes()[1]
    gc, k, stride, padding, g_in = (v.toIValue() for v in inputs[4:9])
    path = _traced_path(inputs[0], gc, cg)
    return macs_from_sizes(
        "gc" if gc else "g", b, cg // g_in, g_in, nh, k, h, w, stride, padding, path
    )


def _traced_path(value, gc: bool, cg: int) -> str:
    """The forward kernel a traced call ran (``launch.forward_path`` on the traced input's
    dtype and device; the staged ``"fwd"`` where the trace does not record them)."""
    from sepgconv.fused._runtime import forward_path

    t = value.type()
    dtype = t.dtype() if hasattr(t, "dtype") else None
    device = t.device() if hasattr(t, "device") else None
    if dtype is None or device is None:
        return "fwd"
    return forward_path(gc, dtype, device, cg)
