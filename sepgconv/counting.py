"""Parameter and MAC counts: the §3.4 formulas as code, and measured counts.

Units: a MAC is one multiply-accumulate (fvcore's "flop" for convolutions is
exactly one MAC; ``torch.utils.flop_counter`` counts two). Bias additions,
padding and the parameter-side work of building filters are not counted.

Two kinds of formula live here:

* :func:`macs_section34` — the paper's table (§3.4) verbatim, evaluated at one
  resolution ``H×W`` ('same' padding, stride 1 assumed by the paper).
* :func:`layer_macs` — what an implementation really executes for a given
  input size, stride and padding. The rearranged implementations run their
  pointwise step on the *input* grid ``H_in×W_in`` and their spatial step on
  the *output* grid ``H_out×W_out``; with 'same' padding and stride 1 the two
  grids coincide and :func:`layer_macs` equals :func:`macs_section34`.

Measured counts: :func:`measure_params` (from the module) and
:func:`measure_macs` (fvcore's FlopCountAnalysis). The filter-building ops
(``aten::index``, ``aten::mul`` on parameters) are kept out of the counted
graph: the counter runs the module in eval mode under ``no_grad`` after one
warm-up call, so the expanded weights come from the layer's eval cache and the
traced graph holds only the convolutions.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter

import torch


def output_size(size: int, k: int, stride: int = 1, padding: int = 0) -> int:
    """Spatial output size of a convolution (dilation 1)."""
    out = (size + 2 * padding - k) // stride + 1
    if out < 1:
        raise ValueError(
            f"input size {size} with padding {padding} is smaller than kernel size {k}"
        )
    return out


@dataclasses.dataclass(frozen=True)
class LayerShape:
    """Everything the formulas need about one layer call.

    ``g_in`` is 1 for a lifting layer. ``padding`` is the (symmetric) integer
    padding actually applied.
    """

    c_in: int
    c_out: int
    g_in: int
    g_out: int
    k: int
    h_in: int
    w_in: int
    stride: int = 1
    padding: int = 0
    batch: int = 1

    @property
    def h_out(self) -> int:
        return output_size(self.h_in, self.k, self.stride, self.padding)

    @property
    def w_out(self) -> int:
        return output_size(self.w_in, self.k, self.stride, self.padding)


# ---------------------------------------------------------------------- #
# parameters (§3.4)
# ---------------------------------------------------------------------- #
def params_formula(variant: str, c_in: int, c_out: int, g_in: int, k: int, bias: bool = False):
    """Trainable parameters of one layer: full ``C_in·G_in·k²·C_out``, g
    ``C_in·C_out·(G_in + k²)``, gc ``C_out·(C_in·G_in + k²)``; ``+ C_out`` with bias."""
    if variant == "full":
        n = c_in * g_in * k * k * c_out
    elif variant == "g":
        n = c_in * c_out * (g_in + k * k)
    elif variant == "gc":
        n = c_out * (c_in * g_in + k * k)
    else:
        raise ValueError(f"unknown variant {variant!r}; valid choices: ['full', 'g', 'gc']")
    return n + (c_out if bias else 0)


# ---------------------------------------------------------------------- #
# MACs
# ---------------------------------------------------------------------- #
def macs_section34(variant: str, c_in, c_out, g_in, g_out, k, h, w) -> int:
    """The §3.4 MAC count per sample at resolution ``h×w`` (the paper's table)."""
    if variant == "full":
        return c_in * g_in * k * k * h * w * c_out * g_out
    if variant == "g":
        return c_in * c_out * g_out * h * w * (g_in + k * k)
    if variant == "gc":
        return c_out * g_out * h * w * (c_in * g_in + k * k)
    raise ValueError(f"unknown variant {variant!r}; valid choices: ['full', 'g', 'gc']")


def dense_macs(s: LayerShape) -> int:
    """One dense conv with the expanded filter (full GConv; naive g/gc)."""
    return s.batch * s.c_out * s.g_out * s.c_in * s.g_in * s.k**2 * s.h_out * s.w_out


def g_rearranged_macs(s: LayerShape) -> int:
    """Eq. 9 (grouped 1×1 on the input grid) + Eq. 8 (grouped k×k on the output grid)."""
    pointwise = s.c_in * s.c_out * s.g_out * s.g_in * s.h_in * s.w_in
    spatial = s.c_in * s.c_out * s.g_out * s.k**2 * s.h_out * s.w_out
    return s.batch * (pointwise + spatial)


def gc_rearranged_macs(s: LayerShape) -> int:
    """Eq. 15 (dense 1×1 on the input grid) + Eq. 14 (depthwise k×k on the output grid)."""
    pointwise = s.c_out * s.g_out * s.c_in * s.g_in * s.h_in * s.w_in
    spatial = s.c_out * s.g_out * s.k**2 * s.h_out * s.w_out
    return s.batch * (pointwise + spatial)


def layer_macs(layer, h: int, w: int, batch: int = 1) -> int:
    """MACs the layer's implementation executes on a ``batch×…×h×w`` input
    (for ``impl="auto"``: the implementation it chooses for that input). An
    implementation whose count depends on the dtype and device (``impl="fused"`` g: its
    tl.dot forward runs the dense count) answers through ``macs_for``."""
    impl = layer.executed_impl(h, w, batch)
    shape = layer.layer_shape(h, w, batch)
    param = next(layer.parameters(), None)
    if hasattr(impl, "macs_for") and param is not None:
        return impl.macs_for(shape, param.dtype, param.device)
    return impl.macs(shape)


def layer_params(layer) -> int:
    """The §3.4 parameter formula for a layer (bias included if it has one)."""
    return params_formula(
        layer.variant,
        layer.in_channels,
        layer.out_channels,
        layer.g_in,
        layer.kernel_size,
        bias=layer.bias is not None,
    )


def intermediate_bytes(layer, h: int, w: int, batch: int = 1, itemsize: int | None = None):
    """Formula bytes of the intermediates an implementation materialises.

    Returns a dict with ``filter`` (expanded weights: F̃, or T_h(K) and w̃) and
    ``activations`` (X̃ and its copies, for rearranged implementations).
    """
    if itemsize is None:
        itemsize = torch.empty((), dtype=layer.dtype).element_size()
    cls = layer.executed_impl(h, w, batch)
    elements = cls.intermediate_elements(layer.layer_shape(h, w, batch))
    return {name: n * itemsize for name, n in elements.items()}


# ---------------------------------------------------------------------- #
# measured counts
# ---------------------------------------------------------------------- #
def measure_params(module: torch.nn.Module) -> int:
    """Number of trainable parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


@dataclasses.dataclass
class MacCount:
    """fvcore's count (in MACs) and what it could not count."""

    total: int
    by_operator: dict[str, int]
    unsupported: dict[str, int]


def _zero_handle(inputs, outputs) -> int:
    return 0


def measure_macs(module: torch.nn.Module, *inputs, op_handles: dict | None = None) -> MacCount:
    """Count MACs of ``module(*inputs)`` with fvcore's FlopCountAnalysis.

    The module runs in eval mode under ``no_grad`` (restored afterwards), after
    one warm-up call that fills the layers' eval caches, so filter construction
    stays out of the traced graph.

    Args:
        module: the module to count.
        *inputs: its positional inputs.
        op_handles: extra fvcore handles, ``{"aten::op": handle_or_None}``; ``None``
            counts the op as zero MACs, also for ops fvcore counts by default.
    """
    from fvcore.nn import FlopCountAnalysis

    from sepgconv import registry

    # ops that registered implementations add (e.g. the fused kernel's custom op)
    handles = {}
    for variant, impl in registry.implementations():
        handles.update(getattr(registry.get(variant, impl), "fvcore_handles", None) or {})
    handles.update(op_handles or {})
    op_handles = handles
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            module(*inputs)
            analysis = FlopCountAnalysis(module, inputs)
            if op_handles:
                # fvcore's set_op_handle(name, None) only ignores ops that have no built-in
                # handle; a zero-count handle removes a built-in one (e.g. batch_norm) too.
                analysis.set_op_handle(
                    **{k: _zero_handle if v is None else v for k, v in op_handles.items()}
                )
            analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
            total = analysis.total()
            by_op = dict(analysis.by_operator())
            unsupported = dict(Counter(analysis.unsupported_ops()))
    finally:
        module.train(was_training)
    if total != math.floor(total):
        raise AssertionError(f"fvcore returned a fractional MAC count {total}")
    return MacCount(int(total), {k: int(v) for k, v in by_op.items()}, unsupported)
