"""The fused backward kernels (Triton). Imported only when a fused layer's backward runs.

Layouts and names as in :mod:`sepgconv.fused.kernels_fwd`; ``dy`` is the
output gradient ``[B, NH, H_out, W_out]``. With ``o(i, t)`` the output pixel
that input pixel ``i`` feeds through tap ``t = (dy, dx)``
(``oy = (iy + PAD − dy) / STRIDE`` when that divides, likewise ox)::

    D_c[nh, i]  = Σ_t T_h(K)[c, t, nh] · dY[nh, o(i, t)]     (g: per c; gc: no c)
    dX[c, g, i] = Σ_nh w̃[c·G_in + g, nh] · D_c[nh, i]
    dw̃[j, nh]   = Σ_{b, i} X[j, i] · D_c[nh, i]               (j = c·G_in + g)
    dT_h(K)[c, t, nh] = Σ_{b, o} dY[nh, o] · X̃[nh, c, s·o + t − p]

* dX (``fused_g_dx_kernel``, ``fused_gc_dx_kernel``): direct, no halo: for an
  input tile, ``D`` comes from ``K²`` shifted, masked loads of dY (L1/L2 hits),
  then the contraction over nh (g: ``G_in`` reductions per c; gc: ``tl.dot``).
* dw̃ and dT_h(K) of g (``fused_g_wgrad_kernel``): replays the forward tile by
  tile: X̃ on the halo (as the forward); per tap one shifted, masked load of dY over
  the halo (the output pixel of this tile each halo pixel feeds through the tap)
  serves both ``dK`` (a reduction against X̃) and ``D`` on the halo, which is then
  contracted with X. No gather, no scratch.
* gc: ``fused_gc_dk_kernel`` replays X̃ (tl.dot over all (c, g)) and reduces it
  against the same shifted dY loads for dT_h(K); ``fused_gc_dw_kernel`` is direct
  (``D`` from shifted loads, tl.dot with X).

The halo and tile indexing, the X̃ replay and the shifted dY loads are the helpers of
:mod:`sepgconv.fused.common`.

The weight gradients reduce over the batch and all pixels. Programs are split
``S`` ways over the ``(b, tile)`` items; each writes its own partial sums
(``[S, …]``, accumulation dtype) and the launcher sums them: deterministic,
no atomics, and safe to re-run (the autotuner does).
"""

from __future__ import annotations

import triton.language as tl

# helpers: plain functions here, decorated per mode and bound by ``launch.bind``
from sepgconv.fused.common import d_sum, dy_tap, halo_offsets, input_tile, xt_g, xt_gc

#: the combine function ``tl.sum`` reduces with. The kernels call ``tl.reduce``
#: with it rather than ``tl.sum``/``tl.zeros``: those two are ``@triton.jit``
#: functions decorated when Triton is imported, so in a process that imported
#: Triton before ``TRITON_INTERPRET=1`` was set the interpreter refuses to call
#: them; builtins work in both modes, and the interpreter recognises this
#: combine function and sums with numpy.
_SUM = tl.standard._sum_combine


