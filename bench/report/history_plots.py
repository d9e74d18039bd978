"""Trend plots of the benchmark history: one figure per implementation and device.

Each figure has one panel per (pass, dtype, device) series of the
implementation: its level (geometric-mean ratio to the reference, log axis)
over the runs in the order they were added, the run's 95 % measurement band,
the fitted piecewise-constant levels, and each step marked at its commit.
Disturbed runs are hollow markers (left out of the fit); isolated outliers
the fit left out are crosses. The judging is :mod:`bench.judge.trend`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter

from ..judge.render_history import short
from ..judge.trend import Series
from .style import DPI, color_of, new_figure


def _name(impl: str) -> str:
    return impl.replace("/", "-")


def plot_implementation(slug: str, impl: str, series: list[Series], threshold: float):
    """The figure of one implementation's series on one device.

    Args:
        slug: the device slug (title).
        impl: ``variant/impl``.
        series: its judged series (one panel each).
        threshold: the regression threshold (steps above it drawn red).

    Returns:
        A matplotlib Figure.
    """
    n = max(len(s.points) for s in series)
    fig, axes = new_figure(len(series), 1, (max(6.0, 0.22 * n + 3.0), 2.6 * len(series)))
    color = color_of(impl)  # the palette of every report plot
    for ax, s in zip(axes[:, 0], series, strict=True):
        x = np.arange(len(s.points))
        y = np.exp([p.y for p in s.points])
        lo = np.exp([p.y - 1.96 * p.se for p in s.points])
        hi = np.exp([p.y + 1.96 * p.se for p in s.points])
        ax.fill_between(x, lo, hi, color=color, alpha=0.2, lw=0, label="95 % (run)")
        quiet = np.array([not p.disturbed for p in s.points])
        ax.plot(x[quiet], y[quiet], "o-", color=color, ms=4, lw=1, label="level")
        if (~quiet).any():
            ax.plot(x[~quiet], y[~quiet], "o", mfc="none", color=color, ms=5, label="disturbed")
        if s.fit is not None:
            used = np.array(s.used)
            ax.step(used, np.exp(s.fit.levels), where="mid", color="0.2", lw=1.2, label="fit")
            if s.fit.outliers:
                out = used[s.fit.outliers]
                ax.plot(out, y[out], "x", color="0.3", ms=6, label="outlier")
        for step, _ in s.steps:
            red = step.change > threshold
            ax.axvline(step.index - 0.5, color="#cb181d" if red else "0.5", ls="--", lw=1)
            ax.annotate(f"{step.change * 100:+.1f}% @ {short(s.points[step.index].commit)}",
                        (step.index - 0.5, 1.0), xycoords=("data", "axes fraction"),
                        rotation=90, va="top", ha="right", fontsize=8)  # fmt: skip
        ax.set_yscale("log")
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda v, _: f"{v:.3g}"))
        ax.set_ylabel(f"ratio to {s.versus}")
        ax.set_title(s.label, fontsize=10)
        ticks = x if n <= 30 else x[:: math.ceil(n / 30)]
        ax.set_xticks(ticks, [short(s.points[i].commit)[:7] for i in ticks], rotation=90,
                      fontsize=7)  # fmt: skip
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{impl} on {slug}: level over commits", fontsize=11)
    return fig


def write_plots(slug: str, series: list[Series], out_dir: Path, threshold: float) -> dict:
    """One PNG per implementation under ``out_dir/<slug>/``.

    Args:
        slug: the device slug.
        series: the device's judged series.
        out_dir: the plots folder.
        threshold: the regression threshold.

    Returns:
        ``{implementation: path}``.
    """
    by_impl: dict[str, list[Series]] = {}
    for s in series:
        if s.points:
            by_impl.setdefault(s.key[0], []).append(s)
    folder = Path(out_dir) / slug
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for impl, members in sorted(by_impl.items()):
        fig = plot_implementation(slug, impl, members, threshold)
        path = folder / f"{_name(impl)}.png"
        fig.savefig(path, dpi=DPI, metadata={"Software": None})
        out[impl] = path
    return out
