"""Helpers shared by the fused kernels: tile and halo indexing, the X̃ replay, the
per-program X̃ staging with its shifted tap loads, and the shifted dY loads.

Plain Python, like the kernels: :func:`sepgconv.fused.launch.bind` decorates each
helper with ``triton.jit`` in the kernel's mode (compiled or interpreted) and binds
the decorated helpers into a copy of the kernel's globals, so a kernel calls them by
name in both modes (a compiled kernel can only call ``@triton.jit`` functions, and
the interpreter refuses ``@triton.jit`` functions decorated in the other mode).
Every name in :data:`__all__` is such a helper; kernels import them by name.

Index conventions (see :mod:`sepgconv.fused.tiling`): an output tile ``(ty, tx)``
of ``TH × TW`` pixels reads a halo of ``HH × HW`` input pixels, flattened row-major
into ``HALO_PIX`` lanes ``r = ry·HW + rx``; tile lane ``q = qy·TW + qx`` with tap
``(dy, dx)`` reads halo lane ``tap0(q) + dy·HW + dx``, ``tap0(q) = qy·ES·HW + qx·ES``.
"""

from __future__ import annotations

import triton.language as tl

__all__ = [
    "tile_lanes",
    "halo_offsets",
    "tile_offsets",
    "input_tile",
    "xt_g",
    "xt_gc",
    "stage",
    "tap_sum",
    "dy_tap",
    "d_sum",
]


def tile_lanes(OUT_PIX: tl.constexpr, TH: tl.constexpr, TW: tl.constexpr,
               ES: tl.constexpr, HW: tl.constexpr):  # fmt: skip
    """Tile lanes ``q`` and ``(qy, qx)``; lanes past ``TH·TW`` are clamped onto the last
    pixel (a valid halo index) and must be masked by the caller. Also ``tap0(q)``."""
    q = tl.arange(0, OUT_PIX)
    qc = tl.minimum(q, TH * TW - 1)
    qy = qc // TW
    qx = qc % TW
    return q, qy, qx, (qy * ES) * HW + qx * ES


