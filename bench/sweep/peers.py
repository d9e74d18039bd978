"""Optional peer row: e2cnn's ``R2Conv`` as one more implementation of the full GConv.

Installed with the ``peers`` extra (``pip install e2cnn``; e2cnn 0.2.3 works
with torch 2.13). When ``e2cnn`` is not importable, :func:`implementations`
is empty and nothing else here runs.

The peer is ``(variant="full", impl="e2cnn")``: ``R2Conv`` between fields of
the regular representation of C4 (p4) or D4 (p4m) — the lifting layer's input
is ``C_in`` trivial fields — with k×k kernels, padding ``k // 2`` and a bias.
Like ``full/naive`` it expands its filter and runs one dense conv (its filter
lives in e2cnn's steerable basis, so ``params_measured`` is e2cnn's basis
size, not the full GConv's ``params_formula``).

.. note ::
    Channel layout. e2cnn stores a field of the regular representation as
    ``|G|`` consecutive channels, channel ``i`` holding group element
    ``G.elements[i]``: the same ``[B, C, G, H, W]`` blocking as ours, but a
    different order of the group axis. :func:`element_map` derives the
    bijection ``φ`` (e2cnn element index → sepgconv index) by transforming a
    test image both ways (e2cnn's action on a trivial field vs.
    ``Group.transform``) and checks that e2cnn's regular representation is
    the permutation ``φ`` predicts (left multiplication). The input is
    permuted to e2cnn's order (``x[:, :, φ]``) and the output back, outside the
    timed region. Before timing, the peer is checked for equivariance under
    sepgconv's group action (``layer(u·x) = u·layer(x)`` for the generators).
"""

from __future__ import annotations

import functools
import importlib.util
import warnings

import numpy as np
import torch
from torch import nn

import sepgconv
from sepgconv import counting

from .shapes import Shape
from .subject import Subject, compare, run_forward, seed_of

IMPL = ("full", "e2cnn")


def available() -> bool:
    return importlib.util.find_spec("e2cnn") is not None


def implementations() -> list[tuple[str, str]]:
    """``[("full", "e2cnn")]`` when e2cnn is importable, else ``[]``."""
    return [IMPL] if available() else []


def _gspace(group: str):
    from e2cnn import gspaces

    return gspaces.Rot2dOnR2(N=4) if group == "p4" else gspaces.FlipRot2dOnR2(N=4)


@functools.lru_cache(maxsize=4)
def element_map(group: str) -> tuple[int, ...]:
    """``φ[i]``: sepgconv's index of e2cnn's group element ``i`` (see the module note)."""
    from e2cnn import nn as enn

    gs, grp = _gspace(group), sepgconv.get_group(group)
    img = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)  # no symmetry
    trivial = enn.FieldType(gs, [gs.trivial_repr])
    phi = []
    for e in gs.fibergroup.elements:
        moved = enn.GeometricTensor(img, trivial).transform(e).tensor
        hits = [u for u in range(grp.order) if torch.equal(grp.transform(img, u), moved)]
        if len(hits) != 1:
            raise AssertionError(f"e2cnn element {e} matches sepgconv elements {hits}")
        phi.append(hits[0])
    # e2cnn's regular representation must be left multiplication in this order
    for a, e in enumerate(gs.fibergroup.elements):
        rho = np.asarray(gs.regular_repr(e))
        want = np.zeros_like(rho)
        for i in range(grp.order):
            j = phi.index(grp.cayley[phi[a]][phi[i]])
            want[j, i] = 1.0
        if not np.allclose(rho, want, atol=1e-6):
            raise AssertionError(
                f"e2cnn's regular representation of {e} is not the expected permutation"
            )
    return tuple(phi)


class E2CNNConv(nn.Module):
    """Tensor-in, tensor-out wrapper of ``R2Conv`` (e2cnn's channel order)."""

    def __init__(self, conv, in_type):
        super().__init__()
        self.conv = conv
        self.in_type = in_type

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from e2cnn import nn as enn

        return self.conv(enn.GeometricTensor(x, self.in_type)).tensor


def build(shape: Shape, variant: str, impl: str):
    """The peer's :class:`bench.sweep.subject.Subject` on ``shape``."""
    if (variant, impl) != IMPL:
        raise ValueError(f"unknown peer implementation {variant}/{impl}; known: {IMPL}")
    from e2cnn import nn as enn

    gs = _gspace(shape.group)
    phi = torch.tensor(element_map(shape.group), device=shape.device)
    inv = torch.argsort(phi)  # inv[φ[i]] = i
    in_repr = gs.trivial_repr if shape.lifting else gs.regular_repr
    in_type = enn.FieldType(gs, shape.c_in * [in_repr])
    out_type = enn.FieldType(gs, shape.c_out * [gs.regular_repr])
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(seed_of(shape, "e2cnn"))
        try:
            conv = enn.R2Conv(in_type, out_type, shape.k, padding=shape.padding, bias=True)
        except AttributeError as e:
            if "tostring" not in str(e):
                raise
            raise RuntimeError(
                f"e2cnn cannot build this kernel basis with numpy {np.__version__} "
                f"(it calls ndarray.tostring, removed in numpy 2; D4/p4m hits it): "
                f"use numpy<2 for this peer"
            ) from e
    module = E2CNNConv(conv, in_type).to(device=shape.device, dtype=shape.torch_dtype)
    s = shape.layer_shape()
    b = shape.batch

    def to_input(x):
        if shape.lifting:
            return x
        return x[:, :, phi].reshape(b, s.c_in * s.g_in, s.h_in, s.w_in)

    def to_output(y):
        return y.view(b, s.c_out, s.g_out, y.shape[-2], y.shape[-1])[:, :, inv]

    full_filter = s.c_out * s.g_out * s.c_in * s.g_in * s.k**2 * shape.itemsize
    return Subject(
        variant=variant,
        impl=impl,
        module=module,
        macs_formula=counting.dense_macs(s),
        params_formula=counting.params_formula("full", s.c_in, s.c_out, s.g_in, s.k, bias=True),
        intermediate_bytes={"filter": full_filter, "activations": 0},
        to_input=to_input,
        to_output=to_output,
        check="equivariance",
    )


def check_equivariance(subject, x: torch.Tensor, shape: Shape) -> str | None:
    """``layer(u·x) == u·layer(x)`` for the group's generators (r; and m for p4m),
    with sepgconv's action; the mismatch message, or None."""
    grp = sepgconv.get_group(shape.group)
    y = run_forward(subject, x)
    generators = [1] + ([4] if grp.order == 8 else [])  # r, m (index 4j + i)
    for u in generators:
        msg = compare(
            run_forward(subject, grp.act(x, u)),
            grp.act(y, u),
            shape,
            f"{subject.variant}/{subject.impl} equivariance under {grp.element_name(u)}",
        )
        if msg:
            return msg
    return None
