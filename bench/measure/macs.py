"""MACs measured by fvcore (DESIGN §3: one multiply-add counts once).

* :func:`count_macs` — fvcore's count of one module call.
* :func:`counter_unavailable` — why fvcore cannot count here (it cannot be
  imported: ``fvcore.nn`` needs ``portalocker`` and ``tabulate`` too), or None.
"""

from __future__ import annotations

import warnings

import torch


def count_macs(module: torch.nn.Module, x: torch.Tensor) -> tuple[int, str]:
    """fvcore's MAC count of ``module(x)`` and its unsupported ops (``"op:n;…"``).

    Uses :func:`sepgconv.counting.measure_macs` (eval mode, no grad, after a
    warm-up call, so cached filter construction is not traced).
    """
    from sepgconv import counting

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mc = counting.measure_macs(module, x)
    unsupported = ";".join(f"{op}:{n}" for op, n in sorted(mc.unsupported.items()))
    return mc.total, unsupported


def counter_unavailable() -> str | None:
    """Why the MAC counter cannot load (``"ModuleNotFoundError: ..."``), or None when
    ``fvcore.nn`` imports. Without it every ``macs_measured`` is unknown (empty), and
    so is ``macs_match``: unknown, never False."""
    try:
        import fvcore.nn  # noqa: F401
    except Exception as e:  # noqa: BLE001 - ImportError, or a dependency's own failure
        return f"{type(e).__name__}: {e}"
    return None
