"""One implementation ready to run on one shape (:class:`Subject`), seeded inputs,
and the comparison every row passes before it is timed.

A :class:`Subject` wraps the module an implementation runs plus the small
adapters between our layout (``[B, C, G, H, W]``; lifting input ``[B, C, H, W]``)
and the module's own. Adapters run once, outside the timed region. Builders
live in :mod:`bench.sweep.subjects` (sepgconv's implementations, the dense
reference) and :mod:`bench.sweep.peers` (other libraries).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .shapes import Shape

#: (rtol, atol) per dtype for assert_close. Outputs are ~N(0, 2) (He init); a
#: wrong filter or channel order gives O(1) errors, far above these. CUDA
#: float32 allows for TF32 convolutions (cuDNN's default, 10-bit mantissa).
TOLERANCES = {
    ("cpu", "float32"): (1e-4, 1e-4),
    ("cuda", "float32"): (1e-2, 2e-2),
    ("cuda", "float16"): (2e-2, 5e-2),
    ("cuda", "bfloat16"): (8e-2, 1.5e-1),
}


def tolerances(shape: Shape) -> tuple[float, float]:
    kind = "cuda" if shape.device.startswith("cuda") else "cpu"
    return TOLERANCES.get((kind, shape.dtype), (5e-2, 1e-1))


@dataclass
class Subject:
    """One implementation ready to run on one shape.

    Attributes:
        variant, impl: the implementation.
        module: what runs (``GConv2d``, ``nn.Conv2d`` or a peer wrapper).
        to_input: our-layout input → the module's input.
        to_output: the module's output → ``[B, C_out, G_out, H', W']``.
        macs_formula: forward MACs by formula.
        params_formula: parameters by formula (bias included).
        intermediate_bytes: ``{"filter": bytes, "activations": bytes}`` by formula.
        check: ``"reference"`` (compare with the variant's reference) or
            ``"equivariance"``.
    """

    variant: str
    impl: str
    module: nn.Module
    macs_formula: int
    params_formula: int
    intermediate_bytes: dict = field(default_factory=lambda: {"filter": 0, "activations": 0})
    to_input: Callable[[torch.Tensor], torch.Tensor] = lambda x: x
    to_output: Callable[[torch.Tensor], torch.Tensor] = lambda y: y
    check: str = "reference"


def seed_of(shape: Shape, variant: str) -> int:
    """A deterministic seed per (shape, variant): same weights in every run."""
    return zlib.crc32(f"{shape.label()}|{variant}".encode()) & 0x7FFFFFFF


def random_input(shape: Shape, seed: int | None = None) -> torch.Tensor:
    """A standard-normal input in our layout (never zeros), from a seeded
    generator on the shape's device (same values in every run on that device)."""
    seed = seed_of(shape, "input") if seed is None else seed
    return seeded_randn(shape.input_shape(), shape.device, shape.torch_dtype, seed)


def seeded_randn(size, device, dtype, seed: int) -> torch.Tensor:
    """``torch.randn`` drawn on ``device`` with its own seeded generator."""
    g = torch.Generator(device=device).manual_seed(seed)
    return torch.randn(size, generator=g, device=device).to(dtype)


@torch.no_grad()
def run_forward(subject: Subject, x: torch.Tensor) -> torch.Tensor:
    """Our-layout output of ``subject`` on our-layout ``x`` (eval mode, no grad)."""
    was = subject.module.training
    subject.module.eval()
    try:
        return subject.to_output(subject.module(subject.to_input(x)))
    finally:
        subject.module.train(was)


def compare(actual: torch.Tensor, expected: torch.Tensor, shape: Shape, what: str) -> str | None:
    """``assert_close`` with the dtype's tolerances; the message on mismatch, else None."""
    rtol, atol = tolerances(shape)
    try:
        torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=None)
    except AssertionError as e:
        first = " ".join(str(e).split())
        return f"{what}: {first[:400]}"
    return None
