"""What one row is: a :class:`Shape` (group, layer kind, channels, kernel,
resolution, batch, dtype, device), one implementation ``(variant, impl)`` and one
pass (``fwd`` or ``fwdbwd``) make a :class:`Case`.

:data:`PARAM_KEYS` are the keys that identify a row everywhere: the CSV's first
columns, pytest-benchmark's ``params``, the match key of ``bench compare``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import sepgconv
from sepgconv import counting

#: the keys that identify a row (pytest-benchmark ``params``; the CSV's first columns)
PARAM_KEYS = (
    "group", "layer", "variant", "impl", "c_in", "c_out", "k", "h", "w", "batch",
    "pass", "dtype", "device",
)  # fmt: skip
PASSES = ("fwd", "fwdbwd")
REFERENCE = ("full", "naive")  # the baseline of speedup_vs_full
DENSE = ("dense", "torch")  # nn.Conv2d with the expanded filter
LOW_PRECISION = ("float16", "bfloat16")  # swept on CUDA only


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

    def layer_kwargs(self, variant: str, impl: str) -> dict:
        """``GConv2d`` arguments of this shape."""
        return dict(
            in_channels=self.c_in, out_channels=self.c_out, kernel_size=self.k,
            group=self.group, lifting=self.lifting, variant=variant, impl=impl,
            padding=self.padding, bias=True,
        )  # fmt: skip

    def label(self) -> str:
        """Readable id, e.g. ``p4-group-c16x16-k3-h32x32-b1-float32-cpu``."""
        return (
            f"{self.group}-{self.layer}-c{self.c_in}x{self.c_out}-k{self.k}-h{self.h}x{self.w}"
            f"-b{self.batch}-{self.dtype}-{self.device}"
        )


@dataclass(frozen=True)
class Case:
    """One row: a shape computed by one implementation in one pass."""

    shape: Shape
    variant: str
    impl: str
    pass_: str

    def params(self) -> dict:
        """The identifying dict (keys :data:`PARAM_KEYS`, in that order)."""
        s = self.shape
        return dict(
            group=s.group, layer=s.layer, variant=self.variant, impl=self.impl,
            c_in=s.c_in, c_out=s.c_out, k=s.k, h=s.h, w=s.w, batch=s.batch,
            **{"pass": self.pass_}, dtype=s.dtype, device=s.device,
        )  # fmt: skip

    def key(self) -> tuple:
        return params_key(self.params())

    def id(self) -> str:
        """Readable test id, e.g. ``p4-group-c16x16-k3-h32x32-b1-g-rearranged-fwd-float32-cpu``."""
        s = self.shape
        return (
            f"{s.group}-{s.layer}-c{s.c_in}x{s.c_out}-k{s.k}-h{s.h}x{s.w}-b{s.batch}"
            f"-{self.variant}-{self.impl}-{self.pass_}-{s.dtype}-{s.device}"
        )


def params_key(params: dict) -> tuple:
    """Hashable key of a params dict; values normalised to ``str`` so CSV rows
    (all strings) and freshly built cases compare equal."""
    return tuple(str(params[k]) for k in PARAM_KEYS)
