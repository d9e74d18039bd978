"""Validation of GConv2d's constructor arguments and of its inputs (clear messages)."""

from __future__ import annotations

import operator

import torch

from sepgconv.counting import output_size
from sepgconv.errors import InputError, UnavailableError


def runnable(cls, device) -> None:
    """Refuse to build a layer of ``cls`` that no device of this process can run.

    The layer may be built on one device and moved to another (built on the
    CPU, moved to CUDA later), so it is refused only when neither the
    construction device (``device``, default the current default device) nor
    CUDA (when present) nor the CPU can run it; the message is
    ``cls.unavailable_reason`` for the construction device.

    Raises:
        UnavailableError: (a RuntimeError) with that one-line reason.
    """
    device = torch.device(torch.get_default_device() if device is None else device)
    reason = cls.unavailable_reason(device)
    if reason is None:
        return
    elsewhere = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if all(cls.unavailable_reason(other) is not None for other in elsewhere):
        raise UnavailableError(reason)


def positive_int(value, name: str) -> int:
    """``value`` as an int if it is a positive integer (numpy ints too), else ValueError."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return number


def kernel_size(k) -> int:
    """A square kernel size (an int or an equal pair) as an int, else ValueError."""
    if isinstance(k, (tuple, list)):
        if len(k) != 2 or k[0] != k[1]:
            raise ValueError(
                f"unsupported kernel_size {tuple(k)!r}: the kernel must be square "
                f"(rotations map a k×k grid to itself only)"
            )
        k = k[0]
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"unsupported kernel_size {k!r}: must be a positive int")
    return k


def padding(padding, k: int) -> int:
    """The symmetric integer padding for ``padding`` (int, ``"same"``, ``"valid"``)."""
    if padding == "valid":
        return 0
    if padding == "same":
        if k % 2 == 0:
            raise ValueError(
                f"padding='same' with an even kernel_size {k} needs asymmetric padding, "
                f"which breaks equivariance; pass an integer padding instead"
            )
        return k // 2
    if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
        raise ValueError(f"padding must be a non-negative int, 'same' or 'valid', got {padding!r}")
    return padding


def check_input(layer, x) -> None:
    """Raise :class:`InputError` naming what is wrong with input ``x`` of ``layer``."""
    kind = "lifting" if layer.lifting else "group"
    where = f"{type(layer).__name__}({layer.group.name}, {kind})"
    if not isinstance(x, torch.Tensor):
        raise InputError(f"{where}: expected a torch.Tensor, got {type(x).__name__}")
    if layer.lifting:
        rank, want = 4, f"[B, C_in={layer.in_channels}, H, W]"
        hint = " (a lifting layer takes images: did you mean lifting=False?)"
    else:
        rank, want = 5, f"[B, C_in={layer.in_channels}, G={layer.g_in}, H, W]"
        hint = " (a group layer needs the group axis: did you mean lifting=True?)"
    if x.dim() != rank:
        raise InputError(
            f"{where}: expected a {rank}-D input {want}, got a {x.dim()}-D tensor of "
            f"shape {tuple(x.shape)}{hint if x.dim() in (4, 5) else ''}"
        )
    if x.shape[1] != layer.in_channels:
        raise InputError(
            f"{where}: expected {layer.in_channels} input channels on axis 1 {want}, "
            f"got {x.shape[1]} (shape {tuple(x.shape)})"
        )
    if not layer.lifting and x.shape[2] != layer.g_in:
        raise InputError(
            f"{where}: expected a group axis of size {layer.g_in} on axis 2 {want}, "
            f"got {x.shape[2]} (shape {tuple(x.shape)})"
        )
    weight = layer._own_parameters()[0]  # dtype and device of all the weights
    if x.dtype != weight.dtype:
        raise InputError(
            f"{where}: input dtype {x.dtype} differs from the weights' dtype {weight.dtype}; "
            + (
                f"convert one of them (e.g. layer.to({x.dtype}))"
                if x.dtype.is_floating_point
                else f"convert the input (e.g. x.to({weight.dtype}))"
            )
        )
    if x.device != weight.device:
        raise InputError(f"{where}: input is on {x.device} but the weights are on {weight.device}")
    for size in x.shape[-2:]:
        try:
            output_size(size, layer.kernel_size, layer.stride, layer.padding)
        except ValueError as e:
            raise InputError(f"{where}: {e}") from None
