"""What a reader sees at a glance: one palette keyed by implementation, no
overprinted labels, no trivial panels, axes fitted to the data, both groups in
the best-implementation map, and summaries on the variant's §3.4 promise.

Every plot is rendered from a synthetic results folder (``test_report``'s, with
channels_last, auto and compiled rows and both groups added, so a plot carries
as many implementations as a real run) and read back through its artists.
"""

from __future__ import annotations

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgb
from test_report import KEYS, write_synthetic

from bench.report import build as R
from bench.report import data as D
from bench.report import markdown as M
from bench.report import plots as P
from bench.report import style as S


def _variants_of(rows: pd.DataFrame) -> pd.DataFrame:
    """channels_last copies of every row at H = 32, ``auto`` rows that chose naive
    (g) and rearranged (gc), and compiled copies of the rearranged rows at H = 8."""
    cl = rows[rows["h"] == 32].assign(memory_format="channels_last")
    cl = cl.assign(latency_ms_median=cl["latency_ms_median"] * 0.9)
    auto = []
    for variant, chosen in (("g", "naive"), ("gc", "rearranged")):
        sel = rows[(rows["variant"] == variant) & (rows["impl"] == chosen)]
        auto.append(sel.assign(impl="auto", auto_choice=chosen))
    comp = rows[(rows["impl"] == "rearranged") & (rows["h"] == 8)].assign(compiled="True")
    return pd.concat([rows, cl, *auto, comp], ignore_index=True)


@pytest.fixture(scope="module")
def rich(tmp_path_factory) -> R.Results:
    d = write_synthetic(
        tmp_path_factory.mktemp("look") / "rich", groups=("p4", "p4m"), channels=(8, 32)
    )
    df = pd.read_csv(d / "results.csv").assign(memory_format="contiguous", compiled="False")
    _variants_of(df).to_csv(d / "results.csv", index=False)
    prof = pd.read_csv(d / "profile.csv").assign(memory_format="contiguous")
    pd.concat([prof, prof.assign(memory_format="channels_last")]).to_csv(
        d / "profile.csv", index=False
    )
    return R.load_results(d)


@pytest.fixture(scope="module")
def figures(rich) -> dict:
    """Every plot of the report, drawn (the layout engine has run)."""
    out = {}
    with matplotlib.rc_context(P.STYLE):
        for name, build in P.BUILDERS.items():
            fig = build(rich)
            fig.canvas.draw()
            out[name] = fig
    return out


# ---------------------------------------------------------------------- #
# the palette
# ---------------------------------------------------------------------- #
LABELS = [
    D.impl_label(v, i, f, c)
    for (v, i), f, c in itertools.product(
        [("full", "naive"), ("full", "auto"), ("g", "naive"), ("g", "rearranged"),
         ("g", "fused"), ("g", "auto"), ("gc", "naive"), ("gc", "rearranged"), ("gc", "fused"),
         ("gc", "auto"), ("dense", "torch")],
        ["contiguous", "channels_last"], [False, True],
    )
]  # fmt: skip


def _lab(rgb) -> np.ndarray:
    """CIE L*a*b* (D65) of an sRGB colour: distances in it follow what the eye sees."""
    c = np.asarray(to_rgb(rgb), float)
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    m = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]])
    xyz = m @ c / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def _delta_e(a, b) -> float:
    return float(np.linalg.norm(_lab(a) - _lab(b)))


def test_the_palette_is_a_pure_function_of_the_label():
    first = {x: S.impl_style(x) for x in LABELS}
    for x in reversed(LABELS):  # another order, other labels in between: the same look
        assert S.impl_style(x) == first[x]
    # only the memory format and compilation change how a label is drawn, not its colour
    for x in LABELS:
        assert S.color_of(x) == S.color_of(x.split(" ")[0])
    assert S.impl_style("gc/rearranged cl")["filled"] is False
    assert (
        S.impl_style("gc/rearranged")["linestyle"] != S.impl_style("gc/rearranged cl")["linestyle"]
    )
    assert S.impl_style("gc/rearranged compiled")["size"] > S.impl_style("gc/rearranged")["size"]


