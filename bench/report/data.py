"""The data behind the report: the results schema and one function per plot.

Everything here is plain pandas (no matplotlib, no torch). Each ``*_points`` /
``*_table`` function takes the typed results table (:func:`bench.report.prepare`)
and returns the exact rows a plot draws, so a test can check a picture against
the CSV.

Conventions:

* An implementation is labelled ``variant/impl`` (``g/rearranged``); the
  reference is :data:`REFERENCE`, the full GConv.
* A *shape* is one value of :data:`SHAPE_KEYS` (pass, dtype and device
  included); every ratio compares rows of the same shape.
* Only rows with ``status == "ok"`` are drawn (:func:`ok_rows`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .promise import GROUP_ORDER, promised_speedup

REFERENCE = "full/naive"
# what makes two rows comparable (same layer call, same pass, dtype, device)
SHAPE_KEYS = ["group", "layer", "c_in", "c_out", "k", "h", "w", "batch", "pass", "dtype", "device"]
INT_COLUMNS = ["c_in", "c_out", "k", "h", "w", "batch"]
# fmt: off
FLOAT_COLUMNS = [
    "latency_ms_median", "macs_formula", "macs_measured", "peak_mem_bytes",
    "intermediate_filter_bytes", "intermediate_activation_bytes", "gmacs_per_s",
    "speedup_vs_full", "theoretical_speedup", "efficiency", "bytes_moved_formula",
]
# fmt: on
# the columns the report reads; a results.csv without one of them is refused
REQUIRED_COLUMNS = [*SHAPE_KEYS, "variant", "impl", "status", "error", *FLOAT_COLUMNS, "macs_match"]
PROFILE_COLUMNS = [*SHAPE_KEYS, "variant", "impl", "category", "time_ms"]
ITEMSIZE_BYTES = {"float64": 8, "float32": 4, "float16": 2, "bfloat16": 2}

# anchor values preferred when a plot must hold a dimension fixed (else the mode)
PREFERRED = {"k": 3, "layer": "group", "dtype": "float32"}


class ReportError(Exception):
    """Unusable input: reported as one line on stderr, exit code 2."""


@dataclass
class Results:
    """One results folder, loaded and typed."""

    directory: Path
    df: pd.DataFrame  # results.csv with an ``impl_label`` column added
    env: dict = field(default_factory=dict)
    profile: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)  # problems with optional inputs
    models: pd.DataFrame | None = None  # models/models.csv (bench.report.paper_models)


# ---------------------------------------------------------------------- #
# helpers
# ---------------------------------------------------------------------- #
def ok_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that ran and matched the reference (``status == "ok"``)."""
    return df[df["status"] == "ok"]


KNOWN_ORDER = [
    "full/naive", "full/auto", "g/naive", "g/rearranged", "g/fused", "g/auto", "gc/naive",
    "gc/rearranged", "gc/fused", "gc/auto", "dense/torch",
]  # fmt: skip
#: (variant, impl) of rows that are not a choice a sepgconv user makes (a plain
#: nn.Conv2d holding F̃; another library): shown, never recommended
NOT_CHOICES = {("dense", "torch"), ("full", "e2cnn")}


def impl_label(variant, impl, memory_format="contiguous", compiled=False) -> str:
    """``variant/impl``, then `` cl`` (channels_last) and `` compiled`` when run so."""
    label = f"{variant}/{impl}"
    if memory_format == "channels_last":
        label += " cl"
    if str(compiled) == "True":
        label += " compiled"
    return label


def impl_order(labels) -> list[str]:
    """Implementation labels in a stable order: reference first, then the
    registry's order (full, g, gc; naive, rearranged, fused, auto), each eager
    then ``cl`` then compiled; unknown labels last, sorted."""
    present = list(dict.fromkeys(labels))

    def key(label: str):
        base, *how = label.split(" ")
        rank = KNOWN_ORDER.index(base) if base in KNOWN_ORDER else len(KNOWN_ORDER)
        return (rank, base, " ".join(how))

    return sorted(present, key=key)


