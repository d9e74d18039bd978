"""``python -m bench profile``: where the time goes, per implementation (torch.profiler).

Profiles one representative shape (the sweep profile's ``profile_point``, or
the ``--c/--k/--h/--batch/--group/--layer`` given) with every implementation;
the categories and their attribution are described in
:mod:`bench.pipeline.profiler`. Writes ``profile.csv`` and one Chrome trace
per implementation and pass into ``--out`` (default
``results/local/<device-slug>/profile``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..measure import env
from ..pipeline.profiler import run_profile
from ..store.results import LOCAL_RESULTS
from ..sweep import profiles
from ..sweep.shapes import Shape


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=list(profiles.PROFILES),
        default=None,
        help="sweep profile whose representative shape is used "
        "(default: quick on cpu, full on cuda)",
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/local/<device-slug>/profile)",
    )
    parser.add_argument("--group", choices=["p4", "p4m"], default=None)
    parser.add_argument("--layer", choices=["group", "lifting"], default=None)
    parser.add_argument("--c", type=int, default=None, help="C_in = C_out")
    parser.add_argument("--c-in", type=int, default=None)
    parser.add_argument("--c-out", type=int, default=None)
    parser.add_argument("--k", type=int, default=None)
    parser.add_argument("--h", type=int, default=None, help="H = W")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--iters", type=int, default=3, help="profiled calls per implementation")


def shape_from_args(args) -> Shape:
    device = args.device or profiles.default_device()
    prof = profiles.get_profile(args.profile or profiles.default_profile(device))
    base = prof.profile_shape(device, args.group)
    c_in = args.c_in or args.c or base.c_in
    c_out = args.c_out or args.c or base.c_out
    h = args.h or base.h
    return Shape(
        args.group or base.group,
        args.layer or base.layer,
        c_in,
        c_out,
        args.k or base.k,
        h,
        h,
        args.batch or base.batch,
        args.dtype,
        device,
    )


def main(args) -> int:
    shape = shape_from_args(args)
    out = args.out or LOCAL_RESULTS / env.device_slug(shape.device) / "profile"
    path = run_profile(shape, out, out, iters=args.iters)
    print(f"profile of {shape.label()}: {path} (traces in {out})")
    return 0