@pytest.mark.parametrize("impl", ["naive", "rearranged", "fused", "auto"])
def test_variants_are_told_apart_by_hue(impl):
    """The same implementation of two variants: far apart (ΔE ≥ 25)."""
    for a, b in itertools.combinations(["full", "g", "gc"], 2):
        if impl in ("rearranged", "fused") and "full" in (a, b):
            continue  # full has neither
        assert _delta_e(S.color_of(f"{a}/{impl}"), S.color_of(f"{b}/{impl}")) >= 25, (a, b)
    for v in ("g", "gc"):
        assert _delta_e(S.color_of(f"{v}/{impl}"), S.color_of("dense/torch")) >= 25, v


def test_implementations_of_a_variant_differ_in_lightness_and_marker():
    for v in ("g", "gc"):
        impls = [f"{v}/{i}" for i in ("naive", "rearranged", "fused", "auto")]
        for a, b in itertools.combinations(impls, 2):
            assert _delta_e(S.color_of(a), S.color_of(b)) >= 10, (a, b)
            assert S.impl_style(a)["marker"] != S.impl_style(b)["marker"], (a, b)
    # every variant's colours stay apart from every other variant's, whatever the impl
    per_variant = {v: [S.color_of(f"{v}/{i}") for i in ("naive", "rearranged", "auto")]
                   for v in ("g", "gc")}  # fmt: skip
    closest = min(_delta_e(a, b) for a in per_variant["g"] for b in per_variant["gc"])
    assert closest >= 25


def _drawn_colors(fig) -> dict[str, set]:
    """label -> the colours it is drawn in (scatter points, lines, legend entries)."""
    seen: dict[str, set] = {}

    def add(label, rgb):
        seen.setdefault(label, set()).add(tuple(round(v, 3) for v in to_rgb(rgb)))

    for ax in fig.axes:
        for col in ax.collections:
            gid = col.get_gid() or ""
            if gid.startswith("measured:"):
                label = gid.split(":")[1]
                filled = S.impl_style(label)["filled"]
                colors = col.get_facecolors() if filled else col.get_edgecolors()
                for c in colors:
                    add(label, c[:3])
        for line in ax.get_lines():
            gid = line.get_gid() or ""
            if gid.startswith("line:"):
                add(gid.removeprefix("line:"), line.get_color())
    for leg in fig.legends:
        for h in leg.legend_handles:
            label = h.get_label()
            if isinstance(h, matplotlib.lines.Line2D) and label in set(LABELS):
                add(label, h.get_color())
    return seen


def test_an_implementation_has_one_colour_in_every_plot(figures):
    everywhere: dict[str, set] = {}
    for fig in figures.values():
        for label, colors in _drawn_colors(fig).items():
            everywhere.setdefault(label, set()).update(colors)
    assert len(everywhere) >= 12  # cl, auto and compiled labels are drawn too
    for label, colors in everywhere.items():
        want = tuple(round(v, 3) for v in S.color_of(label))
        assert colors == {want}, label


# ---------------------------------------------------------------------- #
# labels, panels, axes
# ---------------------------------------------------------------------- #
def _overlaps(boxes) -> list[tuple[str, str]]:
    out = []
    for (ta, a), (tb, b) in itertools.combinations(boxes, 2):
        if a.x0 < b.x1 - 1 and b.x0 < a.x1 - 1 and a.y0 < b.y1 - 1 and b.y0 < a.y1 - 1:
            out.append((ta, tb))
    return out


def _texts(ax):
    labels = [*ax.get_xticklabels(), *ax.get_yticklabels()]
    return [t for t in labels if t.get_visible() and t.get_text()]


@pytest.mark.parametrize("name", list(P.BUILDERS))
def test_no_label_is_printed_over_another(figures, name):
    """Tick labels of one axes, and titles and axis labels across the figure, do not
    overlap (bounding boxes from the Agg renderer)."""
    fig = figures[name]
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in _texts(ax)]
        assert not _overlaps(boxes), (name, ax.get_title(), _overlaps(boxes)[:3])
    heads = [
        (t.get_text(), t.get_window_extent(renderer))
        for ax in fig.axes
        for t in (ax.title, ax.xaxis.label, ax.yaxis.label)
        if t.get_visible() and t.get_text()
    ]
    assert not _overlaps(heads), (name, _overlaps(heads)[:3])


