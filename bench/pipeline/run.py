"""A whole sweep: every shape of a profile, every implementation, written as rows finish.

:func:`run_sweep` is what ``python -m bench run`` does between parsing its
arguments and printing its summary: it records the environment, measures each
shape (:func:`bench.pipeline.driver.measure_shape`), appends the rows to
``results.csv`` / ``samples.jsonl`` (:class:`bench.store.results.ResultsWriter`),
regenerates ``benchmark.json`` and runs the per-operator profile.

An interrupted run keeps its rows (``KeyboardInterrupt`` propagates after
``benchmark.json`` is rewritten); ``resume=True`` skips the rows already in
``results.csv`` (key: the params columns) and appends the rest.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..measure import contention, env
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
    log=print,
) -> SweepRun:
    """Run ``prof`` on ``device`` over ``impls`` into ``out`` (see the module doc).

    Raises:
        bench.store.results.StoreError: ``out`` cannot be resumed.
        KeyboardInterrupt: after the rows so far are saved.
    """
    import torch
    from tqdm import tqdm

    start = time.perf_counter()
    writer = results.ResultsWriter(out, resume=resume)
    watch = contention.RunWatch(device, torch.get_num_threads())
    environment = env.collect(device)
    environment.update(
        profile=prof.name,
        resumed=bool(resume),
        implementations=[im.name for im in impls],
        compiled_rows=bool(compiled),
        max_shapes=max_shapes,
    )
    results.write_env(out, environment)
    previous = results.read_rows(out) if resume else []
    done = results.done_keys(previous)
    cases = prof.cases(device, impls, compiled=compiled)
    if max_shapes:
        kept = spread_out(prof.shapes(device), max_shapes)
        cases = [c for c in cases if c.shape in kept]
    todo = [c for c in cases if c.key() not in done]
    log(
        f"bench run: profile {prof.name} on {environment['device_name']} ({device}), "
        f"{len(cases)} rows ({len(cases) - len(todo)} already done), "
        f"{len(impls)} implementations -> {out}"
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
    finally:
        bar.close()
        benchmark_json.write_benchmark_json(out, environment)
    run = SweepRun(out, environment)
    if with_profile:
        from . import profiler

        shape = prof.profile_shape(device)
        try:
            path = profiler.run_profile(shape, out, out / "traces")
            log(f"profile of {shape.label()} -> {path}")
        except Exception as e:  # noqa: BLE001 - the results are written already
            log(f"profile failed: {type(e).__name__}: {e}")
            run.profile_failed = True
    rows = results.read_rows(out)
    environment["contention"] = watch.verdict(windows_disturbed(rows), environment)
    run.wall_s = round(time.perf_counter() - start, 1)
    environment.update(load_avg_end=env.collect_load_avg(), wall_s=run.wall_s)
    results.write_env(out, environment)
    benchmark_json.write_benchmark_json(out, environment)  # with the verdict
    return run


def spread_out(items: list, n: int) -> set:
    """``n`` of ``items`` evenly spaced over the list (all when ``n >= len(items)``)."""
    if n >= len(items):
        return set(items)
    step = (len(items) - 1) / max(n - 1, 1)
    return {items[round(i * step)] for i in range(n)}


def windows_disturbed(rows: list[dict]) -> list[bool]:
    """One flag per timing window (a shape and pass) of the timed rows."""
    flags: dict[tuple, bool] = {}
    for r in rows:
        if r.get("status") == "ok" and r.get("disturbed") in ("True", "False"):
            key = (*(r[k] for k in SHAPE_FIELDS), r["pass"])
            flags[key] = flags.get(key, False) or r["disturbed"] == "True"
    return list(flags.values())
