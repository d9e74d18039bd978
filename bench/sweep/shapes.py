"""What one row is: a :class:`Shape` (group, layer kind, channels, kernel,
resolution, batch, dtype, device), one :class:`Impl` (the registry entry
``variant/impl`` and how it is run: memory format, compiled or eager) and one
pass (``fwd`` or ``fwdbwd``) make a :class:`Case`.

:data:`PARAM_KEYS` are the keys that identify a row everywhere: the CSV's first
columns, pytest-benchmark's ``params``, the match key of ``bench compare``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch

import sepgconv
from sepgconv import counting

#: the keys that identify a row (pytest-benchmark ``params``; the CSV's first columns)
PARAM_KEYS = (
    "group", "layer", "variant", "impl", "memory_format", "compiled", "c_in", "c_out", "k",
    "h", "w", "batch", "pass", "dtype", "device",
)  # fmt: skip
PASSES = ("fwd", "fwdbwd")
FORMATS = ("contiguous", "channels_last")
LOW_PRECISION = ("float16", "bfloat16")  # swept on CUDA only


class Impl(NamedTuple):
    """How a row's layer is computed: a registry entry and how it is run.

    ``memory_format``: the layer's and its input's format (``channels_last``: a
    group map ``[B, C, G, H, W]`` stored ``B, H, W, C, G``, see
    :func:`sepgconv.to_memory_format`). ``compiled``: wrapped in
    ``torch.compile`` (inductor), compile time recorded apart from the latency.
    """

    variant: str
    impl: str
    memory_format: str = "contiguous"
    compiled: bool = False

    @property
    def name(self) -> str:
        """``variant/impl``: the registry entry."""
        return f"{self.variant}/{self.impl}"

    def label(self) -> str:
        """``variant/impl`` plus how it is run, e.g. ``gc/rearranged cl compiled``."""
        extra = (" cl" if self.memory_format == "channels_last" else "") + (
            " compiled" if self.compiled else ""
        )
        return self.name + extra

    def eager(self, memory_format: str = "contiguous") -> Impl:
        """The same entry, run eagerly in ``memory_format``."""
        return Impl(self.variant, self.impl, memory_format, False)


REFERENCE = Impl("full", "naive")  # the baseline of speedup_vs_full (eager, contiguous)
DENSE = Impl("dense", "torch")  # nn.Conv2d with the expanded filter


@dataclass(frozen=True)
class Shape:
    """One layer call: everything of a row except the implementation and the pass.

    ``layer`` is ``"lifting"`` (input ``[B, C_in, H, W]``) or ``"group"`` (input
    ``[B, C_in, G, H, W]``). Padding is ``k // 2`` ('same' for odd k), stride 1.
    """

    group: str
    layer: str
    c_in: int
    c_out: int
    k: int
    h: int
    w: int
    batch: int
    dtype: str = "float32"
    device: str = "cpu"

    @property
    def lifting(self) -> bool:
        return self.layer == "lifting"

    @property
    def g_out(self) -> int:
        return sepgconv.get_group(self.group).order

    @property
    def g_in(self) -> int:
        return 1 if self.lifting else self.g_out

    @property
    def padding(self) -> int:
        return self.k // 2

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.torch_dtype).element_size()

    def layer_shape(self) -> counting.LayerShape:
        return counting.LayerShape(
            self.c_in, self.c_out, self.g_in, self.g_out, self.k, self.h, self.w,
            1, self.padding, self.batch,
        )  # fmt: skip

    def input_shape(self) -> tuple[int, ...]:
        """Our layout: ``[B, C_in, H, W]`` (lifting) or ``[B, C_in, G, H, W]``."""
        if self.lifting:
            return (self.batch, self.c_in, self.h, self.w)
        return (self.batch, self.c_in, self.g_in, self.h, self.w)

    def layer_kwargs(self, variant: str, impl: str, memory_format: str = "contiguous") -> dict:
        """``GConv2d`` arguments of this shape."""
        return dict(
            in_channels=self.c_in, out_channels=self.c_out, kernel_size=self.k,
            group=self.group, lifting=self.lifting, variant=variant, impl=impl,
            padding=self.padding, bias=True, memory_format=memory_format,
        )  # fmt: skip

    def label(self) -> str:
        """Readable id, e.g. ``p4-group-c16x16-k3-h32x32-b1-float32-cpu``."""
        return (
            f"{self.group}-{self.layer}-c{self.c_in}x{self.c_out}-k{self.k}-h{self.h}x{self.w}"
            f"-b{self.batch}-{self.dtype}-{self.device}"
        )


@dataclass(frozen=True)
class Case:
    """One row: a shape computed by one implementation, run one way, in one pass."""

    shape: Shape
    impl: Impl
    pass_: str

    @property
    def variant(self) -> str:
        return self.impl.variant

    def params(self) -> dict:
        """The identifying dict (keys :data:`PARAM_KEYS`, in that order)."""
        s, i = self.shape, self.impl
        return dict(
            group=s.group, layer=s.layer, variant=i.variant, impl=i.impl,
            memory_format=i.memory_format, compiled=i.compiled, c_in=s.c_in, c_out=s.c_out,
            k=s.k, h=s.h, w=s.w, batch=s.batch, **{"pass": self.pass_}, dtype=s.dtype,
            device=s.device,
        )  # fmt: skip

    def key(self) -> tuple:
        return params_key(self.params())

    def id(self) -> str:
        """Readable test id, e.g. ``p4-group-c16x16-k3-h32x32-b1-g-rearranged-fwd-float32-cpu``
        (``-cl`` / ``-compiled`` after the implementation when it is run so)."""
        s, i = self.shape, self.impl
        how = ("-cl" if i.memory_format == "channels_last" else "") + (
            "-compiled" if i.compiled else ""
        )
        return (
            f"{s.group}-{s.layer}-c{s.c_in}x{s.c_out}-k{s.k}-h{s.h}x{s.w}-b{s.batch}"
            f"-{i.variant}-{i.impl}{how}-{self.pass_}-{s.dtype}-{s.device}"
        )


def params_key(params: dict) -> tuple:
    """Hashable key of a params dict; values normalised to ``str`` so CSV rows
    (all strings) and freshly built cases compare equal."""
    return tuple(str(params[k]) for k in PARAM_KEYS)


def impl_of(row: dict) -> Impl:
    """The :class:`Impl` of a params dict or a CSV row (strings)."""
    compiled = row.get("compiled", False)
    return Impl(
        row["variant"], row["impl"], row.get("memory_format") or "contiguous",
        compiled if isinstance(compiled, bool) else str(compiled) == "True",
    )  # fmt: skip
