"""Plots and a README from a results folder (what ``python -m bench report DIR`` does).

Reads ``DIR/results.csv`` (one row per shape × implementation × pass × dtype,
written by ``python -m bench run``), ``DIR/env.json`` (optional) and
``DIR/profile.csv`` (optional), and writes:

* ``DIR/plots/<name>.png`` and ``.svg`` for each plot (:mod:`bench.report.plots`):
  trade-off, speedup, scaling, best_impl, roofline, profile;
* ``DIR/README.md`` (:mod:`bench.report.markdown`): environment, status counts, the
  MAC check, a summary per implementation and regime, the paper's models when
  ``DIR/models/models.csv`` exists (:mod:`bench.report.paper_models`: latency, and
  memory against the paper's published figures), the plots;
* ``results/README.md``, the index of device folders, when DIR sits directly
  in a folder named ``results``.

The data behind each plot come from :mod:`bench.report.data`, so a picture can be
checked against the CSV.

Choices:

* Only rows with ``status == "ok"`` are plotted or summarised; the README
  counts and lists the others.
* A plot with no data to draw is *skipped* (no file, and a stale one is
  removed); the README says which and why. A placeholder image would look
  like a result.
* Required columns are the ones the report reads (:data:`REQUIRED_COLUMNS`).
  A missing one, an empty CSV or a missing DIR is a :class:`ReportError`,
  which the CLI prints as one line on stderr, exit code 2. Problems with the
  optional inputs (env.json absent, profile.csv unusable) are notes in the
  README, not errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from . import paper_models
from .data import (  # noqa: F401  (re-exported: the report's public API)
    FLOAT_COLUMNS,
    INT_COLUMNS,
    PROFILE_COLUMNS,
    REFERENCE,
    REQUIRED_COLUMNS,
    SHAPE_KEYS,
    ReportError,
    Results,
    best_impl_table,
    best_map_table,
    formula_mem_bytes,
    impl_label,
    impl_order,
    ok_rows,
    profile_cpu_fallback,
    profile_table,
    scaling_table,
    speedup_points,
    tradeoff_points,
    with_reference,
)
from .roofline import ceilings, roofline_dtype, roofline_points  # noqa: F401  (re-exported)


# ---------------------------------------------------------------------- #
# loading
# ---------------------------------------------------------------------- #
def _to_bool(series: pd.Series) -> pd.Series:
    """``True``/``False``/``1``/``0``/empty (any case) -> boolean with NA."""
    text = series.astype("string").str.strip().str.lower()
    return text.map(
        {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}
    ).astype("boolean")


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ReportError(f"no results file: {path}")
    try:
        df = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise ReportError(f"empty results file (no header, no rows): {path}") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise ReportError(f"unreadable results file {path}: {str(e).splitlines()[0]}") from None
    return df


def prepare(df: pd.DataFrame, source: str = "results.csv") -> pd.DataFrame:
    """Check the columns and types of a results table; add ``impl_label``.

    Raises:
        ReportError: naming the missing columns, or saying the table is empty.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ReportError(f"{source} lacks required columns: {', '.join(missing)}")
    if df.empty:
        raise ReportError(f"{source} has a header but no rows")
    df = df.copy()
    for c in FLOAT_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    for c in INT_COLUMNS:
        df[c] = pd.to_numeric(df[c], errors="coerce")
        if df[c].isna().any():
            raise ReportError(f"{source}: column {c} has non-integer values")
        df[c] = df[c].astype(int)
    for c in ["group", "layer", "variant", "impl", "pass", "dtype", "device", "status"]:
        df[c] = df[c].astype(str).str.strip()
    df["error"] = df["error"].astype(object).fillna("").astype(str)
    df["macs_match"] = _to_bool(df["macs_match"])
    for col, default in (("memory_format", "contiguous"), ("compiled", "False")):
        if col not in df.columns:  # results of schema < 4: contiguous, eager
            df[col] = default
        df[col] = df[col].fillna(default).astype(str).str.strip()
    df["impl_label"] = [
        impl_label(*row)
        for row in zip(df["variant"], df["impl"], df["memory_format"], df["compiled"], strict=True)
    ]
    return df


