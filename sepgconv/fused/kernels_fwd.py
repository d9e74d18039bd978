"""The fused forward kernel (Triton), shared by g and gc. Imported only when a fused
layer runs. The indexing, the X̃ replay and the tap loop it shares with the backward
kernels live in :mod:`sepgconv.fused.common`.

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
* ``xt_scratch`` ``[programs, BLOCK_NH, HALO_PIX]`` (accumulation dtype): one X̃ halo
  slot per program of the persistent grid (``launch.forward_scratch_elements``)

Halo and tile index conventions: see :mod:`sepgconv.fused.tiling`.

The kernels use Triton builtins only (``tl.full``, not the ``@jit``-decorated
``tl.zeros``; see ``kernels_bwd._SUM``), so they run interpreted even when
Triton was imported before ``TRITON_INTERPRET=1`` was set.
"""

from __future__ import annotations

import triton.language as tl

# helpers: plain functions here, decorated per mode and bound by ``launch.bind``
from sepgconv.fused.common import (
    halo_offsets,
    stage,
    tap_sum,
    tile_lanes,
    tile_offsets,
    xt_g,
    xt_gc,
)


def fused_gconv_fwd_kernel(
    x_ptr,
    wt_ptr,
    kt_ptr,
    bias_ptr,
    y_ptr,
    xt_scratch_ptr,  # [programs, BLOCK_NH, HALO_PIX] accumulation dtype: X̃ staging
    counter_ptr,  # int32 [1], zero at launch: the next unclaimed item
    C_IN,  # input channels (not counting G_in)
    NH,  # output channels × output group elements
    H,
    W,
    H_OUT,
    W_OUT,
    TILES_W,  # output tiles per tile row
    TILES,  # output tiles per image
    B,
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
    BLOCK_NH: tl.constexpr,  # output channels (n, h) per item
    BLOCK_K: tl.constexpr,  # gc: input channels (c, g) per tl.dot step
):
    """A persistent grid with a work queue: each program claims the next item of
    ``(b, output tile, BLOCK_NH output channels)`` with an atomic add until none is left
    (items in order, channel block fastest: programs running together share the tile's X
    halo in L2; programs that start late, in a second wave, find the queue drained
    instead of holding a fixed share of the items).

    Per item, g: for each input channel c, X̃[nh, c] on the halo ``[BLOCK_NH, HALO_PIX]``
    (``G_IN`` FMAs per value), staged once in the program's scratch slot, then ``K²``
    taps, each a plain shifted load of ``[BLOCK_NH, OUT_PIX]`` from the slot times
    ``T_h(K)[tap]``. gc: X̃ summed over every (c, g) first (tl.dot), staged, taps once.
    """
    pid = tl.program_id(0)
    slot = xt_scratch_ptr + pid.to(tl.int64) * (BLOCK_NH * HALO_PIX)
    nh_blocks = (NH + BLOCK_NH - 1) // BLOCK_NH
    q, qy, qx, tap0 = tile_lanes(OUT_PIX, TH, TW, ES, HW)
    plane = H.to(tl.int64) * W  # int64: channel × plane products pass 2³¹
    out_plane = H_OUT.to(tl.int64) * W_OUT
    CG = C_IN * G_IN
    items = B * TILES * nh_blocks
    item = tl.atomic_add(counter_ptr, 1)  # one atomic per program and item
    while item < items:
        pid_nh = item % nh_blocks
        tile = (item // nh_blocks) % TILES
        b = (item // (nh_blocks * TILES)).to(tl.int64)
        ty = tile // TILES_W
        tx = tile % TILES_W
        nh = pid_nh * BLOCK_NH + tl.arange(0, BLOCK_NH)  # [BLOCK_NH] output channels
        nh_ok = nh < NH
        _, _, r_off, r_ok = halo_offsets(ty, tx, H, W, STRIDE, PAD, TH, TW, ES, HH, HW, HALO_PIX)
        y_pix, q_ok = tile_offsets(ty, tx, q, qy, qx, H_OUT, W_OUT, TH, TW)
        x_base = x_ptr + b * CG * plane  # int64: b is int64
        acc = tl.full((BLOCK_NH, OUT_PIX), 0.0, ACC)
        if IS_GC:
            xt = xt_gc(x_base, plane, r_off, r_ok, wt_ptr, CG, nh, nh_ok, NH, USE_DOT,
                       BLOCK_NH, BLOCK_K, HALO_PIX, ACC, PRECISION)  # fmt: skip
            stage(slot, xt, BLOCK_NH, HALO_PIX)
            acc = tap_sum(acc, slot, kt_ptr, 0, nh, nh_ok, NH, tap0, K, HW, BLOCK_NH,
                          HALO_PIX, ACC, True)  # fmt: skip
        else:
            for c in range(0, C_IN):
                xt = xt_g(x_base, plane, r_off, r_ok, wt_ptr, c, nh, nh_ok, NH, G_IN,
                          BLOCK_NH, HALO_PIX, ACC)  # fmt: skip
                stage(slot, xt, BLOCK_NH, HALO_PIX)
                # Y[nh] += Σ_tap T_h(K[n, c])[tap] · X̃[nh, c, tile pixel + tap]
                acc = tap_sum(acc, slot, kt_ptr, c * K * K, nh, nh_ok, NH, tap0, K, HW,
                              BLOCK_NH, HALO_PIX, ACC, False)  # fmt: skip
        if HAS_BIAS:
            acc += tl.load(bias_ptr + nh, mask=nh_ok, other=0.0).to(ACC)[:, None]
        y_off = (b * NH + nh.to(tl.int64))[:, None] * out_plane + y_pix[None, :]
        tl.store(
            y_ptr + y_off,
            acc.to(y_ptr.dtype.element_ty),
            mask=nh_ok[:, None] & q_ok[None, :],
        )
        item = tl.atomic_add(counter_ptr, 1)
