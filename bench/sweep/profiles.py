"""The named sweeps: which shapes, implementations, passes and dtypes a run covers.

Implementations (:func:`implementations`) are every entry of the sepgconv
registry (iterated, never listed by hand), then the dense reference
``("dense", "torch")`` and, when ``e2cnn`` is importable, the peer
``("full", "e2cnn")`` (see :mod:`bench.sweep.peers`).

.. note ::
    ``dense/torch`` is a plain ``torch.nn.Conv2d`` from ``C_in·G_in`` to
    ``C_out·G_out`` channels whose weight *is* the full GConv's expanded filter
    F̃. It executes exactly the MACs of the full GConv's dense conv but builds
    no filter, so ``full/naive`` minus ``dense/torch`` is the cost of filter
    expansion (in ``fwd``, eval mode, the expanded filter is cached and the two
    should be equal).

Profiles (:data:`PROFILES`): ``smoke`` (a few tiny shapes, seconds; the tests
use it), ``quick`` (the CPU default: a C × k grid at H = 16 and H = 32 plus
a cross over H, batch, in ≠ out and lifting shapes; its env.json records the wall
time, every check and the profile included), ``full`` (the GPU default:
26 shapes, 594 rows with the 11 implementations of today's registry, sized with
the cost model :mod:`bench.sweep.cost` fitted to the first H200 run). A profile varies one axis
at a time around a base point (:func:`around`), adds grids (:func:`grid`) and a few
extra points.

The up-front memory guard (``status=skipped``) is :mod:`bench.sweep.guard`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch

import sepgconv

from ..measure.timing import Timing
from . import peers
from .shapes import DENSE, FORMATS, LOW_PRECISION, PASSES, REFERENCE, Case, Impl, Shape


def implementations(include_peers: bool = True) -> list[Impl]:
    """Every implementation swept (eager, contiguous): the registry, then
    ``dense/torch``, then peers. A profile's points add memory formats and
    ``--compile`` adds compiled runs (:meth:`Profile.cases`)."""
    impls = [Impl(v, i) for v, i in sepgconv.implementations()]
    if REFERENCE in impls:  # the reference first, so its latency is known early
        impls.remove(REFERENCE)
        impls.insert(0, REFERENCE)
    impls.append(DENSE)
    if include_peers:
        impls.extend(Impl(v, i) for v, i in peers.implementations())
    return impls


def runs_in(impl: Impl, memory_format: str) -> bool:
    """Whether ``impl`` is swept in ``memory_format`` (peers: contiguous only)."""
    return memory_format == "contiguous" or (impl.variant, impl.impl) not in peers.implementations()


@dataclass(frozen=True)
class Point:
    """A shape without group, dtype and device. ``lowp``: also swept in
    float16/bfloat16 on CUDA."""

    c_in: int
    c_out: int
    k: int = 3
    h: int = 32
    batch: int = 1
    layer: str = "group"
    lowp: bool = False
    formats: tuple[str, ...] = ("contiguous",)  # memory formats every implementation runs in


def around(base: Point, **axes) -> list[Point]:
    """The base point, then one axis varied at a time (``c`` sets ``c_in = c_out``)."""
    points = [base]
    for axis, values in axes.items():
        for v in values:
            change = {"c_in": v, "c_out": v} if axis == "c" else {axis: v}
            points.append(dataclasses.replace(base, **change))
    return points


def grid(base: Point, cs, ks) -> list[Point]:
    """Every (``c_in = c_out``, ``k``) pair at the base point's other settings."""
    return [dataclasses.replace(base, c_in=c, c_out=c, k=k) for c in cs for k in ks]


def unique(points) -> tuple[Point, ...]:
    """The points in order, each once (a grid and a cross share their centre)."""
    return tuple(dict.fromkeys(points))