def load_results(results_dir: Path) -> Results:
    """Load ``results.csv``, ``env.json`` and ``profile.csv`` from one folder.

    Raises:
        ReportError: DIR missing, results.csv missing/empty/lacking columns,
            env.json not valid JSON.
    """
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"no such results folder: {results_dir}")
    csv = results_dir / "results.csv"
    df = prepare(_read_csv(csv), source=str(csv))
    res = Results(directory=results_dir, df=df)
    env_path = results_dir / "env.json"
    if env_path.is_file():
        try:
            res.env = json.loads(env_path.read_text())
        except json.JSONDecodeError as e:
            raise ReportError(f"{env_path} is not valid JSON: {e}") from None
        if not isinstance(res.env, dict):
            raise ReportError(f"{env_path} should hold a JSON object")
    else:
        res.notes.append("env.json is absent: no environment, no roofline ceilings.")
    if res.env.get("mac_counter_error"):
        res.notes.append(
            f"**MACs were not measured**: the counter (fvcore) could not be imported "
            f"({res.env['mac_counter_error']}), so `macs_measured` and `macs_match` are "
            "empty (unknown) in every row."
        )
    res.notes.extend(partial_run_notes(res.env))
    res.models, why = paper_models.load(results_dir)
    if why:
        res.notes.append(why)
    prof_path = results_dir / "profile.csv"
    if prof_path.is_file():
        try:
            prof = pd.read_csv(prof_path)
        except pd.errors.EmptyDataError:
            prof = pd.DataFrame()
        lacking = [c for c in PROFILE_COLUMNS if c not in prof.columns]
        if prof.empty or lacking:
            why = "is empty" if prof.empty else f"lacks columns {', '.join(lacking)}"
            res.notes.append(f"profile.csv {why}: profile plot skipped.")
        else:
            prof["time_ms"] = pd.to_numeric(prof["time_ms"], errors="coerce")
            fmt = prof.get("memory_format", pd.Series("contiguous", index=prof.index))
            prof["impl_label"] = [
                impl_label(v, i, f)
                for v, i, f in zip(
                    prof["variant"], prof["impl"], fmt.fillna("contiguous"), strict=True
                )
            ]
            res.profile = prof
            if profile_cpu_fallback(prof):
                res.notes.append(
                    "The per-operator profile holds CPU-side self times: the profiler "
                    "recorded no CUDA kernel (no CUPTI access), so it shows launch and "
                    "dispatch cost, not GPU time."
                )
    return res


def partial_run_notes(environment: dict) -> list[str]:
    """Say when the run did not cover its whole profile (stopped, or cut at a time limit)."""
    notes = []
    stopped = environment.get("interrupted")
    if stopped:
        notes.append(
            f"**Partial run**: stopped ({stopped}) before the end of the sweep; the tables "
            "and plots cover the rows it finished."
        )
    limit = environment.get("time_limit") or {}
    if limit.get("stopped"):
        notes.append(
            f"**Partial run**: cut at its time limit of {limit.get('limit_s', 0):g} s after "
            f"{limit.get('shapes_done', '?')} of {limit.get('shapes_todo', '?')} shapes, "
            "taken in an order spread over the profile; `--resume` runs the rest."
        )
    return notes


# ---------------------------------------------------------------------- #
# writing
# ---------------------------------------------------------------------- #
def make_report(results_dir: Path) -> list[Path]:
    """Write the plots and README of one results folder; return the written paths.

    Also rewrites ``results/README.md`` when ``results_dir`` sits directly in
    a folder named ``results``.

    Raises:
        ReportError: unusable input (see :func:`load_results`).
    """
    from . import index, plots
    from . import markdown as report_md

    res = load_results(Path(results_dir))
    written, skipped = plots.write_all(res, res.directory / "plots")
    written.append(report_md.write_readme(res, written, skipped))
    parent = res.directory.resolve().parent
    if parent.name == "results":
        written.append(index.write_results_index(parent))
    return written


def write_results_index(results_root: Path) -> Path:
    """Write ``results_root/README.md``: one line per device folder."""
    from . import index

    return index.write_results_index(Path(results_root))
