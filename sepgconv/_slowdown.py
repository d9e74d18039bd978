"""TEST-ONLY slowdown hook: make one implementation's forward take longer on purpose.

``SEPGCONV_TEST_SLOWDOWN="gc/rearranged=1.25"`` (a comma list of
``variant/impl=factor``, factor >= 1), read once when :mod:`sepgconv` is
imported, makes **every** ``GConv2d.forward`` of that implementation cost about
``factor`` times its own forward:

* the whole units of ``factor - 1`` by repeating the forward (2.0: once more
  on every call), under ``no_grad``;
* on CPU, the rest by a busy loop on the calling thread until ``factor`` times
  the call's own forward time has passed since the hook was entered (1.25: a
  quarter of the forward's time more, on every call; the hook's own overhead
  counts in it). Every call is slowed alike, so a timing sample of any number
  of calls sees the factor. (The first version repeated the whole forward every fourth
  call at 1.25: a sample of one to three calls then held zero or one repeat, the
  samples were lumpy and a trimmed mean or median under-read or missed it.)
* on a GPU the fraction falls back to a per-layer credit (a whole repeat every
  ``1 / fraction`` calls), since the host cannot see the kernels' time without
  synchronizing: lumpy per call there.

The backward and its gradients are unchanged (a ``fwdbwd`` step therefore
slows by less than the factor). It exists to plant a known regression for
``python -m bench ab`` and the measurement of its detection rates
(``tools/ab_rates.py``); never set it anywhere else.

Unset (the normal case) it costs one module-level boolean test per forward
(:data:`ACTIVE`). ``impl="auto"`` calls its delegate's ``_forward`` and is not
slowed by this hook (only a layer of the named implementation itself is).
"""

from __future__ import annotations

import os
import time

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


#: the clock the hook reads (a test replaces it)
_clock = time.perf_counter


def _busy_until(end: float) -> None:
    """Keep this thread busy (not asleep: the core stays occupied) until ``_clock() >= end``."""
    while _clock() < end:
        pass


def forward(layer, x):
    """``layer._forward(x)``, made to cost about the layer's factor (see the module doc)."""
    t0 = _clock()
    factor = FACTORS.get((layer.variant, layer.impl), 1.0)
    if factor <= 1.0:
        return layer._forward(x)
    y = layer._forward(x)
    own = _clock() - t0
    whole = int(factor - 1.0 + 1e-9)
    on_cpu = x.device.type == "cpu"
    repeats = whole
    if not on_cpu and factor - 1.0 - whole > 1e-9:
        credit = getattr(layer, "_slowdown_credit", 0.0) + factor - 1.0 - whole
        if credit >= 1.0 - 1e-9:
            repeats, credit = repeats + 1, credit - 1.0
        layer._slowdown_credit = credit
    if repeats:  # (entering no_grad costs microseconds: only when there is work for it)
        import torch

        with torch.no_grad():
            for _ in range(repeats):
                layer._forward(x)
    if on_cpu:
        _busy_until(t0 + factor * own)  # the rest of factor x own since entry, on every call
    return y
