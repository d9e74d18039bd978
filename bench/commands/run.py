"""``python -m bench run``: sweep every implementation over a profile's shapes.

Usage::

    python -m bench run [--profile smoke|quick|full] [--device cpu|cuda] [--out DIR]
                        [--resume] [--no-profile] [--no-report] [--shard I/N]

Defaults: device ``cuda`` when available, else ``cpu``; profile ``full`` on
CUDA, ``quick`` on the CPU; ``DIR = results/local/<device-slug>/`` (e.g.
``results/local/cpu-amd-epyc/``), which git ignores: a run never overwrites the
published folders ``results/<device-slug>/``; publish one with ``--out``.

Writes into DIR (see :mod:`bench.store.results`): ``results.csv`` (one row per shape ×
implementation × pass × dtype, appended and flushed as rows finish),
``samples.jsonl`` (raw latency samples), ``benchmark.json``
(pytest-benchmark's format, regenerated from the two), ``env.json``
(environment + roofline ceilings), ``profile.csv`` and ``traces/`` (the
per-operator profile, unless ``--no-profile``), then the plots and README of
``bench.report`` (unless ``--no-report``).

An interrupted run keeps its rows; ``--resume`` skips the rows already in
``results.csv`` (key: the params columns) and appends the rest. Without
``--resume`` the folder's results are started afresh. A failing implementation
is recorded (``status=error``/``oom``/``mismatch``) and the sweep goes on.

``--shard I/N`` runs part I of N (:mod:`bench.sweep.shards`: whole shapes,
deterministic, so ``--resume`` continues the same part; resuming a folder of
another part is refused); ``env.json`` records the part (``shard``) and
``python -m bench merge`` joins the parts' folders into one.
``--time-limit SECONDS`` starts no new shape once SECONDS are spent and orders
the shapes so that any prefix spreads over the profile
(:func:`bench.pipeline.run.spread_order`): the way to fit a sweep into a lent
machine's command limit; ``env.json`` → ``time_limit`` records how far it got.
Before the sweep the machine is looked at (:mod:`bench.measure.gate`): busy, the
run waits up to ``--wait-quiet SECONDS`` (default 60) for it to go quiet, then
stops with exit 2 and one line naming the neighbour's share; ``--force``
measures anyway and marks the run (``env.json`` → ``gate``).
The machine is watched during the run (:mod:`bench.measure.contention`): a
disturbed run says so on the console, in ``env.json`` (``contention``), in the
README and in the plot titles.

Exit code: 0 when the sweep finished (1 with ``--strict`` if any row is
``mismatch``/``error``/``oom`` or has ``macs_match=False``, or the run was
disturbed; 1 if the profile or the report failed), 2 for unusable arguments or a
machine that stayed busy,
130 when interrupted (Ctrl-C, or SIGTERM: the same clean stop, see
:mod:`bench.pipeline.run`).
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

from ..measure import contention, env, gate
from ..pipeline import run
from ..store import results
from ..store import shards as shard_store
from ..store.benchmark_json import case_name
from ..sweep import profiles
from . import options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=list(profiles.PROFILES),
        default=None,
        help="sweep profile (default: quick on cpu, full on cuda)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu or cuda[:N] (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="output folder (default: results/local/<device-slug>/, ignored by git)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in OUT/results.csv and run the rest",
    )
    parser.add_argument(
        "--no-profile", action="store_true", help="skip the per-operator profile at the end"
    )
    parser.add_argument("--no-report", action="store_true", help="skip plots and README")
    parser.add_argument("--no-peers", action="store_true", help="leave out peer libraries (e2cnn)")
    parser.add_argument(
        "--impl",
        action="append",
        default=None,
        metavar="VARIANT/IMPL",
        help="only these implementations (repeatable), e.g. g/rearranged",
    )
    parser.add_argument(
        "--flush-l2", action="store_true", help="CUDA: evict the L2 cache before every timed call"
    )
    parser.add_argument(
        "--max-shapes",
        type=int,
        default=None,
        metavar="N",
        help="only N of the profile's shapes, evenly spread over it (a shorter run)",
    )
    parser.add_argument(
        "--time-limit",
        type=options.seconds,
        default=None,
        metavar="SECONDS",
        help="start no new shape after SECONDS (the first always runs), and take the "
        "shapes in an order whose every prefix spreads over the profile (a capped run "
        "still covers each axis); the run "
        "ends normally, env.json 'time_limit' says how many shapes were done; --resume "
        "runs the rest",
    )
    parser.add_argument(
        "--precompile-workers",
        type=int,
        default=None,
        metavar="N",
        help="CUDA: compile the fused (Triton) kernels in N processes before the sweep "
        "(default: the cores less two; 0: compile at first use, one after the other)",
    )
    parser.add_argument(
        "--precompile-only",
        action="store_true",
        help="CUDA: compile the profile's fused kernels into Triton's on-disk cache (in "
        "--precompile-workers processes) and exit; a later run then loads them",
    )
    parser.add_argument(
        "--estimate",
        action="store_true",
        help="print the cost model's estimate of the run on an H200 (bench.sweep.cost: "
        "fitted to the first GPU run) and exit without measuring",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time every implementation under torch.compile (inductor); compile time "
        "is recorded apart (compile_s), the latency is of the compiled calls",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) for the run (default on the CPU: 1, the steadiest "
        "on a shared machine; on CUDA: torch's)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any row is mismatch/error/oom, its MAC counts disagree, "
        "or the machine was disturbed during the run",
    )
    parser.add_argument(
        "--shard",
        type=options.shard,
        default=None,
        metavar="I/N",
        help="run part I of N of the sweep: whole shapes, balanced by rows, the same cases "
        "on every rerun (so --resume works); the default --out gains -shard-IofN; only "
        "shard 1 runs the profile; join the parts with `python -m bench merge`",
    )
    gate.add_options(parser)


def _after_run(out_dir: Path, args) -> int:
    """The report hook: ``bench.report.build.make_report(out_dir)`` unless ``--no-report``.

    Returns 0, or 1 when the report failed (the results are kept either way).
    """
    if getattr(args, "no_report", False):
        return 0
    from ..report.build import make_report

    try:
        make_report(Path(out_dir))
    except Exception as e:  # noqa: BLE001 - results stay; say why the report failed
        print(f"report failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def main(args) -> int:
    try:
        device, prof = run.resolve(args.device, args.profile)
        impls = run.select_impls(args.impl, include_peers=not args.no_peers)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if getattr(args, "estimate", False):
        return _estimate(prof, impls, args)
    if getattr(args, "precompile_only", False):
        from ..pipeline import precompile

        record = precompile.precompile(
            prof.cases(device, impls), workers=args.precompile_workers,
            log=lambda m: print(m, flush=True),
        )  # fmt: skip
        print(f"precompile: {record}")
        return 1 if record.get("failed") else 0
    if args.threads is None and device == "cpu":
        args.threads = results.CPU_THREADS
    with options.torch_threads(args.threads), options.inductor_in_process(args.compile):
        return _run(args, device, prof, impls)


def _run(args, device: str, prof: profiles.Profile, impls: list) -> int:
    out = Path(args.out) if args.out else results.LOCAL_RESULTS / env.device_slug(device)
    shard = getattr(args, "shard", None)
    if shard and not args.out:  # one folder per shard: results/local/<slug>-shard-2of3/
        out = out.with_name(out.name + shard.suffix)
    try:
        if args.resume:
            shard_store.check_resume(out, shard)
        import torch

        looked = gate.from_args(args, torch.get_num_threads(), "bench run")
    except gate.MachineBusy as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except results.StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        done = run.run_sweep(
            prof, device, impls, out, resume=args.resume, flush_l2=args.flush_l2,
            compiled=args.compile, max_shapes=args.max_shapes,
            with_profile=not args.no_profile and (not shard or shard.index == 1),
            shard=shard, time_limit_s=args.time_limit, gate=looked,
            precompile_workers=getattr(args, "precompile_workers", None),
            log=lambda m: print(m, flush=True),
        )  # fmt: skip
    except results.StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (run.Terminated): the same stop
        kept = len(results.read_rows(out))
        why = "terminated (SIGTERM)" if isinstance(e, run.Terminated) else "interrupted"
        print(
            f"\n{why}: {kept} rows kept in {out / results.RESULTS_CSV}; "
            f"rerun with --resume to continue",
            file=sys.stderr,
        )
        return 130
    rows = results.read_rows(out)
    code = _summary(rows, out, done.wall_s, args.strict, done.environment.get("contention"))
    return max(code, int(done.profile_failed), _after_run(out, args))


def _estimate(prof: profiles.Profile, impls: list, args) -> int:
    """``--estimate``: the cost model's estimate of this run on the GPU it was fitted to."""
    from ..sweep import cost

    cases = prof.cases("cuda", impls, compiled=args.compile)
    if args.max_shapes:
        kept = run.spread_out(prof.shapes("cuda"), args.max_shapes)
        cases = [c for c in cases if c.shape in kept]
    timing = prof.timing_for("cuda")
    cold = cost.estimate(cases, timing)
    par = cost.estimate(cases, timing, workers=14)
    warm = cost.estimate(cases, timing, warm_triton=True)
    print(f"profile {prof.name} on {cost.H200.name}, by bench.sweep.cost:")
    print(f"  Triton cache cold, compiling at first use: {cold.summary()}")
    print(f"  cold, precompiled on 14 processes (the default on a 16-core host): "
          f"~{par.total_s:.0f} s")  # fmt: skip
    print(f"  Triton cache warm: {warm.summary()}")
    return 0


def _summary(
    rows: list[dict], out: Path, wall_s: float, strict: bool, watched: dict | None = None
) -> int:
    counts = collections.Counter(r["status"] for r in rows)
    macs_bad = [r for r in rows if r.get("macs_match") == "False"]
    noisy = sum(r.get("noisy") == "True" for r in rows)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"bench run: {len(rows)} rows ({parts}); {noisy} noisy; wall {wall_s:.0f} s -> {out}")
    for r in rows:
        if r["status"] in ("mismatch", "error"):
            print(f"  {r['status']}: {case_name(r)}: {r['error'][:160]}")
    for r in macs_bad:
        print(
            f"  macs_match=False: {case_name(r)}: formula {r['macs_formula']}, "
            f"fvcore {r['macs_measured']} {r['macs_unsupported']}"
        )
    bad = macs_bad or any(s in ("mismatch", "error", "oom") for s in counts)
    warning = contention.banner(watched)
    if warning:
        print(
            f"WARNING {warning}\n  the latencies of this run are not fit to publish or to "
            f"compare (see env.json 'contention'); rerun on a quiet machine",
            file=sys.stderr,
        )
    return 1 if strict and (bad or warning) else 0
