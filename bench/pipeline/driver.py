"""Measure one shape: every implementation, checked, counted, then timed interleaved.

:func:`measure_shape` is what ``python -m bench run`` calls per shape;
:func:`prepare_case` is the same preparation for a single row (the
pytest-benchmark entry point, where pytest-benchmark does the timing).

Order for one shape (DESIGN §4, STYLE "accuracy before timing"):

1. Up-front memory guard per row (:func:`bench.sweep.guard.skip_reason`) →
   ``status=skipped``.
2. Build each implementation (shared weights per variant) and check its
   output against the reference (:mod:`bench.sweep.subjects`) → ``mismatch`` rows
   are not timed; an exception → ``error`` (``oom`` when out of memory).
3. MACs by formula and by fvcore, parameters by formula and from the module.
4. Per pass: warm-up (a compiled module compiles, Triton kernels compile and
   autotune, ``impl="auto"`` chooses — last, once the implementations it times
   are warm: all timed apart, ``compile_s`` / ``tuning_s``), peak memory of one
   call, then all implementations — every memory format, eager and compiled —
   timed together by :func:`bench.measure.timing.time_interleaved`, so their
   per-round ratios are paired (a row far behind full/naive gets a stated few
   samples: ``sampling``); derived columns.

Rows are filled by the helpers of :mod:`bench.pipeline.rows`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from sepgconv import counting

from ..measure import contention, memory
from ..measure.timing import Timing, time_interleaved, without_frames
from ..store import record
from ..store.record import Result
from ..sweep import subjects
from ..sweep.guard import memory_estimate_bytes, skip_reason
from ..sweep.shapes import REFERENCE, Case, Impl, Shape
from ..sweep.subject import Subject, random_input, run_forward
from .rows import (
    base_result,
    describe,
    fill_static,
    first_call_s,
    is_auto,
    macs_of,
    note_choice,
    step_for,
)


def _fail(r: Result, e: BaseException, device: str) -> None:
    """Record ``e`` in ``r``; on CUDA give the failed call's memory back. The
    exception lets go of its frames first: while they live, so do the failed call's
    tensors, and ``empty_cache`` could not release them (one OOM would breed more)."""
    r.fail("oom" if memory.is_oom(e) else "error", describe(e))
    if e is not None:
        without_frames(e)
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def measure_shape(
    shape: Shape,
    impls: list[Impl],
    passes: tuple[str, ...] | list[str],
    timing: Timing,
    *,
    flush_l2: bool = False,
    mac_cache: dict | None = None,
    available: int | None = None,
    reference_ms: dict | None = None,
) -> Iterator[list[Result]]:
    """Measure ``shape`` with ``impls``; yield one list of results per pass.

    Args:
        shape: the shape (dtype and device included).
        impls: the implementations, each with its memory format and eager/compiled.
        passes: e.g. ``("fwd", "fwdbwd")``.
        timing: the profile's timing.
        flush_l2: CUDA only: evict L2 before every timed call.
        mac_cache: dict reused across shapes for fvcore counts.
        available: bytes a row may use (default: measured now).
        reference_ms: ``{pass: full/naive median ms}`` when the reference is not
            among ``impls`` (a resumed run), for ``speedup_vs_full``.
    """
    device = shape.device
    if device.startswith("cuda"):
        torch.cuda.empty_cache()  # the previous shape's cached blocks
    if any(im.compiled for im in impls):
        # every GConv2d shares one forward code object: without a reset its compiled
        # versions pile up across shapes until dynamo's recompile limit refuses more
        torch._dynamo.reset()
    skip = {(im, p): skip_reason(Case(shape, im, p), available) for im in impls for p in passes}
    try:
        x = None if all(skip.values()) else random_input(shape)
    except Exception as e:  # noqa: BLE001 - even the input does not fit: record it
        yield from _all_failed(shape, impls, passes, skip, e)
        return
    if x is None:
        yield from _all_failed(shape, impls, passes, skip, None)
        return
    built, failed, mismatched, compile_s = _build_and_check(shape, impls, passes, skip, x)
    counts = {im: macs_of(s, x, shape, mac_cache, im) for im, s in built.items()}
    for pass_ in passes:
        rows: dict[Impl, Result] = {im: base_result(shape, im, pass_) for im in impls}
        steps: dict[Impl, Callable] = {}
        firsts: dict[Impl, float] = {}
        # auto last: the implementations it times are then compiled (Triton) and warm,
        # so its tuning_s is choosing, and the fused rows' first calls hold the compiling
        for im in sorted(impls, key=lambda im: im.impl == "auto"):
            r = rows[im]
            r.mem_estimate_bytes = memory_estimate_bytes(shape, im.variant, im.impl, pass_)
            subj = built.get(im) or mismatched.get(im)
            if subj is not None:
                fill_static(r, subj, shape, counts.get(im))
            if skip[(im, pass_)]:
                r.fail("skipped", skip[(im, pass_)])
            elif im in failed:
                r.fail(*failed[im])
            else:
                try:
                    step = step_for(subj, x, shape, pass_)
                    first = first_call_s(step, device)  # warm-up: compiles, or auto chooses
                    firsts[im] = first
                    if im.compiled:
                        r.compile_s = first if pass_ == "fwdbwd" else compile_s[im]
                    if is_auto(subj):
                        note_choice(r, subj, x, shape, pass_)
                    mem = memory.peak_memory(step, device)
                except Exception as e:  # noqa: BLE001
                    _fail(r, e, device)
                    continue
                r.peak_mem_bytes = mem.peak_mem_bytes
                r.mem_reserved_bytes = mem.mem_reserved_bytes
                r.nvml_used_bytes = mem.nvml_used_bytes
                steps[im] = step
        start = contention.read_counters()
        timed = time_interleaved(steps, device, timing, flush_l2, reference=REFERENCE)
        watched = contention.close_window(start, torch.get_num_threads(), device)
        for key, samples in timed.items():
            if isinstance(samples, BaseException):
                _fail(rows[key], samples, device)
            else:
                rows[key].set_samples(samples)
                rows[key].set_window(watched)  # the machine while this shape was timed
                if key.impl == "fused" and not key.compiled:  # Triton compiles at first use
                    rows[key].compile_s = max(firsts[key] - samples.median_s, 0.0)
        del steps
        ref = rows.get(REFERENCE)
        ref_ms = ref.latency_ms_median if ref is not None and ref.status == "ok" else None
        if ref_ms is None and ref is None:
            ref_ms = (reference_ms or {}).get(pass_)
        full_macs = counting.dense_macs(shape.layer_shape())
        for r in rows.values():
            record.derive(r, ref_ms, full_macs)
        yield list(rows.values())


def _build_and_check(shape: Shape, impls: list[Impl], passes, skip: dict, x: torch.Tensor):
    """Build every implementation that is not skipped in every pass and check its
    output; ``(built, failed, mismatched, compile_s)`` keyed by :class:`Impl`.
    A compiled module compiles at its first call, timed here (``compile_s``)."""
    device = shape.device
    refs: dict = {}
    references = subjects.References(shape, x, refs)
    built: dict[Impl, Subject] = {}
    failed: dict[Impl, tuple[str, str]] = {}
    mismatched: dict[Impl, Subject] = {}
    compile_s: dict[Impl, float] = {}
    for im in impls:
        if all(skip[(im, p)] for p in passes):
            continue
        try:
            subj = subjects.build(shape, im, refs)
            if im.compiled:
                compile_s[im] = first_call_s(lambda s=subj: run_forward(s, x), device)
            msg = subjects.check(subj, references)
        except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
            failed[im] = ("oom" if memory.is_oom(e) else "error", describe(e))
            without_frames(e)  # the failed build's tensors go now (see _fail)
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            continue
        if msg:
            failed[im] = ("mismatch", msg)
            mismatched[im] = subj
        else:
            built[im] = subj
    return built, failed, mismatched, compile_s


def _all_failed(shape, impls, passes, skip, error: BaseException | None):
    """Rows of a shape none of whose implementations can run (skipped, or the
    input itself failed)."""
    for pass_ in passes:
        rows = []
        for im in impls:
            r = base_result(shape, im, pass_)
            r.mem_estimate_bytes = memory_estimate_bytes(shape, im.variant, im.impl, pass_)
            if skip[(im, pass_)]:
                r.fail("skipped", skip[(im, pass_)])
            else:
                _fail(r, error, shape.device)
            rows.append(r)
        yield rows


@dataclass
class Prepared:
    """One row ready for an external timer: its result so far and its step."""

    result: Result
    step: Callable | None  # None unless result.status == "ok"


def prepare_case(case: Case, mac_cache: dict | None = None, count: bool = True) -> Prepared:
    """Skip-check, build, check, count (fvcore, unless ``count=False``) and
    measure the memory of one case; no timing."""
    shape, im, p = case.shape, case.impl, case.pass_
    r = base_result(shape, im, p)
    r.mem_estimate_bytes = memory_estimate_bytes(shape, im.variant, im.impl, p)
    reason = skip_reason(case)
    if reason:
        return Prepared(r.fail("skipped", reason), None)
    x = random_input(shape)
    refs: dict = {}
    try:
        subj = subjects.build(shape, im, refs)
        if im.compiled:
            r.compile_s = first_call_s(lambda: run_forward(subj, x), shape.device)
        msg = subjects.check(subj, subjects.References(shape, x, refs))
        fill_static(r, subj, shape, macs_of(subj, x, shape, mac_cache, im) if count else None)
        if msg:
            return Prepared(r.fail("mismatch", msg), None)
        step = step_for(subj, x, shape, p)
        first = first_call_s(step, shape.device)
        if im.compiled and p == "fwdbwd":
            r.compile_s = first
        if is_auto(subj):
            note_choice(r, subj, x, shape, p)
        mem = memory.peak_memory(step, shape.device)
    except Exception as e:  # noqa: BLE001
        _fail(r, e, shape.device)
        return Prepared(r, None)
    r.peak_mem_bytes, r.mem_reserved_bytes = mem.peak_mem_bytes, mem.mem_reserved_bytes
    r.nvml_used_bytes = mem.nvml_used_bytes
    return Prepared(r, step)


__all__ = ["Prepared", "base_result", "describe", "measure_shape", "prepare_case"]
