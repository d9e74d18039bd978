"""Where the time goes, per implementation (torch.profiler): ``python -m bench profile``.

One representative shape (the sweep profile's ``profile_point``, or the
``--c/--k/--h/--batch/--group/--layer`` given) is run by every implementation,
``fwd`` and ``fwdbwd`` (the same callables :mod:`bench.measure.timing` times), under
``torch.profiler``. Each op's *self* time (CPU time on the CPU; device time on
CUDA) goes to one category:

* ``filter construction`` — ops under ``sepgconv.build_weights``;
* ``pointwise conv`` — under ``sepgconv.pointwise``;
* ``copies/permutes`` — under ``sepgconv.transpose``;
* ``spatial conv`` — under ``sepgconv.spatial``;
* ``other`` — everything else (bias/view bookkeeping, AccumulateGrad, ...).

The labels are the layers' ``record_function`` regions (``region()`` in
``sepgconv/gconv.py``); ops nested under a label belong to it. Backward ops run
outside those regions, so they are attributed through autograd's sequence
numbers: an ``autograd::engine::evaluate_function: XBackward0`` event carries
the ``sequence_nr`` of the forward op that created node X, and inherits that
forward op's category. Unlabelled code (``dense/torch``, peers, or a backward
node without a forward match) falls back to op-name rules: convolutions are
``pointwise conv`` when k = 1 else ``spatial conv``; copy/permute/transpose/
clone/contiguous/index ops are ``copies/permutes``; the rest ``other``. (So a
peer's own filter expansion, e.g. e2cnn's basis expansion in ``fwdbwd``, lands
in ``other``/``copies/permutes``, not ``filter construction``.)

On CUDA without CUPTI (a sandboxed GPU, restricted profiling) the profiler
records no device kernel and every device self time is 0: such a profile is
not published as zeros but falls back to the CPU-side self times (launch and
dispatch cost, not GPU time), says so on stderr, and marks its rows
``clock = cpu (no CUDA kernels recorded)`` (the report titles the plot so).

Writes ``profile.csv`` (columns :data:`PROFILE_COLUMNS`, ``time_ms`` per call,
``clock`` = ``device`` or ``cpu``) and one Chrome trace per implementation and
pass, ``trace_<variant>_<impl>_<pass>.json``.
"""

from __future__ import annotations

import csv
import os
import re
import sys
import warnings
from pathlib import Path

import torch

from ..sweep import profiles
from ..sweep.shapes import FORMATS, PARAM_KEYS, PASSES, Case, Impl, Shape
from . import driver

CATEGORIES = ("filter construction", "pointwise conv", "copies/permutes", "spatial conv", "other")
LABELS = {
    "sepgconv.build_weights": "filter construction",
    "sepgconv.pointwise": "pointwise conv",
    "sepgconv.transpose": "copies/permutes",
    "sepgconv.blocks": "copies/permutes",  # g/rearranged: a block into its output
    "sepgconv.convert_input": "copies/permutes",  # an input in another memory format
    "sepgconv.fused": "spatial conv",  # one fused kernel: pointwise and spatial at once
    "sepgconv.spatial": "spatial conv",
}
PROFILE_COLUMNS = (*PARAM_KEYS, "category", "time_ms", "clock")
NO_KERNELS = "cpu (no CUDA kernels recorded)"  # the clock of a CUDA profile without CUPTI
NO_KERNELS_WHY = (
    "the profiler recorded no CUDA kernel (no CUPTI access: a sandboxed GPU or restricted "
    "profiling), so every device time is 0; CPU-side self times (launch and dispatch "
    "cost, not GPU time) are used instead"
)
PROFILE_CSV = "profile.csv"
_BACKWARD = "autograd::engine::evaluate_function: "
_CONV = re.compile(r"conv|Convolution", re.IGNORECASE)
_COPY = re.compile(
    r"copy|permute|transpose|clone|contiguous|index|gather|scatter|cat|stack|flip|rot90|"
    r"Clone|Permute|Transpose|Index|Flip|Rot90",
)


def name_rule(name: str, k: int) -> str:
    """Category of an unlabelled op (or backward node) by its name."""
    if _CONV.search(name):
        return "pointwise conv" if k == 1 else "spatial conv"
    if _COPY.search(name):
        return "copies/permutes"
    return "other"


def _ancestors(e):
    while e is not None:
        yield e
        e = e.cpu_parent


