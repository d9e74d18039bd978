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
4. Per pass: warm-up, peak memory of one call, then all implementations
   timed together by :func:`bench.measure.timing.time_interleaved`; derived columns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

import sepgconv
from sepgconv import counting

from ..measure import contention, macs, memory
from ..measure.timing import Timing, make_step, time_interleaved
from ..store import record
from ..store.record import Result
from ..sweep import subjects
from ..sweep.guard import memory_estimate_bytes, skip_reason
from ..sweep.shapes import DENSE, REFERENCE, Case, Shape
from ..sweep.subject import Subject, random_input


def base_result(shape: Shape, variant: str, impl: str, pass_: str) -> Result:
    """A result with the identifying fields and the formula MACs filled in."""
    r = Result(
        kind="layer", group=shape.group, layer=shape.layer, variant=variant, impl=impl,
        c_in=shape.c_in, c_out=shape.c_out, k=shape.k, h=shape.h, w=shape.w, batch=shape.batch,
        pass_=pass_, dtype=shape.dtype, device=shape.device, g_in=shape.g_in, g_out=shape.g_out,
    )  # fmt: skip
    r.macs_formula = formula_macs(shape, variant, impl)
    full = counting.dense_macs(shape.layer_shape())
    if r.macs_formula:
        r.theoretical_speedup = full / r.macs_formula
    return r


def formula_macs(shape: Shape, variant: str, impl: str) -> int:
    """Forward MACs by formula: the registered class's, else a dense conv's."""
    if (variant, impl) in sepgconv.implementations():
        return sepgconv.get_implementation(variant, impl).macs(shape.layer_shape())
    return counting.dense_macs(shape.layer_shape())  # dense/torch and peers


def describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:500]


def _fail(r: Result, e: BaseException, device: str) -> None:
    r.fail("oom" if memory.is_oom(e) else "error", describe(e))
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def fill_static(r: Result, subj: Subject, shape: Shape, counts: tuple | None) -> None:
    """Formula and counted columns of a built subject."""
    r.macs_formula = subj.macs_formula
    r.params_formula = subj.params_formula
    r.params_measured = counting.measure_params(subj.module)
    r.intermediate_filter_bytes = subj.intermediate_bytes["filter"]
    r.intermediate_activation_bytes = subj.intermediate_bytes["activations"]
    s, item = shape.layer_shape(), shape.itemsize
    x = s.batch * s.c_in * s.g_in * s.h_in * s.w_in
    y = s.batch * s.c_out * s.g_out * s.h_out * s.w_out
    inter = r.intermediate_filter_bytes + r.intermediate_activation_bytes
    r.bytes_moved_formula = (x + y + subj.params_formula) * item + 2 * inter
    r.arithmetic_intensity = subj.macs_formula / r.bytes_moved_formula
    if counts is not None:
        r.macs_measured, r.macs_unsupported = counts
        r.macs_match = r.macs_measured == r.macs_formula


def step_for(subj: Subject, x: torch.Tensor, shape: Shape, pass_: str) -> Callable:
    """The timed callable of a subject (input adapted once, outside the timing)."""
    xin = subj.to_input(x)
    if pass_ == "fwdbwd" and not shape.lifting:
        xin = xin.detach().requires_grad_(True)
    return make_step(subj.module, xin, pass_)


def macs_of(subj: Subject, x: torch.Tensor, shape: Shape, cache: dict | None):
    """fvcore count of a subject, cached across dtypes/devices of the same shape."""
    key = (dataclasses.replace(shape, dtype="float32", device="cpu"), subj.variant, subj.impl)
    if cache is not None and key in cache:
        return cache[key]
    try:
        counts = macs.count_macs(subj.module, subj.to_input(x))
    except Exception as e:  # noqa: BLE001 - an uncountable module is flagged, not fatal
        counts = (None, f"fvcore failed: {describe(e)}"[:200])
    if cache is not None:
        cache[key] = counts
    return counts


