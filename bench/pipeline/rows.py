"""Filling one row: identity and formula counts, the counted columns of a built
subject, fvcore's count, and what ``impl="auto"`` chose and compiling cost.

:mod:`bench.pipeline.driver` calls these around the measurements of a shape.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch

import sepgconv
from sepgconv import counting

from ..measure import macs
from ..measure.timing import make_step
from ..store.record import Result
from ..sweep.shapes import Impl, Shape
from ..sweep.subject import Subject


def base_result(shape: Shape, impl: Impl, pass_: str) -> Result:
    """A result with the identifying fields and the formula MACs filled in."""
    r = Result(
        kind="layer", group=shape.group, layer=shape.layer, variant=impl.variant,
        impl=impl.impl, memory_format=impl.memory_format, compiled=impl.compiled,
        c_in=shape.c_in, c_out=shape.c_out, k=shape.k, h=shape.h, w=shape.w, batch=shape.batch,
        pass_=pass_, dtype=shape.dtype, device=shape.device, g_in=shape.g_in, g_out=shape.g_out,
    )  # fmt: skip
    r.macs_formula = formula_macs(shape, impl.variant, impl.impl)
    full = counting.dense_macs(shape.layer_shape())
    if r.macs_formula:
        r.theoretical_speedup = full / r.macs_formula
    return r


def formula_macs(shape: Shape, variant: str, impl: str) -> int | None:
    """Forward MACs by formula: the registered class's, else a dense conv's; None for
    ``auto`` until it has chosen (:func:`note_choice`)."""
    if impl == "auto":
        return None
    if (variant, impl) in sepgconv.implementations():
        return sepgconv.get_implementation(variant, impl).macs(shape.layer_shape())
    return counting.dense_macs(shape.layer_shape())  # dense/torch and peers


def describe(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}"[:500]


def layer_of(subj: Subject) -> torch.nn.Module:
    """The module under a ``torch.compile`` wrapper (the module itself otherwise)."""
    return getattr(subj.module, "_orig_mod", subj.module)


def is_auto(subj: Subject) -> bool:
    layer = layer_of(subj)
    return isinstance(layer, sepgconv.GConv2d) and layer.impl == "auto"


def fill_static(r: Result, subj: Subject, shape: Shape, counts: tuple | None) -> None:
    """Formula and counted columns of a built subject."""
    r.macs_formula = subj.macs_formula
    r.params_formula = subj.params_formula
    r.params_measured = counting.measure_params(layer_of(subj))
    _set_intermediates(r, subj.intermediate_bytes, shape, subj.params_formula)
    if counts is not None:
        r.macs_measured, r.macs_unsupported = counts
        # unknown stays unknown: no count (fvcore absent or failed) is no verdict
        known = r.macs_measured is not None and r.macs_formula is not None
        r.macs_match = r.macs_measured == r.macs_formula if known else None


def _set_intermediates(r: Result, inter: dict, shape: Shape, params: int) -> None:
    r.intermediate_filter_bytes = inter["filter"]
    r.intermediate_activation_bytes = inter["activations"]
    s, item = shape.layer_shape(), shape.itemsize
    x = s.batch * s.c_in * s.g_in * s.h_in * s.w_in
    y = s.batch * s.c_out * s.g_out * s.h_out * s.w_out
    both = inter["filter"] + inter["activations"]
    r.bytes_moved_formula = (x + y + params) * item + 2 * both
    r.arithmetic_intensity = r.macs_formula / r.bytes_moved_formula if r.macs_formula else None


def input_for(subj: Subject, x: torch.Tensor, shape: Shape, pass_: str) -> torch.Tensor:
    """The subject's input for ``pass_`` (adapted once, outside the timing; a group
    layer's input needs its gradient in a training step)."""
    xin = subj.to_input(x)
    if pass_ == "fwdbwd" and not shape.lifting:
        xin = xin.detach().requires_grad_(True)
    return xin


def step_for(subj: Subject, x: torch.Tensor, shape: Shape, pass_: str) -> Callable:
    """The timed callable of a subject (see :func:`bench.measure.timing.make_step`)."""
    return make_step(subj.module, input_for(subj, x, shape, pass_), pass_)


def first_call_s(step: Callable, device: str) -> float:
    """Seconds of one call, synchronised: the warm-up call, which compiles a
    ``torch.compile`` module and makes ``impl="auto"`` choose."""
    t0 = time.perf_counter()
    step()
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def macs_of(subj: Subject, x: torch.Tensor, shape: Shape, cache: dict | None, impl: Impl):
    """fvcore's count of a subject (of the eager module under ``torch.compile``),
    cached per shape and implementation across dtypes, devices and, but for
    ``auto`` (whose choice may depend on it), memory formats."""
    fmt = impl.memory_format if impl.impl == "auto" else ""
    key = (dataclasses.replace(shape, dtype="float32", device="cpu"), impl.name, fmt)
    if cache is not None and key in cache:
        return cache[key]
    try:
        counts = macs.count_macs(layer_of(subj), subj.to_input(x))
    except Exception as e:  # noqa: BLE001 - an uncountable module is flagged, not fatal
        counts = (None, f"fvcore failed: {describe(e)}"[:200])
    if cache is not None:
        cache[key] = counts
    return counts


def note_choice(r: Result, subj: Subject, x: torch.Tensor, shape: Shape, pass_: str) -> None:
    """What an ``impl="auto"`` row ran: its choice for this pass (made during the
    warm-up), the tuning time, and the MACs and intermediates of the chosen
    implementation. fvcore counted the inference choice: a training row that chose
    differently is counted again on the implementation it chose (its ``macs_match``
    was empty on the first H200 run)."""
    layer = layer_of(subj)
    grad = torch.enable_grad() if pass_ == "fwdbwd" else torch.no_grad()
    with grad:
        choice = layer.choice(input_for(subj, x, shape, pass_))
    cls = sepgconv.get_implementation(layer.variant, choice.impl)
    r.auto_choice = choice.impl + (" cl" if choice.memory_format == "channels_last" else "")
    r.tuning_s = choice.tuning_s
    ls = layer.layer_shape(shape.h, shape.w, shape.batch)
    formula = cls.macs(ls)
    if formula != r.macs_formula:  # the training choice differs from the inference one:
        # count what this pass runs (the chosen implementation, sharing the parameters)
        delegate = layer._delegate(choice.impl, choice.memory_format)
        try:
            r.macs_measured, r.macs_unsupported = macs.count_macs(delegate, subj.to_input(x))
            r.macs_match = r.macs_measured == formula
        except Exception as e:  # noqa: BLE001 - an uncountable module is flagged, not fatal
            r.macs_measured, r.macs_match = None, None
            r.macs_unsupported = f"fvcore failed: {describe(e)}"[:200]
    r.macs_formula = formula
    inter = {k: n * shape.itemsize for k, n in cls.intermediate_elements(ls).items()}
    _set_intermediates(r, inter, shape, r.params_formula or 0)


__all__ = [
    "base_result",
    "describe",
    "fill_static",
    "first_call_s",
    "formula_macs",
    "input_for",
    "is_auto",
    "macs_of",
    "note_choice",
    "step_for",
]
