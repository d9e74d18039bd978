"""``GConv2d``: the one front door to every GConv implementation.

``GConv2d(...)`` looks ``(variant, impl)`` up in the registry and returns an
instance of the registered subclass, so ``isinstance(layer, GConv2d)`` holds for
every implementation and the constructor signature is the DESIGN §6 contract.

Shapes (DESIGN §2): a lifting layer takes ``[B, C_in, H, W]``; a group layer
takes ``[B, C_in, G, H, W]``; both return ``[B, C_out, G, H', W']``.
Internally a lifting input is treated as a group map with ``G_in = 1``.

Memory formats (``memory_format=``, see :mod:`sepgconv.layout`): every layer
folds its input to ``[B, C_in·G_in, H, W]`` — a view in both formats — converts
it once if it is not in the layer's format, and returns its output in that
format.
"""

from __future__ import annotations

import contextlib
import math
from typing import ClassVar

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from sepgconv import _slowdown, checks, layout, registry
from sepgconv.counting import LayerShape
from sepgconv.groups import Group, get_group


def region(name: str):
    """A ``record_function`` label for torch.profiler, free when no profiler runs.

    Labels used: ``sepgconv.build_weights`` (filter construction),
    ``sepgconv.pointwise``, ``sepgconv.transpose``, ``sepgconv.spatial``,
    ``sepgconv.blocks`` (g/rearranged writing a block into its output).
    """
    if not torch.compiler.is_compiling() and torch.autograd._profiler_enabled():
        return torch.profiler.record_function(name)
    return contextlib.nullcontext()


#: Optimiser steps taken in this process (any optimiser): part of the eval cache key.
_optimizer_steps = [0]


def _count_optimizer_step(optimizer, args, kwargs) -> None:
    _optimizer_steps[0] += 1


register_optimizer_step_post_hook(_count_optimizer_step)

#: Gain of the weight initialisation (He: the variance a ReLU halves).
INIT_GAIN = math.sqrt(2.0)


