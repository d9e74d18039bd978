"""The report's plots: one function per plot, each returning a Figure.

Every ``plot_*`` function takes a :class:`bench.report.data.Results` and
either returns a :class:`matplotlib.figure.Figure` or raises :class:`Skip`
with the reason there is nothing to draw. The data come from the ``*_points``
/ ``*_table`` functions of :mod:`bench.report.data`: what is drawn is what
those return.

Figures are built without pyplot (no global state) on the Agg canvas. Scatter
collections carry a ``gid`` (``"measured:<impl>..."``, ``"formula:<impl>"``),
best-implementation cells a ``"cell:..."`` text and profile bars a
``"bar:<category>"`` gid, so tests can read the drawn data back.

Colours: one hue per variant, light for naive, dark for rearranged; the same
implementation has the same colour in every plot.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullLocator

from . import data as R
from .style import (
    CATEGORIES,
    CATEGORY_COLORS,
    COLORS,
    DPI,
    EXTRA_COLORS,
    NOTE,
    REF_STAR,
    STYLE,
    Skip,
    abbrev,
    color_of,
    legend,
    log_limits,
    loglog,
    new_figure,
    scatter_panels,
    suptitle,
    tidy_log,
)


# ---------------------------------------------------------------------- #
def plot_tradeoff(res: R.Results) -> Figure:
    """One panel per implementation: MAC reduction (x) against peak-memory
    increase (y), both relative to the full GConv of the same shape; filled
    markers measured (one marker per pass), hollow diamonds the formula."""
    pts = R.tradeoff_points(res.df)
    if pts.empty:
        raise Skip("no ok non-reference row has an ok full/naive reference of the same shape")
    order = R.impl_order(pts["impl_label"])
    passes = sorted(pts["pass"].unique())
    pmark = {p: "o^svP"[i % 5] for i, p in enumerate(dict.fromkeys(["fwd", "fwdbwd", *passes]))}
    ncols = min(3, len(order))
    nrows = -(-len(order) // ncols)
    size = (3.3 * ncols + 2.2, 3.1 * nrows + 1)
    fig, axes = new_figure(nrows, ncols, size, sharex=True, sharey=True)
    no_pass = [k for k in R.SHAPE_KEYS if k != "pass"]
    xlim = log_limits([1, *pts["mac_reduction"]])
    ylim = log_limits([1, *pts["mem_increase_measured"], *pts["mem_increase_formula"]])
    for i, (ax, label) in enumerate(zip(axes.flat, order, strict=False)):
        s = pts[pts["impl_label"] == label]
        c = color_of(label, order)
        fwd = s[s["pass"] == "fwd"]
        ax.vlines(fwd["mac_reduction"], fwd["mem_increase_formula"], fwd["mem_increase_measured"],
                  color=c, lw=0.8, alpha=0.5)  # fmt: skip
        f = s.drop_duplicates(no_pass)  # the formula does not depend on the pass
        ax.scatter(f["mac_reduction"], f["mem_increase_formula"], s=70, facecolors="none",
                   edgecolors=c, marker="D", lw=1.2, zorder=4, gid=f"formula:{label}")  # fmt: skip
        for p in passes:
            m = s[s["pass"] == p]
            ax.scatter(m["mac_reduction"], m["mem_increase_measured"], s=30, color=c, alpha=0.8,
                       marker=pmark[p], gid=f"measured:{label}:{p}")  # fmt: skip
        ax.scatter([1], [1], **REF_STAR)
        ax.axhline(1, color="0.5", ls="--", lw=0.8)
        ax.axvline(1, color="0.5", ls="--", lw=0.8)
        med_x, med_y = s["mac_reduction"].median(), s["mem_increase_measured"].median()
        title = f"{label}\nmedian: MAC reduction {med_x:.2g}×, memory {med_y:.2g}×"
        bottom = i + ncols >= len(order)  # nothing drawn below this panel
        loglog(ax, title, "MAC reduction vs full GConv (×, formula)" if bottom else "", xlim, ylim)
        ax.xaxis.set_tick_params(labelbottom=bottom)
        ax.title.set_color(c)
    for ax in list(axes.flat)[len(order) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("peak-memory increase (×)")
    handles = [Line2D([], [], ls="", marker=pmark[p], color="0.3", label=f"measured, {p}")
               for p in passes]  # fmt: skip
    formula = "formula (fwd working set)"
    handles += [
        Line2D([], [], ls="", marker="D", mfc="none", color="0.3", label=formula),
        Line2D([], [], ls="", marker="*", ms=11, color=COLORS["full/naive"], label="full GConv"),
    ]
    fig.legend(handles=handles, loc="outside right upper", frameon=False)
    suptitle(fig, "Compute vs memory, relative to the full GConv (§3.4)", res.env)
    return fig


def plot_speedup(res: R.Results) -> Figure:
    pts = R.speedup_points(res.df)
    if pts.empty:
        raise Skip("no ok non-reference row with a measured and a theoretical speedup")
    lim = log_limits([*pts["theoretical_speedup"], *pts["speedup_vs_full"], 1])
    fig, axes, _, order, ktags = scatter_panels(
        pts, "theoretical_speedup", "speedup_vs_full",
        "theoretical speedup (full MACs ÷ impl MACs, ×)",
        "measured speedup vs full GConv (×, latency ratio)", lim, lim, marker_by_k=True,
    )  # fmt: skip
    for ax in axes[0]:
        ax.plot(lim, lim, color="0.4", ls="--", lw=1)
        ax.axhline(1, color="0.6", ls=":", lw=1)
        ax.text(
            0.03, 0.97, "faster than the MACs promise", transform=ax.transAxes, va="top", **NOTE
        )
        ax.text(0.97, 0.03, "slower than the MACs promise", transform=ax.transAxes, ha="right",
                **NOTE)  # fmt: skip
    diag = Line2D([], [], ls="--", color="0.4", label="as promised (y = x)")
    legend(fig, order, [*ktags, diag])
    suptitle(fig, "Measured vs theoretical speedup (relative to the full GConv)", res.env)
    return fig


def plot_scaling(res: R.Results) -> Figure:
    tables = {a: R.scaling_table(res.df, a) for a in ("channels", "resolution")}
    if all(t["x"].nunique() < 2 for t in tables.values()):
        raise Skip("at a fixed k, the sweep varies neither channels nor resolution")
    passes = sorted(set().union(*(set(t["pass"]) for t in tables.values())))
    order = R.impl_order(pd.concat([t["impl_label"] for t in tables.values()]))
    fig, axes = new_figure(len(passes), 2, (10, 3.4 * len(passes) + 1))
    xlabel = {"channels": "channels C_in = C_out", "resolution": "resolution H = W (px)"}
    for col, (along, t) in enumerate(tables.items()):
        a = t.attrs.get("anchor", {})
        fixed = f"H={a.get('h')}" if along == "channels" else f"C={a.get('channels')}"
        where = f"k={a.get('k')}, {fixed}, {a.get('group')} {a.get('layer')}, b={a.get('batch')}"
        for row, p in enumerate(passes):
            ax = axes[row][col]
            s = t[t["pass"] == p]
            for label in order:
                line = s[s["impl_label"] == label].sort_values("x")
                if not line.empty:
                    ax.plot(line["x"], line["latency_ms"], marker="o", ms=5,
                            color=color_of(label, order), gid=f"line:{label}")  # fmt: skip
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            xs = sorted(s["x"].unique())
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set(title=f"{p}: latency vs {along} ({where})", xlabel=xlabel[along])
            ax.set_ylabel("latency (ms, median)")
            tidy_log(ax, "y")
            if len(xs) < 2:
                ax.text(0.5, 0.97, f"one {along} value only at this anchor",
                        transform=ax.transAxes, ha="center", va="top", **NOTE)  # fmt: skip
    legend(fig, order)
    suptitle(fig, "Latency scaling", res.env)
    return fig


def _text_color(rgb) -> str:
    return "black" if np.dot(rgb, [0.299, 0.587, 0.114]) > 0.55 else "white"


def plot_best_impl(res: R.Results) -> Figure:
    best, anchor = R.best_map_table(res.df)
    if best.empty:
        raise Skip("no ok rows with a latency")
    rows = list(best.groupby(["device", "pass"]).groups)
    hs = sorted(best["h"].unique())
    chans = list(dict.fromkeys(best.sort_values(["c_in", "c_out"])["channels"]))
    ks = sorted(best["k"].unique())
    order = R.impl_order(best["best"])
    w = max(8.0, 1.0 + len(hs) * (0.9 * len(ks) + 1.0))
    h = max(5.0, 1.4 + len(rows) * (0.42 * len(chans) + 0.9))
    fig, axes = new_figure(len(rows), len(hs), (w, h))
    for r, (dev, p) in enumerate(rows):
        for c, hh in enumerate(hs):
            ax = axes[r][c]
            s = best[(best["device"] == dev) & (best["pass"] == p) & (best["h"] == hh)]
            img = np.ones((len(chans), len(ks), 3))  # white: not in the sweep (or no ok row)
            for cell in s.itertuples():
                i, j = chans.index(cell.channels), ks.index(cell.k)
                img[i, j] = rgb = to_rgb(color_of(cell.best, order))
                sp = cell.speedup_vs_full
                txt = abbrev(cell.best) + (f"\n×{sp:.2f}" if np.isfinite(sp) else "")
                ax.text(j, i, txt, ha="center", va="center", fontsize=9, color=_text_color(rgb),
                        gid=f"cell:{cell.channels}:k{cell.k}")  # fmt: skip
            ax.imshow(img, aspect="auto")
            ax.grid(False)
            ax.set_xticks(range(len(ks)), [str(k) for k in ks])
            ax.set_yticks(range(len(chans)), chans)
            ax.set(title=f"{dev} {p}, H=W={hh}", xlabel="kernel size k (px)")
            if c == 0:
                ax.set_ylabel("channels C_in→C_out")
    handles = [Line2D([], [], ls="", marker="s", ms=9, color=color_of(x, order),
                      label=f"{abbrev(x)} = {x}") for x in order]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", frameon=False, ncols=len(handles),
               title="fastest implementation")  # fmt: skip
    where = f"{anchor['group']} {anchor['layer']} layer, {anchor['dtype']}, batch {anchor['batch']}"
    suptitle(
        fig, f"Fastest implementation per cell, ×speedup over the full GConv ({where})", res.env
    )
    return fig


def plot_roofline(res: R.Results) -> Figure:
    dtype = R.roofline_dtype(res.df)
    pts = R.roofline_points(res.df, dtype)
    if pts.empty:
        raise Skip("no ok row with a finite GMAC/s and bytes_moved_formula")
    peak, bw = R.ceilings(res.env, dtype)
    xlim = log_limits(pts["intensity"], pad=3)
    ylim = log_limits([*pts["gmacs_per_s"], *([peak] if peak else [])], pad=2)
    fig, axes, panels, order, _ = scatter_panels(
        pts, "intensity", "gmacs_per_s", "arithmetic intensity (MAC/byte, forward formula)",
        "achieved throughput (GMAC/s)", xlim, ylim,
    )  # fmt: skip
    x = np.geomspace(*xlim, 200)
    for ax, (_, sub) in zip(axes[0], panels, strict=True):
        same_dev = sub["device"].iloc[0] == res.env.get("device", sub["device"].iloc[0])
        if peak and same_dev:
            ax.axhline(peak, color="0.2", lw=1.2)
        if bw and same_dev:
            ax.plot(x, np.minimum(bw * x, peak or np.inf), color="0.2", lw=1.2, ls="--")
        why = "no ceilings in env.json" if not (peak or bw) else None
        why = why or (None if same_dev else "the ceilings are another device's")
        if why:
            ax.text(0.02, 0.97, why, transform=ax.transAxes, va="top", **NOTE)
    extra = (
        [Line2D([], [], color="0.2", label=f"compute ceiling\n{peak:.3g} GMAC/s")] if peak else []
    )
    if bw:
        label = f"bandwidth ceiling\n{bw:.3g} GB/s × intensity"
        extra.append(Line2D([], [], color="0.2", ls="--", label=label))
    legend(fig, order, extra)
    suptitle(fig, f"Roofline: achieved throughput vs arithmetic intensity ({dtype})", res.env)
    return fig


def plot_profile(res: R.Results) -> Figure:
    if res.profile is None:
        why = [n for n in res.notes if n.startswith("profile.csv")]
        raise Skip(why[0].split(":")[0] if why else "profile.csv is absent (run with profiling)")
    t = R.profile_table(res.profile)
    if t.empty:
        raise Skip("profile.csv has no finite times")
    if not (t["time_ms"] > 0).any():  # e.g. CUDA device times without CUPTI: no kernels
        raise Skip(
            "every time in profile.csv is 0 ms: the profiler recorded nothing to attribute "
            "(on CUDA: no kernels, the profiler had no CUPTI access)"
        )
    shapes = list(dict.fromkeys(t["shape"]))
    cats = CATEGORIES + sorted(set(t["category"]) - set(CATEGORIES))
    ccol = dict(zip(cats, CATEGORY_COLORS + EXTRA_COLORS * 4, strict=False))
    ncols = min(2, len(shapes))
    nrows = -(-len(shapes) // ncols)
    fig, axes = new_figure(nrows, ncols, (max(8, 4.6 * ncols + 2), 3.6 * nrows + 1))
    for ax, shape in zip(axes.flat, shapes, strict=False):
        s = t[t["shape"] == shape].pivot_table(
            index="impl_label", columns="category", values="time_ms", aggfunc="sum", fill_value=0
        )
        s = s.reindex(R.impl_order(s.index))
        bottom = np.zeros(len(s))
        for cat in [c for c in cats if c in s.columns]:
            ax.bar(range(len(s)), s[cat], bottom=bottom, color=ccol[cat], gid=f"bar:{cat}")
            bottom += s[cat].to_numpy()
        ax.set_xticks(range(len(s)), [abbrev(x) for x in s.index])
        ax.set(title=shape, ylabel="time per call (ms)", xlabel="implementation")
    for ax in list(axes.flat)[len(shapes) :]:
        ax.set_visible(False)
    handles = [Patch(color=ccol[c], label=c) for c in cats if c in set(t["category"])]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, title="operator")
    what = "Per-operator time (torch.profiler)"
    if R.profile_cpu_fallback(res.profile):
        what += ": CPU-side self time (no CUDA kernels recorded)"
    suptitle(fig, what, res.env)
    return fig


# plot name (file stem) -> builder, in README order
BUILDERS = {
    "tradeoff": plot_tradeoff, "speedup": plot_speedup, "scaling": plot_scaling,
    "best_impl": plot_best_impl, "roofline": plot_roofline, "profile": plot_profile,
}  # fmt: skip


def save(fig: Figure, plots_dir: Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.svg`` (no timestamps: reruns are byte-stable)."""
    plots_dir.mkdir(parents=True, exist_ok=True)
    paths = [plots_dir / f"{name}.png", plots_dir / f"{name}.svg"]
    fig.savefig(paths[0], dpi=DPI, metadata={"Software": None})
    fig.set_layout_engine("none")  # keep the layout the PNG computed: half the drawing time
    fig.savefig(paths[1], metadata={"Date": None})
    return paths


def write_all(res: R.Results, plots_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """Draw every plot of :data:`BUILDERS`.

    Returns:
        (written paths, {plot name: reason} for the plots skipped).
    """
    written, skipped = [], {}
    with matplotlib.rc_context(STYLE):
        for name, build in BUILDERS.items():
            try:
                fig = build(res)
            except Skip as e:
                skipped[name] = str(e)
                for ext in ("png", "svg"):  # a stale plot from an earlier report would mislead
                    (plots_dir / f"{name}.{ext}").unlink(missing_ok=True)
                continue
            written += save(fig, plots_dir, name)
    return written, skipped
