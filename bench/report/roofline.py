"""The data behind the roofline plot: one dtype's rows and the device's ceilings."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .data import SHAPE_KEYS, _finite_positive, ok_rows


def roofline_dtype(df: pd.DataFrame) -> str | None:
    """The dtype the roofline shows: float32 when swept, else the most common one.
    One dtype only, because each has its own compute ceiling."""
    dtypes = ok_rows(df)["dtype"]
    if dtypes.empty:
        return None
    return "float32" if (dtypes == "float32").any() else str(dtypes.mode().iloc[0])


def roofline_points(df: pd.DataFrame, dtype: str | None = None) -> pd.DataFrame:
    """Ok rows of one dtype (:func:`roofline_dtype` by default) with ``intensity``
    (MAC/byte = macs_formula ÷ bytes_moved_formula) and ``gmacs_per_s`` both
    finite and positive."""
    d = ok_rows(df)
    d = d[d["dtype"] == (dtype or roofline_dtype(df))]
    d = d.assign(intensity=d["macs_formula"] / d["bytes_moved_formula"])
    d = d[_finite_positive(d["intensity"], d["gmacs_per_s"])]
    return d[SHAPE_KEYS + ["impl_label", "intensity", "gmacs_per_s"]].reset_index(drop=True)


def ceilings(env: dict, dtype: str = "float32") -> tuple[float | None, float | None]:
    """``(compute ceiling in GMAC/s, peak_bandwidth_gb_per_s)`` from env.json; None when
    absent. The compute ceiling matches ``dtype``: the float16/bfloat16 matmul peak, and
    for float32 the TF32 peak when cuDNN convolutions may use TF32 (``allow_tf32_cudnn``)."""

    def num(key):
        try:
            v = float(env.get(key))
        except (TypeError, ValueError):
            return None
        return v if np.isfinite(v) and v > 0 else None

    key = {"float16": "peak_gmacs_per_s_float16", "bfloat16": "peak_gmacs_per_s_bfloat16"}.get(
        dtype, "peak_gmacs_per_s_tf32" if env.get("allow_tf32_cudnn") else "peak_gmacs_per_s"
    )
    return num(key) or num("peak_gmacs_per_s"), num("peak_bandwidth_gb_per_s")