def categorize(events, k: int, device_time: bool) -> dict[str, float]:
    """Self time (µs) per category over ``events`` (``prof.events()``)."""
    forward: dict[int, str] = {}  # sequence_nr -> category of the labelled forward op
    owner: dict[int, tuple[str, int | None]] = {}  # id(event) -> (label or backward, seq)
    for e in events:
        label = None
        seq = None
        for a in _ancestors(e):
            if a.name in LABELS:
                label = LABELS[a.name]
                break
            if a.name.startswith(_BACKWARD):
                label, seq = "backward", a.sequence_nr
                break
        owner[id(e)] = (label, seq)
        if label in CATEGORIES and e.sequence_nr is not None and e.sequence_nr >= 0:
            forward.setdefault(e.sequence_nr, label)
    out = dict.fromkeys(CATEGORIES, 0.0)
    for e in events:
        if e.name == "[memory]" or not str(e.device_type).endswith("CPU"):
            continue  # device-side kernels are counted in their CPU op's self device time
        label, seq = owner[id(e)]
        if label == "backward":
            top = next(a for a in _ancestors(e) if a.name.startswith(_BACKWARD))
            category = forward.get(seq) or name_rule(top.name[len(_BACKWARD) :], k)
        elif label is not None:
            category = label
        else:
            top = list(_ancestors(e))[-1]
            category = name_rule(top.name, k)
        t = e.self_device_time_total if device_time else e.self_cpu_time_total
        out[category] += float(t)
    return out


def times_of(events, k: int, cuda: bool) -> tuple[dict[str, float], str]:
    """``({category: µs}, clock)`` of profiled ``events``: device self time on CUDA
    (``clock="device"``), CPU self time otherwise (``"cpu"``). A CUDA profile whose
    device times are all 0 recorded no kernel: CPU self times, clock :data:`NO_KERNELS`."""
    if cuda:
        us = categorize(events, k, device_time=True)
        if any(us.values()):
            return us, "device"
        return categorize(events, k, device_time=False), NO_KERNELS
    return categorize(events, k, device_time=False), "cpu"


def profile_step(step, device: str, iters: int, k: int, trace_path: Path | None = None):
    """``({category: ms per call}, clock)`` of ``step`` (:func:`times_of`): two
    warm-up calls, then ``iters`` profiled calls (Chrome trace to ``trace_path``)."""
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    from torch.profiler import ProfilerActivity, profile

    cuda = device.startswith("cuda")
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    step()
    step()
    if cuda:
        torch.cuda.synchronize(device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with profile(activities=activities) as prof:
            for _ in range(iters):
                step()
            if cuda:
                torch.cuda.synchronize(device)
    if trace_path is not None:
        trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export_chrome_trace(str(trace_path))
    us, clock = times_of(prof.events(), k, cuda)
    return {c: t / iters / 1e3 for c, t in us.items()}, clock


def profile_shape(
    shape: Shape,
    impls: list[Impl] | None = None,
    passes: tuple[str, ...] = PASSES,
    trace_dir: Path | None = None,
    iters: int = 3,
) -> list[dict]:
    """Profile rows (dicts with :data:`PROFILE_COLUMNS`) of every implementation on
    ``shape``, in each memory format (so the profile shows what channels_last copies).

    Implementations that cannot run here are left out silently; those that fail
    to build, mismatch or raise are left out with a note on stdout; the profile
    never stops a run.
    """
    impls = profiles.implementations() if impls is None else impls
    every = [im.eager(f) for im in impls for f in FORMATS if profiles.runs_in(im, f)]
    rows = []
    said = False  # the no-kernels warning, once per profile
    for im in every:
        for p in passes:
            case = Case(shape, im, p)
            prepared = driver.prepare_case(case, count=False)
            name = im.label().replace("/", "_").replace(" ", "_")
            if prepared.step is None:
                r = prepared.result
                if r.status != "skipped":
                    print(f"profile: {im.label()} {p} left out ({r.status}: {r.error[:120]})")
                continue
            trace = None if trace_dir is None else Path(trace_dir) / f"trace_{name}_{p}.json"
            try:
                ms, clock = profile_step(prepared.step, shape.device, iters, shape.k, trace)
            except Exception as e:  # noqa: BLE001 - a profile never stops a run
                print(f"profile: {im.label()} {p} failed ({driver.describe(e)[:120]})")
                continue
            if clock == NO_KERNELS and not said:
                print(f"WARNING profile: {NO_KERNELS_WHY}", file=sys.stderr, flush=True)
                said = True
            for category in CATEGORIES:
                row = {**case.params(), "category": category, "time_ms": ms[category]}
                rows.append({**row, "clock": clock})
    return rows


def write_profile_csv(rows: list[dict], path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=PROFILE_COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return path


def run_profile(shape: Shape, out_dir: Path, trace_dir: Path, iters: int = 3) -> Path:
    """Profile ``shape`` and write ``out_dir/profile.csv`` and the traces."""
    rows = profile_shape(shape, trace_dir=trace_dir, iters=iters)
    return write_profile_csv(rows, Path(out_dir) / PROFILE_CSV)


__all__ = ["CATEGORIES", "PROFILE_COLUMNS", "categorize", "profile_shape", "run_profile"]
