"""The g forward as an implicit GEMM on tensor cores (Triton ``tl.dot``).

The staged g forward (:mod:`sepgconv.fused.kernels_fwd`) contracts the group axis
first (X̃ per ``(nh, c)``, the §3.4 MAC cut) with CUDA-core FMAs. On a GPU whose
TF32/bf16 tensor cores run the dense convolution (g/naive, cuDNN) several times
faster than its CUDA cores, that cut does not pay. This kernel runs the *dense*
contraction instead, on tensor cores, without the expanded filter in memory:

    y[b, nh, p] = Σ_{tap} Σ_{j = (c, g)} F̃[nh, j, tap] · x[b, j, p·stride − pad + tap]
    F̃[nh, j, tap] = T_h(K[n, c])[tap] · w̃[n, h, c, g] = kt[c, tap, nh] · wt[j, nh]

Each program computes an output tile ``[BLOCK_NH output channels (n, h), BLOCK_P
output pixels]`` of one image. It loops over blocks of ``BLOCK_J`` input channels
``j = c·G_IN + g`` (the input channels and group elements flattened: the contraction
of one ``tl.dot`` is ``BLOCK_J ≥ 16`` long even where ``C_in < 16``) and, inside, over
the ``k²`` taps. Per step:

* A ``[BLOCK_NH, BLOCK_J]``: the F̃ tile, formed in registers as the elementwise
  product of ``kt[j // G_IN, tap, nh]`` and ``wt[j, nh]`` (F̃ is never written to
  memory), rounded to the input dtype (as the naive path's F̃ is);
* B ``[BLOCK_J, BLOCK_P]``: ``x[b, j, pixels shifted by the tap]``, a masked load of
  shifted pointers (zero padding and the image border by mask; no gather);
* ``acc = tl.dot(A, B, acc)``: fp32 accumulation (fp64 for fp64 inputs);
  ``input_precision`` is the launcher's rule (``"tf32"`` where cuDNN may use TF32,
  ``"ieee"`` otherwise); bf16/fp16 operands go to ``tl.dot`` as they are (compiled;
  Triton 3.9's interpreter computes a bf16 ``tl.dot`` wrongly, ~1e10 off on a 16×16
  product, so there, and only there, bf16 operands are widened to fp32 first: the same
  products, exactly, and the same fp32 accumulation).

The bias is added at the end. MACs: the full GConv's,
``C_in·G_in·k²·H_out·W_out·C_out·G_out`` per image (masked lanes of partial tiles
aside), not the g cut: the point of this path is tensor cores and no F̃ or X̃ in
memory. :func:`sepgconv.fused.launch.forward_path` says when it is chosen.

Layouts as in :mod:`sepgconv.fused.kernels_fwd`: ``x [B, CG, H, W]``, ``wt [CG, NH]``,
``kt [C_in, k², NH]``, ``bias [NH]``, ``y [B, NH, H_out, W_out]``, all contiguous.
Plain Python, decorated by :mod:`sepgconv.fused.launch` (compiled or interpreted).
"""

from __future__ import annotations

import triton.language as tl


def fused_g_dot_fwd_kernel(
    x_ptr,
    wt_ptr,
    kt_ptr,
    bias_ptr,
    y_ptr,
    C_IN,  # input channels (not counting G_in)
    NH,  # output channels × output group elements
    H,
    W,
    H_OUT,
    W_OUT,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    G_IN: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,  # accumulation dtype: fp32 (fp16/bf16/fp32) or fp64
    PRECISION: tl.constexpr,  # tl.dot input precision for fp32: "ieee" or "tf32"
    BLOCK_NH: tl.constexpr,  # output channels (n, h) per program
    BLOCK_P: tl.constexpr,  # output pixels per program
    BLOCK_J: tl.constexpr,  # input channels (c, g) per tl.dot
    UPCAST: tl.constexpr,  # the operands to ACC before tl.dot: bf16 in the interpreter only
):
    """Grid ``(pixel blocks, NH blocks, B)``; one output tile per program."""
    pid_p = tl.program_id(0)
    pid_nh = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    CG = C_IN * G_IN
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)  # [BLOCK_P] output pixels (in-plane, int32)
    p_ok = p < H_OUT * W_OUT
    iy0 = (p // W_OUT) * STRIDE - PAD  # input row / column of tap (0, 0)
    ix0 = (p % W_OUT) * STRIDE - PAD
    nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)  # [BLOCK_NH] output channels
    nh_ok = nh < NH
    x_base = x_ptr + b * CG * plane
    acc = tl.full((BLOCK_NH, BLOCK_P), 0.0, ACC)
    for j0 in range(0, CG, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J)  # [BLOCK_J] input channels j = c·G_IN + g
        j_ok = j < CG
        a_ok = nh_ok[:, None] & j_ok[None, :]
        # w̃[j, nh] for the block, [BLOCK_NH, BLOCK_J]: loaded once, used by every tap
        wv = tl.load(wt_ptr + j[None, :] * NH + nh[:, None], mask=a_ok, other=0.0).to(ACC)
        kt_row = (j // G_IN) * (K * K)  # kt[c, tap, nh] at (c·k² + tap)·NH + nh
        x_row = x_base + j.to(tl.int64)[:, None] * plane  # [BLOCK_J, 1]
        for dy in range(0, K):
            iy = iy0 + dy
            y_ok = p_ok & (iy >= 0) & (iy < H)
            for dx in range(0, K):
                ix = ix0 + dx
                pix_ok = y_ok & (ix >= 0) & (ix < W)
                kv = tl.load(
                    kt_ptr + (kt_row + dy * K + dx)[None, :] * NH + nh[:, None],
                    mask=a_ok,
                    other=0.0,
                ).to(ACC)
                a = (kv * wv).to(x_ptr.dtype.element_ty)  # F̃[nh, j, tap], in registers
                xv = tl.load(
                    x_row + (iy * W + ix)[None, :],
                    mask=j_ok[:, None] & pix_ok[None, :],
                    other=0.0,
                )  # [BLOCK_J, BLOCK_P]: the input shifted by the tap
                if UPCAST:  # exact: a bf16 value and a product of two fit in fp32
                    a = a.to(ACC)
                    xv = xv.to(ACC)
                acc = tl.dot(a, xv, acc=acc, input_precision=PRECISION, out_dtype=ACC)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + nh, mask=nh_ok, other=0.0).to(ACC)[:, None]
    y_off = (b * NH + nh.to(tl.int64))[:, None] * out_plane + p[None, :]
    tl.store(y_ptr + y_off, acc.to(y_ptr.dtype.element_ty), mask=nh_ok[:, None] & p_ok[None, :])