def measure_shape(
    shape: Shape,
    impls: list[tuple[str, str]],
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
        impls: ``(variant, impl)`` pairs.
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
    skip = {
        (v, i, p): skip_reason(Case(shape, v, i, p), available) for v, i in impls for p in passes
    }
    try:
        x = None if all(skip.values()) else random_input(shape)
    except Exception as e:  # noqa: BLE001 - even the input does not fit: record it
        yield from _all_failed(shape, impls, passes, skip, e)
        return
    if x is None:
        yield from _all_failed(shape, impls, passes, skip, None)
        return
    refs: dict = {}
    references = subjects.References(shape, x, refs)
    built: dict[tuple[str, str], Subject] = {}
    failed: dict[tuple[str, str], tuple[str, str]] = {}
    mismatched: dict[tuple[str, str], Subject] = {}
    for v, i in impls:
        if all(skip[(v, i, p)] for p in passes):
            continue
        try:
            subj = subjects.build(shape, v, i, refs)
            msg = subjects.check(subj, references)
        except Exception as e:  # noqa: BLE001 - recorded, the sweep goes on
            failed[(v, i)] = ("oom" if memory.is_oom(e) else "error", describe(e))
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
            continue
        if msg:
            failed[(v, i)] = ("mismatch", msg)
            mismatched[(v, i)] = subj
        else:
            built[(v, i)] = subj
    del references
    counts = {key: macs_of(s, x, shape, mac_cache) for key, s in built.items()}
    for pass_ in passes:
        rows: dict[tuple[str, str], Result] = {}
        steps: dict[tuple[str, str], Callable] = {}
        for v, i in impls:
            r = rows[(v, i)] = base_result(shape, v, i, pass_)
            r.mem_estimate_bytes = memory_estimate_bytes(shape, v, i, pass_)
            subj = built.get((v, i)) or mismatched.get((v, i))
            if subj is not None:
                fill_static(r, subj, shape, counts.get((v, i)))
            if skip[(v, i, pass_)]:
                r.fail("skipped", skip[(v, i, pass_)])
            elif (v, i) in failed:
                r.fail(*failed[(v, i)])
            else:
                try:
                    step = step_for(built[(v, i)], x, shape, pass_)
                    step()  # warm-up before the memory measurement
                    mem = memory.peak_memory(step, device)
                except Exception as e:  # noqa: BLE001
                    _fail(r, e, device)
                    continue
                r.peak_mem_bytes = mem.peak_mem_bytes
                r.mem_reserved_bytes = mem.mem_reserved_bytes
                r.nvml_used_bytes = mem.nvml_used_bytes
                steps[(v, i)] = step
        start = contention.read_counters()
        timed = time_interleaved(steps, device, timing, flush_l2)
        watched = contention.window(start, contention.read_counters(), torch.get_num_threads())
        for key, samples in timed.items():
            if isinstance(samples, BaseException):
                _fail(rows[key], samples, device)
            else:
                rows[key].set_samples(samples)
                rows[key].set_window(watched)  # the machine while this shape was timed
        del steps
        ref = rows.get(REFERENCE)
        ref_ms = ref.latency_ms_median if ref is not None and ref.status == "ok" else None
        if ref_ms is None and ref is None:
            ref_ms = (reference_ms or {}).get(pass_)
        full_macs = counting.dense_macs(shape.layer_shape())
        for r in rows.values():
            record.derive(r, ref_ms, full_macs)
        yield list(rows.values())


def _all_failed(shape, impls, passes, skip, error: BaseException | None):
    """Rows of a shape none of whose implementations can run (skipped, or the
    input itself failed)."""
    for pass_ in passes:
        rows = []
        for v, i in impls:
            r = base_result(shape, v, i, pass_)
            r.mem_estimate_bytes = memory_estimate_bytes(shape, v, i, pass_)
            if skip[(v, i, pass_)]:
                r.fail("skipped", skip[(v, i, pass_)])
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
    shape, v, i, p = case.shape, case.variant, case.impl, case.pass_
    r = base_result(shape, v, i, p)
    r.mem_estimate_bytes = memory_estimate_bytes(shape, v, i, p)
    reason = skip_reason(case)
    if reason:
        return Prepared(r.fail("skipped", reason), None)
    x = random_input(shape)
    refs: dict = {}
    try:
        subj = subjects.build(shape, v, i, refs)
        msg = subjects.check(subj, subjects.References(shape, x, refs))
        fill_static(r, subj, shape, macs_of(subj, x, shape, mac_cache) if count else None)
        if msg:
            return Prepared(r.fail("mismatch", msg), None)
        step = step_for(subj, x, shape, p)
        step()
        mem = memory.peak_memory(step, shape.device)
    except Exception as e:  # noqa: BLE001
        _fail(r, e, shape.device)
        return Prepared(r, None)
    r.peak_mem_bytes, r.mem_reserved_bytes = mem.peak_mem_bytes, mem.mem_reserved_bytes
    r.nvml_used_bytes = mem.nvml_used_bytes
    return Prepared(r, step)


__all__ = ["DENSE", "Prepared", "base_result", "measure_shape", "prepare_case"]
