"""The report's plots: one function per plot, each returning a Figure.

Every ``plot_*`` function takes a :class:`bench.report.data.Results` and
either returns a :class:`matplotlib.figure.Figure` or raises :class:`Skip`
with the reason there is nothing to draw. The data come from the ``*_points``
/ ``*_table`` functions of :mod:`bench.report.data`: what is drawn is what
those return.

Figures are built without pyplot (no global state) on the Agg canvas. Scatter
collections carry a ``gid`` (``"measured:<impl>..."``, ``"formula:<impl>"``),
scaling lines ``"line:<impl>"``, best-implementation cells a ``"cell:..."``
text and profile bars a ``"bar:<category>"`` gid, so tests can read the drawn
data back.

Every implementation is drawn in its own style (:func:`bench.report.style.impl_style`:
hue per variant, lightness and marker per impl, hollow/dashed for channels_last,
black edge/dotted for compiled), the same in every plot.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import NullLocator

from . import data as R
from . import roofline as RL
from .style import (
    CATEGORIES,
    CATEGORY_COLORS,
    DPI,
    EXTRA_CATEGORY_COLORS,
    NOTE,
    STYLE,
    Skip,
    abbrev,
    color_of,
    legend,
    line_kw,
    log_limits,
    loglog,
    new_figure,
    scatter_kw,
    scatter_panels,
    split_label,
    suptitle,
    tidy_log,
)

REF_STAR = {"marker": "*", "s": 150, "color": color_of(R.REFERENCE), "zorder": 5}


# ---------------------------------------------------------------------- #
def plot_tradeoff(res: R.Results) -> Figure:
    """One panel per (pass, variant): MAC reduction (x) against peak-memory increase
    (y), both relative to the full GConv of the same shape, every implementation of
    the variant in its style; in the forward row a ``_`` tick marks each point's
    formula working set. Variants with nothing to compare are left out
    (:func:`bench.report.data.tradeoff_panels`)."""
    pts = R.tradeoff_points(res.df)
    if pts.empty:
        raise Skip("no ok non-reference row has an ok full/naive reference of the same shape")
    variants, dropped = R.tradeoff_panels(pts)
    if not variants:
        raise Skip("no implementation moves away from the full GConv in MACs or memory")
    pts = pts[pts["variant"].isin(variants)]
    passes = sorted(pts["pass"].unique())
    order = R.impl_order(pts["impl_label"])
    size = (3.6 * len(variants) + 2.8, 3.3 * len(passes) + 1.2)
    fig, axes = new_figure(len(passes), len(variants), size, sharex=True, sharey=True)
    formula = pts["mem_increase_formula"]
    xlim = log_limits([1, *pts["mac_reduction"]])
    ylim = log_limits([1, *pts["mem_increase_measured"], *formula[np.isfinite(formula)]])
    no_pass = [k for k in R.SHAPE_KEYS if k != "pass"]
    for r, p in enumerate(passes):
        for c, variant in enumerate(variants):
            ax = axes[r][c]
            sub = pts[(pts["pass"] == p) & (pts["variant"] == variant)]
            for label in [x for x in order if x in set(sub["impl_label"])]:
                s = sub[sub["impl_label"] == label]
                f = s.drop_duplicates(no_pass)
                f = f[np.isfinite(f["mem_increase_formula"])]
                if p == passes[0] and not f.empty:  # the formula is the forward working set
                    ax.vlines(f["mac_reduction"], f["mem_increase_formula"],
                              f["mem_increase_measured"], color=color_of(label), lw=0.7,
                              alpha=0.5)  # fmt: skip
                    ax.scatter(f["mac_reduction"], f["mem_increase_formula"], marker="_", s=90,
                               color=color_of(label), lw=1.5, zorder=4,
                               gid=f"formula:{label}")  # fmt: skip
                ax.scatter(s["mac_reduction"], s["mem_increase_measured"], alpha=0.8,
                           gid=f"measured:{label}:{p}", **scatter_kw(label))  # fmt: skip
            ax.scatter([1], [1], **REF_STAR)
            ax.axhline(1, color="0.5", ls="--", lw=0.8)
            ax.axvline(1, color="0.5", ls="--", lw=0.8)
            xlabel = (
                "MAC reduction vs full GConv\n(×, executed, formula)"
                if r == len(passes) - 1
                else ""
            )
            loglog(ax, f"{variant} · {p}", xlabel, xlim, ylim)
        axes[r][0].set_ylabel(f"{p}: peak-memory increase (×)")
    extra = [
        Line2D(
            [],
            [],
            ls="",
            marker="_",
            ms=10,
            mew=1.5,
            color="0.3",
            label="formula working set, fwd\n(F̃ + X̃ + output)",
        ),  # fmt: skip
        Line2D(
            [],
            [],
            ls="",
            marker="*",
            ms=11,
            color=REF_STAR["color"],
            label="full GConv (reference)",
        ),  # fmt: skip
    ]
    legend(fig, order, extra)
    what = "Compute vs memory, relative to the full GConv (§3.4)"
    if dropped:
        what += f"\n(no panel for {', '.join(dropped)}: no MAC cut, memory in the summary tables)"
    suptitle(fig, what, res.env)
    return fig


def plot_speedup(res: R.Results) -> Figure:
    """Measured speedup over the full GConv against the variant's §3.4 promise: on
    the diagonal an implementation is as fast as the promise (efficiency 1)."""
    pts = R.speedup_points(res.df)
    if pts.empty:
        raise Skip("no ok non-reference row with a measured speedup and a §3.4 promise")
    xlim = log_limits([1, *pts["promised_speedup"]], pad=1.25)
    ylim = log_limits([1, *pts["speedup_vs_full"]], pad=1.25)
    fig, axes, _, order = scatter_panels(
        pts, "promised_speedup", "speedup_vs_full",
        "promised speedup (×, the variant's §3.4 MAC cut)",
        "measured speedup vs full GConv (×, latency ratio)", xlim, ylim,
    )  # fmt: skip
    diag = np.geomspace(min(xlim[0], ylim[0]), max(xlim[1], ylim[1]), 50)
    for ax in axes[0]:
        ax.plot(diag, diag, color="0.4", ls="--", lw=1)
        ax.axhline(1, color="0.6", ls=":", lw=1)
        ax.set(xlim=xlim, ylim=ylim)
    extra = [
        Line2D([], [], ls="--", color="0.4", label="as promised (y = x):\nabove: faster than it"),
        Line2D([], [], ls=":", color="0.6", label="as fast as the full GConv"),
    ]
    legend(fig, order, extra)
    suptitle(fig, "Measured speedup vs the variant's §3.4 MAC promise (relative to the full GConv)",
             res.env)  # fmt: skip
    return fig


def plot_scaling(res: R.Results) -> Figure:
    tables = {a: R.scaling_table(res.df, a) for a in ("channels", "resolution")}
    if all(t["x"].nunique() < 2 for t in tables.values()):
        raise Skip("at a fixed k, the sweep varies neither channels nor resolution")
    passes = sorted(set().union(*(set(t["pass"]) for t in tables.values())))
    order = R.impl_order(pd.concat([t["impl_label"] for t in tables.values()]))
    fig, axes = new_figure(len(passes), 2, (11, 3.6 * len(passes) + 1))
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
                    ax.plot(line["x"], line["latency_ms"], gid=f"line:{label}", **line_kw(label))
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            xs = sorted(s["x"].unique())
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set(title=f"{p}: latency vs {along}\n({where})", xlabel=xlabel[along])
            ax.set_ylabel("latency (ms, median)")
            tidy_log(ax, "y")
            if len(xs) < 2:
                ax.text(0.5, 0.97, f"one {along} value only at this anchor",
                        transform=ax.transAxes, ha="center", va="top", **NOTE)  # fmt: skip
    legend(fig, order, line=True)
    suptitle(fig, "Latency scaling", res.env)
    return fig


def _text_color(rgb) -> str:
    return "black" if np.dot(rgb, [0.299, 0.587, 0.114]) > 0.55 else "white"


def plot_best_impl(res: R.Results) -> Figure:
    """One row of maps per (device, group, pass), one column per resolution; a cell is
    coloured as its fastest implementation (hatched when channels_last); a map with
    no swept shape is not drawn."""
    best, anchor = R.best_map_table(res.df)
    if best.empty:
        raise Skip("no ok rows with a latency")
    rows = list(best.groupby(["device", "group", "pass"]).groups)
    hs = sorted(best["h"].unique())
    chans = list(dict.fromkeys(best.sort_values(["c_in", "c_out"])["channels"]))
    ks = sorted(best["k"].unique())
    order = R.impl_order(best["best"])
    w = max(8.0, 1.2 + len(hs) * (0.95 * len(ks) + 1.0))
    h = max(5.0, 1.6 + len(rows) * (0.42 * len(chans) + 0.95))
    fig, axes = new_figure(len(rows), len(hs), (w, h))
    for r, (dev, group, p) in enumerate(rows):
        for c, hh in enumerate(hs):
            ax = axes[r][c]
            sel = (best["device"] == dev) & (best["group"] == group) & (best["pass"] == p)
            s = best[sel & (best["h"] == hh)]
            img = np.ones((len(chans), len(ks), 3))  # white: not in the sweep (or no ok row)
            for cell in s.itertuples():
                i, j = chans.index(cell.channels), ks.index(cell.k)
                img[i, j] = rgb = to_rgb(color_of(cell.best))
                if split_label(cell.best)[2]:  # channels_last: hatched
                    box = Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch="///", lw=0,
                                    edgecolor=_text_color(rgb), alpha=0.35)  # fmt: skip
                    ax.add_patch(box)
                sp = cell.speedup_vs_full
                txt = abbrev(cell.best) + (f"\n×{sp:.2f}" if np.isfinite(sp) else "")
                ax.text(j, i, txt, ha="center", va="center", fontsize=8, color=_text_color(rgb),
                        gid=f"cell:{cell.channels}:k{cell.k}")  # fmt: skip
            ax.imshow(img, aspect="auto")
            ax.grid(False)
            ax.set_xticks(range(len(ks)), [str(k) for k in ks])
            ax.set_yticks(range(len(chans)), chans)
            on = f" ({dev})" if best["device"].nunique() > 1 else ""
            ax.set_title(f"{group} {p}, H=W={hh}{on}")
            ax.set_visible(not s.empty)  # a map with no cell says nothing
            if c == 0:
                ax.set_ylabel("channels C_in→C_out")
    for column in axes.T:  # k is named under the lowest map of each column
        shown = [ax for ax in column if ax.get_visible()]
        if shown:
            shown[-1].set_xlabel("kernel size k (px)")
    handles = [Patch(facecolor=color_of(x), hatch="///" if split_label(x)[2] else None,
                     edgecolor="white", label=f"{abbrev(x)} = {x}") for x in order]  # fmt: skip
    title = "fastest implementation (white: shape not swept)"
    fig.legend(handles=handles, loc="outside lower center", frameon=False,
               ncols=min(len(handles), 6), title=title)  # fmt: skip
    where = f"{anchor['layer']} layer, {anchor['dtype']}, batch {anchor['batch']}"
    suptitle(
        fig, f"Fastest implementation per cell, ×speedup over the full GConv ({where})", res.env
    )
    return fig


def plot_roofline(res: R.Results) -> Figure:
    dtype = RL.roofline_dtype(res.df)
    pts = RL.roofline_points(res.df, dtype)
    if pts.empty:
        raise Skip("no ok row with a finite GMAC/s and bytes_moved_formula")
    peak, bw = RL.ceilings(res.env, dtype)
    xlim = log_limits(pts["intensity"], pad=3)
    ylim = log_limits([*pts["gmacs_per_s"], *([peak] if peak else [])], pad=2)
    fig, axes, panels, order = scatter_panels(
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
    ccol = dict(zip(cats, CATEGORY_COLORS + EXTRA_CATEGORY_COLORS * 4, strict=False))
    ncols = min(2, len(shapes))
    nrows = -(-len(shapes) // ncols)
    n_impls = t.groupby("shape")["impl_label"].nunique().max()
    size = (max(8, 5.2 * ncols + 2.4), (0.24 * n_impls + 1.4) * nrows + 1)
    fig, axes = new_figure(nrows, ncols, size)
    for ax, shape in zip(axes.flat, shapes, strict=False):
        s = t[t["shape"] == shape].pivot_table(
            index="impl_label", columns="category", values="time_ms", aggfunc="sum", fill_value=0
        )
        s = s.reindex(R.impl_order(s.index))
        left = np.zeros(len(s))
        for cat in [c for c in cats if c in s.columns]:
            ax.barh(range(len(s)), s[cat], left=left, color=ccol[cat], gid=f"bar:{cat}")
            left += s[cat].to_numpy()
        ax.set_yticks(range(len(s)), list(s.index))
        ax.invert_yaxis()  # the reference on top
        ax.set(title=shape, xlabel="time per call (ms)")
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
