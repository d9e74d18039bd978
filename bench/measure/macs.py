"""MACs measured by fvcore (DESIGN §3: one multiply-add counts once)."""

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
