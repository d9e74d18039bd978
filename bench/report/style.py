"""The look shared by every plot: one style per implementation, markers, figure helpers.

An implementation's look is a pure function of its label (:func:`impl_style`),
so it is the same in every plot and does not depend on what else is drawn:

* **hue per variant**: full grey, g blue, gc orange, dense green (any other
  variant a purple);
* **lightness and marker per implementation**: rearranged dark ``s``, fused
  ``D``, naive ``o``, auto light ``^`` (the reference, full/naive, near black);
* **channels_last**: hollow marker, dashed line;
* **compiled**: a larger marker with a black edge (coloured when hollow), dotted
  line (dash-dot with channels_last).

Figures are built without pyplot (no global state) on the Agg canvas.
"""

from __future__ import annotations

import colorsys

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
#: variant -> (hue, saturation) in HLS; full is grey
VARIANT_HUE = {"full": (0.0, 0.0), "g": (0.58, 0.75), "gc": (0.06, 0.85), "dense": (0.36, 0.6)}
OTHER_HUE = (0.8, 0.5)  # a variant not listed (a peer library's)
#: impl -> lightness (HLS) and marker; full/naive, the reference, is darker still
IMPL_LIGHTNESS = {"rearranged": 0.28, "fused": 0.42, "naive": 0.58, "auto": 0.74, "torch": 0.45}
IMPL_MARKER = {"naive": "o", "rearranged": "s", "fused": "D", "auto": "^", "torch": "v"}
OTHER_LIGHTNESS, OTHER_MARKER = 0.5, "X"
REFERENCE_LIGHTNESS = 0.22
ABBREV_IMPL = {"naive": "n", "rearranged": "r", "fused": "f", "auto": "a", "torch": ""}
# fmt: on
CATEGORIES = ["filter construction", "pointwise conv", "copies/permutes", "spatial conv", "other"]
CATEGORY_COLORS = ["#8c564b", "#1f77b4", "#d62728", "#2ca02c", "#c7c7c7"]
EXTRA_CATEGORY_COLORS = ["#9467bd", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f"]
NOTE = {"fontsize": 9, "color": "0.35"}


def split_label(label: str) -> tuple[str, str, bool, bool]:
    """``"gc/rearranged cl compiled"`` -> ``("gc", "rearranged", True, True)``:
    variant, impl, channels_last, compiled (see :func:`bench.report.data.impl_label`)."""
    base, *how = str(label).split(" ")
    variant, _, impl = base.partition("/")
    return variant, impl, "cl" in how, "compiled" in how


def color_of(label: str) -> tuple[float, float, float]:
    """The RGB colour of an implementation label: hue by variant, lightness by impl
    (a pure function of the label: the same in every plot)."""
    variant, impl, _, _ = split_label(label)
    hue, sat = VARIANT_HUE.get(variant, OTHER_HUE)
    light = IMPL_LIGHTNESS.get(impl, OTHER_LIGHTNESS)
    if f"{variant}/{impl}" == R.REFERENCE:
        light = REFERENCE_LIGHTNESS
    return tuple(round(c, 4) for c in colorsys.hls_to_rgb(hue, light, sat))


def impl_style(label: str) -> dict:
    """Everything that draws one implementation: ``color``, ``marker``, ``filled``
    (False for channels_last), ``edgecolor`` (black when compiled and filled: a hollow
    marker keeps its colour on the edge), ``size`` (× 1.5 when compiled), ``linestyle``."""
    _, impl, cl, compiled = split_label(label)
    color = color_of(label)
    ls = {(False, False): "-", (True, False): "--", (False, True): ":", (True, True): "-."}
    return {
        "color": color,
        "marker": IMPL_MARKER.get(impl, OTHER_MARKER),
        "filled": not cl,
        "edgecolor": "black" if compiled and not cl else color,
        "size": 1.5 if compiled else 1.0,
        "linestyle": ls[(cl, compiled)],
    }


def scatter_kw(label: str, s: float = 34) -> dict:
    """``ax.scatter`` keywords drawing ``label`` as :func:`impl_style` says."""
    st = impl_style(label)
    return {
        "s": s * st["size"] ** 2,
        "marker": st["marker"],
        "facecolors": st["color"] if st["filled"] else "none",
        "edgecolors": st["edgecolor"],
        "linewidths": 1.6 if st["size"] > 1 or not st["filled"] else 0.6,
    }


def line_kw(label: str, ms: float = 5) -> dict:
    """``ax.plot`` keywords drawing ``label`` as :func:`impl_style` says."""
    st = impl_style(label)
    return {
        "color": st["color"],
        "ls": st["linestyle"],
        "marker": st["marker"],
        "ms": ms * st["size"],
        "mfc": st["color"] if st["filled"] else "none",
        "mec": st["edgecolor"],
    }


def handle(label: str, text: str | None = None, line: bool = False) -> Line2D:
    """A legend entry drawn exactly as the plots draw ``label``."""
    kw = line_kw(label, ms=7)
    if not line:
        kw["ls"] = ""
    return Line2D([], [], label=text or label, **kw)


def abbrev(label: str) -> str:
    """Short label: ``gc·r``, with ``cl`` / ``comp`` after it when run so."""
    variant, impl, cl, compiled = split_label(label)
    base = str(label).split(" ")[0]
    if base == R.REFERENCE:
        short = "full"
    elif impl in ABBREV_IMPL:
        short = f"{variant}·{ABBREV_IMPL[impl]}" if ABBREV_IMPL[impl] else variant
    else:
        short = base.replace("/", "·")
    return " ".join([short, *(["cl"] if cl else []), *(["comp"] if compiled else [])])


class Skip(Exception):
    """Nothing to draw; the message says why (it goes into the README)."""


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


def legend(fig, order, extra=(), line=False):
    """One entry per implementation, drawn as the plots draw it (:func:`handle`),
    then the ``extra`` handles; outside the axes, right."""
    handles = [handle(x, line=line) for x in order]
    fig.legend(handles=[*handles, *extra], loc="outside right upper", frameon=False)


def log_limits(values, pad=1.4) -> tuple[float, float]:
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0])
    return v.min() / pad, v.max() * pad


def loglog(ax, title, xlabel, xlim, ylim):
    ax.set(xscale="log", yscale="log", title=title, xlabel=xlabel, xlim=xlim, ylim=ylim)
    tidy_log(ax)


def scatter_panels(pts, x, y, xlabel, ylabel, lim_x, lim_y):
    """One log-log panel per pass; one scatter per implementation, styled by
    :func:`scatter_kw` (gid ``measured:<label>``)."""
    per_pass = panels(pts)
    order = R.impl_order(pts["impl_label"])
    fig, axes = new_figure(1, len(per_pass), (4.2 * len(per_pass) + 2.4, 5), sharey=True)
    for ax, (name, sub) in zip(axes[0], per_pass, strict=True):
        for label in order:
            s = sub[sub["impl_label"] == label]
            if not s.empty:
                ax.scatter(s[x], s[y], alpha=0.85, gid=f"measured:{label}", **scatter_kw(label))
        loglog(ax, f"pass: {name}", xlabel, lim_x, lim_y)
    axes[0][0].set_ylabel(ylabel)
    return fig, axes, per_pass, order