def halo_offsets(ty, tx, H, W, STRIDE: tl.constexpr, PAD: tl.constexpr, TH: tl.constexpr,
                 TW: tl.constexpr, ES: tl.constexpr, HH: tl.constexpr, HW: tl.constexpr,
                 HALO_PIX: tl.constexpr):  # fmt: skip
    """The halo of tile ``(ty, tx)``: input row and column of each lane, its in-plane
    offset (int32: the launcher checks ``H·W < 2³¹``) and whether it lies in the image."""
    r = tl.arange(0, HALO_PIX)
    ry = r // HW
    rx = r % HW
    iy = ty * (TH * STRIDE) - PAD + (ry // ES) * STRIDE + ry % ES
    ix = tx * (TW * STRIDE) - PAD + (rx // ES) * STRIDE + rx % ES
    r_ok = (r < HH * HW) & (iy >= 0) & (iy < H) & (ix >= 0) & (ix < W)
    return iy, ix, iy * W + ix, r_ok


def tile_offsets(ty, tx, q, qy, qx, H_OUT, W_OUT, TH: tl.constexpr, TW: tl.constexpr):
    """In-plane output offsets of the tile's lanes and their mask."""
    oy = ty * TH + qy
    ox = tx * TW + qx
    q_ok = (q < TH * TW) & (oy < H_OUT) & (ox < W_OUT)
    return oy * W_OUT + ox, q_ok


def input_tile(pid_tile, TILES_W, H, W, TIH: tl.constexpr, TIW: tl.constexpr):
    """Input tile of the direct backward kernels: row, column and mask of each lane."""
    p = tl.arange(0, TIH * TIW)
    iy = (pid_tile // TILES_W) * TIH + p // TIW
    ix = (pid_tile % TILES_W) * TIW + p % TIW
    return iy, ix, (iy < H) & (ix < W)


def xt_g(x_base, plane, r_off, r_ok, wt_ptr, c, nh, nh_ok, NH, G_IN: tl.constexpr,
         BLOCK_NH: tl.constexpr, HALO_PIX: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """g: ``X̃[nh, c, r] = Σ_g w̃[c·G_IN + g, nh]·X[c·G_IN + g, r]`` on the halo,
    ``[BLOCK_NH, HALO_PIX]`` (``x_base``: the image's first channel)."""
    xt = tl.full((BLOCK_NH, HALO_PIX), 0.0, ACC)
    for g in tl.static_range(G_IN):
        j = c * G_IN + g
        xv = tl.load(x_base + j.to(tl.int64) * plane + r_off, mask=r_ok, other=0.0)
        wv = tl.load(wt_ptr + j * NH + nh, mask=nh_ok, other=0.0)
        xt += wv.to(ACC)[:, None] * xv.to(ACC)[None, :]
    return xt


def xt_gc(x_base, plane, r_off, r_ok, wt_ptr, CG, nh, nh_ok, NH, USE_DOT: tl.constexpr,
          BLOCK_NH: tl.constexpr, BLOCK_K: tl.constexpr, HALO_PIX: tl.constexpr,
          ACC: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """gc: ``X̃[nh, r] = Σ_j w̃[j, nh]·X[j, r]`` over every ``j = (c, g)`` on the halo;
    ``tl.dot`` in ``BLOCK_K`` chunks when ``USE_DOT`` (CG ≥ 16), FMAs otherwise."""
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
            xv = tl.load(x_base + j * plane + r_off, mask=r_ok, other=0.0).to(ACC)  # int64 plane
            wv = tl.load(wt_ptr + j * NH + nh, mask=nh_ok, other=0.0).to(ACC)
            xt += wv[:, None] * xv[None, :]
    return xt


def stage(slot_ptr, xt, BLOCK_NH: tl.constexpr, HALO_PIX: tl.constexpr):
    """Write the X̃ halo tile ``[BLOCK_NH, HALO_PIX]`` to this program's scratch slot.

    The first barrier keeps the write from overtaking threads still reading the slot's
    previous tile (write after read); the second makes the whole tile visible to every
    thread of the program before any shifted load (read after write: ``bar.sync``
    orders global memory within a block, as ``__syncthreads`` does). Unmasked: the slot
    belongs to this program, and masked lanes of ``xt`` hold zeros.
    """
    lane = tl.arange(0, BLOCK_NH)[:, None] * HALO_PIX + tl.arange(0, HALO_PIX)[None, :]
    tl.debug_barrier()
    tl.store(slot_ptr + lane, xt)
    tl.debug_barrier()


def tap_sum(acc, slot_ptr, kt_ptr, kt_row, nh, nh_ok, NH, tap0, K: tl.constexpr,
            HW: tl.constexpr, BLOCK_NH: tl.constexpr, HALO_PIX: tl.constexpr,
            ACC: tl.constexpr, UNROLL_DX: tl.constexpr):  # fmt: skip
    """``acc[nh, q] += Σ_t kt[kt_row + t, nh]·X̃[nh, tap0(q) + dy·HW + dx]``: each tap one
    plain shifted load ``[BLOCK_NH, OUT_PIX]`` from the staged slot (L1 hits). Every
    index is inside the slot: ``tap0(q) + dy·HW + dx < HH·HW ≤ HALO_PIX``.

    The tap rows are a loop (not unrolled: it bounds the loads in flight); the columns
    are unrolled when ``UNROLL_DX`` (the gc forward: spill-free either way, and constant
    offsets fold into the loads) and a loop otherwise (the g forward, whose X̃ is formed
    inside the channel loop: unrolled columns spilled at k = 7 for sm_90)."""
    row = tl.arange(0, BLOCK_NH)[:, None] * HALO_PIX
    for dy in range(0, K):
        if UNROLL_DX:
            for dx in tl.static_range(K):
                v = tl.load(slot_ptr + row + (tap0 + dy * HW + dx)[None, :])
                kv = tl.load(kt_ptr + (kt_row + dy * K + dx) * NH + nh, mask=nh_ok, other=0.0)
                acc += kv.to(ACC)[:, None] * v
        else:
            for dx in range(0, K):
                v = tl.load(slot_ptr + row + (tap0 + dy * HW + dx)[None, :])
                kv = tl.load(kt_ptr + (kt_row + dy * K + dx) * NH + nh, mask=nh_ok, other=0.0)
                acc += kv.to(ACC)[:, None] * v
    return acc


def dy_tap(dy_ptr, dy_row, out_plane, W_OUT, nh_ok, iy, ix, ok, DY, DX, OY0, OY1, OX0, OX1,
           STRIDE: tl.constexpr, PAD: tl.constexpr,
           ACC: tl.constexpr):  # fmt: skip
    """``dY[nh, o]`` for the output pixel ``o`` that input pixel ``(iy, ix)`` feeds through
    tap ``(DY, DX)`` (``STRIDE·oy = iy + PAD − DY`` when that divides; likewise x), zero
    where there is none or ``o`` lies outside ``[OY0, OY1) × [OX0, OX1)`` (the image, or
    one output tile). A masked shifted load ``[BLOCK_NH, lanes]`` (``dy_row``: int64
    ``b·NH + nh``)."""
    sy = iy + PAD - DY
    sx = ix + PAD - DX
    ok = ok & (sy >= 0) & (sx >= 0) & (sy % STRIDE == 0) & (sx % STRIDE == 0)
    oy = sy // STRIDE
    ox = sx // STRIDE
    ok = ok & (oy >= OY0) & (oy < OY1) & (ox >= OX0) & (ox < OX1)
    return tl.load(
        dy_ptr + dy_row[:, None] * out_plane + (oy * W_OUT + ox)[None, :],
        mask=nh_ok[:, None] & ok[None, :],
        other=0.0,
    ).to(ACC)


def d_sum(dy_ptr, dy_row, out_plane, nh_ok, iy, ix, ok, kt_ptr, kt_row, nh, NH, H_OUT, W_OUT,
          K: tl.constexpr, STRIDE: tl.constexpr, PAD: tl.constexpr, BLOCK_NH: tl.constexpr,
          LANES: tl.constexpr, ACC: tl.constexpr):  # fmt: skip
    """``D[nh, i] = Σ_t kt[kt_row + t, nh]·dY[nh, o(i, t)]`` (the transposed depthwise
    conv) on ``LANES`` input pixels: ``K²`` shifted dY loads."""
    d = tl.full((BLOCK_NH, LANES), 0.0, ACC)
    for dy in range(0, K):  # a loop, not unrolled: bounds the loads in flight to one tap row
        for dx in tl.static_range(K):
            v = dy_tap(dy_ptr, dy_row, out_plane, W_OUT, nh_ok, iy, ix, ok, dy, dx,
                       0, H_OUT, 0, W_OUT, STRIDE, PAD, ACC)  # fmt: skip
            kv = tl.load(kt_ptr + (kt_row + dy * K + dx) * NH + nh, mask=nh_ok, other=0.0)
            d += kv.to(ACC)[:, None] * v
    return d