class GConv2d(nn.Module):
    """Group-equivariant 2-D convolution for p4 / p4m.

    Args:
        in_channels: input channels ``C_in`` (not counting the group axis).
        out_channels: output channels ``C_out``.
        kernel_size: spatial size ``k`` (an int, or a square pair).
        group: ``"p4"`` (G = 4) or ``"p4m"`` (G = 8), or a :class:`Group`.
        lifting: ``True`` for an image → group layer (input ``[B, C, H, W]``).
        variant: ``"full"`` (Cohen & Welling), ``"g"`` or ``"gc"`` (separable).
        impl: ``"naive"`` (expand F̃, one dense conv) or ``"rearranged"``
            (pointwise then grouped/depthwise conv; g and gc only).
        stride: spatial stride.
        padding: symmetric integer padding, ``"same"`` (``k // 2``, odd ``k``)
            or ``"valid"`` (0).
        bias: add a learnable bias per output channel, shared over the group
            axis (a bias per group element would break equivariance).
        memory_format: ``"contiguous"`` (default) or ``"channels_last"``: the
            layout the layer computes in, of its weights and of its output
            (a group map in channels_last is stored ``B, H, W, C, G``; see
            :func:`sepgconv.to_memory_format`). An input in the other layout
            is converted once. ``impl="auto"`` also takes ``"auto"`` (time both).

    .. note ::
        Equivariance is exact (to rounding) on square inputs when the strided
        output grid is centred on the input grid, i.e. when
        ``(H + 2·padding − k) % stride == 0`` — always true for stride 1, for
        odd and even ``k`` alike. ``padding="same"`` is refused for even ``k``
        because it would need asymmetric padding.

    Weight initialisation: every variant starts with the variance of a He
    (Kaiming-normal, gain √2) init of the *expanded* filter, ``Var(F̃) =
    2 / (C_in·G_in·k²)``, so a unit-variance input gives an output of variance
    ≈ 2 (≈ 1 after a ReLU) whichever variant is used. For g and gc the
    product ``K·w`` gets it by ``Var(K) = 1/k²`` and ``Var(w) = 2/(C_in·G_in)``.

    Example:
        >>> import torch, sepgconv
        >>> lift = sepgconv.GConv2d(3, 8, 3, group="p4", lifting=True, padding=1)
        >>> conv = sepgconv.GConv2d(8, 8, 3, group="p4", variant="gc", impl="rearranged",
        ...                         padding=1)
        >>> conv(lift(torch.randn(2, 3, 16, 16))).shape
        torch.Size([2, 8, 4, 16, 16])
    """

    #: set by each registered subclass
    variant: ClassVar[str]
    impl: ClassVar[str]
    #: the memory_format values this implementation accepts
    memory_formats: ClassVar[tuple[str, ...]] = layout.FORMATS

    def __new__(cls, *args, variant: str | None = None, impl: str | None = None, **kwargs):
        if cls is GConv2d:
            cls = registry.get(
                "full" if variant is None else variant, "naive" if impl is None else impl
            )
        return super().__new__(cls)

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        *,
        group: str | Group = "p4",
        lifting: bool = False,
        variant: str | None = None,
        impl: str | None = None,
        stride: int = 1,
        padding: int | str = 0,
        bias: bool = True,
        memory_format: str = "contiguous",
        device=None,
        dtype=None,
    ):
        super().__init__()
        name = type(self).__name__
        if variant not in (None, self.variant) or impl not in (None, self.impl):
            raise ValueError(
                f"{name} implements variant={self.variant!r}, impl={self.impl!r}; "
                f"got variant={variant!r}, impl={impl!r} (use sepgconv.GConv2d to dispatch)"
            )
        checks.runnable(type(self), device)  # one clear line now, not a kernel error later
        self.group = get_group(group)
        self.lifting = bool(lifting)
        self.in_channels = checks.positive_int(in_channels, "in_channels")
        self.out_channels = checks.positive_int(out_channels, "out_channels")
        self.kernel_size = checks.kernel_size(kernel_size)
        self.stride = checks.positive_int(stride, "stride")
        self.padding = checks.padding(padding, self.kernel_size)
        self.memory_format = layout.check_memory_format(memory_format, self.memory_formats)
        #: the concrete format the layer computes in ("auto" tunes per input: contiguous here)
        self._format = memory_format if memory_format in layout.FORMATS else "contiguous"
        self.g_in = 1 if self.lifting else self.group.order
        self.g_out = self.group.order
        factory = {"device": device, "dtype": dtype}
        self._make_parameters(factory)
        self.bias = nn.Parameter(torch.empty(self.out_channels, **factory)) if bias else None
        # Index tables derived from the Cayley table; non-persistent, so the
        # state_dict holds parameters only and is the same for every impl.
        # Flat gather indices (index_select: its backward is a cheap index_add, several
        # times faster than advanced indexing's accumulate-scatter on the CPU):
        #   _perm_in [G_out·G_in]: h⁻¹g;  _spatial_perm [G_out·k²]: pixel of T_h;
        #   _expand_index [G_out·G_in·k²]: both, into a flattened [G_in·k²] filter;
        #   _expansion [G_out·C_in·G_in·k²]: F̃ of one output channel, written in
        #   the conv weight's memory order (layout.expansion_index).
        k2 = self.kernel_size**2
        perm_in = self.group.filter_perm(self.g_in)  # [G_out, G_in]
        spatial_perm = self.group.spatial_perm(self.kernel_size)  # [G_out, k²]
        expand_index = perm_in[:, :, None] * k2 + spatial_perm[:, None, :]
        for name, index in (
            ("_perm_in", perm_in),
            ("_spatial_perm", spatial_perm),
            ("_expand_index", expand_index),
        ):
            # cloned: the group caches these tables, and a buffer must not alias them
            self.register_buffer(name, index.reshape(-1).clone().to(device), persistent=False)
        expansion = layout.expansion_index(
            expand_index.reshape(self.g_out, -1),
            self.in_channels,
            self.g_in,
            self.kernel_size,
            self._format,
        )
        self.register_buffer("_expansion", expansion.to(device), persistent=False)
        self._cache: tuple | None = None
        self.reset_parameters()

    # ------------------------------------------------------------------ #
    # to be provided by each implementation
    # ------------------------------------------------------------------ #
    def _make_parameters(self, factory: dict) -> None:
        raise NotImplementedError

    def _init_parameters(self) -> None:
        raise NotImplementedError

    def filter(self) -> torch.Tensor:
        """The (unexpanded) filter bank ``F`` as ``[C_out, C_in, G_in, k, k]``."""
        raise NotImplementedError

    def _build_weights(self) -> tuple[torch.Tensor, ...]:
        """The derived weights ``_conv`` consumes (cached in eval mode)."""
        raise NotImplementedError

    def _conv(self, x: torch.Tensor, weights: tuple, bias: torch.Tensor | None) -> torch.Tensor:
        """``x``: ``[B, C_in·G_in, H, W]`` → ``[B, C_out·G_out, H', W']``."""
        raise NotImplementedError

    @staticmethod
    def macs(shape: LayerShape) -> int:
        """MACs this implementation executes (see :mod:`sepgconv.counting`)."""
        raise NotImplementedError

    @classmethod
    def unavailable_reason(cls, device: torch.device | str = "cpu") -> str | None:
        """Why this implementation cannot run on ``device`` in this process, or None.

        Every stock-PyTorch implementation runs everywhere (None); an
        implementation that needs an optional package or an accelerator (e.g.
        Triton kernels) says what is missing. The sweep records such rows as
        ``skipped`` with this reason and the tests skip them.
        """
        return None

    @staticmethod
    def intermediate_elements(shape: LayerShape) -> dict[str, int]:
        """Elements of the intermediates it materialises (filter, activations)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ #
    # shared machinery
    # ------------------------------------------------------------------ #
    def reset_parameters(self) -> None:
        """Re-draw the weights (He-normal on the expanded filter) and zero the bias."""
        with torch.no_grad():
            self._init_parameters()
            if self.bias is not None:
                self.bias.zero_()

    def _own_parameters(self) -> tuple[torch.Tensor, ...]:
        # this layer's parameters, without nn.Module's generator machinery (hot path)
        names = self.__dict__.get("_replica_params")
        if names is None:
            return tuple(p for p in self._parameters.values() if p is not None)
        # a DataParallel replica: replicate() set its parameters as plain tensor attributes
        return tuple(t for t in map(self.__dict__.get, names) if t is not None)

    def _replicate_for_data_parallel(self):
        # nn.DataParallel (torch.nn.parallel.replicate) empties a replica's _parameters
        # and sets its parameters' copies as plain attributes: remember their names
        replica = super()._replicate_for_data_parallel()
        replica._replica_params = tuple(self._parameters)
        return replica

    @property
    def dtype(self) -> torch.dtype:
        return self._own_parameters()[0].dtype

    @property
    def device(self) -> torch.device:
        params = self._own_parameters()
        return params[0].device if params else self._expansion.device

    def layer_shape(self, h: int, w: int, batch: int = 1) -> LayerShape:
        """The :class:`LayerShape` of this layer applied to an ``h×w`` input."""
        return LayerShape(
            self.in_channels,
            self.out_channels,
            self.g_in,
            self.g_out,
            self.kernel_size,
            h,
            w,
            self.stride,
            self.padding,
            batch,
        )

    def executed_impl(self, h: int, w: int, batch: int = 1) -> type:
        """The implementation class a call on a ``batch×…×h×w`` input runs: this
        layer's own (``impl="auto"`` answers with the one it chooses)."""
        return type(self)

    def expand_filter(self) -> torch.Tensor:
        """The full filter bank F̃ as ``[C_out, G_out, C_in, G_in, k, k]``.

        ``F̃[n, h, c, g] = T_h(F[n, c, h⁻¹g])``. A dense ``conv2d`` of the input
        (reshaped to ``[B, C_in·G_in, H, W]``) with F̃ reshaped to
        ``[C_out·G_out, C_in·G_in, k, k]`` reproduces the layer (bias aside).
        """
        return self._expand(self.filter())

    def _expand(self, f: torch.Tensor) -> torch.Tensor:
        # [C_out, G_out, C_in, G_in, k, k], stored so that folding it to the conv
        # weight [C_out·G_out, C_in·G_in, k, k] is a view in the layer's format.
        # Its backward gathers by the inverse index, kept here beside the index it
        # inverts (rebuilt when the buffer is replaced, e.g. by .to(device)); a
        # compiled graph computes it in its backward instead (no cached tensor in it)
        inverse = None
        if f.requires_grad and not torch.compiler.is_compiling():
            cached = self.__dict__.get("_expansion_inverse")
            if cached is None or cached[0] is not self._expansion:
                inv = layout.inverse_expansion_index(self._expansion, self.g_out)
                cached = self.__dict__["_expansion_inverse"] = (self._expansion, inv)
            inverse = cached[1]
        return layout.expand(f, self._expansion, self.g_out, self._format, inverse)

    def _derived(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        return self._build_weights(), self._bias_per_channel()

    def _weights(self) -> tuple[tuple[torch.Tensor, ...], torch.Tensor | None]:
        """Derived weights and bias, cached while in eval mode and no gradient is wanted.

        The cache key is every parameter's storage and version counter plus a
        count of optimiser steps (fused optimisers update in place without
        bumping versions), so an optimiser step or ``load_state_dict``
        invalidates it; ``train()`` clears it; weights built under
        ``torch.inference_mode`` are not reused outside it. (Writes through
        ``param.data`` bypass the version counter: call :meth:`clear_cache`
        after those.)
        """
        if torch.compiler.is_compiling():  # compiled graphs rebuild (and fuse) instead
            return self._derived()
        params = self._own_parameters()
        wants_grad = torch.is_grad_enabled() and any(p.requires_grad for p in params)
        if self.training or wants_grad:
            return self._derived()
        key = (
            _optimizer_steps[0],
            torch.is_inference_mode_enabled(),
            *((p.data_ptr(), p._version, p.dtype, p.device) for p in params),
        )
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._derived())
        return self._cache[1]

    def clear_cache(self) -> None:
        """Drop the eval-mode cache of derived weights."""
        self._cache = None

    def train(self, mode: bool = True):
        self._cache = None
        return super().train(mode)

    def _bias_per_channel(self) -> torch.Tensor | None:
        # one bias per output channel, repeated over the group axis: [C_out·G_out]
        return None if self.bias is None else self.bias.repeat_interleave(self.g_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        if _slowdown.ACTIVE:  # test-only hook (SEPGCONV_TEST_SLOWDOWN); False when unset
            return _slowdown.forward(self, x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: [B, C_in, G_in, H, W] (or [B, C_in, H, W] lifting), already checked
        b = x.shape[0]
        h, w = x.shape[-2:]
        with region("sepgconv.build_weights"):
            weights, bias = self._weights()
        if not layout.is_memory_format(x, self._format):  # converted here, once
            with region("sepgconv.convert_input"):
                x = layout.to_memory_format(x, self._format)
        # fold G into the channels: a view (channels_last: stored B, H, W, C, G -> NHWC)
        x = x.reshape(b, self.in_channels * self.g_in, h, w)
        y = self._conv(x, weights, bias)  # [B, C_out·G_out, H', W'] in the layer's format
        fmt = layout.torch_format(self._format)
        if not y.is_contiguous(memory_format=fmt):  # (an implementation that ignored it)
            y = y.contiguous(memory_format=fmt)
        # unfold: a view in either format ((C_out, G_out) with G_out fastest)
        return y.view(b, self.out_channels, self.g_out, y.shape[-2], y.shape[-1])

    def _check_input(self, x) -> None:
        checks.check_input(self, x)

    def _in_format(self, weight: torch.Tensor) -> torch.Tensor:
        """A 4-D conv weight in the layer's memory format (no copy if it already is)."""
        return weight.contiguous(memory_format=layout.torch_format(self._format))

    # ------------------------------------------------------------------ #
    # conversions
    # ------------------------------------------------------------------ #
    def config(self) -> dict:
        """Constructor arguments that rebuild this layer (``GConv2d(**config)``)."""
        return dict(
            in_channels=self.in_channels,
            out_channels=self.out_channels,
            kernel_size=self.kernel_size,
            group=self.group.name,
            lifting=self.lifting,
            variant=self.variant,
            impl=self.impl,
            stride=self.stride,
            padding=self.padding,
            bias=self.bias is not None,
            memory_format=self.memory_format,
        )

    def to_impl(self, impl: str, memory_format: str | None = None) -> GConv2d:
        """A layer of the same variant computed by ``impl``, sharing this one's parameters.

        Args:
            impl: a registered implementation of this layer's variant.
            memory_format: the new layer's format; by default this layer's
                (``"contiguous"`` if that is ``"auto"`` and ``impl`` is not).
        """
        cfg = self.config() | {"impl": impl}
        if memory_format is not None:
            cfg["memory_format"] = memory_format
        elif self.memory_format not in registry.get(self.variant, impl).memory_formats:
            cfg["memory_format"] = "contiguous"
        new = GConv2d(**cfg, device=self.device, dtype=self.dtype)
        # share the Parameter objects themselves: requires_grad and any optimiser
        # holding them carry over (the index buffers do not depend on the impl)
        for name, param in self.named_parameters(recurse=False):
            setattr(new, name, param)
        new.train(self.training)
        return new

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"group={self.group.name}, lifting={self.lifting}, variant={self.variant}, "
            f"impl={self.impl}, stride={self.stride}, padding={self.padding}, "
            f"bias={self.bias is not None}, memory_format={self.memory_format}"
        )


__all__ = ["GConv2d", "INIT_GAIN"]
