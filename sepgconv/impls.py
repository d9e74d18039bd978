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
from torch.utils.checkpoint import checkpoint

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


G_BLOCK_FLOOR = 1 << 15  # elements of X̃ per block always allowed (128 KiB in fp32)


def g_rearranged_blocks(s: LayerShape) -> tuple[int, int, int]:
    """Block sizes ``(batch, C_out, C_in)`` of g/rearranged's loop (a function of the shape).

    One block materialises ``X̃`` for ``bb`` images, ``nb`` output channels (all
    ``G_out`` of each) and ``cb`` input channels: ``bb·nb·G_out·cb·H·W`` elements,
    bounded by a quarter of the naive path's working memory (F̃ + the output), so
    that the grouped 1×1 output, its transposed copy and (in the backward) their
    gradients stay within it, or ``G_BLOCK_FLOOR`` elements if that is more (a
    small layer is not cut into many tiny convs). Whole input-channel groups are
    kept first (no partial sums), then whole output-channel blocks, then whole
    batches.
    """
    ftilde = s.c_out * s.g_out * s.c_in * s.g_in * s.k**2
    out = s.batch * s.c_out * s.g_out * s.h_out * s.w_out
    budget = max((ftilde + out) // 4, G_BLOCK_FLOOR)
    per_c = s.g_out * s.h_in * s.w_in  # X̃ of one (image, output channel n, input channel c)
    cb = max(1, min(s.c_in, budget // per_c))
    if cb < s.c_in:
        return 1, 1, cb
    nb = max(1, min(s.c_out, budget // (per_c * s.c_in)))
    if nb < s.c_out:
        return 1, nb, cb
    bb = max(1, min(s.batch, budget // (per_c * s.c_in * s.c_out)))
    return bb, nb, cb


@register
class GGConv2dRearranged(_GParams, GConv2d):
    """g-GConv rearranged (Eqs. 8–9), in blocks that bound the memory of X̃.

    Eq. 9, ``X̃[n,h,c] = Σ_g X[c,g]·w̃[n,h,c,g]``: a 1×1 conv with ``C_in``
    groups, computed as one matmul batched over ``c`` (its output comes out
    ordered ``(c, n, h)``). A transpose to ``(n, h, c)`` — one copy of X̃ — then
    Eq. 8, ``Y[n,h] = Σ_c X̃[n,h,c] ⋆ T_h(K[n,c])``: a k×k conv with
    ``C_out·G_out`` groups of ``C_in`` channels.

    X̃ has ``C_in`` times the output's elements, so it is never built whole: the
    layer loops over blocks of images, output channels and (only when one
    output channel's X̃ is still too large) input channels, sized by
    :func:`g_rearranged_blocks`; each block writes its slice of the output (input
    channel blocks add partial sums). With more than one block and autograd
    recording, each block is checkpointed: the backward recomputes its X̃
    instead of keeping every block's X̃ alive, so training is bounded too.
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

    def _block(self, x, pointwise, spatial, bias, nh, cb):
        # x [b, cb·Gi, H, W]; pointwise [(c, n, h), Gi, 1, 1]; spatial [(n, h), cb, k, k];
        # nh = nb·G_out and cb passed as ints (sizes read off tensors are traced by jit.trace)
        b, _, hgt, wid = x.shape
        gi = self.g_in
        with region("sepgconv.transpose"):
            # X as [c, g, (b, p)] for the batched matmul: a copy of the input (X̃ has
            # C_out·G_out/G_in times its elements), part of this formulation
            xc = x.reshape(b, cb, gi, -1).permute(1, 2, 0, 3).reshape(cb, gi, -1)
        with region("sepgconv.pointwise"):
            # X̃[b, (n, h), c, p] = Σ_g w̃[c, (n, h), g]·X[b, c, g, p]: one matmul batched
            # over c (the same MACs as a 1×1 conv with C_in groups, which oneDNN and cuDNN
            # run slowly per MAC with G_in channels per group); out [c, (n, h), (b, p)]
            xt = torch.matmul(pointwise.reshape(cb, nh, gi), xc)
        with region("sepgconv.transpose"):
            # [c, (n, h), b] -> [b, (n, h), c]: the one copy of X̃, written in the layer's
            # format (channels_last: X̃ stored b, H, W, (n, h), c, folded by a view)
            xt = xt.view(cb, nh, b, hgt, wid).permute(2, 1, 0, 3, 4)
            xt = layout.to_memory_format(xt, self._format).reshape(b, nh * cb, hgt, wid)
            if b == 1 and self._format == "channels_last":
                # the fold leaves a batch stride of C (not C·H·W) on the size-1 batch axis;
                # torch 2.13's CPU conv gives a wrong weight gradient for such an input
                # (forward and input gradient right): restride the batch axis, no copy
                xt = xt.as_strided(xt.shape, (xt.numel(), *xt.stride()[1:]))
        with region("sepgconv.spatial"):
            return F.conv2d(xt, spatial, bias, self.stride, self.padding, groups=nh)

    def _conv(self, x, weights, bias):
        pointwise, spatial = weights
        b, _, hgt, wid = x.shape
        n, c, go, gi, k = (
            self.out_channels, self.in_channels, self.g_out, self.g_in, self.kernel_size
        )  # fmt: skip
        shape = self.layer_shape(hgt, wid, b)
        bb, nb, cb = g_rearranged_blocks(shape)
        if (bb, nb, cb) == (b, n, c):  # one block: no loop, no copies of the weights
            return self._block(x, pointwise, spatial, bias, n * go, c)
        recording = torch.is_grad_enabled() and (
            x.requires_grad or pointwise.requires_grad or spatial.requires_grad
        )
        pw5 = pointwise.view(c, n, go, gi)  # views of the cached weights
        sp5 = spatial.view(n, go, c, k, k)
        y = torch.empty(
            b, n * go, shape.h_out, shape.w_out, dtype=x.dtype, device=x.device,
            memory_format=layout.torch_format(self._format),
        )  # fmt: skip
        for n0 in range(0, n, nb):
            n1 = min(n, n0 + nb)
            blocks = []  # the weights of each input-channel block, shared by the batch blocks
            for c0 in range(0, c, cb):
                c1 = min(c, c0 + cb)
                with region("sepgconv.build_weights"):  # the block's slice of the weights
                    pw = pw5[c0:c1, n0:n1].reshape((c1 - c0) * (n1 - n0) * go, gi, 1, 1)
                    sp = sp5[n0:n1, :, c0:c1].reshape((n1 - n0) * go, c1 - c0, k, k)
                    blocks.append((c0, c1, self._in_format(pw), self._in_format(sp)))
            bias_n = None if bias is None else bias[n0 * go : n1 * go]
            for b0 in range(0, b, bb):
                acc = None
                for c0, c1, pw, sp in blocks:
                    args = (
                        x[b0 : b0 + bb, c0 * gi : c1 * gi], pw, sp,
                        bias_n if c0 == 0 else None, (n1 - n0) * go, c1 - c0,
                    )  # fmt: skip
                    if recording:
                        part = checkpoint(self._block, *args, use_reentrant=False)
                    else:
                        part = self._block(*args)
                    acc = part if acc is None else acc + part
                with region("sepgconv.blocks"):  # the block's slice of the output
                    y[b0 : b0 + bb, n0 * go : n1 * go] = acc
        return y

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return counting.g_rearranged_macs(shape)

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        weights = s.c_out * s.g_out * s.c_in * (s.k**2 + s.g_in)
        bb, nb, cb = g_rearranged_blocks(s)
        x_tilde = bb * nb * s.g_out * cb * s.h_in * s.w_in  # one block of X̃
        return {"filter": weights, "activations": 2 * x_tilde}  # and its transposed copy


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


#: forces gc/rearranged's route (``"conv"`` or ``"gemm"``) on every device; ``None``: the
#: rule of :func:`gc_route`. For tests and for measuring the routes side by side
#: (``tools/speed_matrix.py``), not a user setting.
GC_ROUTE: str | None = None


def gc_route(device_type: str, dtype: torch.dtype, fmt: str, tf32_matmul: bool) -> str:
    """How gc/rearranged computes Eqs. 14–15 (see :meth:`GCGConv2dRearranged._conv_gemm`).

    ``"gemm"`` on CUDA for a contiguous layer whose GEMM runs on tensor cores
    (float16/bfloat16, or float32 with ``torch.backends.cuda.matmul.allow_tf32``):
    X̃ is then written NHWC and the depthwise convolution runs in cuDNN's NHWC
    kernels instead of PyTorch's NCHW depthwise kernels, for one copy of y.
    ``"conv"`` otherwise: on the CPU (measured on the AMD EPYC VM, the GEMM route
    was 0.94–1.08× in forward but up to 1.75× slower in training), for a
    channels_last layer (cuDNN's 1×1 is already an NHWC GEMM and its depthwise
    already NHWC), and for float32 under PyTorch's default matmul precision,
    where an explicit GEMM would run on CUDA cores while cuDNN's 1×1 convolution
    uses TF32 (``torch.backends.cudnn.allow_tf32``, on by default).
    """
    if GC_ROUTE is not None:
        return GC_ROUTE
    if device_type != "cuda" or fmt != "contiguous":
        return "conv"
    if dtype in (torch.float16, torch.bfloat16) or (dtype == torch.float32 and tf32_matmul):
        return "gemm"
    return "conv"


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
        groups = self.out_channels * self.g_out
        # (the flag read as autotune's key reads it; a compiled graph keeps the conv route)
        tf32 = x.is_cuda and not torch.compiler.is_compiling() and torch._C._get_cublas_allow_tf32()
        if gc_route(x.device.type, x.dtype, self._format, tf32) == "gemm":
            return self._conv_gemm(x, pointwise, depthwise, bias)
        with region("sepgconv.pointwise"):
            xt = F.conv2d(x, pointwise)  # [B, (n, h), H, W]
        with region("sepgconv.spatial"):
            return F.conv2d(xt, depthwise, bias, self.stride, self.padding, groups=groups)

    def _conv_gemm(self, x, pointwise, depthwise, bias):
        """Eq. 15 as one GEMM that writes X̃ pixel-major (NHWC), Eq. 14 on that NHWC map.

        ``X̃[(b, p), (n, h)] = X[(b, p), (c, g)] · w̃ᵀ``: a plain matrix product
        (cuBLAS on tensor cores under TF32/bf16; its backward two more GEMMs, where
        a 1×1 convolution's weight gradient is an implicit-GEMM wgrad kernel). The
        product is X̃ in channels_last order whatever the input's layout (an NCHW
        input is read as the transposed operand, no copy), so the depthwise
        convolution always runs on an NHWC map: cuDNN's NHWC depthwise kernels,
        where an NCHW float32 depthwise convolution falls to PyTorch's own CUDA
        kernels (on the H200 trace 3–5× the cuDNN NHWC kernels' time, forward and
        backward). The output is channels_last; a contiguous layer's forward lays
        it out NCHW (one copy of y).
        """
        b, cg, hgt, wid = x.shape
        nh = self.out_channels * self.g_out
        wmat = pointwise.reshape(nh, cg)  # a view in either weight format (1×1)
        with region("sepgconv.pointwise"):
            if x.is_contiguous(memory_format=torch.channels_last):  # [B, H, W, CG] in memory
                xt = F.linear(x.permute(0, 2, 3, 1).reshape(b * hgt * wid, cg), wmat)
            else:  # [B, CG, HW] read transposed: [B, HW, CG] @ [CG, NH]
                xt = torch.matmul(x.reshape(b, cg, hgt * wid).transpose(1, 2), wmat.t())
            xt = xt.view(b, hgt, wid, nh).permute(0, 3, 1, 2)  # [B, NH, H, W], NHWC strides
        with region("sepgconv.spatial"):
            depthwise = depthwise.contiguous(memory_format=torch.channels_last)
            return F.conv2d(xt, depthwise, bias, self.stride, self.padding, groups=nh)

    @staticmethod
    def macs(shape: LayerShape) -> int:
        return counting.gc_rearranged_macs(shape)

    @staticmethod
    def intermediate_elements(s: LayerShape) -> dict[str, int]:
        weights = s.c_out * s.g_out * (s.k**2 + s.c_in * s.g_in)
        return {"filter": weights, "activations": s.batch * s.c_out * s.g_out * s.h_in * s.w_in}
