"""A whole sweep: every shape of a profile, every implementation, written as rows finish.

:func:`run_sweep` is what ``python -m bench run`` does between parsing its
arguments and printing its summary: it records the environment, measures each
shape (:func:`bench.pipeline.driver.measure_shape`), appends the rows to
``results.csv`` / ``samples.jsonl`` (:class:`bench.store.results.ResultsWriter`),
regenerates ``benchmark.json`` and runs the per-operator profile.

An interrupted run keeps its rows: Ctrl-C, or SIGTERM (``timeout``, a CI
cancellation; :func:`sigterm_as_interrupt` during the run), stops the sweep
after the rows written so far, then ``benchmark.json``, the profile (a second
interrupt skips it) and ``env.json`` (``wall_s``, ``interrupted``) are written
as for a finished run, and the ``KeyboardInterrupt`` propagates. ``resume=True``
skips the rows already in ``results.csv`` (key: the params columns) and appends
the rest.

A run with a time limit (``time_limit_s``, ``bench run --time-limit``) starts no
new shape once the limit is spent (the first shape always runs), and takes the
shapes in :func:`spread_order`, so that whatever prefix finishes covers the
profile's axes evenly instead of only its first series. It ends as a finished
run does (profile, ``env.json``), with ``env.json`` → ``time_limit`` saying how
many shapes were done; ``--resume`` runs the rest.

A run whose MAC counter (fvcore) cannot be imported says so once on stderr and
in ``env.json`` (``mac_counter_error``); its ``macs_measured`` and ``macs_match``
are empty (unknown), never False.
"""

from __future__ import annotations

import collections
import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..measure import allocator, contention, env, macs
from ..store import benchmark_json, results
from ..sweep import profiles
from ..sweep.profiles import Profile
from ..sweep.shapes import REFERENCE, Impl, impl_of, params_key
from . import driver

SHAPE_FIELDS = ("group", "layer", "c_in", "c_out", "k", "h", "w", "batch", "dtype", "device")


def select_impls(wanted: list[str] | None, include_peers: bool = True) -> list[Impl]:
    """The implementations to sweep: all, or those named ``VARIANT/IMPL`` in ``wanted``.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
    """
    impls = profiles.implementations(include_peers=include_peers)
    if not wanted:
        return impls
    names = [im.name for im in impls]
    unknown = [w for w in wanted if w not in names]
    if unknown:
        raise ValueError(f"unknown implementation(s) {unknown}; known: {', '.join(names)}")
    return [im for im in impls if im.name in wanted]


def resolve(device: str | None, profile: str | None) -> tuple[str, Profile]:
    """The device (default: cuda when available) and the profile (default per device).

    Raises:
        ValueError: CUDA asked for but absent, an unknown device or profile.
    """
    import torch

    device = device or profiles.default_device()
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")
    if not (device == "cpu" or device.startswith("cuda")):
        raise ValueError(f"--device must be cpu or cuda[:N], got {device!r}")
    return device, profiles.get_profile(profile or profiles.default_profile(device))


class Terminated(KeyboardInterrupt):
    """SIGTERM, turned into the clean stop of Ctrl-C (:func:`sigterm_as_interrupt`)."""


