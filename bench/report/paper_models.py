"""The paper's models in a results folder: ``DIR/models/models.csv`` (``python -m bench
models``), as the README shows them.

* :func:`latency_table` — per model, batch and pass: each implementation's median
  latency (ms), ``ok`` rows only.
* :func:`memory_table` — SepGroupPy's published GPU memory (``paper_peak_mem_mb``:
  forward + backward, batch 2, float32; DESIGN §7) next to this run's measures of
  the same training step, in MB and as a ratio to the paper (:data:`MEASURES`):

  - ``working``: the allocator's peak above what was allocated before the step
    (the activations kept for the backward pass, the gradients, temporaries);
  - ``with weights``: the same plus the parameters and the input;
  - ``reserved`` (CUDA only): what the step made the caching allocator reserve.

  NVML's device-used figure is recorded in the CSV but not compared: it counts
  every process and the CUDA context, not the model.
* :func:`deploy_table` — the deployment rows (``bench models --deploy``):
  per deployed form (``export``, ``export-compiled``, ``onnxruntime``) and
  batch, what a deployed g or gc model costs against the deployed full model
  of its table (latency, stored parameters, working memory, and × full).
* :func:`memory_summary` — per measure, how many rows are within
  :data:`TOLERANCE` of the paper; per model, the row and measure closest to it.

The paper's figures are GPU figures. On a CPU the working peak comes from the
c10 allocator's events, which see the same tensors as the CUDA allocator but not
oneDNN's scratch (nor, on a GPU, would they see cuDNN's workspace, which the
CUDA allocator does count): a CPU run tells which measure the paper reported,
a GPU run confirms it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

MODELS_CSV = Path("models") / "models.csv"
MB = 2**20
TOLERANCE = 0.10  # the goal: within 10 % of the paper
#: label -> column of :func:`memory_table`'s input (``mem_reserved_mb`` is derived)
MEASURES = {
    "working": "peak_mem_mb",
    "with weights": "peak_mem_with_weights_mb",
    "reserved": "mem_reserved_mb",
}
#: column -> README header of :func:`memory_table`
HEADERS = {
    "paper_peak_mem_mb": "paper MB",
    "peak_mem_mb": "working MB",
    "peak_mem_with_weights_mb": "with weights MB",
    "mem_reserved_mb": "reserved MB",
    **{f"{label} ratio": "× paper" for label in MEASURES},
    "within": f"within {TOLERANCE:.0%}",
}
_NUMERIC = (
    "latency_ms_median", "peak_mem_mb", "peak_mem_with_weights_mb", "mem_reserved_bytes",
    "paper_peak_mem_mb", "batch", "table", "params_measured",
)  # fmt: skip


def load(results_dir: Path) -> tuple[pd.DataFrame | None, str | None]:
    """``(models table, None)``, ``(None, None)`` when the folder has none, or
    ``(None, why)`` when it has one the report cannot read."""
    path = Path(results_dir) / MODELS_CSV
    if not path.is_file():
        return None, None
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as e:
        return None, f"{MODELS_CSV} is unreadable ({type(e).__name__}): models section skipped."
    lacking = [c for c in ("model", "impl", "pass", "batch", "status") if c not in df.columns]
    if df.empty or lacking:
        why = "has no rows" if df.empty else f"lacks columns {', '.join(lacking)}"
        return None, f"{MODELS_CSV} {why}: models section skipped."
    for c in _NUMERIC:
        if c in df.columns:
            df[c] = pd.to_numeric(df[c], errors="coerce")
    df["mem_reserved_mb"] = df.get("mem_reserved_bytes", pd.Series(np.nan, index=df.index)) / MB
    return df, None


def latency_table(df: pd.DataFrame) -> pd.DataFrame:
    """Median latency (ms): one row per (model, batch, pass), one column per impl."""
    ok = df[df["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(ok["model"]))
    table = ok.pivot_table(
        index=["model", "batch", "pass"], columns="impl", values="latency_ms_median", sort=False
    )
    impls = [i for i in ("naive", "rearranged", "auto", "fused") if i in table.columns]
    table = table[impls + [c for c in table.columns if c not in impls]]
    return table.reset_index().sort_values(
        ["model", "batch", "pass"], key=lambda s: s.map(order.index) if s.name == "model" else s
    )


#: the deployment rows' impl names (bench.pipeline.models.DEPLOY_IMPLS)
DEPLOY_IMPLS = ("export", "export-compiled", "onnxruntime")


def full_of(model: str) -> str:
    """The full model a g/gc row is compared with: ``gc-p4cnn-w30`` -> ``p4cnn``."""
    base = re.sub(r"-w\d+$", "", model)
    return re.sub(r"^(g|gc)-", "", base)


def deploy_table(df: pd.DataFrame) -> pd.DataFrame:
    """Deployed models against the deployed full model of their table (``fwd`` rows).

    One row per (model, deployed form, batch) whose full model was deployed
    in the same form and batch: latency (ms), ``× full`` latency, parameters the
    deployed model stores and ``× full``, working memory (MB) and ``× full``.
    """
    ok = df[(df["status"] == "ok") & df["impl"].isin(DEPLOY_IMPLS)]
    if ok.empty:
        return pd.DataFrame()
    ok = ok.assign(full=ok["model"].map(full_of))
    key = ["impl", "batch", "pass"]
    ref = ok[ok["model"] == ok["full"]].set_index(["model", *key])
    rows = []
    for _, r in ok.iterrows():
        k = (r["full"], r["impl"], r["batch"], r["pass"])
        if k not in ref.index:
            continue
        f = ref.loc[k]
        params = pd.to_numeric(r.get("params_measured"), errors="coerce")
        fparams = pd.to_numeric(f.get("params_measured"), errors="coerce")
        mem = r.get("peak_mem_mb", np.nan)
        rows.append({
            "model": r["model"], "deployed as": r["impl"], "batch": int(r["batch"]),
            "latency ms": r["latency_ms_median"],
            "× full latency": r["latency_ms_median"] / f["latency_ms_median"],
            "params stored": params, "× full params": params / fparams,
            "working MB": mem, "× full memory": mem / f.get("peak_mem_mb", np.nan),
        })  # fmt: skip
    return pd.DataFrame(rows)


def memory_table(df: pd.DataFrame) -> pd.DataFrame:
    """The ``ok`` rows that carry the paper's figure, with each measure's ratio to it
    (``<measure> ratio``) and ``within``: the measures within :data:`TOLERANCE`."""
    if "paper_peak_mem_mb" not in df.columns:
        return pd.DataFrame()
    rows = df[(df["status"] == "ok") & df["paper_peak_mem_mb"].notna()].copy()
    measures = {k: c for k, c in MEASURES.items() if c in rows and rows[c].notna().any()}
    for label, col in measures.items():
        rows[f"{label} ratio"] = rows[col] / rows["paper_peak_mem_mb"]
    rows["within"] = [
        ", ".join(k for k in measures if abs(r[f"{k} ratio"] - 1) <= TOLERANCE) or "—"
        for _, r in rows.iterrows()
    ]
    keep = ["model", "impl", "paper_peak_mem_mb"]
    for label, col in measures.items():
        keep += [col, f"{label} ratio"]
    return rows[keep + ["within"]].reset_index(drop=True)


def memory_summary(table: pd.DataFrame) -> list[str]:
    """Sentences: rows within tolerance per measure, and per model the closest row."""
    if table.empty:
        return []
    ratios = [c for c in table.columns if c.endswith(" ratio")]
    n = len(table)
    counts = ", ".join(
        f"**{c.removesuffix(' ratio')}** {int((abs(table[c] - 1) <= TOLERANCE).sum())} of {n}"
        for c in ratios
    )
    lines = [f"Rows within {TOLERANCE:.0%} of the paper, per measure: {counts}."]
    closest = []
    for model, group in table.groupby("model", sort=False):
        err = (group[ratios] - 1).abs()
        i, col = np.unravel_index(np.nanargmin(err.to_numpy()), err.shape)
        row = group.iloc[i]
        closest.append(
            f"{model}: {row['impl']}, {ratios[col].removesuffix(' ratio')} ×{row[ratios[col]]:.3f}"
        )
    lines.append("Closest to the paper per model: " + "; ".join(closest) + ".")
    return lines
