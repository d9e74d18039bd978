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
  tile: X̃ on the halo (as the forward), ``dK`` by ``K²`` gathers out of X̃, and
  ``D`` on the halo by ``K²`` gathers out of the dY tile, contracted with X.
* gc: ``fused_gc_dk_kernel`` replays X̃ (tl.dot over all (c, g)) for dT_h(K);
  ``fused_gc_dw_kernel`` is direct (``D`` from shifted loads, tl.dot with X).

The weight gradients reduce over the batch and all pixels. Programs are split
``S`` ways over the ``(b, tile)`` items; each writes its own partial sums
(``[S, …]``, accumulation dtype) and the launcher sums them: deterministic,
no atomics, and safe to re-run (the autotuner does).
"""

from __future__ import annotations

import triton.language as tl

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
    p = tl.arange(0, TIH * TIW)  # input tile lanes, row-major
    iy = (pid_tile // TILES_W) * TIH + p // TIW
    ix = (pid_tile % TILES_W) * TIW + p % TIW
    p_ok = (iy < H) & (ix < W)
    gi = tl.arange(0, G_PAD)
    out_plane = H_OUT.to(tl.int64) * W_OUT
    dy_base = dy_ptr + b * NH * out_plane
    acc = tl.full((G_PAD, TIH * TIW), 0.0, ACC)  # dX[c, g, tile]
    for nh0 in range(0, NH, BLOCK_NH):
        nh = nh0 + tl.arange(0, BLOCK_NH)
        nh_ok = nh < NH
        d = tl.full((BLOCK_NH, TIH * TIW), 0.0, ACC)  # D_c[nh, tile]
        for t in tl.static_range(K * K):
            sy = iy + PAD - t // K  # = STRIDE·oy when input pixel i feeds output oy via tap t
            sx = ix + PAD - t % K
            ok = p_ok & (sy >= 0) & (sx >= 0) & (sy % STRIDE == 0) & (sx % STRIDE == 0)
            oy = sy // STRIDE
            ox = sx // STRIDE
            ok = ok & (oy < H_OUT) & (ox < W_OUT)
            v = tl.load(
                dy_base + nh.to(tl.int64)[:, None] * out_plane + (oy * W_OUT + ox)[None, :],
                mask=nh_ok[:, None] & ok[None, :],
                other=0.0,
            ).to(ACC)
            kv = tl.load(kt_ptr + (c * K * K + t) * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            d += kv[:, None] * v
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
    p = tl.arange(0, TIH * TIW)
    iy = (pid_tile // TILES_W) * TIH + p // TIW
    ix = (pid_tile % TILES_W) * TIW + p % TIW
    p_ok = (iy < H) & (ix < W)
    j = pid_j * BLOCK_CG + tl.arange(0, BLOCK_CG)
    j_ok = j < CG
    out_plane = H_OUT.to(tl.int64) * W_OUT
    dy_base = dy_ptr + b * NH * out_plane
    acc = tl.full((BLOCK_CG, TIH * TIW), 0.0, ACC)
    for nh0 in range(0, NH, BLOCK_NH):
        nh = nh0 + tl.arange(0, BLOCK_NH)
        nh_ok = nh < NH
        d = tl.full((BLOCK_NH, TIH * TIW), 0.0, ACC)  # D[nh, tile]
        for t in tl.static_range(K * K):
            sy = iy + PAD - t // K
            sx = ix + PAD - t % K
            ok = p_ok & (sy >= 0) & (sx >= 0) & (sy % STRIDE == 0) & (sx % STRIDE == 0)
            oy = sy // STRIDE
            ox = sx // STRIDE
            ok = ok & (oy < H_OUT) & (ox < W_OUT)
            v = tl.load(
                dy_base + nh.to(tl.int64)[:, None] * out_plane + (oy * W_OUT + ox)[None, :],
                mask=nh_ok[:, None] & ok[None, :],
                other=0.0,
            ).to(ACC)
            kv = tl.load(kt_ptr + t * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            d += kv[:, None] * v
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
    # halo lanes (index conventions as in the forward kernel)
    r = tl.arange(0, HALO_PIX)
    ry = r // HW
    rx = r % HW
    r_in = r < HH * HW
    # tile lanes
    q = tl.arange(0, OUT_PIX)
    qc = tl.minimum(q, TH * TW - 1)
    qy = qc // TW
    qx = qc % TW
    tap0 = (qy * ES) * HW + qx * ES
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
        iy = ty * (TH * STRIDE) - PAD + (ry // ES) * STRIDE + ry % ES
        ix = tx * (TW * STRIDE) - PAD + (rx // ES) * STRIDE + rx % ES
        r_ok = r_in & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        r_off = iy * W + ix
        oy = ty * TH + qy
        ox = tx * TW + qx
        q_ok = (q < TH * TW) & (oy < H_OUT) & (ox < W_OUT)
        x_base = x_ptr + (b * C_IN + c) * G_IN * plane
        # replay X̃[nh, c] on the halo
        xt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)
        for g in tl.static_range(G_IN):
            xv = tl.load(x_base + g * plane + r_off, mask=r_ok, other=0.0).to(ACC)
            wv = tl.load(wt_ptr + (c * G_IN + g) * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            xt += wv[:, None] * xv[None, :]
        dyt = tl.load(
            dy_ptr + (b * NH + nh.to(tl.int64))[:, None] * out_plane + (oy * W_OUT + ox)[None, :],
            mask=nh_ok[:, None] & q_ok[None, :],
            other=0.0,
        ).to(ACC)  # [BLOCK_NH, OUT_PIX], zero off the image
        dxt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)  # D_c on the halo, from this tile
        for t in tl.static_range(K * K):
            # dT_h(K)[c, t, nh] += Σ_q dY[nh, q] · X̃[nh, tap0(q) + t]
            idx = tl.broadcast_to((tap0 + (t // K) * HW + t % K)[None, :], (BLOCK_NH, OUT_PIX))
            s = tl.reduce(dyt * tl.gather(xt, idx, axis=1), 1, _SUM)
            dk_acc = tl.where(tcol[None, :] == t, dk_acc + s[:, None], dk_acc)
            # D_c[nh, r] += T_h(K)[c, t, nh] · dY[nh, q] for the q with qy·ES + dy = ry (ditto x)
            a = ry - t // K
            e = rx - t % K
            ok = r_in & (a >= 0) & (e >= 0) & (a % ES == 0) & (e % ES == 0)
            ok = ok & (a // ES < TH) & (e // ES < TW)
            qi = tl.where(ok, (a // ES) * TW + e // ES, 0)
            v = tl.gather(dyt, tl.broadcast_to(qi[None, :], (BLOCK_NH, HALO_PIX)), axis=1)
            kv = tl.load(kt_ptr + (c * K * K + t) * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            dxt += tl.where(ok[None, :], kv[:, None] * v, 0.0)
        for g in tl.static_range(G_IN):
            # dw̃[c·G_IN + g, nh] += Σ_r X[c, g, r] · D_c[nh, r]
            xv = tl.load(x_base + g * plane + r_off, mask=r_ok, other=0.0).to(ACC)
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
    """gc ``dT_h(K)``: one program per (``BLOCK_NH`` channels, split); replays X̃."""
    pid_nh = tl.program_id(0)
    split = tl.program_id(1)
    nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)
    nh_ok = nh < NH
    r = tl.arange(0, HALO_PIX)
    ry = r // HW
    rx = r % HW
    r_in = r < HH * HW
    q = tl.arange(0, OUT_PIX)
    qc = tl.minimum(q, TH * TW - 1)
    qy = qc // TW
    qx = qc % TW
    tap0 = (qy * ES) * HW + qx * ES
    tcol = tl.arange(0, KK_PAD)
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    dk_acc = tl.full((BLOCK_NH, KK_PAD), 0.0, ACC)
    for item in range(split, B * TILES, SPLITS):
        b = (item // TILES).to(tl.int64)
        tile = item % TILES
        ty = tile // TILES_W
        tx = tile % TILES_W
        iy = ty * (TH * STRIDE) - PAD + (ry // ES) * STRIDE + ry % ES
        ix = tx * (TW * STRIDE) - PAD + (rx // ES) * STRIDE + rx % ES
        r_ok = r_in & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
        r_off = iy * W + ix
        oy = ty * TH + qy
        ox = tx * TW + qx
        q_ok = (q < TH * TW) & (oy < H_OUT) & (ox < W_OUT)
        x_base = x_ptr + b * CG * plane
        xt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)  # X̃[nh] on the halo
        if USE_DOT:
            for j0 in range(0, CG, BLOCK_K):
                j = j0 + tl.arange(0, BLOCK_K)
                j_ok = j < CG
                xv = tl.load(
                    x_base + j.to(tl.int64)[:, None] * plane + r_off[None, :],
                    mask=j_ok[:, None] & r_ok[None, :],
                    other=0.0,
                ).to(ACC)
                wv = tl.load(
                    wt_ptr + j[None, :] * NH + nh[:, None],
                    mask=j_ok[None, :] & nh_ok[:, None],
                    other=0.0,
                ).to(ACC)
                xt = tl.dot(wv, xv, acc=xt, input_precision=PRECISION, out_dtype=ACC)
        else:
            for j in range(0, CG):
                xv = tl.load(x_base + j * plane + r_off, mask=r_ok, other=0.0).to(ACC)
                wv = tl.load(wt_ptr + j * NH + nh, mask=nh_ok, other=0.0).to(ACC)
                xt += wv[:, None] * xv[None, :]
        dyt = tl.load(
            dy_ptr + (b * NH + nh.to(tl.int64))[:, None] * out_plane + (oy * W_OUT + ox)[None, :],
            mask=nh_ok[:, None] & q_ok[None, :],
            other=0.0,
        ).to(ACC)
        for t in tl.static_range(K * K):
            idx = tl.broadcast_to((tap0 + (t // K) * HW + t % K)[None, :], (BLOCK_NH, OUT_PIX))
            s = tl.reduce(dyt * tl.gather(xt, idx, axis=1), 1, _SUM)
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
    p = tl.arange(0, TIH * TIW)
    kvs_base = kt_ptr + nh
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    acc = tl.full((BLOCK_NH, BLOCK_CG), 0.0, ACC)  # dw̃[j, nh], transposed
    for item in range(split, B * TILES, SPLITS):
        b = (item // TILES).to(tl.int64)
        tile = item % TILES
        iy = (tile // TILES_W) * TIH + p // TIW
        ix = (tile % TILES_W) * TIW + p % TIW
        p_ok = (iy < H) & (ix < W)
        d = tl.full((BLOCK_NH, TIH * TIW), 0.0, ACC)  # D[nh, tile]
        for t in tl.static_range(K * K):
            sy = iy + PAD - t // K
            sx = ix + PAD - t % K
            ok = p_ok & (sy >= 0) & (sx >= 0) & (sy % STRIDE == 0) & (sx % STRIDE == 0)
            oy = sy // STRIDE
            ox = sx // STRIDE
            ok = ok & (oy < H_OUT) & (ox < W_OUT)
            v = tl.load(
                dy_ptr
                + (b * NH + nh.to(tl.int64))[:, None] * out_plane
                + (oy * W_OUT + ox)[None, :],
                mask=nh_ok[:, None] & ok[None, :],
                other=0.0,
            ).to(ACC)
            kv = tl.load(kvs_base + t * NH, mask=nh_ok, other=0.0).to(ACC)
            d += kv[:, None] * v
        xv = tl.load(
            x_ptr + (b * CG + j.to(tl.int64))[None, :] * plane + (iy * W + ix)[:, None],
            mask=j_ok[None, :] & p_ok[:, None],
            other=0.0,
        ).to(ACC)  # [TIH·TIW, BLOCK_CG]: X[j, tile] transposed
        acc = tl.dot(d, xv, acc=acc, input_precision=PRECISION, out_dtype=ACC)
    dw_off = (split * CG + j)[None, :].to(tl.int64) * NH + nh[:, None]
    tl.store(dw_part_ptr + dw_off, acc, mask=nh_ok[:, None] & j_ok[None, :])