def fused_g_dx_kernel(
    dy_ptr,
    wt_ptr,
    kt_ptr,
    dx_ptr,
    C_IN,
    NH,
    H,
    W,
    H_OUT,
    W_OUT,
    TILES_W,  # input tiles per tile row
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    G_IN: tl.constexpr,
    G_PAD: tl.constexpr,  # next_pow2(G_IN)
    TIH: tl.constexpr,  # input tile rows / columns (powers of two)
    TIW: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NH: tl.constexpr,
):
    """One program: batch ``b``, input channel ``c`` (all its G_in), one input tile."""
    pid_tile = tl.program_id(0)
    c = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    iy, ix, p_ok = input_tile(pid_tile, TILES_W, H, W, TIH, TIW)
    gi = tl.arange(0, G_PAD)
    out_plane = H_OUT.to(tl.int64) * W_OUT
    acc = tl.full((G_PAD, TIH * TIW), 0.0, ACC)  # dX[c, g, tile]
    for nh0 in range(0, NH, BLOCK_NH):
        nh = nh0 + tl.arange(0, BLOCK_NH)
        nh_ok = nh < NH
        d = d_sum(dy_ptr, b * NH + nh.to(tl.int64), out_plane, nh_ok, iy, ix, p_ok, kt_ptr,
                  c * K * K, nh, NH, H_OUT, W_OUT, K, STRIDE, PAD, BLOCK_NH, TIH * TIW,
                  ACC)  # fmt: skip
        for g in tl.static_range(G_IN):
            wv = tl.load(wt_ptr + (c * G_IN + g) * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            s = tl.reduce(wv[:, None] * d, 0, _SUM)  # [TIH·TIW]
            acc = tl.where(gi[:, None] == g, acc + s[None, :], acc)
    j = (b * C_IN + c) * G_IN + gi.to(tl.int64)  # dX channel b·CG + c·G_IN + g
    tl.store(
        dx_ptr + j[:, None] * (H.to(tl.int64) * W) + (iy * W + ix)[None, :],
        acc.to(dx_ptr.dtype.element_ty),
        mask=(gi < G_IN)[:, None] & p_ok[None, :],
    )


def fused_gc_dx_kernel(
    dy_ptr,
    wt_ptr,
    kt_ptr,
    dx_ptr,
    CG,  # C_in·G_in
    NH,
    H,
    W,
    H_OUT,
    W_OUT,
    TILES_W,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    TIH: tl.constexpr,
    TIW: tl.constexpr,
    ACC: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_NH: tl.constexpr,
    BLOCK_CG: tl.constexpr,
):
    """One program: batch ``b``, ``BLOCK_CG`` input channels (c, g), one input tile."""
    pid_tile = tl.program_id(0)
    pid_j = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    iy, ix, p_ok = input_tile(pid_tile, TILES_W, H, W, TIH, TIW)
    j = pid_j * BLOCK_CG + tl.arange(0, BLOCK_CG)
    j_ok = j < CG
    out_plane = H_OUT.to(tl.int64) * W_OUT
    acc = tl.full((BLOCK_CG, TIH * TIW), 0.0, ACC)
    for nh0 in range(0, NH, BLOCK_NH):
        nh = nh0 + tl.arange(0, BLOCK_NH)
        nh_ok = nh < NH
        d = d_sum(dy_ptr, b * NH + nh.to(tl.int64), out_plane, nh_ok, iy, ix, p_ok, kt_ptr,
                  0, nh, NH, H_OUT, W_OUT, K, STRIDE, PAD, BLOCK_NH, TIH * TIW,
                  ACC)  # fmt: skip
        wv = tl.load(
            wt_ptr + j[:, None] * NH + nh[None, :],
            mask=j_ok[:, None] & nh_ok[None, :],
            other=0.0,
        ).to(ACC)  # [BLOCK_CG, BLOCK_NH]
        acc = tl.dot(wv, d, acc=acc, input_precision=PRECISION, out_dtype=ACC)
    tl.store(
        dx_ptr + (b * CG + j.to(tl.int64))[:, None] * (H.to(tl.int64) * W) + (iy * W + ix)[None, :],
        acc.to(dx_ptr.dtype.element_ty),
        mask=j_ok[:, None] & p_ok[None, :],
    )


def fused_g_wgrad_kernel(
    x_ptr,
    dy_ptr,
    wt_ptr,
    kt_ptr,
    dw_part_ptr,  # [S, CG, NH]      partial dw̃
    dk_part_ptr,  # [S, C_IN, K², NH] partial dT_h(K)
    B,
    C_IN,
    NH,
    H,
    W,
    H_OUT,
    W_OUT,
    TILES_W,  # output tiles per tile row (forward plan)
    TILES,  # output tiles per image
    SPLITS,  # S
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    KK_PAD: tl.constexpr,  # next_pow2(K²)
    G_IN: tl.constexpr,
    G_PAD: tl.constexpr,
    TH: tl.constexpr,
    TW: tl.constexpr,
    ES: tl.constexpr,
    HH: tl.constexpr,
    HW: tl.constexpr,
    HALO_PIX: tl.constexpr,
    OUT_PIX: tl.constexpr,
    ACC: tl.constexpr,
    BLOCK_NH: tl.constexpr,
):
    """One program: ``BLOCK_NH`` output channels, input channel ``c``, split ``s``:
    the items ``(b, tile)`` with ``(b·TILES + tile) % S == s``."""
    pid_nh = tl.program_id(0)
    c = tl.program_id(1)
    split = tl.program_id(2)
    nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)
    nh_ok = nh < NH
    tcol = tl.arange(0, KK_PAD)
    gcol = tl.arange(0, G_PAD)
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    dk_acc = tl.full((BLOCK_NH, KK_PAD), 0.0, ACC)  # dT_h(K)[c, t, nh], transposed
    dw_acc = tl.full((BLOCK_NH, G_PAD), 0.0, ACC)  # dw̃[c·G_IN + g, nh], transposed
    for item in range(split, B * TILES, SPLITS):
        b = (item // TILES).to(tl.int64)
        tile = item % TILES
        ty = tile // TILES_W
        tx = tile % TILES_W
        iy, ix, r_off, r_ok = halo_offsets(ty, tx, H, W, STRIDE, PAD, TH, TW, ES, HH, HW,
                                           HALO_PIX)  # fmt: skip
        x_img = x_ptr + b * C_IN * G_IN * plane
        xt = xt_g(x_img, plane, r_off, r_ok, wt_ptr, c, nh, nh_ok, NH, G_IN, BLOCK_NH,
                  HALO_PIX, ACC)  # fmt: skip
        dy_row = b * NH + nh.to(tl.int64)
        oy0 = ty * TH
        ox0 = tx * TW
        oy1 = tl.minimum(oy0 + TH, H_OUT)
        ox1 = tl.minimum(ox0 + TW, W_OUT)
        dxt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)  # D_c on the halo, from this tile
        for t in range(0, K * K):  # a loop, not unrolled: one tap's loads in flight
            # v[nh, r] = dY[nh, o] for the output pixel o of this tile that halo pixel r
            # feeds through tap t (zero where none): one shifted load serves both sums
            v = dy_tap(dy_ptr, dy_row, out_plane, W_OUT, nh_ok, iy, ix, r_ok, t // K, t % K,
                       oy0, oy1, ox0, ox1, STRIDE, PAD, ACC)  # fmt: skip
            # dT_h(K)[c, t, nh] += Σ_o dY[nh, o] · X̃[nh, c, s·o + t − p]
            s = tl.reduce(xt * v, 1, _SUM)
            dk_acc = tl.where(tcol[None, :] == t, dk_acc + s[:, None], dk_acc)
            # D_c[nh, r] += T_h(K)[c, t, nh] · dY[nh, o(r, t)]
            kv = tl.load(kt_ptr + (c * K * K + t) * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            dxt += kv[:, None] * v
        for g in tl.static_range(G_IN):
            # dw̃[c·G_IN + g, nh] += Σ_r X[c, g, r] · D_c[nh, r]
            j = c * G_IN + g
            xv = tl.load(x_img + j.to(tl.int64) * plane + r_off, mask=r_ok, other=0.0).to(ACC)
            s = tl.reduce(dxt * xv[None, :], 1, _SUM)
            dw_acc = tl.where(gcol[None, :] == g, dw_acc + s[:, None], dw_acc)
    # partial sums of this split: dk_part[split, c, t, nh], dw_part[split, c·G_IN + g, nh]
    dk_off = ((split * C_IN + c) * (K * K) + tcol)[None, :].to(tl.int64) * NH + nh[:, None]
    tl.store(dk_part_ptr + dk_off, dk_acc, mask=nh_ok[:, None] & (tcol < K * K)[None, :])
    dw_off = ((split * C_IN + c) * G_IN + gcol)[None, :].to(tl.int64) * NH + nh[:, None]
    tl.store(dw_part_ptr + dw_off, dw_acc, mask=nh_ok[:, None] & (gcol < G_IN)[None, :])


def fused_gc_dk_kernel(
    x_ptr,
    dy_ptr,
    wt_ptr,
    dk_part_ptr,  # [S, K², NH]
    B,
    CG,
    NH,
    H,
    W,
    H_OUT,
    W_OUT,
    TILES_W,
    TILES,
    SPLITS,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    KK_PAD: tl.constexpr,
    TH: tl.constexpr,
    TW: tl.constexpr,
    ES: tl.constexpr,
    HH: tl.constexpr,
    HW: tl.constexpr,
    HALO_PIX: tl.constexpr,
    OUT_PIX: tl.constexpr,
    USE_DOT: tl.constexpr,
    ACC: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_NH: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """gc ``dT_h(K)``: one program per (``BLOCK_NH`` channels, split); replays X̃ and
    reduces it against shifted dY loads over the halo."""
    pid_nh = tl.program_id(0)
    split = tl.program_id(1)
    nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)
    nh_ok = nh < NH
    tcol = tl.arange(0, KK_PAD)
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    dk_acc = tl.full((BLOCK_NH, KK_PAD), 0.0, ACC)
    for item in range(split, B * TILES, SPLITS):
        b = (item // TILES).to(tl.int64)
        tile = item % TILES
        ty = tile // TILES_W
        tx = tile % TILES_W
        iy, ix, r_off, r_ok = halo_offsets(ty, tx, H, W, STRIDE, PAD, TH, TW, ES, HH, HW,
                                           HALO_PIX)  # fmt: skip
        xt = xt_gc(x_ptr + b * CG * plane, plane, r_off, r_ok, wt_ptr, CG, nh, nh_ok, NH,
                   USE_DOT, BLOCK_NH, BLOCK_K, HALO_PIX, ACC, PRECISION)  # fmt: skip
        dy_row = b * NH + nh.to(tl.int64)
        oy0 = ty * TH
        ox0 = tx * TW
        oy1 = tl.minimum(oy0 + TH, H_OUT)
        ox1 = tl.minimum(ox0 + TW, W_OUT)
        for t in range(0, K * K):  # a loop, not unrolled: one tap's loads in flight
            v = dy_tap(dy_ptr, dy_row, out_plane, W_OUT, nh_ok, iy, ix, r_ok, t // K, t % K,
                       oy0, oy1, ox0, ox1, STRIDE, PAD, ACC)  # fmt: skip
            s = tl.reduce(xt * v, 1, _SUM)
            dk_acc = tl.where(tcol[None, :] == t, dk_acc + s[:, None], dk_acc)
    dk_off = (split * (K * K) + tcol)[None, :].to(tl.int64) * NH + nh[:, None]
    tl.store(dk_part_ptr + dk_off, dk_acc, mask=nh_ok[:, None] & (tcol < K * K)[None, :])


def fused_gc_dw_kernel(
    x_ptr,
    dy_ptr,
    kt_ptr,
    dw_part_ptr,  # [S, CG, NH]
    B,
    CG,
    NH,
    H,
    W,
    H_OUT,
    W_OUT,
    TILES_W,  # input tiles per tile row (input plan)
    TILES,  # input tiles per image
    SPLITS,
    STRIDE: tl.constexpr,
    PAD: tl.constexpr,
    K: tl.constexpr,
    TIH: tl.constexpr,
    TIW: tl.constexpr,
    ACC: tl.constexpr,
    PRECISION: tl.constexpr,
    BLOCK_NH: tl.constexpr,
    BLOCK_CG: tl.constexpr,
):
    """gc ``dw̃``: one program per (``BLOCK_NH`` channels, ``BLOCK_CG`` input channels, split);
    ``D`` over input tiles from shifted loads of dY, contracted with X by tl.dot."""
    pid_nh = tl.program_id(0)
    pid_j = tl.program_id(1)
    split = tl.program_id(2)
    nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)
    nh_ok = nh < NH
    j = pid_j * BLOCK_CG + tl.arange(0, BLOCK_CG)
    j_ok = j < CG
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    acc = tl.full((BLOCK_NH, BLOCK_CG), 0.0, ACC)  # dw̃[j, nh], transposed
    for item in range(split, B * TILES, SPLITS):
        b = (item // TILES).to(tl.int64)
        iy, ix, p_ok = input_tile(item % TILES, TILES_W, H, W, TIH, TIW)
        d = d_sum(dy_ptr, b * NH + nh.to(tl.int64), out_plane, nh_ok, iy, ix, p_ok, kt_ptr,
                  0, nh, NH, H_OUT, W_OUT, K, STRIDE, PAD, BLOCK_NH, TIH * TIW,
                  ACC)  # fmt: skip
        xv = tl.load(
            x_ptr + (b * CG + j.to(tl.int64))[None, :] * plane + (iy * W + ix)[:, None],
            mask=j_ok[None, :] & p_ok[:, None],
            other=0.0,
        ).to(ACC)  # [TIH·TIW, BLOCK_CG]: X[j, tile] transposed
        acc = tl.dot(d, xv, acc=acc, input_precision=PRECISION, out_dtype=ACC)
    dw_off = (split * CG + j)[None, :].to(tl.int64) * NH + nh[:, None]
    tl.store(dw_part_ptr + dw_off, acc, mask=nh_ok[:, None] & j_ok[None, :])