@dataclass(frozen=True)
class Profile:
    """A named sweep.

    Args:
        name: ``smoke``, ``quick`` or ``full``.
        description: one line.
        points: the shapes (× ``groups``; lifting points too).
        groups: ``("p4", "p4m")``.
        passes: ``("fwd", "fwdbwd")``.
        timing: CPU timing; ``cuda_timing`` on CUDA.
        profile_point: the representative shape of the per-operator profile.
    """

    name: str
    description: str
    points: tuple[Point, ...]
    profile_point: Point
    groups: tuple[str, ...] = ("p4", "p4m")
    passes: tuple[str, ...] = PASSES
    timing: Timing = field(default_factory=Timing)
    cuda_timing: Timing = field(default_factory=Timing)

    def dtypes(self, point: Point, device: str) -> tuple[str, ...]:
        if device.startswith("cuda") and point.lowp:
            return ("float32", *LOW_PRECISION)
        return ("float32",)

    def timing_for(self, device: str) -> Timing:
        return self.cuda_timing if device.startswith("cuda") else self.timing

    def shapes(self, device: str) -> list[Shape]:
        """Every shape of the profile on ``device``, without duplicates, in order."""
        return list(self._formats(device))

    def _formats(self, device: str) -> dict[Shape, tuple[str, ...]]:
        """``{shape: memory formats}`` (the union over the points that give the shape)."""
        out: dict[Shape, tuple[str, ...]] = {}
        for p in self.points:
            for group in self.groups:
                for dtype in self.dtypes(p, device):
                    s = Shape(
                        group, p.layer, p.c_in, p.c_out, p.k, p.h, p.h, p.batch, dtype, device
                    )
                    seen = out.get(s, ())
                    out[s] = seen + tuple(f for f in p.formats if f not in seen)
        return out

    def cases(
        self, device: str, impls: list[Impl] | None = None, compiled: bool = False
    ) -> list[Case]:
        """Shapes × implementations × their memory formats (× compiled, eager) × passes.

        Args:
            impls: the implementations (default :func:`implementations`); their
                own ``memory_format``/``compiled`` are ignored: each runs in the
                formats the shape's points ask for.
            compiled: add a ``torch.compile`` run of every implementation and format.
        """
        impls = implementations() if impls is None else impls
        modes = (False, True) if compiled else (False,)
        return [
            Case(s, Impl(im.variant, im.impl, fmt, c), p)
            for s, formats in self._formats(device).items()
            for p in self.passes
            for fmt in formats
            for c in modes
            for im in impls
            if runs_in(im, fmt)
        ]

    def profile_shape(self, device: str, group: str | None = None) -> Shape:
        p = self.profile_point
        g = group or self.groups[-1]
        return Shape(g, p.layer, p.c_in, p.c_out, p.k, p.h, p.h, p.batch, "float32", device)


_SMOKE = Profile(
    name="smoke",
    description="three tiny shapes, every implementation, both passes, one in both memory "
    "formats (seconds)",
    points=(
        Point(4, 4, k=3, h=8, formats=FORMATS),
        Point(4, 6, k=1, h=8),
        Point(3, 4, k=3, h=8, layer="lifting"),
    ),
    profile_point=Point(4, 4, k=3, h=8),
    groups=("p4", "p4m"),
    timing=Timing(budget_s=0.01, block_s=0.001, min_samples=5, max_samples=10, warmup_s=0.0),
    cuda_timing=Timing(budget_s=0.01, min_samples=5, max_samples=20, warmup_calls=2),
)

