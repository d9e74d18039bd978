"""Exception types: each is also the built-in a caller would reach for first.

* :class:`UnknownChoiceError` — an unknown group, variant or implementation
  name. A ``ValueError`` (a bad argument value) and a ``KeyError`` (a failed
  registry lookup, as fvcore's registry raises); its message lists the choices.
* :class:`InputError` — a layer called with an input it cannot take (rank,
  channels, group axis, dtype, device, size). A ``ValueError`` and a
  ``TypeError`` (for dtype and non-tensor inputs).
"""

from __future__ import annotations


class UnknownChoiceError(ValueError, KeyError):
    """An unknown name; the message lists the valid choices."""

    __str__ = BaseException.__str__  # KeyError would wrap the message in quotes


class InputError(ValueError, TypeError):
    """A layer input of the wrong rank, channels, group axis, dtype, device or size."""
