"""``python -m bench run``: sweep every implementation over a profile's shapes.

Usage::

    python -m bench run [--profile smoke|quick|full] [--device cpu|cuda] [--out DIR]
                        [--resume] [--no-profile] [--no-report]

Defaults: device ``cuda`` when available, else ``cpu``; profile ``full`` on
CUDA, ``quick`` on the CPU; ``DIR = results/<device-slug>/`` (e.g.
``results/cpu-intel-xeon-platinum-8375c/``, ``results/nvidia-h100-80gb-hbm3/``).

Writes into DIR (see :mod:`bench.store`): ``results.csv`` (one row per shape ×
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
Exit code: 0 when the sweep finished (1 with ``--strict`` if any row is
``mismatch``/``error``/``oom`` or has ``macs_match=False``; 1 if the profile
or the report failed), 2 for unusable
arguments, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

from bench import sweep
from bench.sweep import REFERENCE


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--profile",
        choices=list(sweep.PROFILES),
        default=None,
        help="sweep profile (default: quick on cpu, full on cuda)",
    )
    parser.add_argument(
        "--device", default=None, help="cpu or cuda[:N] (default: cuda if available, else cpu)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default: results/<device-slug>/)"
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
        "--threads",
        type=int,
        default=None,
        help="torch.set_num_threads(N) for the run (default: torch's)",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any row is mismatch/error/oom or its MAC counts disagree",
    )


def _after_run(out_dir: Path, args) -> int:
    """The report hook: ``bench.report.make_report(out_dir)`` unless ``--no-report``.

    Returns 0, or 1 when the report failed (the results are kept either way).
    """
    if getattr(args, "no_report", False):
        return 0
    try:
        from bench.report import make_report
    except ModuleNotFoundError as e:
        if e.name != "bench.report":
            raise
        print("note: bench.report is not available yet: no plots or README written")
        return 0
    try:
        make_report(Path(out_dir))
    except Exception as e:  # noqa: BLE001 - results stay; say why the report failed
        print(f"report failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def select_impls(args) -> list[tuple[str, str]]:
    impls = sweep.implementations(include_peers=not args.no_peers)
    if not args.impl:
        return impls
    wanted = [tuple(s.split("/", 1)) for s in args.impl]
    unknown = [w for w in wanted if w not in impls]
    if unknown:
        known = ", ".join(f"{v}/{i}" for v, i in impls)
        raise ValueError(f"unknown implementation(s) {unknown}; known: {known}")
    return [i for i in impls if i in wanted]


def _resolve(args):
    import torch

    device = args.device or sweep.default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"--device must be cpu or cuda[:N], got {device!r}")
    prof = sweep.get_profile(args.profile or sweep.default_profile(device))
    return device, prof


def main(args) -> int:
    from tqdm import tqdm

    from bench import driver, env, store

    start = time.perf_counter()
    try:
        device, prof = _resolve(args)
        impls = select_impls(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    out = Path(args.out) if args.out else Path("results") / env.device_slug(device)
    try:
        writer = store.ResultsWriter(out, resume=args.resume)
    except store.StoreError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    environment = env.collect(device)
    environment.update(
        profile=prof.name, resumed=bool(args.resume), implementations=[f"{v}/{i}" for v, i in impls]
    )
    store.write_env(out, environment)
    previous = store.read_rows(out) if args.resume else []
    done = store.done_keys(previous)
    cases = prof.cases(device, impls)
    todo = [c for c in cases if c.key() not in done]
    print(
        f"bench run: profile {prof.name} on {environment['device_name']} ({device}), "
        f"{len(cases)} rows ({len(cases) - len(todo)} already done), "
        f"{len(impls)} implementations -> {out}",
        flush=True,
    )
    by_shape: dict = collections.defaultdict(list)
    for c in todo:
        by_shape[c.shape].append(c)
    mac_cache: dict = {}
    bar = tqdm(total=len(cases), initial=len(cases) - len(todo), unit="row", mininterval=1.0)
    try:
        with writer:
            for shape, shape_cases in by_shape.items():
                wanted = {c.key() for c in shape_cases}
                shape_impls = list(dict.fromkeys((c.variant, c.impl) for c in shape_cases))
                passes = list(dict.fromkeys(c.pass_ for c in shape_cases))
                bar.set_postfix_str(shape.label(), refresh=False)
                for results in driver.measure_shape(
                    shape,
                    shape_impls,
                    passes,
                    prof.timing_for(device),
                    flush_l2=args.flush_l2,
                    mac_cache=mac_cache,
                    reference_ms=_reference_ms(previous, shape),
                ):
                    new = [r for r in results if sweep.params_key(r.params()) in wanted]
                    writer.write(new)
                    bar.update(len(new))
    except KeyboardInterrupt:
        bar.close()
        store.write_benchmark_json(out, environment)
        kept = len(store.read_rows(out))
        print(
            f"\ninterrupted: {kept} rows kept in {out / store.RESULTS_CSV}; "
            f"rerun with --resume to continue",
            file=sys.stderr,
        )
        return 130
    bar.close()
    store.write_benchmark_json(out, environment)
    profile_failed = 0
    if not args.no_profile:
        from bench import profile

        shape = prof.profile_shape(device)
        try:
            path = profile.run_profile(shape, out, out / "traces")
            print(f"profile of {shape.label()} -> {path}")
        except Exception as e:  # noqa: BLE001 - the results are written already
            print(f"profile failed: {type(e).__name__}: {e}", file=sys.stderr)
            profile_failed = 1
    environment.update(
        load_avg_end=env.collect_load_avg(), wall_s=round(time.perf_counter() - start, 1)
    )
    store.write_env(out, environment)
    rows = store.read_rows(out)
    code = _summary(rows, out, time.perf_counter() - start, args.strict)
    return max(code, profile_failed, _after_run(out, args))


SHAPE_FIELDS = ("group", "layer", "c_in", "c_out", "k", "h", "w", "batch", "dtype", "device")


def _reference_ms(rows: list[dict], shape) -> dict:
    """``{pass: full/naive median ms}`` of ``shape`` among already-written rows."""
    out = {}
    for r in rows:
        same = all(str(r[k]) == str(getattr(shape, k)) for k in SHAPE_FIELDS)
        if same and (r["variant"], r["impl"]) == REFERENCE and r["status"] == "ok":
            out[r["pass"]] = float(r["latency_ms_median"])
    return out


def _summary(rows: list[dict], out: Path, wall_s: float, strict: bool) -> int:
    counts = collections.Counter(r["status"] for r in rows)
    macs_bad = [r for r in rows if r.get("macs_match") == "False"]
    noisy = sum(r.get("noisy") == "True" for r in rows)
    parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"bench run: {len(rows)} rows ({parts}); {noisy} noisy; wall {wall_s:.0f} s -> {out}")
    for r in rows:
        if r["status"] in ("mismatch", "error"):
            print(f"  {r['status']}: {store_name(r)}: {r['error'][:160]}")
    for r in macs_bad:
        print(
            f"  macs_match=False: {store_name(r)}: formula {r['macs_formula']}, "
            f"fvcore {r['macs_measured']} {r['macs_unsupported']}"
        )
    bad = macs_bad or any(s in ("mismatch", "error", "oom") for s in counts)
    return 1 if strict and bad else 0


def store_name(row: dict) -> str:
    from bench.store import case_name

    return case_name(row)
