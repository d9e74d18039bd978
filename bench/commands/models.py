"""``python -m bench models``: the paper's models end to end (Tables 1 and 2).

Usage::

    python -m bench models [--device cpu|cuda] [--out DIR] [--quick]
                           [--models NAME[,NAME…]] [--batches N[,N…]] [--passes fwd,fwdbwd]
                           [--no-memory] [--threads N] [--deploy [IMPL[,IMPL…]]]

What is measured, and how: :mod:`bench.pipeline.models`. Output:
``DIR/models.csv`` (one row per model × impl × batch × pass, written as rows
finish; the :class:`bench.store.record.Result` record of kind ``model``),
``DIR/samples.jsonl`` and ``DIR/env.json`` (with ``--deploy`` also the
deployment rows ``export``, ``export-compiled``, ``onnxruntime`` of the ``fwd``
pass and ``DIR/deploy.json``; see :mod:`bench.pipeline.models`); ``DIR`` defaults to
``results/local/<device-slug>/models``. Exit code 0, or 1 when a row is
``mismatch``/``error``/``oom``; 2 for unusable arguments or a machine that stayed
busy (:mod:`bench.measure.gate`: ``--wait-quiet SECONDS``, ``--force``); 130 when stopped by
Ctrl-C or SIGTERM (the rows finished so far are kept; ``env.json`` records
``interrupted`` and ``wall_s``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from sepgconv import models

from ..measure import allocator, env, gate
from ..pipeline.models import DEPLOY_IMPLS, PASSES, run_models
from ..pipeline.run import stop_name
from ..store.results import CPU_THREADS, LOCAL_RESULTS, MODELS_CSV, write_env
from .options import torch_threads


def _csv_list(text: str) -> list[str]:
    return [t for t in (s.strip() for s in text.split(",")) if t]


def _int_list(text: str) -> list[int]:
    return [int(t) for t in _csv_list(text)]


def configure(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--device", default=None, help="cpu or cuda[:N] (default: cuda if available, else cpu)")
    add("--out", type=Path, default=None, help="default: results/local/<device-slug>/models")
    add("--quick", action="store_true", help="fewer samples; smaller batches on the CPU")
    add("--models", type=_csv_list, default=None, help=f"subset of: {','.join(models.names())}")
    add("--batches", type=_int_list, default=None, help="batch sizes (default: per device)")
    add("--passes", type=_csv_list, default=None, help="fwd,fwdbwd (default: both)")
    add("--no-memory", action="store_true", help="skip the peak-memory call")
    add("--threads", type=int, default=None, help="torch.set_num_threads(N) (CPU default: 1)")
    gate.add_options(parser)
    add("--deploy", nargs="?", const=",".join(DEPLOY_IMPLS), default=None, type=_csv_list,
        help="also the deployed model (fwd pass): export_modules eager and torch.compile'd, "
             "and ONNX Runtime on the CPU (needs sepgconv[deploy]); optionally a subset: "
             f"--deploy {','.join(DEPLOY_IMPLS[::2])}")  # fmt: skip


def main(args: argparse.Namespace) -> int:
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available", file=sys.stderr)
        return 2
    names = args.models or models.names()
    unknown = [n for n in names if n not in models.MODELS]
    bad_pass = [p for p in (args.passes or []) if p not in PASSES]
    bad_deploy = [d for d in (args.deploy or []) if d not in DEPLOY_IMPLS]
    if bad_deploy:
        print(f"error: unknown --deploy {bad_deploy}; valid: {list(DEPLOY_IMPLS)}", file=sys.stderr)
        return 2
    if unknown or bad_pass:
        print(f"error: unknown models {unknown} / passes {bad_pass}; models: "
              f"{models.names()}, passes: {list(PASSES)}", file=sys.stderr)  # fmt: skip
        return 2
    if args.threads is None and not device.startswith("cuda"):
        args.threads = CPU_THREADS
    with torch_threads(args.threads):
        return _run(args, device, names)


def _run(args: argparse.Namespace, device: str, names: list[str]) -> int:
    out = args.out or LOCAL_RESULTS / env.device_slug(device) / "models"
    try:  # a busy machine: wait for it (bounded), else stop before measuring anything
        looked = gate.from_args(args, torch.get_num_threads(), "bench models")
    except gate.MachineBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    allocator.steady()  # the allocator's thresholds fixed, as in bench run
    environment = env.collect(device, roofline_ceilings=False)
    environment["gate"] = looked.record()
    write_env(out, environment)
    start = time.perf_counter()
    try:
        rows = run_models(
            names, device, out, quick=args.quick, batches=args.batches, passes=args.passes,
            memory=not args.no_memory, deploy=args.deploy,
        )  # fmt: skip
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM: the same clean stop, no traceback
        environment.update(interrupted=stop_name(e), wall_s=round(time.perf_counter() - start, 1))
        write_env(out, environment)
        print(f"\n{stop_name(e)}: stopped; the rows finished so far are kept in "
              f"{out / MODELS_CSV}", file=sys.stderr)  # fmt: skip
        return 130
    environment.update(wall_s=round(time.perf_counter() - start, 1))
    write_env(out, environment)
    failed = sum(r.status in ("mismatch", "error", "oom") for r in rows)
    return 1 if failed else 0
