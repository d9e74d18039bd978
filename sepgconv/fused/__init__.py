"""``impl="fused"``: g and gc GConvs as Triton kernels that never write X̃ to memory.

Registered for the ``g`` and ``gc`` variants with the parameters (and so the
``state_dict``) of the naive and rearranged implementations. Importing this
package does not import Triton: the kernels load on the first call. Where they
cannot run (no Triton; the CPU without ``TRITON_INTERPRET=1``; another device)
:meth:`unavailable_reason` says why; ``GConv2d(...)`` raises it as
:class:`sepgconv.UnavailableError` when no device of the process can run them,
and a call on a device that cannot, as a RuntimeError.

Design, accounting, tolerances and what is verified: ``sepgconv/fused/README.md``.

Example:
    >>> import sepgconv
    >>> layer = sepgconv.GConv2d(8, 8, 3, variant="gc", impl="fused", padding=1)
    >>> sorted(layer.state_dict())  # the same as impl="naive"
    ['bias', 'kernel', 'pointwise']
"""

from __future__ import annotations

from sepgconv.counting import LayerShape
from sepgconv.fused import _runtime, tiling
from sepgconv.fused.ops import fused_gconv, fvcore_handle
from sepgconv.gconv import GConv2d, region
from sepgconv.impls import _GCParams, _GParams
from sepgconv.registry import register

#: fvcore op handles for the traced fused op (``FlopCountAnalysis.set_op_handle(**…)``)
FVCORE_HANDLES = {"sepgconv::fused_gconv": fvcore_handle}


class _Fused:
    """What the fused g and gc layers share: availability, the kernel call, counts."""

    impl = "fused"
    #: the kernels index NCHW: a channels_last input is converted before the call
    memory_formats = ("contiguous",)
    fvcore_handles = FVCORE_HANDLES

    @classmethod
    def unavailable_reason(cls, device="cpu") -> str | None:
        return _runtime.unavailable_reason(device)

    @classmethod
    def is_interpreted(cls, device="cpu") -> bool:
        """The kernels would run in Triton's interpreter here: correct, but never to be timed
        (``impl="auto"`` and the sweep should not time such a candidate)."""
        return _runtime.interpret_enabled()

    @classmethod
    def macs_for(cls, shape: LayerShape, dtype, device) -> int:
        """The MACs a call in ``dtype`` on ``device`` executes: g's tl.dot forward (where
        :func:`sepgconv.fused._runtime.forward_path` picks it) runs the full GConv's
        count, the staged kernels :meth:`macs` (``macs(shape)`` alone knows no dtype)."""
        path = _runtime.forward_path(cls.variant == "gc", dtype, device, shape.c_in * shape.g_in)
        return tiling.fused_macs(shape, cls.variant, path)

    def _conv(self, x, weights, bias):
        # x [B, C_in·G_in, H, W] (any memory format: the launcher makes it contiguous)
        wt, kt = weights
        with region("sepgconv.fused"):
            return fused_gconv(
                x, wt, kt, bias, self.variant == "gc",
                self.kernel_size, self.stride, self.padding, self.g_in,
            )  # fmt: skip

    def _pointwise_table(self):
        # w̃[n, h, c, g] = w[n, c, h⁻¹g] as [C_in·G_in, C_out·G_out]:
        # row c·G_in + g, column n·G_out + h
        n, c, go, gi = self.out_channels, self.in_channels, self.g_out, self.g_in
        w_t = self.pointwise.index_select(2, self._perm_in).view(n, c, go, gi)
        return w_t.permute(1, 3, 0, 2).reshape(c * gi, n * go)


@register
class GGConv2dFused(_Fused, _GParams, GConv2d):
    """g-GConv in one Triton kernel: per input channel, X̃[n,h,c] on a tile plus its halo
    in registers (Eq. 9), then the k×k product with T_h(K[n,c]) (Eq. 8) into the output."""

    variant = "g"

    def _build_weights(self):
        n, c, k, go = self.out_channels, self.in_channels, self.kernel_size, self.g_out
        # T_h(K[n, c]) as [C_in, k², C_out·G_out]: [c, tap, n·G_out + h]
        k_t = self.kernel.reshape(n, c, k * k).index_select(2, self._spatial_perm)
        kt = k_t.view(n, c, go, k * k).permute(1, 3, 0, 2).reshape(c, k * k, n * go)
        return self._pointwise_table(), kt

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return tiling.fused_macs(shape, "g")

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        return tiling.fused_intermediate_elements(s, "g")


@register
class GCGConv2dFused(_Fused, _GCParams, GConv2d):
    """gc-GConv in one Triton kernel: X̃[n,h] = Σ_{c,g} w̃·X on a tile plus its halo in
    registers (Eq. 15, tl.dot), then the depthwise k×k with T_h(K[n]) (Eq. 14)."""

    variant = "gc"

    def _build_weights(self):
        n, k, go = self.out_channels, self.kernel_size, self.g_out
        # T_h(K[n]) as [k², C_out·G_out]: [tap, n·G_out + h]
        k_t = self.kernel.reshape(n, k * k).index_select(1, self._spatial_perm)
        kt = k_t.view(n, go, k * k).permute(2, 0, 1).reshape(k * k, n * go)
        return self._pointwise_table(), kt

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return tiling.fused_macs(shape, "gc")

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        return tiling.fused_intermediate_elements(s, "gc")


__all__ = ["FVCORE_HANDLES", "GCGConv2dFused", "GGConv2dFused"]