def test_the_tradeoff_plot_has_no_trivial_panel(rich, figures):
    pts = D.tradeoff_points(rich.df)
    kept, dropped = D.tradeoff_panels(pts)
    assert kept == ["g", "gc"] and set(dropped) == {"full", "dense"}
    titles = {ax.get_title() for ax in figures["tradeoff"].axes}
    assert titles == {f"{v} · {p}" for v in kept for p in ("fwd", "fwdbwd")}
    for ax in figures["tradeoff"].axes:  # every panel shows a MAC cut
        xs = np.concatenate([c.get_offsets()[:, 0] for c in ax.collections
                             if (c.get_gid() or "").startswith("measured:")])  # fmt: skip
        assert np.ptp(np.log(xs)) > np.log(1.5)


def test_every_marker_is_in_a_legend(figures):
    """Each drawn implementation has a legend entry in its own look; the tradeoff's
    formula ticks and the reference star are explained."""
    for name in ("tradeoff", "speedup", "roofline", "scaling"):
        fig = figures[name]
        entries = {h.get_label() for leg in fig.legends for h in leg.legend_handles}
        drawn = {
            (c.get_gid() or "").split(":")[1]
            for ax in fig.axes
            for c in [*ax.collections, *ax.get_lines()]
            if (c.get_gid() or "").startswith(("measured:", "line:"))
        }
        assert drawn and drawn <= entries, (name, drawn - entries)
    legend = {h.get_label() for h in figures["tradeoff"].legends[0].legend_handles}
    assert any(x.startswith("formula working set") for x in legend)
    assert "full GConv (reference)" in legend


def test_speedup_axes_are_fitted_to_the_data(rich, figures):
    pts = D.speedup_points(rich.df)
    for ax in figures["speedup"].axes:
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        xs = [1, *pts["promised_speedup"]]
        ys = [1, *pts["speedup_vs_full"]]
        # at most a quarter of a data span of empty margin on either side, in log
        for lo, hi, v in ((x0, x1, xs), (y0, y1, ys)):
            span = np.log(max(v) / min(v))
            assert np.log(min(v) / lo) <= 0.25 * span + 1e-9
            assert np.log(hi / max(v)) <= 0.25 * span + 1e-9
        assert not ax.texts  # nothing written over the data


def test_best_impl_covers_both_groups(rich, figures):
    table, anchor = D.best_map_table(rich.df)
    assert set(table["group"]) == {"p4", "p4m"} and "group" not in anchor
    titles = {ax.get_title().split(",")[0] for ax in figures["best_impl"].axes}
    assert titles == {f"{g} {p}" for g in ("p4", "p4m") for p in ("fwd", "fwdbwd")}


def test_best_impl_draws_no_empty_map(rich):
    """A resolution one group did not sweep leaves that map out, not an empty frame."""
    df = rich.df[~((rich.df["group"] == "p4m") & (rich.df["h"] == 64))]
    with matplotlib.rc_context(P.STYLE):
        fig = P.plot_best_impl(R.Results(directory=rich.directory, df=df, env=rich.env))
    shown = [ax for ax in fig.axes if ax.get_visible()]
    assert all(any((t.get_gid() or "").startswith("cell:") for t in ax.texts) for ax in shown)
    hidden = [ax.get_title() for ax in fig.axes if not ax.get_visible()]
    assert sorted(hidden) == ["p4m fwd, H=W=64", "p4m fwdbwd, H=W=64"]
    lowest = [ax for ax in shown if "H=W=64" in ax.get_title()][-1]
    assert lowest.get_title() == "p4 fwdbwd, H=W=64" and lowest.get_xlabel()