def mode(series: pd.Series):
    """Most frequent value; among ties, the middle one (sorted)."""
    counts = series.value_counts()
    top = sorted(counts[counts == counts.max()].index)
    return top[len(top) // 2]


def anchor_value(d: pd.DataFrame, key: str):
    """The value a plot holds ``key`` at: :data:`PREFERRED` if present, else the mode."""
    if key in PREFERRED and (d[key] == PREFERRED[key]).any():
        return PREFERRED[key]
    return mode(d[key])


def device_name(env: dict) -> str:
    """The device's model: the CPU model on a CPU run, else ``device_name``."""
    if env.get("device") == "cpu" and env.get("cpu_model"):
        return str(env["cpu_model"])
    return str(
        env.get("device_name") or env.get("cpu_model") or env.get("device") or "unknown device"
    )


def device_title(env: dict) -> str:
    """``NVIDIA H100 80GB HBM3 · torch 2.3.0`` (what every title names)."""
    cpu = env.get("device") == "cpu" and env.get("threads")
    n = env.get("threads")
    threads = f", {n} thread{'s' if n != 1 else ''}" if cpu else ""
    return f"{device_name(env)}{threads} · torch {env.get('torch', '?')}"


def output_bytes(df: pd.DataFrame) -> pd.Series:
    """Bytes of the layer's output ``[B, C_out, G, H, W]`` ('same' padding, stride 1;
    G from the ``g_out`` column when the CSV has it, else from the group)."""
    g = df["g_out"] if "g_out" in df.columns else df["group"].map(GROUP_ORDER)
    item = df["dtype"].map(ITEMSIZE_BYTES)
    return df["batch"] * df["c_out"] * g * df["h"] * df["w"] * item


def formula_mem_bytes(df: pd.DataFrame) -> pd.Series:
    """Formula working memory of one call: expanded filter + intermediate
    activations (X̃ and copies) + the output."""
    return (
        df["intermediate_filter_bytes"].fillna(0)
        + df["intermediate_activation_bytes"].fillna(0)
        + output_bytes(df)
    )


def with_reference(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` plus the reference row's ``ref_*`` columns for the same shape.

    The reference is joined whatever its status (its formula columns hold);
    ``ref_status`` says whether its measured columns can be trusted.
    """
    ref = df[df["impl_label"] == REFERENCE].drop_duplicates(SHAPE_KEYS)
    ref = ref[SHAPE_KEYS].assign(
        ref_status=ref["status"],
        ref_latency_ms=ref["latency_ms_median"],
        ref_macs_formula=ref["macs_formula"],
        ref_peak_mem_bytes=ref["peak_mem_bytes"],
        ref_formula_mem_bytes=formula_mem_bytes(ref),
    )
    return df.merge(ref, on=SHAPE_KEYS, how="left")


def count_implementations(df: pd.DataFrame) -> tuple[int, int]:
    """``(implementations, configurations)`` of a results table: distinct
    ``variant/impl`` pairs (what ``bench run`` prints as "N implementations"), and
    distinct labels with their memory format and compilation (what the tables list)."""
    pairs = df["variant"].astype(str) + "/" + df["impl"].astype(str)
    return int(pairs.nunique()), int(df["impl_label"].nunique())


def _finite_positive(*cols: pd.Series) -> pd.Series:
    mask = pd.Series(True, index=cols[0].index)
    for c in cols:
        v = pd.to_numeric(c, errors="coerce")
        mask &= np.isfinite(v) & (v > 0)
    return mask


# ---------------------------------------------------------------------- #
# the data behind each plot
# ---------------------------------------------------------------------- #
def tradeoff_points(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ok non-reference row whose reference is ok too.

    Columns: shape keys, ``impl_label``, ``variant``, ``mac_reduction`` (reference
    MACs ÷ the MACs this row executes, formula), ``mem_increase_measured`` (impl
    peak ÷ reference peak), ``mem_increase_formula`` (same ratio of
    :func:`formula_mem_bytes`; NaN for rows that are not a sepgconv choice,
    :data:`NOT_CHOICES`, whose working memory the formula does not model).
    """
    j = with_reference(ok_rows(df))
    j = j[(j["impl_label"] != REFERENCE) & (j["ref_status"] == "ok")]
    out = j[SHAPE_KEYS + ["impl_label", "variant"]].copy()
    out["mac_reduction"] = j["ref_macs_formula"] / j["macs_formula"]
    out["mem_increase_measured"] = j["peak_mem_bytes"] / j["ref_peak_mem_bytes"]
    formula = formula_mem_bytes(j) / j["ref_formula_mem_bytes"]
    out["mem_increase_formula"] = formula.where(is_choice(j))
    keep = _finite_positive(out["mac_reduction"], out["mem_increase_measured"])
    return out[keep].reset_index(drop=True)


#: a trade-off panel whose points all lie within this factor of (1, 1) has nothing to show
TRIVIAL_FACTOR = 1.25


def tradeoff_panels(pts: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The variants the trade-off plot gives a panel, and the others with the reason.

    A trade-off needs a MAC cut: a variant is left out when every MAC reduction of
    its implementations is within :data:`TRIVIAL_FACTOR` of 1 (the full GConv's other
    forms, a dense conv: one column of points at x = 1, whose memory the summary
    tables give)."""
    kept, dropped = [], {}
    for variant in dict.fromkeys(pts.sort_values("impl_label", key=_rank)["variant"]):
        cut = pts.loc[pts["variant"] == variant, "mac_reduction"].to_numpy(float)
        if (np.abs(np.log(cut)) <= np.log(TRIVIAL_FACTOR)).all():
            dropped[variant] = "no MAC cut: every point at x = 1"
        else:
            kept.append(variant)
    return kept, dropped


def _rank(labels: pd.Series) -> pd.Series:
    order = {x: i for i, x in enumerate(impl_order(labels))}
    return labels.map(order)


def speedup_points(df: pd.DataFrame) -> pd.DataFrame:
    """Ok non-reference rows with a finite speedup over the full GConv.

    Columns: shape keys, ``impl_label``, ``variant``, ``promised_speedup``
    (:func:`promised_speedup`, the variant's §3.4 cut), ``theoretical_speedup``
    (the MACs this row executed: full ÷ its ``macs_formula``), ``speedup_vs_full``,
    ``efficiency`` (speedup ÷ promised speedup: one scale for every implementation
    of a variant) and ``mem_vs_full`` (peak memory ÷ the full GConv's on the same
    shape; NaN where that is unknown).
    """
    d = with_reference(ok_rows(df))
    d = d[d["impl_label"] != REFERENCE]
    d = d.assign(promised_speedup=promised_speedup(d))
    d = d[_finite_positive(d["promised_speedup"], d["speedup_vs_full"])]
    ref_ok = (d["ref_status"] == "ok") & _finite_positive(d["ref_peak_mem_bytes"])
    d = d.assign(
        efficiency=d["speedup_vs_full"] / d["promised_speedup"],
        mem_vs_full=(d["peak_mem_bytes"] / d["ref_peak_mem_bytes"]).where(ref_ok),
    )
    cols = SHAPE_KEYS + ["impl_label", "variant", "promised_speedup", "theoretical_speedup",
                         "speedup_vs_full", "efficiency", "mem_vs_full"]  # fmt: skip
    return d[cols].reset_index(drop=True)


def scaling_table(df: pd.DataFrame, along: str) -> pd.DataFrame:
    """Latency against channels (``along="channels"``, x = C_in, rows with
    C_in = C_out where the sweep has them) or resolution (``"resolution"``,
    x = H), one line per (pass, implementation).

    Every other dimension is held at one value (:func:`anchor_value`: k = 3,
    the group layer and float32 when swept, else the most frequent); those
    anchors are in ``result.attrs["anchor"]``. Duplicates left after that are
    reduced by the median.
    """
    if along not in ("channels", "resolution"):
        raise ValueError(f"along must be 'channels' or 'resolution', not {along!r}")
    d = ok_rows(df)
    d = d[np.isfinite(d["latency_ms_median"])]
    cols = ["pass", "impl_label", "x", "latency_ms"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    anchor = {}
    for key in ["k", "device", "dtype", "group", "layer", "batch"]:
        anchor[key] = anchor_value(d, key)
        d = d[d[key] == anchor[key]]
    if along == "channels":
        anchor["h"] = mode(d["h"])
        d = d[d["h"] == anchor["h"]]
        if (d["c_in"] == d["c_out"]).any():
            d = d[d["c_in"] == d["c_out"]]
        x = d["c_in"]
    else:
        pair = mode(d["c_in"].astype(str) + "→" + d["c_out"].astype(str))
        anchor["channels"] = pair
        d = d[d["c_in"].astype(str) + "→" + d["c_out"].astype(str) == pair]
        x = d["h"]
    t = d.assign(x=x).groupby(["pass", "impl_label", "x"], as_index=False)["latency_ms_median"]
    out = t.median().rename(columns={"latency_ms_median": "latency_ms"})
    out.attrs["anchor"] = anchor
    return out[cols]


BEST_KEYS = ["device", "pass", "group", "layer", "dtype", "batch", "h", "w", "c_in", "c_out", "k"]


def best_impl_table(df: pd.DataFrame) -> pd.DataFrame:
    """The fastest implementation a user can choose for every shape (argmin of
    median latency over its ok rows; ``dense/torch`` and peers are not choices,
    :data:`NOT_CHOICES`).

    Columns: :data:`BEST_KEYS`, ``best`` (impl label), ``latency_ms``,
    ``speedup_vs_full`` (the best row's, from the CSV), ``n_impls`` (ok
    implementations compared).
    """
    d = ok_rows(df)
    d = d[np.isfinite(d["latency_ms_median"]) & is_choice(d)]
    cols = BEST_KEYS + ["best", "latency_ms", "speedup_vs_full", "n_impls"]
    if d.empty:
        return pd.DataFrame(columns=cols)
    idx = d.groupby(BEST_KEYS)["latency_ms_median"].idxmin()
    best = d.loc[idx, BEST_KEYS + ["impl_label", "latency_ms_median", "speedup_vs_full"]]
    best = best.rename(columns={"impl_label": "best", "latency_ms_median": "latency_ms"})
    n = d.groupby(BEST_KEYS)["impl_label"].nunique().rename("n_impls").reset_index()
    return best.merge(n, on=BEST_KEYS).reset_index(drop=True)[cols]


def is_choice(df: pd.DataFrame) -> pd.Series:
    """Rows of implementations a sepgconv user can choose (not :data:`NOT_CHOICES`)."""
    pairs = list(zip(df["variant"], df["impl"], strict=True))
    return pd.Series([p not in NOT_CHOICES for p in pairs], index=df.index, dtype=bool)


def best_map_table(df: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """The rows the best-implementation map draws: :func:`best_impl_table` at one
    (layer, dtype, batch) (:func:`anchor_value`), every group, plus a ``channels``
    label ``"C_in→C_out"``. Returns ``(table, anchor)``."""
    best, anchor = best_impl_table(df), {}
    if best.empty:
        return best.assign(channels=[]), anchor
    for key in ["layer", "dtype", "batch"]:
        anchor[key] = anchor_value(best, key)
        best = best[best[key] == anchor[key]]
    channels = best["c_in"].astype(str) + "→" + best["c_out"].astype(str)
    return best.assign(channels=channels).reset_index(drop=True), anchor


def profile_table(profile: pd.DataFrame | None, max_shapes: int = 4) -> pd.DataFrame:
    """Per-operator time (ms, summed per category) for up to ``max_shapes``
    profiled shapes: those with the most implementations, then the largest.

    Columns: ``shape`` (a readable label), ``impl_label``, ``category``, ``time_ms``.
    """
    cols = ["shape", "impl_label", "category", "time_ms"]
    if profile is None or profile.empty:
        return pd.DataFrame(columns=cols)
    p = profile[np.isfinite(profile["time_ms"])]
    per_shape = p.groupby(SHAPE_KEYS).agg(n=("impl_label", "nunique")).reset_index()
    per_shape["size"] = per_shape["c_in"] * per_shape["c_out"] * per_shape["h"] * per_shape["w"]
    chosen = per_shape.sort_values(["n", "size"], ascending=False, kind="stable")
    chosen = chosen.head(max_shapes).sort_values(SHAPE_KEYS)  # fwd before fwdbwd
    p = p.merge(chosen[SHAPE_KEYS], on=SHAPE_KEYS)
    p = p.assign(shape=shape_label(p))
    return p.groupby(cols[:3], as_index=False, sort=False)["time_ms"].sum()[cols]


def profile_cpu_fallback(profile: pd.DataFrame | None) -> bool:
    """Whether a CUDA profile holds CPU-side self times because the profiler recorded
    no kernel (its ``clock`` column says ``cpu (no CUDA kernels recorded)``)."""
    if profile is None or "clock" not in profile.columns:
        return False
    return bool(profile["clock"].astype(str).str.startswith("cpu (").any())


def shape_label(d: pd.DataFrame) -> pd.Series:
    """``p4 group C16→16 k3 32×32 b2 fwd`` for each row."""
    fmt = "{group} {layer} C{c_in}→{c_out} k{k} {h}×{w} b{batch} {pass}"
    return pd.Series([fmt.format(**r) for r in d.to_dict("records")], index=d.index, dtype=object)
