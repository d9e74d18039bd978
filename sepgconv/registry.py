"""The one registry of GConv implementations.

An implementation is one class (a subclass of :class:`sepgconv.GConv2d` with
class attributes ``variant`` and ``impl``) plus one ``@register`` line. The
layer factory, the tests, the benchmark sweep and the plots all iterate
:func:`implementations`, so a new entry shows up everywhere by itself.
"""

from __future__ import annotations

from sepgconv.errors import UnknownChoiceError

_REGISTRY: dict[tuple[str, str], type] = {}


def register(cls: type) -> type:
    """Class decorator: add ``cls`` under ``(cls.variant, cls.impl)``; duplicates are refused."""
    key = (cls.variant, cls.impl)
    if key in _REGISTRY:
        raise ValueError(
            f"implementation registry: {key} is already registered by {_REGISTRY[key].__name__}"
        )
    _REGISTRY[key] = cls
    return cls


def implementations() -> list[tuple[str, str]]:
    """All registered ``(variant, impl)`` pairs, in registration order."""
    return list(_REGISTRY)


def variants() -> list[str]:
    """All variants, in registration order (``full``, ``g``, ``gc``)."""
    return list(dict.fromkeys(v for v, _ in _REGISTRY))


def impls_of(variant: str) -> list[str]:
    """The implementations registered for one variant."""
    return [i for v, i in _REGISTRY if v == variant]


def available(device="cpu") -> list[tuple[str, str]]:
    """The registered ``(variant, impl)`` pairs that can run on ``device`` here
    (``cls.unavailable_reason(device) is None``), in registration order."""
    return [key for key, cls in _REGISTRY.items() if cls.unavailable_reason(device) is None]


def get(variant: str, impl: str) -> type:
    """The class registered for ``(variant, impl)``.

    Raises:
        UnknownChoiceError: (a ValueError and a KeyError) naming the unknown
            variant or implementation and listing the valid choices.
    """
    if not isinstance(variant, str) or variant not in variants():
        raise UnknownChoiceError(f"unknown variant {variant!r}; valid choices: {variants()}")
    if not isinstance(impl, str) or (variant, impl) not in _REGISTRY:
        raise UnknownChoiceError(
            f"unknown implementation {impl!r} for variant {variant!r}; "
            f"valid choices for {variant!r}: {impls_of(variant)} "
            f"(all registered: {[f'{v}/{i}' for v, i in _REGISTRY]})"
        )
    return _REGISTRY[(variant, impl)]
