"""Exception types: each is also the built-in a caller would reach for first.

* :class:`UnknownChoiceError` — an unknown group, variant or implementation
  name. A ``ValueError`` (a bad argument value) and a ``KeyError`` (a failed
  registry lookup, as fvcore's registry raises); its message lists the choices.
* :class:`InputError` — a layer called with an input it cannot take (rank,
  channels, group axis, dtype, device, size). A ``ValueError`` and a
  ``TypeError`` (for dtype and non-tensor inputs).
* :class:`UnavailableError` — an implementation that no device of this process
  can run (e.g. ``impl="fused"`` without Triton, or on a CPU-only machine
  without ``TRITON_INTERPRET=1``), refused at construction. A ``RuntimeError``.
"""

from __future__ import annotations


class UnknownChoiceError(ValueError, KeyError):
    """An unknown name; the message lists the valid choices."""

    __str__ = BaseException.__str__  # KeyError would wrap the message in quotes


class InputError(ValueError, TypeError):
    """A layer input of the wrong rank, channels, group axis, dtype, device or size."""


class UnavailableError(RuntimeError):
    """An implementation no device of this process can run; the message says what is missing."""