@contextlib.contextmanager
def sigterm_as_interrupt():
    """Within the block SIGTERM raises :class:`Terminated`, a ``KeyboardInterrupt``:
    a run ended by ``timeout`` or a CI cancellation stops as cleanly as one stopped
    by Ctrl-C. The previous handler is restored at the end; outside the main thread
    (where Python cannot handle signals) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise Terminated(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def stop_name(e: BaseException) -> str:
    """``SIGTERM`` for :class:`Terminated`, ``SIGINT`` (Ctrl-C) for another interrupt."""
    return "SIGTERM" if isinstance(e, Terminated) else "SIGINT"


@dataclass
class SweepRun:
    """What a sweep produced: its folder, environment and the wall time."""

    out: Path
    environment: dict
    wall_s: float = 0.0
    profile_failed: bool = False
    notes: list[str] = field(default_factory=list)


def reference_ms(rows: list[dict], shape) -> dict:
    """``{pass: full/naive median ms}`` of ``shape`` among already-written rows."""
    out = {}
    for r in rows:
        same = all(str(r[k]) == str(getattr(shape, k)) for k in SHAPE_FIELDS)
        if same and impl_of(r) == REFERENCE and r["status"] == "ok":
            out[r["pass"]] = float(r["latency_ms_median"])
    return out


@sigterm_as_interrupt()
def run_sweep(
    prof: Profile,
    device: str,
    impls: list[tuple[str, str]],
    out: Path,
    *,
    resume: bool = False,
    flush_l2: bool = False,
    compiled: bool = False,
    max_shapes: int | None = None,
    with_profile: bool = True,
    shard=None,
    time_limit_s: float | None = None,
    precompile_workers: int | None = None,
    gate=None,
    log=print,
) -> SweepRun:
    """Run ``prof`` on ``device`` over ``impls`` into ``out`` (see the module doc);
    SIGTERM stops it as Ctrl-C does (:func:`sigterm_as_interrupt`).

    Raises:
        bench.store.results.StoreError: ``out`` cannot be resumed.
        KeyboardInterrupt: after the rows so far are saved and the run's files
            written for them (:class:`Terminated` for SIGTERM).
    """
    import torch
    from tqdm import tqdm

    start = time.perf_counter()
    writer = results.ResultsWriter(out, resume=resume)
    allocator.steady()  # before anything is allocated for timing (env.json: malloc)
    # the gate's look (bench.measure.gate) is the run's idle window before
    before = None if gate is None else gate.window
    watch = contention.RunWatch(device, torch.get_num_threads(), before=before)
    environment = env.collect(device)
    if gate is not None:
        environment["gate"] = gate.record()
    environment.update(
        profile=prof.name,
        resumed=bool(resume),
        implementations=[im.name for im in impls],
        compiled_rows=bool(compiled),
        max_shapes=max_shapes,
        mac_counter_error=macs.counter_unavailable(),
    )
    results.write_env(out, environment)
    if environment["mac_counter_error"]:  # once, loudly: every row's count is unknown
        print(
            f"WARNING bench run: the MAC counter (fvcore) cannot be imported "
            f"({environment['mac_counter_error']}); macs_measured and macs_match stay "
            f"empty (unknown) in every row (fvcore needs portalocker and tabulate)",
            file=sys.stderr,
            flush=True,
        )
    previous = results.read_rows(out) if resume else []
    done = results.done_keys(previous)
    cases = prof.cases(device, impls, compiled=compiled)
    if max_shapes:
        kept = spread_out(prof.shapes(device), max_shapes)
        cases = [c for c in cases if c.shape in kept]
    if shard is not None:  # one part of the sweep, whole shapes (bench.sweep.shards)
        environment["shard"] = shard.describe(cases)
        results.write_env(out, environment)
        cases = shard.select(cases)
    todo = [c for c in cases if c.key() not in done]
    log(
        f"bench run: profile {prof.name} on {environment['device_name']} ({device}), "
        f"{len(cases)} rows ({len(cases) - len(todo)} already done), "
        f"{len(impls)} implementations -> {out}"
    )
    by_shape: dict = collections.defaultdict(list)
    for c in todo:
        by_shape[c.shape].append(c)
    if time_limit_s is not None:  # any prefix of the shapes covers the profile evenly
        by_shape = {s: by_shape[s] for s in spread_order(list(by_shape))}
        environment["time_limit"] = {
            "limit_s": time_limit_s,
            "shapes_todo": len(by_shape),
            "stopped": False,
        }
    if precompile_workers != 0 and str(device).startswith("cuda"):
        from . import precompile

        environment["triton_precompile"] = precompile.precompile(
            todo, workers=precompile_workers, log=log
        )
        results.write_env(out, environment)
    shapes_done = 0
    mac_cache: dict = {}
    bar = tqdm(total=len(cases), initial=len(cases) - len(todo), unit="row", mininterval=1.0)
    stopped: KeyboardInterrupt | None = None
    # impl="auto" choices made on a machine the gate found busy are used, never persisted
    trust = contextlib.nullcontext()
    if gate is not None and not gate.quiet:
        from sepgconv import autotune

        trust = autotune.untrusted("bench run on a busy machine: " + "; ".join(gate.reasons))
    try:
        with writer, trust:
            for shape, shape_cases in by_shape.items():
                spent = time.perf_counter() - start
                if time_limit_s is not None and shapes_done and spent >= time_limit_s:
                    environment["time_limit"]["stopped"] = True
                    log(
                        f"time limit {time_limit_s:g} s: {shapes_done} of {len(by_shape)} "
                        f"shapes done; rerun with --resume to continue"
                    )
                    break
                wanted = {c.key() for c in shape_cases}
                shape_impls = list(dict.fromkeys(c.impl for c in shape_cases))
                passes = list(dict.fromkeys(c.pass_ for c in shape_cases))
                bar.set_postfix_str(shape.label(), refresh=False)
                for rows in driver.measure_shape(
                    shape,
                    shape_impls,
                    passes,
                    prof.timing_for(device),
                    flush_l2=flush_l2,
                    mac_cache=mac_cache,
                    reference_ms=reference_ms(previous, shape),
                ):
                    new = [r for r in rows if params_key(r.params()) in wanted]
                    writer.write(new)
                    bar.update(len(new))
                shapes_done += 1
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (Terminated): a clean stop
        stopped = e
    finally:
        bar.close()
        if time_limit_s is not None:
            environment["time_limit"]["shapes_done"] = shapes_done
        benchmark_json.write_benchmark_json(out, environment)
    if stopped is not None:
        environment["interrupted"] = stop_name(stopped)
        log(
            f"{stop_name(stopped)}: sweep stopped; writing the run's files for the rows done"
            + (" (interrupt again to skip the profile)" if with_profile else "")
        )
    run = SweepRun(out, environment)
    if with_profile:
        from . import profiler

        shape = prof.profile_shape(device)
        try:
            path = profiler.run_profile(shape, out, out / "traces")
            log(f"profile of {shape.label()} -> {path}")
        except KeyboardInterrupt as e:  # skips the profile only: the rest is still written
            stopped = stopped or e
            environment["interrupted"] = stop_name(stopped)
            log("profile skipped: interrupted")
        except Exception as e:  # noqa: BLE001 - the results are written already
            log(f"profile failed: {type(e).__name__}: {e}")
            run.profile_failed = True
    rows = results.read_rows(out)
    environment["contention"] = watch.verdict(windows_disturbed(rows), environment)
    run.wall_s = round(time.perf_counter() - start, 1)
    environment.update(load_avg_end=env.collect_load_avg(), wall_s=run.wall_s)
    results.write_env(out, environment)
    benchmark_json.write_benchmark_json(out, environment)  # with the verdict
    if stopped is not None:
        raise stopped
    return run


def spread_out(items: list, n: int) -> set:
    """``n`` of ``items`` evenly spaced over the list (all when ``n >= len(items)``)."""
    if n >= len(items):
        return set(items)
    step = (len(items) - 1) / max(n - 1, 1)
    return {items[round(i * step)] for i in range(n)}


def spread_order(items: list) -> list:
    """``items`` reordered so that every prefix is spread evenly over the list.

    Index ``floor(v·n)`` for the van der Corput fractions v = 0, 1/2, 1/4, 3/4,
    1/8, … (the base-2 digits of 0, 1, 2, … mirrored), each index once: the
    first item, then the middle one, then the quarters, and so on, every item in
    the end. A sweep stopped after any number of shapes has then sampled each of
    the profile's series (its C, k and H axes follow one another in the list).
    """
    n, order, seen, j = len(items), [], set(), 0
    while len(order) < n:
        v, denom, m = 0.0, 1.0, j
        while m:
            denom *= 2
            v += (m & 1) / denom
            m >>= 1
        i = int(v * n)
        if i not in seen:
            seen.add(i)
            order.append(items[i])
        j += 1
    return order


def windows_disturbed(rows: list[dict]) -> list[bool]:
    """One flag per timing window (a shape and pass) of the timed rows."""
    flags: dict[tuple, bool] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("disturbed") in ("True", "False"):
            key = (*(r[k] for k in SHAPE_FIELDS), r["pass"])
            flags[key] = flags.get(key, False) or r["disturbed"] == "True"
    return list(flags.values())
