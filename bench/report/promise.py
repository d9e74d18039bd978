"""The §3.4 promise of each row's variant: what efficiency is measured against.

Plain pandas (no torch): the §3.4 MAC counts of DESIGN.md §3, vectorised over a
results table. Efficiency is a row's speedup over the full GConv divided by
:func:`promised_speedup`, whatever the implementation executes, so naive,
rearranged, fused and auto rows of one variant share one scale.
"""

from __future__ import annotations

import pandas as pd

GROUP_ORDER = {"p4": 4, "p4m": 8}  # |G| of the output group axis


def _group_axes(df: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """``(G_in, G_out)`` of each row: the CSV's ``g_in``/``g_out`` when it has them,
    else from the group (a lifting layer has ``G_in = 1``)."""
    order = df["group"].map(GROUP_ORDER)
    g_in = df["g_in"] if "g_in" in df.columns else order.where(df["layer"] != "lifting", 1)
    g_out = df["g_out"] if "g_out" in df.columns else order
    return pd.to_numeric(g_in), pd.to_numeric(g_out)


def section34_macs(df: pd.DataFrame, variant: str) -> pd.Series:
    """The §3.4 MAC count per sample of ``variant`` at each row's shape (DESIGN §3;
    the same formulas as :func:`sepgconv.counting.macs_section34`, which needs torch)."""
    g_in, g_out = _group_axes(df)
    c_in, c_out, k2, hw = df["c_in"], df["c_out"], df["k"] ** 2, df["h"] * df["w"]
    if variant == "full":
        return c_in * g_in * k2 * hw * c_out * g_out
    if variant == "g":
        return c_in * c_out * g_out * hw * (g_in + k2)
    if variant == "gc":
        return c_out * g_out * hw * (c_in * g_in + k2)
    raise ValueError(f"no §3.4 count for variant {variant!r}; valid choices: full, g, gc")


PROMISED = ("g", "gc")  # the variants whose §3.4 count is a cut (the separable ones)


def promised_speedup(df: pd.DataFrame) -> pd.Series:
    """The variant's §3.4 promise: full GConv MACs ÷ the rearranged count of the
    row's variant, whatever the implementation (naive, rearranged, fused, auto)
    executes. 1 for full and for a dense conv holding F̃; for a variant without a
    §3.4 count (a peer library's) the row's own ``theoretical_speedup``."""
    out = pd.to_numeric(df["theoretical_speedup"], errors="coerce").astype(float).copy()
    out[df["variant"].isin(["full", "dense"])] = 1.0
    full = section34_macs(df, "full")
    for variant in PROMISED:
        sel = df["variant"] == variant
        out[sel] = (full[sel] / section34_macs(df[sel], variant)).astype(float)
    return out