# ---------------------------------------------------------------------- #
# summaries
# ---------------------------------------------------------------------- #
def _one_shape(variant: str, k: int = 3) -> pd.DataFrame:
    """One p4 group-layer shape: full/naive, and auto that chose naive."""
    base = dict(group="p4", layer="group", c_in=16, c_out=16, k=k, h=16, w=16, batch=1,
                dtype="float32", device="cpu", status="ok", error="", memory_format="contiguous",
                compiled="False", macs_measured=np.nan, macs_match="", gmacs_per_s=1.0,
                intermediate_filter_bytes=0.0, intermediate_activation_bytes=0.0,
                bytes_moved_formula=1.0, g_in=4, g_out=4)  # fmt: skip
    full_macs = 16 * 4 * k * k * 16 * 16 * 16 * 4
    rows = []
    for p in ("fwd", "fwdbwd"):
        rows.append(dict(base, variant="full", impl="naive", **{"pass": p},
                         latency_ms_median=2.0, macs_formula=full_macs, peak_mem_bytes=1000.0,
                         speedup_vs_full=1.0, theoretical_speedup=1.0, efficiency=1.0))  # fmt: skip
        # auto chose naive: it executes the full MACs (executed cut 1), 1.6x faster
        rows.append(dict(base, variant=variant, impl="auto", auto_choice="naive",
                         **{"pass": p}, latency_ms_median=1.25, macs_formula=full_macs,
                         peak_mem_bytes=2500.0, speedup_vs_full=1.6, theoretical_speedup=1.0,
                         efficiency=1.6))  # fmt: skip
    return R.prepare(pd.DataFrame(rows))


@pytest.mark.parametrize("variant, promise", [
    ("g", 4 * 9 / (4 + 9)),  # G_in k² / (G_in + k²)
    ("gc", 16 * 4 * 9 / (16 * 4 + 9)),  # C_in G_in k² / (C_in G_in + k²)
])  # fmt: skip
def test_auto_that_chose_naive_is_measured_against_the_promise(variant, promise):
    df = _one_shape(variant)
    pts = D.speedup_points(df)
    assert len(pts) == 2
    assert pts["promised_speedup"].tolist() == pytest.approx([promise] * 2)
    assert pts["efficiency"].tolist() == pytest.approx([1.6 / promise] * 2)  # not 1.6 / 1
    assert pts["theoretical_speedup"].tolist() == pytest.approx([1.0] * 2)  # executed
    assert pts["mem_vs_full"].tolist() == pytest.approx([2.5] * 2)
    table = M.summary_table(df)
    every = table[table["regime"] == "all"]
    assert every["efficiency"].tolist() == pytest.approx([1.6 / promise] * 2)
    assert every["executed"].tolist() == pytest.approx([1.0] * 2)
    assert every["memory"].tolist() == pytest.approx([2.5] * 2)


def test_promise_equals_sepgconvs_formulas(rich):
    from sepgconv.counting import macs_section34

    d = rich.df.drop_duplicates(KEYS[:8] + ["variant"])
    got = D.promised_speedup(d)
    for (_, r), x in zip(d.iterrows(), got, strict=True):
        g = {"p4": 4, "p4m": 8}[r["group"]]
        g_in = 1 if r["layer"] == "lifting" else g  # the synthetic CSV has no g_in column
        shape = (r["c_in"], r["c_out"], g_in, g, r["k"], r["h"], r["w"])
        v = r["variant"] if r["variant"] in ("g", "gc") else "full"
        assert x == pytest.approx(macs_section34("full", *shape) / macs_section34(v, *shape))


def test_every_summary_table_has_a_memory_column(rich, tmp_path):
    text = M.render_readme(rich, [], {})
    tables = [b for b in text.split("\n\n") if b.startswith("| device |")]
    assert len(tables) == 2  # per implementation, best per regime
    for t in tables:
        assert "memory × full" in t.splitlines()[0]
    n_impls = rich.df[["variant", "impl"]].drop_duplicates().shape[0]
    n_configs = rich.df["impl_label"].nunique()
    assert n_impls < n_configs
    assert f"{n_impls} implementations in {n_configs} configurations" in text
