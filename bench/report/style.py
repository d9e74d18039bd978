"""The look shared by every plot: colours per implementation, markers, figure helpers.

Colours: one hue per variant, light for naive, dark for rearranged; the same
implementation has the same colour in every plot. Figures are built without
pyplot (no global state) on the Agg canvas.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from ..measure.contention import banner
from . import data as R

DPI = 130
# fmt: off
STYLE = {
    "font.size": 10, "axes.titlesize": 10, "axes.labelsize": 10, "xtick.labelsize": 9,
    "ytick.labelsize": 9, "legend.fontsize": 9, "figure.titlesize": 11, "axes.grid": True,
    "grid.alpha": 0.3, "svg.hashsalt": "sepgconv", "svg.fonttype": "none",
}
COLORS = {
    "full/naive": "#404040", "g/naive": "#6baed6", "g/rearranged": "#08519c",
    "gc/naive": "#fd8d3c", "gc/rearranged": "#a63603", "dense/torch": "#31a354",
    "full/auto": "#969696", "g/auto": "#9e9ac8", "gc/auto": "#fdae6b", "g/fused": "#3f007d",
    "gc/fused": "#7f2704",
}
ABBREV = {
    "full/naive": "full", "g/naive": "g·n", "g/rearranged": "g·r", "gc/naive": "gc·n",
    "gc/rearranged": "gc·r", "dense/torch": "dense", "full/auto": "full·a", "g/auto": "g·a",
    "gc/auto": "gc·a", "g/fused": "g·f", "gc/fused": "gc·f",
}
# fmt: on
# labels beyond COLORS (channels_last " cl", compiled, peers) take these in order
EXTRA_COLORS = [
    "#756bb1",
    "#e7298a",
    "#8c6d31",
    "#17becf",
    "#bcbd22",
    "#d62728",
    "#1b9e77",
    "#e6ab02",
    "#66a61e",
    "#a6761d",
    "#7570b3",
    "#e41a1c",
]  # fmt: skip
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]
CATEGORIES = ["filter construction", "pointwise conv", "copies/permutes", "spatial conv", "other"]
CATEGORY_COLORS = ["#8c564b", "#1f77b4", "#d62728", "#2ca02c", "#c7c7c7"]
NOTE = {"fontsize": 9, "color": "0.35"}
REF_STAR = {"marker": "*", "s": 150, "color": COLORS["full/naive"], "zorder": 5}


class Skip(Exception):
    """Nothing to draw; the message says why (it goes into the README)."""


def color_of(label: str, order: list[str]) -> str:
    if label in COLORS:
        return COLORS[label]
    extra = [x for x in order if x not in COLORS]
    return EXTRA_COLORS[extra.index(label) % len(EXTRA_COLORS)] if label in extra else "k"


def abbrev(label: str) -> str:
    """Short label: ``gc·r``, with ``cl`` / ``comp`` after it when run so."""
    base, *how = label.split(" ")
    short = ABBREV.get(base, base.replace("/", "·"))
    return " ".join([short, *("comp" if h == "compiled" else h for h in how)])


def suptitle(fig, what: str, env: dict) -> None:
    """What the plot shows, then the device and torch version; a disturbed run
    (``env["contention"]``, :func:`bench.measure.contention.banner`) gets the
    title in red with the word DISTURBED."""
    text = f"{what}\n{R.device_title(env)}"
    if banner(env.get("contention")):
        fig.suptitle(f"DISTURBED RUN: not fit to publish\n{text}", color="firebrick")
    else:
        fig.suptitle(text)


def tidy_log(ax, axes="xy") -> None:
    """Plain-number labels on log axes (``0.5``, ``2``, ``100``), with 1-2-5
    ticks when the range spans few decades; call after the limits are set."""
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        if axis.get_scale() != "log":
            continue
        lo, hi = sorted(ax.get_xlim() if name == "x" else ax.get_ylim())
        decades = np.log10(hi / lo)
        subs = np.arange(1, 10) if decades < 1 else (1, 2, 5) if decades < 2.5 else (1,)
        axis.set_major_locator(LogLocator(base=10, subs=subs))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())


def new_figure(nrows: int, ncols: int, size: tuple[float, float], **kw):
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False, **kw)


def panels(d: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split by pass (and device, when there are several); fwd before fwdbwd."""
    dims = ["device", "pass"] if d["device"].nunique() > 1 else ["pass"]
    return [(" · ".join(map(str, key)), sub) for key, sub in d.groupby(dims, sort=True)]


def legend(fig, order, extra=()):
    """Implementation colours (and ``extra`` handles) outside the axes, right."""
    handles = [Line2D([], [], ls="", marker="o", ms=7, color=color_of(x, order), label=x)
               for x in order]  # fmt: skip
    fig.legend(handles=[*handles, *extra], loc="outside right upper", frameon=False)


def log_limits(values, pad=1.4) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0])
    return v.min() / pad, v.max() * pad


def loglog(ax, title, xlabel, xlim, ylim):
    ax.set(xscale="log", yscale="log", title=title, xlabel=xlabel, xlim=xlim, ylim=ylim)
    tidy_log(ax)


def scatter_panels(pts, x, y, xlabel, ylabel, lim_x, lim_y, marker_by_k=False):
    """One log-log panel per pass; one scatter per implementation (and k)."""
    per_pass = panels(pts)
    order = R.impl_order(pts["impl_label"])
    ks = sorted(pts["k"].unique()) if marker_by_k else [None]
    marker = {k: MARKERS[i % len(MARKERS)] for i, k in enumerate(ks)}
    fig, axes = new_figure(1, len(per_pass), (4.2 * len(per_pass) + 2.2, 5), sharey=True)
    for ax, (name, sub) in zip(axes[0], per_pass, strict=True):
        for label in order:
            for k in ks:
                s = sub[(sub["impl_label"] == label) & ((sub["k"] == k) if k else True)]
                gid = f"measured:{label}" + (f":k{k}" if k else "")
                if not s.empty:
                    ax.scatter(s[x], s[y], s=34, color=color_of(label, order), alpha=0.85,
                               marker=marker[k], gid=gid)  # fmt: skip
        loglog(ax, f"pass: {name}", xlabel, lim_x, lim_y)
    axes[0][0].set_ylabel(ylabel)
    ktags = [
        Line2D([], [], ls="", marker=marker[k], color="0.3", label=f"k = {k}") for k in ks if k
    ]
    return fig, axes, per_pass, order, ktags