# CPU default, one thread (bench.store.results.CPU_THREADS). Sized for <= 10 min
# on 2 quiet cores of either CPU kind: on the AMD EPYC VM a run of 8 of its shapes
# spent 56 % of its time in the timed rounds (budget 0.2 s then), 18 % in
# impl="auto" choosing (the library's default tuning budget, kept so that auto
# rows show what users get), the rest building, checking, counting and the
# memory call; the budget is 0.1 s (<= 20 samples, the paired ratios' run-to-run
# spread stays ~2 %) and the H = 32 grid covers C = 8 and 32. The run's env.json
# records its wall time.
_QUICK_BASE = Point(16, 16, k=3, h=16, batch=1)
_QUICK = Profile(
    name="quick",
    description="CPU default: a C x k grid at H=16 and H=32, plus H, batch, in != out and "
    "lifting shapes (4-8 min)",
    points=unique(
        (
            *around(_QUICK_BASE, c=(4, 8, 32, 64), k=(1, 5, 7), batch=(4, 16)),
            *grid(_QUICK_BASE, cs=(8, 16, 32, 64), ks=(1, 3, 5, 7)),
            *grid(Point(16, 16, k=3, h=32), cs=(8, 32), ks=(1, 3, 5, 7)),
            *around(Point(8, 8, k=3, h=32), h=(8, 64, 128)),
            Point(8, 16, k=3, h=16),
            Point(16, 8, k=3, h=16),
            Point(16, 32, k=3, h=16),
            Point(32, 16, k=3, h=16),
            # both memory formats: the C series at k = 3, and k = 5 and H = 32
            *around(Point(16, 16, k=3, h=16, formats=FORMATS), c=(8, 32, 64)),
            Point(16, 16, k=5, h=16, formats=FORMATS),
            Point(16, 16, k=3, h=32, formats=FORMATS),
            Point(3, 16, k=3, h=32, layer="lifting"),
            Point(3, 8, k=5, h=64, layer="lifting"),
            Point(3, 32, k=7, h=32, layer="lifting"),
            Point(1, 16, k=3, h=64, layer="lifting"),
        )
    ),
    profile_point=Point(16, 16, k=3, h=32),
    timing=Timing(budget_s=0.1, block_s=0.005, min_samples=5, max_samples=20, warmup_s=0.01),
)

# GPU default, sized with the cost model fitted to the first H200 run
# (bench.sweep.cost; `python -m bench run --profile full --estimate` prints it):
# 26 shapes × 22 rows = 572 rows. That run spent 92 % of its time in Triton
# (compiling every autotune configuration of every kernel per new shape, one after
# the other, 0.2-6 s each), so: the fused kernels compile in parallel processes
# before the sweep (bench.pipeline.precompile), autotune benchmarks take 25 ms
# instead of 125 ms and are cached on disk, k stops at 5 (a k = 7 kernel compiles
# ~5.8 s per configuration), float16/bfloat16 at the base point, and the CUDA
# timing budget is 0.05 s (10-60 samples: the GPU's IQR is ~2 % of the median).
# The axes: C 16-128 (p4 and p4m), k 1-5, H 16-64, batch 8 and 32, fp32 + fp16 +
# bf16, in != out, lifting; channels_last at the base point.
_FULL_BASE = Point(64, 64, k=3, h=32, batch=32)
_FULL = Profile(
    name="full",
    description="GPU default: C 16-128, k 1-5, H 16-64, batch 8 and 32, fp32 + fp16/bf16, "
    "channels_last at the base (~5 min on an H200 by the cost model)",
    points=unique(
        (
            dataclasses.replace(_FULL_BASE, lowp=True, formats=FORMATS),
            *around(_FULL_BASE, c=(16, 32, 128), k=(1, 5), batch=(8,)),
            *around(Point(32, 32, k=3, h=32, batch=32), h=(16, 64)),
            Point(32, 64, k=3, h=32, batch=32),
            Point(3, 32, k=3, h=64, batch=32, layer="lifting"),
        )
    ),
    profile_point=_FULL_BASE,
    timing=Timing(budget_s=0.2, block_s=0.005, min_samples=5, max_samples=30),
    cuda_timing=Timing(
        budget_s=0.05, min_samples=10, max_samples=60, warmup_calls=2, warmup_s=0.01
    ),
)

PROFILES: dict[str, Profile] = {p.name: p for p in (_SMOKE, _QUICK, _FULL)}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(
            f"unknown sweep profile {name!r}; valid choices: {list(PROFILES)}"
        ) from None


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_profile(device: str) -> str:
    return "full" if device.startswith("cuda") else "quick"
