"""TEST-ONLY slowdown hook: make one implementation's forward take longer on purpose.

``SEPGCONV_TEST_SLOWDOWN="gc/rearranged=1.25"`` (a comma list of
``variant/impl=factor``, factor >= 1), read once when :mod:`sepgconv` is
imported, makes every ``GConv2d.forward`` of that implementation repeat its own
computation so that a call costs about ``factor`` times as much: the whole
forward once per call plus the fractional rest by a per-layer credit (1.25:
one extra forward every fourth call), the extra calls under ``no_grad`` so a
training step's backward and its gradients are unchanged (a ``fwdbwd`` step
therefore slows by less than the factor). It exists to plant a known
regression for ``python -m bench ab`` and the measurement of its detection
rates (``tools/ab_rates.py``); never set it anywhere else.

Unset (the normal case) it costs one module-level boolean test per forward
(:data:`ACTIVE`). ``impl="auto"`` calls its delegate's ``_forward`` and is not
slowed by this hook (only a layer of the named implementation itself is).
"""

from __future__ import annotations

import os

ENV = "SEPGCONV_TEST_SLOWDOWN"


def parse(text: str | None) -> dict[tuple[str, str], float]:
    """``{(variant, impl): factor}`` from the variable's text (empty: nothing).

    Raises:
        ValueError: an entry that is not ``variant/impl=factor`` with factor >= 1.
    """
    out: dict[tuple[str, str], float] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, value = item.partition("=")
        variant, slash, impl = name.strip().partition("/")
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not (sep and slash and variant and impl) or not factor >= 1.0:
            raise ValueError(f"{ENV}: {item!r} is not variant/impl=factor with factor >= 1")
        out[(variant, impl)] = factor
    return out


FACTORS: dict[tuple[str, str], float] = parse(os.environ.get(ENV))
#: the only thing GConv2d.forward reads when the hook is off
ACTIVE: bool = bool(FACTORS)


def forward(layer, x):
    """``layer._forward(x)``, repeated to cost about the layer's factor."""
    import torch

    y = layer._forward(x)
    extra = FACTORS.get((layer.variant, layer.impl), 1.0) - 1.0
    if extra <= 0:
        return y
    credit = getattr(layer, "_slowdown_credit", 0.0) + extra
    with torch.no_grad():
        while credit >= 1.0 - 1e-9:
            layer._forward(x)
            credit -= 1.0
    layer._slowdown_credit = credit
    return y
