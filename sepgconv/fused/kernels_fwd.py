"""The fused forward kernel (Triton), shared by g and gc; also the X̃ replay used by
the weight-gradient kernels. Imported only when a fused layer runs.

The functions here are plain Python: :mod:`sepgconv.fused.launch` decorates
them with ``triton.jit`` (compiled) or runs them in Triton's interpreter,
depending on ``TRITON_INTERPRET`` at call time.

Tensor layouts (all contiguous; ``NH = C_out·G_out``, ``nh = n·G_out + h``, the
output channel order of the layer; ``CG = C_in·G_in``, ``j = c·G_in + g``):

* ``x``  ``[B, CG, H, W]``          the input
* ``wt`` ``[CG, NH]``                ``w̃[n,h,c,g] = w[n, c, h⁻¹g]`` at ``[c·G_in + g, nh]``
* ``kt`` g: ``[C_in, k², NH]``       ``T_h(K[n,c])`` flattened over the taps (row-major dy, dx)
  gc: ``[k², NH]``                   ``T_h(K[n])``
* ``bias`` ``[NH]`` (optional)
* ``y``  ``[B, NH, H_out, W_out]``

Halo and tile index conventions: see :mod:`sepgconv.fused.tiling`.

The kernels use Triton builtins only (``tl.full``, not the ``@jit``-decorated
``tl.zeros``; see ``kernels_bwd._SUM``), so they run interpreted even when
Triton was imported before ``TRITON_INTERPRET=1`` was set.
"""

from __future__ import annotations

import triton.language as tl


