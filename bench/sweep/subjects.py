"""What is timed: one module per implementation of a shape, and its correctness check.

A :class:`Subject` wraps the module an implementation runs plus the small
adapters between our layout (``[B, C, G, H, W]``; lifting input ``[B, C, H, W]``)
and the module's own. Adapters run once, outside the timed region.

Correctness (before any timing, DESIGN §4 and STYLE "the naive implementation
is the reference"):

* Every GConv implementation of a variant is built from one seeded layer of
  that variant, so all of them share one ``state_dict``.
* The reference output of a variant is the naive definition computed
  independently of the library's index tables: F̃ built element by element
  from ``layer.filter()`` with the group's Cayley table and spatial transform
  (``F̃[n, h, c, g] = T_h(F[n, c, h⁻¹g])``), then one ``F.conv2d``
  (:func:`reference_output`). Every implementation of the variant — the naive
  one included — is compared with it by ``torch.testing.assert_close``.
* ``dense/torch`` (an ``nn.Conv2d`` holding the full GConv's F̃) is compared
  with the full variant's reference.
* Peers (:mod:`bench.sweep.peers`) have their own weights: they are checked for
  equivariance under sepgconv's group action instead.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

import sepgconv
from sepgconv import counting

from . import peers
from .shapes import DENSE, REFERENCE, Impl, Shape
from .subject import Subject, compare, run_forward, seed_of


def reference_layer(shape: Shape, variant: str) -> sepgconv.GConv2d:
    """The seeded layer of ``variant`` every implementation of it copies."""
    impls = sepgconv.impls_of(variant)
    first = "naive" if "naive" in impls else impls[0]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed_of(shape, variant))
        layer = sepgconv.GConv2d(**shape.layer_kwargs(variant, first))
    return layer.to(device=shape.device, dtype=shape.torch_dtype)


def gconv_subject(layer: sepgconv.GConv2d, shape: Shape) -> Subject:
    """A sepgconv layer as it is timed (for ``impl="auto"`` the counts are those of
    the implementation it chooses for inference on this shape: choosing times it)."""
    return Subject(
        variant=layer.variant,
        impl=layer.impl,
        module=layer,
        macs_formula=counting.layer_macs(layer, shape.h, shape.w, shape.batch),
        params_formula=counting.layer_params(layer),
        intermediate_bytes=counting.intermediate_bytes(layer, shape.h, shape.w, shape.batch),
    )


def dense_subject(
    full: sepgconv.GConv2d, shape: Shape, memory_format: str = "contiguous"
) -> Subject:
    """``nn.Conv2d(C_in·G_in → C_out·G_out)`` holding the full GConv's F̃ (and bias);
    in ``channels_last`` its weight and input are NHWC (the fair floor for that format)."""
    s = shape.layer_shape()
    conv = nn.Conv2d(
        s.c_in * s.g_in, s.c_out * s.g_out, s.k, padding=shape.padding, bias=True,
        device=shape.device, dtype=shape.torch_dtype,
    )  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(full.expand_filter().reshape_as(conv.weight))
        conv.bias.copy_(full.bias.repeat_interleave(s.g_out))
    fmt = torch.channels_last if memory_format == "channels_last" else torch.contiguous_format
    conv = conv.to(memory_format=fmt)
    b = shape.batch
    return Subject(
        variant=DENSE.variant,
        impl=DENSE.impl,
        module=conv,
        macs_formula=counting.dense_macs(s),
        params_formula=conv.weight.numel() + conv.bias.numel(),  # the dense conv's count
        to_input=lambda x: x.reshape(b, s.c_in * s.g_in, s.h_in, s.w_in).contiguous(
            memory_format=fmt
        ),
        to_output=lambda y: y.reshape(b, s.c_out, s.g_out, y.shape[-2], y.shape[-1]),
    )


def build(shape: Shape, impl: Impl, refs: dict | None = None) -> Subject:
    """The subject of ``impl`` (its registry entry, memory format, eager or compiled)
    on ``shape``.

    Args:
        refs: a cache ``{variant: reference layer}`` shared by the
            implementations of one shape (so they share weights).
    """
    refs = {} if refs is None else refs
    key, fmt = (impl.variant, impl.impl), impl.memory_format
    if key == DENSE[:2]:
        subj = dense_subject(_ref(refs, shape, REFERENCE.variant), shape, fmt)
    elif key in sepgconv.implementations():
        ref = _ref(refs, shape, impl.variant)
        if ref.impl == impl.impl and fmt == "contiguous":
            layer = ref
        else:  # its own copy of the reference's parameters (to_impl alone would share them)
            layer = copy.deepcopy(ref).to_impl(impl.impl, memory_format=fmt)
        subj = gconv_subject(layer, shape)
        subj.to_input = lambda x: sepgconv.to_memory_format(x, fmt)
    else:
        subj = peers.build(shape, impl.variant, impl.impl)
    if impl.compiled:
        # one shape compiles each implementation for two passes and two formats: more
        # versions of GConv2d.forward than dynamo's default limit of 8 (the driver
        # resets dynamo between shapes)
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
        # auto chooses outside any graph: a graph break where it has not chosen yet
        subj.module = torch.compile(subj.module, fullgraph=impl.impl != "auto")
    return subj


def _ref(refs: dict, shape: Shape, variant: str) -> sepgconv.GConv2d:
    if variant not in refs:
        refs[variant] = reference_layer(shape, variant)
    return refs[variant]


# ---------------------------------------------------------------------- #
# correctness
# ---------------------------------------------------------------------- #
def reference_filter(layer: sepgconv.GConv2d) -> torch.Tensor:
    """F̃ ``[C_out, G_out, C_in, G_in, k, k]`` from the definition, element by element."""
    f = layer.filter().detach()  # [N, C, G_in, k, k]
    grp = layer.group
    n, c, gi, k, _ = f.shape
    out = f.new_empty(n, layer.g_out, c, gi, k, k)
    for h in range(layer.g_out):
        for g in range(gi):
            src = grp.cayley[grp.inverse[h]][g] if gi > 1 else 0  # index of h⁻¹g
            out[:, h, :, g] = grp.transform(f[:, :, src], h)
    return out


@torch.no_grad()
def reference_output(layer: sepgconv.GConv2d, x: torch.Tensor) -> torch.Tensor:
    """The naive GConv on our-layout ``x``, computed from :func:`reference_filter`."""
    ft = reference_filter(layer)
    n, go, c, gi, k, _ = ft.shape
    b, h, w = x.shape[0], x.shape[-2], x.shape[-1]
    bias = None if layer.bias is None else layer.bias.detach().repeat_interleave(go)
    y = F.conv2d(
        x.reshape(b, c * gi, h, w), ft.reshape(n * go, c * gi, k, k), bias, 1, layer.padding
    )
    return y.view(b, n, go, y.shape[-2], y.shape[-1])


class References:
    """The reference outputs of one shape and input, computed on first use.

    Args:
        shape: the shape.
        x: our-layout input.
        refs: the ``{variant: reference layer}`` cache given to :func:`build`.
    """

    def __init__(self, shape: Shape, x: torch.Tensor, refs: dict):
        self.shape, self.x, self.refs = shape, x, refs
        self._outputs: dict[str, torch.Tensor] = {}

    def output(self, variant: str) -> torch.Tensor:
        if variant not in self._outputs:
            layer = _ref(self.refs, self.shape, variant)
            self._outputs[variant] = reference_output(layer, self.x)
        return self._outputs[variant]


def check(subject: Subject, references: References) -> str | None:
    """Check ``subject`` on the references' input: the mismatch message, or None."""
    x, shape = references.x, references.shape
    if subject.check == "equivariance":
        return peers.check_equivariance(subject, x, shape)
    variant = REFERENCE[0] if (subject.variant, subject.impl) == DENSE[:2] else subject.variant
    what = f"{subject.variant}/{subject.impl} vs the {variant} reference (independent F̃)"
    return compare(run_forward(subject, x), references.output(variant), shape, what)
