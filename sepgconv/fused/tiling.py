"""Tile plans and the MAC / memory accounting of the fused kernels (pure Python, no Triton).

The forward kernel (and the weight-gradient kernels, which replay it) cut the
*output* grid into ``TH × TW`` tiles. A tile reads an input window (the tile
plus its halo) of ``HH × HW`` pixels, where, with ``ES = min(stride, k)``::

    HH = (TH − 1)·ES + k,      HW = (TW − 1)·ES + k

Halo row ``ry`` (``0 ≤ ry < HH``) is input row
``oy0·stride − padding + (ry // ES)·stride + ry % ES`` (``oy0``: the tile's
first output row), so output row ``oy0 + qy`` with tap row ``dy`` reads halo
row ``qy·ES + dy``. For ``stride ≤ k`` that is the plain contiguous window;
for ``stride > k`` (e.g. ``k = 1``, stride 2) the rows no tap reads are skipped.
Columns likewise. Triton blocks are powers of two, so the halo is flattened
into ``HALO_PIX = next_pow2(HH·HW)`` lanes and the tile into
``OUT_PIX = next_pow2(TH·TW)`` lanes (the extra lanes are masked).

The plan is a deterministic function of the layer shape (never of the device
or of the autotuner, which only picks the channel block and warps), so
:func:`fused_macs` is exact on every device.

The direct kernels of the backward (``dX``, and ``dw`` of gc) need no halo and
tile the *input* grid with power-of-two ``TIH × TIW`` tiles (:func:`input_plan`).
"""

from __future__ import annotations

import dataclasses
import functools

from sepgconv.counting import LayerShape

