"""What NEW lacks that BASE has: failures of ``bench compare`` and ``bench ab`` (exit 1).

A run that lost an implementation (it crashed, failed its output check, or
left the registry) or its reference rows would otherwise pass: there is
nothing left to judge, so no verdict can be a regression (issue #27).
"""

from __future__ import annotations

from .aggregate import group_label, group_of
from .runs import Run, params_key


def missing_failures(base: Run, new: Run, reference: tuple) -> list:
    """Why NEW fails for what it lacks: an implementation (variant/impl, pass, dtype,
    device) that BASE has and NEW has no benchmark of at all (it crashed, failed its
    check, or is gone from the registry), and benchmarks of the reference
    (``reference``, default full/naive) that BASE has and NEW lacks: every ratio of
    their shape is lost with them. A time-limited NEW that stopped before some
    shapes only lacks shapes, not implementations; its missing reference rows still
    fail where NEW has other benchmarks of the shape (they lose their ratios)."""
    have = {group_of(b.params) for b in new.benches.values()}
    lost: dict[tuple, int] = {}
    for b in base.benches.values():
        g = group_of(b.params)
        if g is not None and g not in have:
            lost[g] = lost.get(g, 0) + 1
    out = [
        f"implementation {group_label(g)} is missing from NEW ({n} benchmark(s) in BASE, "
        "none in NEW: crashed, failed its check, or no longer registered?)"
        for g, n in sorted(lost.items())
    ]
    ref = tuple(reference)

    def shape_of(params: dict) -> tuple:
        return params_key({k: v for k, v in params.items() if k not in ("variant", "impl")})

    shapes_new = {shape_of(b.params) for b in new.benches.values() if "variant" in b.params}
    gone = [
        k
        for k, b in base.benches.items()
        if (b.params.get("variant"), b.params.get("impl")) == ref
        and k not in new.benches
        and shape_of(b.params) in shapes_new
    ]
    if gone:
        out.append(
            f"reference {ref[0]}/{ref[1]} is missing from NEW in {len(gone)} shape(s) where "
            "NEW has other benchmarks: their ratios cannot be formed"
        )
    return out