def fused_gconv_fwd_kernel(
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
    TILES_W,  # output tiles per tile row
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    G_IN: tl.constexpr,
    TH: tl.constexpr,  # output tile rows / columns
    TW: tl.constexpr,
    ES: tl.constexpr,  # halo step min(STRIDE, K)
    HH: tl.constexpr,  # halo rows / columns
    HW: tl.constexpr,
    HALO_PIX: tl.constexpr,  # next_pow2(HH·HW) lanes
    OUT_PIX: tl.constexpr,  # next_pow2(TH·TW) lanes
    IS_GC: tl.constexpr,
    USE_DOT: tl.constexpr,  # gc: contract CG with tl.dot (CG ≥ 16)
    HAS_BIAS: tl.constexpr,
    ACC: tl.constexpr,  # accumulation dtype: fp32 (fp16/bf16/fp32) or fp64
    PRECISION: tl.constexpr,  # tl.dot input precision for fp32: "ieee" or "tf32"
    BLOCK_NH: tl.constexpr,  # output channels (n, h) per program
    BLOCK_K: tl.constexpr,  # gc: input channels (c, g) per tl.dot step
):
    """One program: batch ``b``, output tile ``(ty, tx)``, ``BLOCK_NH`` output channels.

    Per input channel c: X̃[nh, c] on the halo ``[BLOCK_NH, HALO_PIX]`` in
    registers (``G_IN`` FMAs per value), then ``K²`` taps, each a ``tl.gather``
    of the tile's pixels out of the X̃ tile (on-chip: warp shuffles or shared
    memory) times ``T_h(K)[tap]``. gc sums X̃ over every (c, g) first, then taps once.
    """
    pid_tile = tl.program_id(0)
    pid_nh = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    ty = pid_tile // TILES_W
    tx = pid_tile % TILES_W

    nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)  # [BLOCK_NH] output channels
    nh_ok = nh < NH

    # halo lanes r -> (ry, rx) -> input pixel (iy, ix); in-plane offsets fit int32
    # (the launcher checks H·W < 2³¹), channel × plane products are int64
    r = tl.arange(0, HALO_PIX)
    ry = r // HW
    rx = r % HW
    iy = ty * (TH * STRIDE) - PAD + (ry // ES) * STRIDE + ry % ES
    ix = tx * (TW * STRIDE) - PAD + (rx // ES) * STRIDE + rx % ES
    r_ok = (r < HH * HW) & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    r_off = iy * W + ix

    # tile lanes q -> (qy, qx); lanes past TH·TW are clamped (valid gather index) and masked
    q = tl.arange(0, OUT_PIX)
    qc = tl.minimum(q, TH * TW - 1)
    qy = qc // TW
    qx = qc % TW
    oy = ty * TH + qy
    ox = tx * TW + qx
    q_ok = (q < TH * TW) & (oy < H_OUT) & (ox < W_OUT)
    tap0 = (qy * ES) * HW + qx * ES  # halo lane of tap (0, 0) for each output lane

    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    x_base = x_ptr + b * C_IN * G_IN * plane  # int64: b is int64
    CG = C_IN * G_IN
    acc = tl.full((BLOCK_NH, OUT_PIX), 0.0, ACC)

    if IS_GC:
        # X̃[nh, r] = Σ_j w̃[j, nh] · X[j, r] over all j = (c, g)
        xt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)
        if USE_DOT:
            for j0 in range(0, CG, BLOCK_K):
                j = j0 + tl.arange(0, BLOCK_K)
                j_ok = j < CG
                xv = tl.load(
                    x_base + j.to(tl.int64)[:, None] * plane + r_off[None, :],
                    mask=j_ok[:, None] & r_ok[None, :],
                    other=0.0,
                ).to(ACC)  # [BLOCK_K, HALO_PIX]
                wv = tl.load(
                    wt_ptr + j[None, :] * NH + nh[:, None],
                    mask=j_ok[None, :] & nh_ok[:, None],
                    other=0.0,
                ).to(ACC)  # [BLOCK_NH, BLOCK_K]
                xt = tl.dot(wv, xv, acc=xt, input_precision=PRECISION, out_dtype=ACC)
        else:
            for j in range(0, CG):
                xv = tl.load(x_base + j * plane + r_off, mask=r_ok, other=0.0).to(ACC)
                wv = tl.load(wt_ptr + j * NH + nh, mask=nh_ok, other=0.0).to(ACC)
                xt += wv[:, None] * xv[None, :]
        for t in tl.static_range(K * K):
            idx = tl.broadcast_to((tap0 + (t // K) * HW + t % K)[None, :], (BLOCK_NH, OUT_PIX))
            kv = tl.load(kt_ptr + t * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            acc += kv[:, None] * tl.gather(xt, idx, axis=1)
    else:
        for c in range(0, C_IN):
            # X̃[nh, c, r] = Σ_g w̃[c·G_IN + g, nh] · X[c·G_IN + g, r]
            xt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)
            for g in tl.static_range(G_IN):
                j = c * G_IN + g
                xv = tl.load(x_base + j.to(tl.int64) * plane + r_off, mask=r_ok, other=0.0)
                wv = tl.load(wt_ptr + j * NH + nh, mask=nh_ok, other=0.0)
                xt += wv.to(ACC)[:, None] * xv.to(ACC)[None, :]
            # Y[nh] += Σ_tap T_h(K[n, c])[tap] · X̃[nh, c, tile pixel + tap]
            for t in tl.static_range(K * K):
                idx = tl.broadcast_to((tap0 + (t // K) * HW + t % K)[None, :], (BLOCK_NH, OUT_PIX))
                kv = tl.load(kt_ptr + (c * K * K + t) * NH + nh, mask=nh_ok, other=0.0).to(ACC)
                acc += kv[:, None] * tl.gather(xt, idx, axis=1)

    if HAS_BIAS:
        acc += tl.load(bias_ptr + nh, mask=nh_ok, other=0.0).to(ACC)[:, None]
    out_plane = H_OUT.to(tl.int64) * W_OUT
    y_off = (b * NH + nh.to(tl.int64))[:, None] * out_plane + (oy * W_OUT + ox)[None, :]
    tl.store(
        y_ptr + y_off,
        acc.to(y_ptr.dtype.element_ty),
        mask=nh_ok[:, None] & q_ok[None, :],
    )
