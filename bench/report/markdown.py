"""The report's markdown: a results folder's README and the results index.

Regimes (by input resolution, H = W in the sweeps): **small** H ≤ 16,
**medium** 16 < H < 64, **large** H ≥ 64. Resolution is what moves a layer
between overhead-bound (few pixels: the launch and copy costs of the extra
rearranged steps dominate) and compute-bound (many pixels: the MAC count
decides), so it is where an implementation's ranking changes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..measure.contention import banner
from . import data as R
from . import paper_models, plots

REGIMES = [
    ("small", "H ≤ 16", 0, 16),
    ("medium", "16 < H < 64", 17, 63),
    ("large", "H ≥ 64", 64, None),
]
MAX_LISTED = 30  # rows listed under errors / MAC mismatches before "… and N more"
# env.json keys shown first (the rest follow in file order)
ENV_FIRST = ["device_name", "cpu_model", "device", "threads", "torch", "cuda", "cudnn", "driver",
             "date", "profile", "peak_gmacs_per_s", "peak_bandwidth_gb_per_s"]  # fmt: skip
# plot name -> (heading, the question the plot answers)
PLOTS = {
    "tradeoff": ("Compute versus memory (§3.4)", "How many MACs does each implementation save, "
                 "and how much more working memory does it need than the full GConv? One panel "
                 "per variant with a MAC cut; the `_` ticks are the formula working set."),
    "speedup": ("Measured speedup versus the §3.4 promise", "Does the variant's MAC cut turn "
                "into speed? On the diagonal an implementation is as fast as its variant's "
                "§3.4 count promises (efficiency 1), whatever it executes."),
    "scaling": ("Scaling", "How does latency grow with channels and with resolution?"),
    "best_impl": ("Fastest implementation", "Which implementation is fastest for each "
                  "(channels, k) at each resolution, for p4 and p4m, and by how much over the "
                  "full GConv?"),
    "roofline": ("Roofline", "How close does each implementation come to the device's compute "
                 "and bandwidth ceilings?"),
    "profile": ("Where the time goes", "Which operators (filter construction, pointwise conv, "
                "copies, spatial conv) take each implementation's time?"),
}  # fmt: skip


def regime_of(h) -> pd.Series:
    """Regime name of each resolution in ``h`` (a Series of ints)."""
    h = pd.Series(h)
    out = pd.Series("", index=h.index, dtype=object)
    for name, _, lo, hi in REGIMES:
        out[(h >= lo) & ((h <= hi) if hi is not None else True)] = name
    return out


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """Medians per (device, pass, implementation, regime) over ok non-reference rows
    (:func:`bench.report.data.speedup_points`); regime ``all`` too.

    Columns: device, pass, impl_label, regime, n, speedup (over the full GConv),
    efficiency (speedup ÷ the variant's §3.4 promise, the same scale for naive,
    rearranged, fused and auto), promised (the variant's §3.4 MAC cut), executed
    (the MAC cut of what the rows ran), memory (peak ÷ the full GConv's; NaN when
    no row of the group has one).
    """
    pts = R.speedup_points(df)
    cols = ["device", "pass", "impl_label", "regime", "n", "speedup", "efficiency",
            "promised", "executed", "memory"]  # fmt: skip
    if pts.empty:
        return pd.DataFrame(columns=cols)
    pts = pts.assign(regime=regime_of(pts["h"]))
    both = pd.concat([pts, pts.assign(regime="all")])
    g = both.groupby(["device", "pass", "impl_label", "regime"])
    out = g.agg(
        n=("speedup_vs_full", "size"),
        speedup=("speedup_vs_full", "median"),
        efficiency=("efficiency", "median"),
        promised=("promised_speedup", "median"),
        executed=("theoretical_speedup", "median"),
        memory=("mem_vs_full", "median"),
    ).reset_index()
    return out[cols]


def best_per_regime(df: pd.DataFrame) -> pd.DataFrame:
    """Per (device, pass, regime): how many shapes each implementation wins.

    Columns: device, pass, regime, shapes, best (wins most shapes), wins,
    median_speedup and median_memory (of ``best`` over the shapes it won: its
    speedup and its peak memory ÷ the full GConv's), runner_up.
    """
    b = R.best_impl_table(df)
    cols = ["device", "pass", "regime", "shapes", "best", "wins", "median_speedup",
            "median_memory", "runner_up"]  # fmt: skip
    if b.empty:
        return pd.DataFrame(columns=cols)
    mem = R.speedup_points(df)[R.BEST_KEYS + ["impl_label", "mem_vs_full"]]
    mem = mem.rename(columns={"impl_label": "best"})
    b = b.merge(mem, on=[*R.BEST_KEYS, "best"], how="left")
    b.loc[b["best"] == R.REFERENCE, "mem_vs_full"] = 1.0
    b = b.assign(regime=regime_of(b["h"]))
    rows = []
    for (dev, p, reg), s in b.groupby(["device", "pass", "regime"]):
        wins = s["best"].value_counts()
        top = sorted(wins.index, key=lambda x: (-wins[x], x))
        won = s[s["best"] == top[0]]
        runner = f"{top[1]} ({wins[top[1]]})" if len(top) > 1 else "—"
        medians = won["speedup_vs_full"].median(), won["mem_vs_full"].median()
        rows.append((dev, p, reg, len(s), top[0], int(wins[top[0]]), *medians, runner))
    out = pd.DataFrame(rows, columns=cols)
    rank = {name: i for i, (name, *_) in enumerate(REGIMES)}
    return out.sort_values(
        ["device", "pass", "regime"], key=lambda c: c.map(rank) if c.name == "regime" else c
    ).reset_index(drop=True)


def mac_check(df: pd.DataFrame) -> tuple[int, int, pd.DataFrame]:
    """``(rows with a measured MAC count, rows matching the formula, mismatching rows)``;
    ``macs_match`` decides, or equality of the two counts where it is empty."""
    m = df[np.isfinite(df["macs_measured"])]
    match = m["macs_match"].fillna(m["macs_measured"] == m["macs_formula"]).astype(bool)
    return len(m), int(match.sum()), m[~match]


# ---------------------------------------------------------------------- #
def _cell(v) -> str:
    if isinstance(v, float):
        if not np.isfinite(v):
            return "—"
        return f"{v:.2f}" if abs(v) < 1e4 else f"{v:.3g}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def md_table(headers: list[str], rows) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _shards_cell(v) -> str:
    """``env.json``'s ``shard`` (one part of a sweep) or ``shards`` (the environments of
    the merged parts, see :mod:`bench.store.shards`) as one table cell."""

    def part(s: dict) -> str:
        shapes = len(s.get("shapes") or [])
        return f"{s.get('index')}/{s.get('count')} ({shapes} shapes, {s.get('rows')} rows)"

    if isinstance(v, dict):
        return part(v)
    envs = [e for e in v if isinstance(e, dict)] if isinstance(v, list) else []
    if not envs:
        return str(v)
    return f"merged from {len(envs)} shards: " + "; ".join(
        f"{part(e.get('shard') or {})}, {e.get('date')}, wall {e.get('wall_s')} s" for e in envs
    )


def _env_section(env: dict) -> str:
    if not env:
        return "_env.json is absent._"
    first = [k for k in ENV_FIRST if k in env]
    rows = []
    for k in first + [k for k in env if k not in first]:
        v = env[k]
        if k == "contention" and isinstance(v, dict):  # the verdict, not the raw readings
            during = v.get("during") or {}
            v = (
                ("disturbed: " + "; ".join(v.get("reasons") or []))
                if v.get("disturbed")
                else "quiet"
            ) + (
                f" (over the run: other processes {during.get('foreign_cpu')} cores, "
                f"CPU pressure {during.get('psi_some')}; {v.get('rows_disturbed')} of "
                f"{v.get('rows_total')} timing windows disturbed)"
            )
        elif k in ("shard", "shards"):  # a sharded run, or a merge of one: in one line
            v = _shards_cell(v)
        elif isinstance(v, list):
            v = ", ".join(map(str, v))
        elif isinstance(v, dict):
            v = json.dumps(v)
        elif isinstance(v, float):
            v = f"{v:.4g}"
        rows.append((k, "—" if v is None else v))
    return md_table(["key", "value"], rows)


def _status_section(df: pd.DataFrame) -> str:
    counts = df["status"].value_counts()
    out = [md_table(["status", "rows"], counts.items())]
    if "noisy" in df.columns:
        ok = df[df["status"] == "ok"]
        noisy = ok["noisy"].astype(str).str.lower().isin(["true", "1", "1.0"]).sum()
        out.append(f"\nNoisy (IQR / median > 10 %): {noisy} of {len(ok)} ok rows.")
    bad = df[df["status"] != "ok"]
    if not bad.empty:
        out.append(f"\nRows not ok ({len(bad)}), one line per status, implementation and error:\n")
        bad = bad.assign(shape=list(R.shape_label(bad)), error=bad["error"].fillna("").str[:160])
        groups = bad.groupby(["status", "impl_label", "error"], sort=False)["shape"]
        rows = [
            (status, impl, len(shapes), shapes.iloc[0], error)
            for (status, impl, error), shapes in list(groups)[:MAX_LISTED]
        ]
        out.append(md_table(["status", "implementation", "rows", "first shape", "error"], rows))
        if groups.ngroups > MAX_LISTED:
            out.append(f"\n… and {groups.ngroups - MAX_LISTED} more kinds (see results.csv).")
    return "\n".join(out)


def _mac_section(df: pd.DataFrame) -> str:
    n, ok, bad = mac_check(df)
    head = (
        f"MACs measured by fvcore in {n} of {len(df)} rows; **{ok} of {n} equal the "
        f"formula** (`macs_match`)."
    )
    if bad.empty:
        return head
    sub = bad.head(MAX_LISTED)
    rows = [
        (r.impl_label, lab, f"{r.macs_formula:.0f}", f"{r.macs_measured:.0f}")
        for r, lab in zip(sub.itertuples(), R.shape_label(sub), strict=True)
    ]
    more = f"\n… and {len(bad) - MAX_LISTED} more." if len(bad) > MAX_LISTED else ""
    return head + "\n\n" + md_table(["implementation", "shape", "formula", "measured"], rows) + more


def _times(v) -> str:
    return f"{v:.2f}×" if np.isfinite(v) else "—"


def _summary_section(df: pd.DataFrame) -> str:
    s = summary_table(df)
    if s.empty:
        return "_No ok non-reference rows._"
    regimes = [r[0] for r in REGIMES if r[0] in set(s["regime"])] + ["all"]
    heads = ["device", "pass", "implementation", "rows", "MAC cut promised (§3.4)",
             "MAC cut executed"] + [f"{r}: speedup / eff." for r in regimes] + [
             "memory × full"]  # fmt: skip
    rows = []
    for (dev, p, lab), g in s.groupby(["device", "pass", "impl_label"], sort=False):
        by = g.set_index("regime")
        cells = [
            f"{by.at[r, 'speedup']:.2f}× / {by.at[r, 'efficiency']:.2f}" if r in by.index else "—"
            for r in regimes
        ]
        every = by.loc["all"]
        rows.append((dev, p, lab, int(every["n"]), _times(every["promised"]),
                     _times(every["executed"]), *cells, _times(every["memory"])))  # fmt: skip
    order = {x: i for i, x in enumerate(R.impl_order(s["impl_label"]))}
    rows.sort(key=lambda r: (r[0], r[1], order[r[2]]))
    return md_table(heads, rows)


def _best_section(df: pd.DataFrame) -> str:
    b = best_per_regime(df)
    if b.empty:
        return "_No ok rows._"
    rows = [
        (dev, p, reg, n, best, f"{wins}/{n}", _times(sp), _times(mem), runner)
        for dev, p, reg, n, best, wins, sp, mem, runner in b.itertuples(index=False, name=None)
    ]
    heads = ["device", "pass", "regime", "shapes", "fastest most often", "wins",
             "its median speedup", "its median memory × full", "runner-up (wins)"]  # fmt: skip
    return md_table(heads, rows)


def _models_section(models: pd.DataFrame) -> str:
    """The paper's models: latency per implementation, memory against the paper."""
    lat = paper_models.latency_table(models)
    parts = ["Median latency (ms) per implementation (`models/models.csv`, ok rows)."]
    if not lat.empty:
        parts.append(md_table(list(lat.columns), lat.itertuples(index=False)))
    dep = paper_models.deploy_table(models)
    if not dep.empty:
        parts += [
            "### Deployed\n\nWhat a deployed g or gc model costs against the deployed full "
            "model of its table (`bench models --deploy`, forward pass; `docs/deploy.md`): "
            "exported to plain torch.nn modules (eager and torch.compile'd) and in ONNX "
            "Runtime. Parameters are those the deployed model stores (F̃, not F).",
            md_table(list(dep.columns), dep.itertuples(index=False)),
        ]
    mem = paper_models.memory_table(models)
    if not mem.empty:
        parts += [
            "### Memory against the paper\n\nSepGroupPy's published GPU memory (forward + "
            "backward, batch 2, float32) next to this run's measures of the same training "
            "step (MB, and × the paper); measures are defined in `bench/report/paper_models.py`.",
            md_table(
                [paper_models.HEADERS.get(c, c) for c in mem.columns], mem.itertuples(index=False)
            ),
            "\n".join(paper_models.memory_summary(mem)),
        ]
    return "\n\n".join(parts)


def render_readme(res: R.Results, written: list[Path], skipped: dict[str, str]) -> str:
    df = res.df
    names = {p.stem for p in written if p.suffix == ".png"}
    regimes = ", ".join(f"**{name}** {text}" for name, text, *_ in REGIMES)
    n_impls, n_configs = R.count_implementations(df)
    parts = [
        f"# Benchmark results — {R.device_title(res.env)}",
        f"Generated by `python -m bench report` from `results.csv` ({len(df)} rows, "
        f"{n_impls} implementations in {n_configs} configurations (memory format, "
        f"compilation), {len(df.drop_duplicates(R.SHAPE_KEYS))} (shape, pass, dtype) cases). "
        f"Reference: `{R.REFERENCE}` (the full GConv); speedup = its latency ÷ the "
        "implementation's; **efficiency = speedup ÷ the variant's §3.4 MAC promise** (full "
        "MACs ÷ the rearranged count of that variant), for every implementation of the "
        "variant (naive, fused and auto included), so they share one scale; the MAC cut "
        "an implementation executes is its own column; memory = peak ÷ the full GConv's "
        "on the same shape. Only rows with status `ok` are plotted and summarised.",
    ]
    warning = banner(res.env.get("contention"))
    if warning:
        reasons = res.env["contention"].get("reasons") or []
        parts.append(
            f"> **{warning.split(':')[0]}.** The machine was busy with other work while this "
            "run was measured, so its latencies are not fit to publish or to compare "
            "(`env.json` → `contention`): " + "; ".join(reasons) + "."
        )
    if res.notes:
        parts.append("\n".join(f"> {n}" for n in res.notes))
    parts += [
        "## Environment",
        _env_section(res.env),
        "## Status",
        _status_section(df),
        "## MAC count: formula versus measured",
        _mac_section(df),
    ]
    parts += [
        "## Summary per implementation",
        f"Regimes by input resolution: {regimes}. Medians over the rows: speedup over the "
        "full GConv / efficiency against the variant's §3.4 promise; MAC cuts and memory "
        "over all rows of the implementation.",
        _summary_section(df),
        "## Best implementation per regime",
        "The implementation with the lowest latency on the most shapes of the regime; its "
        "speedup and memory (× the full GConv) are medians over the shapes it won.",
        _best_section(df),
    ]
    if res.models is not None:
        parts += ["## The paper's models", _models_section(res.models)]
    parts += [
        "## Plots",
    ]
    for name in plots.BUILDERS:
        heading, question = PLOTS.get(name, (name, ""))
        if name in names:
            body = f"![{heading}](plots/{name}.png)\n\n[SVG](plots/{name}.svg)"
        else:
            body = f"_Not drawn: {skipped.get(name, 'no data')}._"
        parts.append(f"### {heading}\n\n{question}\n\n{body}")
    return "\n\n".join(parts) + "\n"


def write_readme(res: R.Results, written: list[Path], skipped: dict[str, str]) -> Path:
    path = res.directory / "README.md"
    path.write_text(render_readme(res, written, skipped), encoding="utf-8")
    return path
