"""The registered GConv implementations (one class + one ``@register`` each).

Parameter names and shapes per variant (shared by its implementations, so a
``state_dict`` moves between them unchanged):

* full: ``weight [C_out, C_in, G_in, k, k]``
* g:    ``kernel [C_out, C_in, k, k]`` (K), ``pointwise [C_out, C_in, G_in]`` (w)
* gc:   ``kernel [C_out, k, k]`` (K), ``pointwise [C_out, C_in, G_in]`` (w)
* all:  ``bias [C_out]`` (optional)

Index letters: n = output channel, h = output group element, c = input
channel, g = input group element.

Every implementation computes in the layer's memory format (``self._format``):
``_build_weights`` returns its conv weights in that format (so the eval cache
holds them ready) and ``_conv`` receives ``x`` folded to ``[B, C_in·G_in, H, W]``
in that format (see :mod:`sepgconv.layout`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sepgconv import counting, layout
from sepgconv.counting import LayerShape
from sepgconv.gconv import INIT_GAIN, GConv2d, region
from sepgconv.registry import register


class _DenseMixin:
    """Naive path: expand F̃ and run one dense conv (the reference)."""

    def _build_weights(self):
        f = self.expand_filter()  # [N, Go, C, Gi, k, k], stored in the layer's format
        n, go, c, gi, k, _ = f.shape
        return (self._in_format(f.reshape(n * go, c * gi, k, k)),)  # a view: no copy

    def _conv(self, x, weights, bias):
        with region("sepgconv.spatial"):
            return F.conv2d(x, weights[0], bias, self.stride, self.padding)

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return counting.dense_macs(shape)


# ---------------------------------------------------------------------- #
# full
# ---------------------------------------------------------------------- #
class _FullParams:
    """Parameters of the full GConv: ``weight [C_out, C_in, G_in, k, k]`` (F itself)."""

    def _make_parameters(self, factory):
        k = self.kernel_size
        self.weight = nn.Parameter(
            torch.empty(self.out_channels, self.in_channels, self.g_in, k, k, **factory)
        )

    def _init_parameters(self):
        fan_in = self.in_channels * self.g_in * self.kernel_size**2
        nn.init.normal_(self.weight, 0.0, INIT_GAIN / math.sqrt(fan_in))

    def filter(self):
        return self.weight


@register
class FullGConv2d(_DenseMixin, _FullParams, GConv2d):
    """Full GConv (Cohen & Welling): ``F[n, c, g]`` free, one dense conv with F̃."""

    variant = "full"
    impl = "naive"

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        return {"filter": s.c_out * s.g_out * s.c_in * s.g_in * s.k**2, "activations": 0}


# ---------------------------------------------------------------------- #
# g: F[n, c, g] = K[n, c] · w[n, c, g]
# ---------------------------------------------------------------------- #
class _GParams:
    def _make_parameters(self, factory):
        k = self.kernel_size
        self.kernel = nn.Parameter(
            torch.empty(self.out_channels, self.in_channels, k, k, **factory)
        )
        self.pointwise = nn.Parameter(
            torch.empty(self.out_channels, self.in_channels, self.g_in, **factory)
        )

    def _init_parameters(self):
        # Var(K·w) = Var(K)·Var(w) = gain² / (C_in·G_in·k²): He on the expanded filter.
        nn.init.normal_(self.kernel, 0.0, 1.0 / self.kernel_size)
        nn.init.normal_(self.pointwise, 0.0, INIT_GAIN / math.sqrt(self.in_channels * self.g_in))

    def filter(self):
        return self.kernel[:, :, None] * self.pointwise[..., None, None]


@register
class GGConv2dNaive(_DenseMixin, _GParams, GConv2d):
    """g-GConv computed naively: build F̃ = T_h(K)·w̃, then one dense conv."""

    variant = "g"
    impl = "naive"

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        f = s.c_out * s.c_in * s.g_in * s.k**2
        return {"filter": f + s.g_out * f, "activations": 0}


@register
class GGConv2dRearranged(_GParams, GConv2d):
    """g-GConv rearranged (Eqs. 8–9).

    Eq. 9, ``X̃[n,h,c] = Σ_g X[c,g]·w̃[n,h,c,g]``: a 1×1 conv with ``C_in``
    groups (its output channels come out ordered ``(c, n, h)``). A transpose
    to ``(n, h, c)`` — one copy of X̃ — then Eq. 8, ``Y[n,h] = Σ_c X̃[n,h,c] ⋆
    T_h(K[n,c])``: a k×k conv with ``C_out·G_out`` groups of ``C_in`` channels.
    """

    variant = "g"
    impl = "rearranged"

    def _build_weights(self):
        n, c, k = self.out_channels, self.in_channels, self.kernel_size
        go, gi = self.g_out, self.g_in
        # T_h(K[n, c]) for every h: [N, C, Go, k²] -> [(n, h), c, k, k]
        k_t = self.kernel.reshape(n, c, k * k).index_select(2, self._spatial_perm)
        k_t = k_t.view(n, c, go, k * k)
        spatial = k_t.permute(0, 2, 1, 3).reshape(n * go, c, k, k)
        # w̃[n, h, c, g] = w[n, c, h⁻¹g]: [N, C, Go, Gi] -> [(c, n, h), g, 1, 1]
        w_t = self.pointwise.index_select(2, self._perm_in).view(n, c, go, gi)
        pointwise = w_t.permute(1, 0, 2, 3).reshape(c * n * go, gi, 1, 1)
        return self._in_format(pointwise), self._in_format(spatial)

    def _conv(self, x, weights, bias):
        pointwise, spatial = weights
        b, _, hgt, wid = x.shape
        n, c, go = self.out_channels, self.in_channels, self.g_out
        with region("sepgconv.pointwise"):
            xt = F.conv2d(x, pointwise, groups=c)  # [B, (c, n, h), H, W]
        with region("sepgconv.transpose"):
            # [B, (c, n, h)] -> [B, (n, h), c]: the one copy of X̃, written in the layer's
            # format (channels_last: X̃ stored B, H, W, (n, h), c, folded by a view)
            xt = xt.view(b, c, n * go, hgt, wid).transpose(1, 2)
            xt = layout.to_memory_format(xt, self._format).reshape(b, n * go * c, hgt, wid)
        with region("sepgconv.spatial"):
            return F.conv2d(xt, spatial, bias, self.stride, self.padding, groups=n * go)

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return counting.g_rearranged_macs(shape)

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        weights = s.c_out * s.g_out * s.c_in * (s.k**2 + s.g_in)
        x_tilde = s.batch * s.c_in * s.c_out * s.g_out * s.h_in * s.w_in
        return {"filter": weights, "activations": 2 * x_tilde}  # X̃ and its transposed copy


# ---------------------------------------------------------------------- #
# gc: F[n, c, g] = K[n] · w[n, c, g]
# ---------------------------------------------------------------------- #
class _GCParams:
    def _make_parameters(self, factory):
        k = self.kernel_size
        self.kernel = nn.Parameter(torch.empty(self.out_channels, k, k, **factory))
        self.pointwise = nn.Parameter(
            torch.empty(self.out_channels, self.in_channels, self.g_in, **factory)
        )

    def _init_parameters(self):
        nn.init.normal_(self.kernel, 0.0, 1.0 / self.kernel_size)
        nn.init.normal_(self.pointwise, 0.0, INIT_GAIN / math.sqrt(self.in_channels * self.g_in))

    def filter(self):
        return self.kernel[:, None, None] * self.pointwise[..., None, None]


@register
class GCGConv2dNaive(_DenseMixin, _GCParams, GConv2d):
    """gc-GConv computed naively: build F̃ = T_h(K)·w̃, then one dense conv."""

    variant = "gc"
    impl = "naive"

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        f = s.c_out * s.c_in * s.g_in * s.k**2
        return {"filter": f + s.g_out * f, "activations": 0}


@register
class GCGConv2dRearranged(_GCParams, GConv2d):
    """gc-GConv rearranged (Eqs. 14–15): an inverse depthwise-separable conv.

    Eq. 15, ``X̃[n,h] = Σ_{c,g} X[c,g]·w̃[n,h,c,g]``: a dense 1×1 conv from
    ``C_in·G_in`` to ``C_out·G_out`` channels; Eq. 14, ``Y[n,h] = X̃[n,h] ⋆
    T_h(K[n])``: a depthwise k×k conv. No copies.
    """

    variant = "gc"
    impl = "rearranged"

    def _build_weights(self):
        n, c, k = self.out_channels, self.in_channels, self.kernel_size
        go, gi = self.g_out, self.g_in
        depthwise = self.kernel.reshape(n, k * k).index_select(1, self._spatial_perm)
        depthwise = depthwise.reshape(n * go, 1, k, k)
        w_t = self.pointwise.index_select(2, self._perm_in).view(n, c, go, gi)
        pointwise = w_t.permute(0, 2, 1, 3).reshape(n * go, c * gi, 1, 1)
        return self._in_format(pointwise), self._in_format(depthwise)

    def _conv(self, x, weights, bias):
        pointwise, depthwise = weights
        with region("sepgconv.pointwise"):
            xt = F.conv2d(x, pointwise)  # [B, (n, h), H, W]
        with region("sepgconv.spatial"):
            groups = self.out_channels * self.g_out
            return F.conv2d(xt, depthwise, bias, self.stride, self.padding, groups=groups)

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return counting.gc_rearranged_macs(shape)

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        weights = s.c_out * s.g_out * (s.k**2 + s.c_in * s.g_in)
        return {"filter": weights, "activations": s.batch * s.c_out * s.g_out * s.h_in * s.w_in}