#: largest flattened halo (lanes) a forward tile may use: bounds the registers of
#: the X̃ tile (``BLOCK_NH × HALO_PIX`` values) and the forward's scratch slot
#: (``BLOCK_NH × HALO_PIX`` per program). With the taps as shifted loads of the staged
#: tile (no ``tl.gather``: a gather out of a 256-lane register tile spilled) 256 lanes
#: compile without spills for sm_90 (``python -m sepgconv.fused.compile_check``).
MAX_HALO_PIX = 256
#: largest output tile side considered
MAX_TILE_SIDE = 32
#: lanes of an input tile of the direct backward kernels
INPUT_TILE_PIX = 64


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """One output tiling (see the module docstring for the index conventions)."""

    k: int
    stride: int
    padding: int
    h_in: int
    w_in: int
    h_out: int
    w_out: int
    th: int  # output tile rows
    tw: int  # output tile columns
    es: int  # halo step between consecutive output pixels: min(stride, k)
    hh: int  # halo rows:    (th − 1)·es + k
    hw: int  # halo columns: (tw − 1)·es + k
    halo_pix: int  # next_pow2(hh·hw), at least 16 (a tl.dot operand dimension)
    out_pix: int  # next_pow2(th·tw), at least 16

    @property
    def tiles_h(self) -> int:
        return cdiv(self.h_out, self.th)

    @property
    def tiles_w(self) -> int:
        return cdiv(self.w_out, self.tw)

    @property
    def tiles(self) -> int:
        return self.tiles_h * self.tiles_w

    def _halo_in_image(self, tiles: int, t: int, size_in: int) -> int:
        # input rows (or columns) of the halo that lie inside the image, summed over tiles
        total = 0
        span = (t - 1) * self.es + self.k
        for i in range(tiles):
            first = i * t * self.stride - self.padding
            for r in range(span):
                pos = first + (r // self.es) * self.stride + r % self.es
                total += 0 <= pos < size_in
        return total

    @functools.cached_property
    def halo_pixels_in_image(self) -> int:
        """Σ over tiles of the halo pixels inside the input image: where X̃ is formed.

        Halo lanes in the zero padding (or past the image) are masked and not
        counted, as a convolution's MAC count ignores its padding.
        """
        rows = self._halo_in_image(self.tiles_h, self.th, self.h_in)
        cols = self._halo_in_image(self.tiles_w, self.tw, self.w_in)
        return rows * cols


@functools.lru_cache(maxsize=4096)
def plan(
    k: int, stride: int, padding: int, h_in: int, w_in: int, pointwise_per_pixel: int
) -> TilePlan:
    """The output tiling of one layer call.

    Picks the tile that minimises a per-image cost, preferring larger tiles on
    ties. ``pointwise_per_pixel`` is ``G_in`` for g and ``C_in·G_in`` for gc::

        cost = tiles · ((pointwise_per_pixel + 1) · HALO_PIX + 2 · k² · OUT_PIX)

    the pointwise lanes on the halo plus the one store that stages each X̃ value,
    and per tap and tile lane one shifted load and one FMA. A model of the
    instruction mix of the compiled forward, not of timings (nothing here has been
    timed on a GPU); it favours the largest tiles the halo cap allows, which
    minimises the halo recompute.
    """
    h_out = (h_in + 2 * padding - k) // stride + 1
    w_out = (w_in + 2 * padding - k) // stride + 1
    if h_out < 1 or w_out < 1:
        raise ValueError(f"input {h_in}×{w_in} with padding {padding} is smaller than k={k}")
    es = min(stride, k)
    max_halo = max(MAX_HALO_PIX, next_pow2(k * k))
    best = None
    for th in range(1, min(h_out, MAX_TILE_SIDE) + 1):
        hh = (th - 1) * es + k
        for tw in range(1, min(w_out, MAX_TILE_SIDE) + 1):
            hw = (tw - 1) * es + k
            halo = max(16, next_pow2(hh * hw))
            if halo > max_halo:
                break
            out = max(16, next_pow2(th * tw))
            tiles = cdiv(h_out, th) * cdiv(w_out, tw)
            cost = tiles * ((pointwise_per_pixel + 1) * halo + 2 * k * k * out)
            key = (cost, -th * tw, -tw)
            if best is None or key < best[0]:
                best = (key, th, tw, hh, hw, halo, out)
    _, th, tw, hh, hw, halo, out = best
    return TilePlan(k, stride, padding, h_in, w_in, h_out, w_out, th, tw, es, hh, hw, halo, out)


def _pointwise_per_pixel(variant: str, c_in: int, g_in: int) -> int:
    return g_in if variant == "g" else c_in * g_in


def plan_for(s: LayerShape, variant: str) -> TilePlan:
    """The plan the fused layer uses for ``s`` (``variant``: ``"g"`` or ``"gc"``)."""
    per_pixel = _pointwise_per_pixel(variant, s.c_in, s.g_in)
    return plan(s.k, s.stride, s.padding, s.h_in, s.w_in, per_pixel)


@functools.lru_cache(maxsize=1024)
def input_plan(h: int, w: int) -> tuple[int, int]:
    """``(TIH, TIW)``: the power-of-two input tile of the direct backward kernels."""
    tiw = min(next_pow2(w), 32)
    tih = min(next_pow2(h), max(1, INPUT_TILE_PIX // tiw))
    return max(tih, cdiv(16, tiw)), tiw  # at least 16 lanes: a tl.dot operand dimension


# ---------------------------------------------------------------------- #
# accounting
# ---------------------------------------------------------------------- #
def macs_from_sizes(variant: str, batch, c_in, g_in, nh, k, h_in, w_in, stride, padding,
                    path: str = "fwd") -> int:  # fmt: skip
    """MACs the fused forward executes on real data (masked lanes not counted).

    ``path="g_dot"`` (the tl.dot g forward, :func:`sepgconv.fused._runtime.forward_path`):
    the full GConv's count, ``B·NH·C_in·G_in·k²·H_out·W_out`` (a dense conv's, padding
    taps included, as fvcore counts a convolution). Otherwise, the staged kernel's:

    g:  ``B·NH·C_in·(G_in·P + k²·H_out·W_out)``
    gc: ``B·NH·(C_in·G_in·P + k²·H_out·W_out)``

    with ``NH = C_out·G_out`` and ``P`` = :attr:`TilePlan.halo_pixels_in_image`:
    X̃ is formed once per halo pixel per tile, so neighbouring tiles recompute
    their shared halo (and input pixels no tap reads are skipped). With one tile
    over the map (small maps) ``P = H·W`` at 'same' padding, stride 1, and the
    count is the §3.4 one.
    """
    pl = plan(k, stride, padding, h_in, w_in, _pointwise_per_pixel(variant, c_in, g_in))
    if path == "g_dot":
        return batch * nh * c_in * g_in * k * k * pl.h_out * pl.w_out
    p = pl.halo_pixels_in_image
    taps = k * k * pl.h_out * pl.w_out
    per_channel = c_in * (g_in * p + taps) if variant == "g" else c_in * g_in * p + taps
    return batch * nh * per_channel


def fused_macs(s: LayerShape, variant: str, path: str = "fwd") -> int:
    """:func:`macs_from_sizes` for a :class:`LayerShape`."""
    return macs_from_sizes(
        variant, s.batch, s.c_in, s.g_in, s.c_out * s.g_out, s.k, s.h_in, s.w_in,
        s.stride, s.padding, path,
    )  # fmt: skip


def fused_intermediate_elements(s: LayerShape, variant: str) -> dict[str, int]:
    """Forward intermediates: the derived weights w̃ and T_h(K); no activations."""
    nh = s.c_out * s.g_out
    if variant == "g":
        weights = nh * s.c_in * (s.g_in + s.k**2)
    else:
        weights = nh * (s.c_in * s.g_in + s.k**2)
    return {"filter": weights, "activations": 0}


def backward_workspace_elements(s: LayerShape, variant: str, splits: int) -> int:
    """Scratch of the backward besides the gradients themselves: the per-split
    partial sums of the weight gradients, ``splits·(|w̃| + |T_h(K)|)`` (fp32/fp64)."""
    return splits * fused_intermediate_elements(s, variant)["filter"]
