"""Tests of ``python -m bench report`` on a synthetic results folder.

The synthetic folder follows the schema ``python -m bench run`` writes
(results.csv, env.json, profile.csv): §3.4 MAC counts, intermediate bytes as
the implementations materialise them, latencies from a simple cost model with
seeded noise, and a few rows that failed, mismatched or miscounted. Every
check compares what the report drew or wrote with a computation made here
from the raw CSV, independently of :mod:`bench.report`.

No test runs the real ``python -m bench run --profile smoke``: it takes about
35 s on two cores, most of this file's time budget. The report was checked by
hand on its output (72 rows, env.json and profile.csv as ``bench.run`` writes
them).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.commands import report as report_cli
from bench.report import build as R
from bench.report import markdown as M
from bench.report import plots as P

ROOT = Path(__file__).resolve().parents[1]
# the implementations whose MACs and intermediates the synthetic rows model (the report
# itself loops over whatever labels a results.csv holds), and the nn.Conv2d holding F̃
IMPLS = [("full", "naive"), ("g", "naive"), ("g", "rearranged"), ("gc", "naive"),
         ("gc", "rearranged"), ("dense", "torch")]  # fmt: skip
KEYS = ["group", "layer", "c_in", "c_out", "k", "h", "w", "batch", "pass", "dtype", "device"]
ENV = {
    "torch": "2.3.0",
    "device": "cpu",
    "device_name": "cpu",
    "cpu_model": "Synthetic CPU 9000",
    "threads": 2,
    "cuda": None,
    "peak_gmacs_per_s": 60.0,
    "peak_bandwidth_gb_per_s": 20.0,
    "profile": "synthetic",
    "date": "2024-05-01T12:00:00",
}


def _macs(variant, impl, c_in, c_out, g_in, g, k, h, w, b):
    if variant in ("g", "gc") and impl == "rearranged":
        if variant == "g":
            return c_in * c_out * g * h * w * (g_in + k * k) * b
        return c_out * g * h * w * (c_in * g_in + k * k) * b
    return c_in * g_in * k * k * h * w * c_out * g * b


def _intermediates(variant, impl, c_in, c_out, g_in, g, k, h, w, b):
    """(filter, activation) elements, as in sepgconv.impls."""
    if variant == "full":
        return c_out * g * c_in * g_in * k * k, 0
    if variant == "g" and impl == "rearranged":
        return c_out * g * c_in * (k * k + g_in), 2 * b * c_in * c_out * g * h * w
    if variant == "gc" and impl == "rearranged":
        return c_out * g * (c_in * g_in + k * k), 2 * b * c_out * g * h * w
    if variant in ("g", "gc"):
        f = c_out * c_in * g_in * k * k
        return f + g * f, 0
    return 0, 0  # dense: the weight is a parameter, nothing derived


def synthetic_rows(seed=0, groups=("p4",), channels=(8, 32), ks=(3, 5), sizes=(8, 32, 64)):
    """Rows of every implementation for every shape; a channel entry is an int
    (C_in = C_out) or a pair (C_in, C_out)."""
    rng = np.random.default_rng(seed)
    rows = []
    grid = itertools.product(groups, ("lifting", "group"), channels, ks, sizes, ("fwd", "fwdbwd"))
    for group, layer, c, k, h, p in grid:
        g = {"p4": 4, "p4m": 8}[group]
        c_in, c_out = (c, c) if isinstance(c, int) else c
        shape = {"group": group, "layer": layer, "c_in": c_in, "c_out": c_out, "k": k, "h": h,
                 "w": h, "batch": 2, "pass": p, "dtype": "float32", "device": "cpu"}  # fmt: skip
        rows += _shape_rows(rng, shape, g, 1 if layer == "lifting" else g)
    return rows


def _shape_rows(rng, s, g, g_in):
    args = (s["c_in"], s["c_out"], g_in, g, s["k"], s["h"], s["w"], s["batch"])
    out_bytes = 4 * s["batch"] * s["c_out"] * g * s["h"] * s["w"]
    in_bytes = 4 * s["batch"] * s["c_in"] * g_in * s["h"] * s["w"]
    rows, ref = [], None
    for variant, impl in IMPLS:
        macs = _macs(variant, impl, *args)
        filt, act = (4 * n for n in _intermediates(variant, impl, *args))
        rate = {"rearranged": 6e9, "torch": 25e9}.get(impl, 20e9)
        overhead = {"rearranged": 0.2, "naive": 0.08}.get(impl, 0.03)
        lat = (macs / rate * 1e3 + overhead + act / 5e9 * 1e3) * rng.lognormal(0, 0.08)
        lat *= 2.8 if s["pass"] == "fwdbwd" else 1
        peak = (
            (filt + act + out_bytes) * rng.uniform(1.0, 1.25) * (3 if s["pass"] == "fwdbwd" else 1)
        )
        row = dict(
            s,
            variant=variant,
            impl=impl,
            status="ok",
            error="",
            latency_ms_median=lat,
            latency_ms_iqr=0.05 * lat,
            n_samples=20,
            noisy=False,
            macs_formula=macs,
            macs_measured=macs,
            macs_match=True,
            params_formula=1,
            params_measured=1,
            peak_mem_bytes=peak,
            intermediate_filter_bytes=filt,
            intermediate_activation_bytes=act,
            bytes_moved_formula=in_bytes + out_bytes + filt + 2 * act,
            gmacs_per_s=macs / (lat * 1e-3) / 1e9,
        )
        ref = ref or row
        row["theoretical_speedup"] = ref["macs_formula"] / macs
        row["speedup_vs_full"] = ref["latency_ms_median"] / lat
        row["efficiency"] = row["speedup_vs_full"] / row["theoretical_speedup"]
        rows.append(row)
    return rows


def _spoil(rows):
    """Give a few rows the statuses and MAC mismatches a real run can have."""
    failing = {
        ("g", "rearranged", 64, "fwdbwd", 32, 5): ("oom", "CUDA out of memory | try less"),
        ("gc", "rearranged", 8, "fwd", 8, 3): ("mismatch", "max abs diff 1e-2"),
        ("dense", "torch", 32, "fwd", 32, 3): ("error", "RuntimeError: boom"),
    }
    for r in rows:
        key = (r["variant"], r["impl"], r["h"], r["pass"], r["c_in"], r["k"])
        if key in failing and r["layer"] == "group" and r["c_in"] == r["c_out"]:
            r["status"], r["error"] = failing[key]
            for c in (
                "latency_ms_median",
                "gmacs_per_s",
                "speedup_vs_full",
                "efficiency",
                "peak_mem_bytes",
                "macs_measured",
            ):
                r[c] = float("nan")
            r["macs_match"] = ""
    miscount = next(r for r in rows if r["variant"] == "gc" and r["impl"] == "rearranged")
    miscount["macs_measured"] += 123
    miscount["macs_match"] = False
    return rows


def write_synthetic(d: Path, env=ENV, profile=True, **kw) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    rows = _spoil(synthetic_rows(**kw))
    pd.DataFrame(rows).to_csv(d / "results.csv", index=False)
    if env is not None:
        (d / "env.json").write_text(json.dumps(env))
    if profile:
        prows = []
        for r in rows:
            if r["c_in"] == 32 and r["h"] == 32 and r["k"] == 3 and r["pass"] == "fwd":
                for i, cat in enumerate(P.CATEGORIES):
                    prows.append(
                        {
                            **{k: r[k] for k in KEYS},
                            "variant": r["variant"],
                            "impl": r["impl"],
                            "category": cat,
                            "time_ms": 0.1 * (i + 1),
                        }
                    )
        pd.DataFrame(prows).to_csv(d / "profile.csv", index=False)
    return d


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("run") / "results" / "synthetic-cpu"
    return write_synthetic(d, channels=(8, 32, (8, 16)))


@pytest.fixture(scope="module")
def raw(synth) -> pd.DataFrame:
    return pd.read_csv(synth / "results.csv")


@pytest.fixture(scope="module")
def res(synth) -> R.Results:
    return R.load_results(synth)


@pytest.fixture(scope="module")
def report(synth):
    """``python -m bench report`` in-process: (exit code, written paths, stdout)."""
    import argparse
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = report_cli.main(argparse.Namespace(dir=synth))
    return rc, [Path(line) for line in out.getvalue().splitlines()]


def _offsets(fig, prefix):
    n = 0
    for ax in fig.axes:
        for col in ax.collections:
            if (col.get_gid() or "").startswith(prefix):
                n += len(col.get_offsets())
    return n


def _ok(raw):
    return raw[raw["status"] == "ok"]


def _promise(r) -> float:
    """The variant's §3.4 cut (full MACs ÷ its rearranged count), from sepgconv's
    formulas: what every implementation of the variant is measured against."""
    from sepgconv.counting import macs_section34

    if r["variant"] not in ("g", "gc"):
        return 1.0
    g = {"p4": 4, "p4m": 8}[r["group"]]
    g_in = 1 if r["layer"] == "lifting" else g
    shape = (r["c_in"], r["c_out"], g_in, g, r["k"], r["h"], r["w"])
    return macs_section34("full", *shape) / macs_section34(r["variant"], *shape)


def _with_ref_peak(ok):
    ref = ok[(ok["variant"] == "full") & (ok["impl"] == "naive")][KEYS + ["peak_mem_bytes"]]
    return ok.merge(ref.rename(columns={"peak_mem_bytes": "ref_peak"}), on=KEYS, how="left")


# ---------------------------------------------------------------------- #
# the whole report
# ---------------------------------------------------------------------- #
def test_report_writes_every_plot_and_the_readmes(synth, report):
    rc, written = report  # the CLI prints the paths it wrote
    assert rc == 0
    for name in P.BUILDERS:
        for ext, magic in (("png", b"\x89PNG"), ("svg", b"<?xml")):
            path = synth / "plots" / f"{name}.{ext}"
            assert path in written
            assert path.read_bytes().startswith(magic), path
            assert path.stat().st_size > 2000, path
    readme = (synth / "README.md").read_text()
    for name in P.BUILDERS:
        assert f"](plots/{name}.png)" in readme
    index = synth.parent / "README.md"
    assert index in written
    assert f"[{synth.name}]({synth.name}/README.md)" in index.read_text()


def test_readme_counts_statuses_and_the_mac_check(synth, report, raw):
    readme = (synth / "README.md").read_text()
    for status, n in raw["status"].value_counts().items():
        assert f"| {status} | {n} |" in readme
    for err in raw.loc[raw["status"] != "ok", "error"]:
        assert err.replace("|", "\\|") in readme  # listed, pipes escaped
    measured = raw[raw["macs_measured"].notna()]
    matching = (measured["macs_measured"] == measured["macs_formula"]).sum()
    assert f"**{matching} of {len(measured)} equal the formula**" in readme
    assert matching == len(measured) - 1  # the fixture miscounts exactly one row
    assert ENV["cpu_model"] in readme.splitlines()[0]  # title names the CPU model
    assert "torch 2.3.0" in readme.splitlines()[0]


def test_summary_table_equals_medians_of_the_csv(res, raw):
    table = M.summary_table(res.df)
    ok = _with_ref_peak(_ok(raw))
    ok = ok[(ok["variant"] + "/" + ok["impl"]) != "full/naive"]
    ok = ok.assign(promise=[_promise(r) for r in ok.to_dict("records")])
    assert len(table) == 2 * 5 * 4  # passes × implementations × (3 regimes + all)
    for row in table.to_dict("records"):
        sel = ok[
            (ok["pass"] == row["pass"]) & (ok["variant"] + "/" + ok["impl"] == row["impl_label"])
        ]
        if row["regime"] != "all":
            lo, hi = {"small": (0, 16), "medium": (17, 63), "large": (64, 10**9)}[row["regime"]]
            sel = sel[(sel["h"] >= lo) & (sel["h"] <= hi)]
        assert row["n"] == len(sel)
        assert row["speedup"] == pytest.approx(sel["speedup_vs_full"].median())
        # efficiency against the variant's §3.4 promise, not against what was executed
        want = (sel["speedup_vs_full"] / sel["promise"]).median()
        assert row["efficiency"] == pytest.approx(want)
        assert row["promised"] == pytest.approx(sel["promise"].median())
        assert row["executed"] == pytest.approx(sel["theoretical_speedup"].median())
        assert row["memory"] == pytest.approx((sel["peak_mem_bytes"] / sel["ref_peak"]).median())


def test_regime_boundaries():
    assert list(M.regime_of([8, 16, 17, 63, 64, 256])) == [
        "small", "small", "medium", "medium", "large", "large",
    ]  # fmt: skip


def test_best_per_regime_counts_wins(res):
    table = M.best_per_regime(res.df)
    best = R.best_impl_table(res.df).assign(regime=lambda d: M.regime_of(d["h"]))
    assert len(table) == 2 * 3  # passes × regimes
    for row in table.to_dict("records"):
        sel = best[(best["pass"] == row["pass"]) & (best["regime"] == row["regime"])]
        wins = sel["best"].value_counts()
        assert row["shapes"] == len(sel)
        assert row["wins"] == wins.max() == wins[row["best"]]


# ---------------------------------------------------------------------- #
# the data behind each plot equal the CSV, and so do the drawn artists
# ---------------------------------------------------------------------- #
def test_speedup_points_are_the_ok_non_reference_rows(res, raw):
    pts = R.speedup_points(res.df)
    ok = _ok(raw)
    expected = ok[~((ok["variant"] == "full") & (ok["impl"] == "naive"))]
    assert len(pts) == len(expected) > 0
    got = sorted(zip(pts["theoretical_speedup"], pts["speedup_vs_full"], strict=True))
    want = sorted(zip(expected["theoretical_speedup"], expected["speedup_vs_full"], strict=True))
    np.testing.assert_allclose(got, want)
    fig = P.plot_speedup(res)
    assert _offsets(fig, "measured:") == len(expected)
    drawn = np.concatenate([c.get_offsets() for ax in fig.axes for c in ax.collections
                            if (c.get_gid() or "").startswith("measured:")])  # fmt: skip
    promised = [_promise(r) for r in expected.to_dict("records")]  # x: the variant's promise
    want = sorted(zip(promised, expected["speedup_vs_full"], strict=True))
    np.testing.assert_allclose(sorted(map(tuple, drawn)), want)


def test_best_impl_is_the_argmin_of_latency_among_user_choices(res, raw):
    ok = _ok(raw).assign(label=lambda d: d["variant"] + "/" + d["impl"])
    assert (ok["label"] == "dense/torch").any()  # often the fastest: not a choice users make
    ok = ok[ok["label"] != "dense/torch"]
    want = ok.loc[ok.groupby(KEYS)["latency_ms_median"].idxmin(), KEYS + ["label"]]
    got = R.best_impl_table(res.df)
    merged = want.merge(got, on=KEYS, how="outer", indicator=True)
    assert (merged["_merge"] == "both").all()
    assert (merged["label"] == merged["best"]).all()
    # where a GConv failed (the oom and the mismatch of _spoil), the best is chosen
    # among the others; the dense conv's failure does not count: it is no choice
    assert (merged["n_impls"] < len(IMPLS) - 1).sum() == 2


def test_best_impl_map_cells_show_the_best_and_its_speedup(res):
    table, anchor = R.best_map_table(res.df)
    assert anchor == {"layer": "group", "dtype": "float32", "batch": 2}
    fig = P.plot_best_impl(res)
    texts = {}
    for ax in fig.axes:
        for t in ax.texts:
            texts[(ax.get_title(), t.get_gid())] = t.get_text()
    assert len(texts) == len(table)
    for r in table.to_dict("records"):
        txt = texts[(f"{r['group']} {r['pass']}, H=W={r['h']}", f"cell:{r['channels']}:k{r['k']}")]
        assert txt == f"{P.abbrev(r['best'])}\n×{r['speedup_vs_full']:.2f}"


def test_tradeoff_points_are_ratios_to_the_full_gconv(res, raw):
    pts = R.tradeoff_points(res.df)
    ok = _ok(raw)
    ref = ok[(ok["variant"] == "full") & (ok["impl"] == "naive")]
    other = ok[~((ok["variant"] == "full") & (ok["impl"] == "naive"))]
    j = other.merge(ref, on=KEYS, suffixes=("", "_ref"))
    assert len(pts) == len(j)
    got = pts.sort_values(KEYS + ["impl_label"]).reset_index(drop=True)
    j = j.assign(impl_label=j["variant"] + "/" + j["impl"]).sort_values(KEYS + ["impl_label"])
    j = j.reset_index(drop=True)
    np.testing.assert_allclose(got["mac_reduction"], j["theoretical_speedup"])
    np.testing.assert_allclose(
        got["mem_increase_measured"], j["peak_mem_bytes"] / j["peak_mem_bytes_ref"]
    )
    out = 4 * j["batch"] * j["c_out"] * 4 * j["h"] * j["w"]  # p4: G = 4, float32
    formula = (j["intermediate_filter_bytes"] + j["intermediate_activation_bytes"] + out) / (
        j["intermediate_filter_bytes_ref"] + j["intermediate_activation_bytes_ref"] + out
    )
    choice = (j["variant"] != "dense").to_numpy()  # no formula for a plain conv: NaN
    np.testing.assert_allclose(got["mem_increase_formula"][choice], formula[choice])
    assert got["mem_increase_formula"][~choice].isna().all()
    fig = P.plot_tradeoff(res)
    drawn = pts[pts["variant"].isin(["g", "gc"])]  # dense: no MAC cut, no panel
    assert _offsets(fig, "measured:") == len(drawn)
    no_pass = [k for k in KEYS if k != "pass"]
    formula_pts = drawn[drawn["pass"] == "fwd"].drop_duplicates(no_pass + ["impl_label"])
    assert _offsets(fig, "formula:") == len(formula_pts)


@pytest.mark.parametrize("along", ["channels", "resolution"])
def test_scaling_lines_hold_everything_but_one_dimension(res, raw, along):
    t = R.scaling_table(res.df, along)
    a = t.attrs["anchor"]
    assert a["k"] == 3 and a["layer"] == "group"
    ok = _ok(raw)
    sel = ok[(ok["k"] == 3) & (ok["layer"] == "group") & (ok["group"] == a["group"])]
    if along == "channels":
        sel = sel[(sel["h"] == a["h"]) & (sel["c_in"] == sel["c_out"])]
        x = "c_in"
    else:
        c_in, c_out = (int(v) for v in a["channels"].split("→"))
        sel = sel[(sel["c_in"] == c_in) & (sel["c_out"] == c_out)]
        x = "h"
    assert len(t) == len(sel)
    fig = P.plot_scaling(res)
    col = 0 if along == "channels" else 1
    for row, p in enumerate(sorted(t["pass"].unique())):
        ax = fig.axes[row * 2 + col]
        for line in ax.get_lines():
            label = line.get_gid().removeprefix("line:")
            s = sel[(sel["pass"] == p) & (sel["variant"] + "/" + sel["impl"] == label)]
            s = s.sort_values(x)
            np.testing.assert_array_equal(line.get_xdata(), s[x])
            np.testing.assert_allclose(line.get_ydata(), s["latency_ms_median"])


def test_roofline_points_and_ceilings(res, raw):
    pts = R.roofline_points(res.df)
    ok = _ok(raw)
    assert len(pts) == len(ok)
    np.testing.assert_allclose(
        sorted(pts["intensity"]), sorted(ok["macs_formula"] / ok["bytes_moved_formula"])
    )
    fig = P.plot_roofline(res)
    assert _offsets(fig, "measured:") == len(ok)
    for ax in fig.axes:
        ys = [tuple(line.get_ydata()) for line in ax.get_lines()]
        assert (ENV["peak_gmacs_per_s"],) * 2 in ys  # the compute ceiling
        roof = next(line for line in ax.get_lines() if len(line.get_xdata()) > 2)
        x, y = np.asarray(roof.get_xdata()), np.asarray(roof.get_ydata())
        np.testing.assert_allclose(y, np.minimum(ENV["peak_bandwidth_gb_per_s"] * x, 60.0))


def test_roofline_without_ceilings_says_so(res):
    bare = R.Results(directory=res.directory, df=res.df, env={"torch": "2.3.0"})
    fig = P.plot_roofline(bare)
    assert all(any("no ceilings" in t.get_text() for t in ax.texts) for ax in fig.axes)
    assert all(len(ax.get_lines()) == 0 for ax in fig.axes)


def test_profile_bars_sum_the_profile(res, synth):
    prof = pd.read_csv(synth / "profile.csv")
    fig = P.plot_profile(res)
    shapes = prof.groupby(KEYS).ngroups
    assert len([ax for ax in fig.axes if ax.get_visible()]) == shapes
    widths = sum(p.get_width() for ax in fig.axes for p in ax.patches
                 if (p.get_gid() or "").startswith("bar:"))  # fmt: skip
    assert widths == pytest.approx(prof["time_ms"].sum())


# ---------------------------------------------------------------------- #
# robustness
# ---------------------------------------------------------------------- #
def test_missing_profile_and_env_are_skipped_and_said(tmp_path, monkeypatch):
    d = write_synthetic(tmp_path / "bare", env=None, profile=False, channels=(8,), sizes=(8,))
    some = {k: P.BUILDERS[k] for k in ("speedup", "profile")}  # drawing all takes seconds
    monkeypatch.setattr(P, "BUILDERS", some)
    written = R.make_report(d)
    assert not (d / "plots" / "profile.png").exists()
    assert d / "plots" / "speedup.png" in written
    readme = (d / "README.md").read_text()
    assert "_Not drawn: profile.csv is absent" in readme
    assert "env.json is absent" in readme
    assert not (tmp_path / "README.md").exists()  # not under results/: no index


def test_no_ok_rows_gives_a_readme_and_no_plots(tmp_path):
    d = write_synthetic(tmp_path / "broken", channels=(8,), sizes=(8,), profile=False)
    df = pd.read_csv(d / "results.csv").assign(status="error", error="RuntimeError: x")
    df.to_csv(d / "results.csv", index=False)
    (d / "plots").mkdir()
    (d / "plots" / "speedup.png").write_bytes(b"stale")
    written = R.make_report(d)
    assert written == [d / "README.md"]
    assert not (d / "plots" / "speedup.png").exists()  # a stale plot is removed
    assert (d / "README.md").read_text().count("_Not drawn:") == len(P.BUILDERS)


def _error_of(tmp_path, setup) -> str:
    d = tmp_path / "bad"
    setup(d)
    with pytest.raises(R.ReportError) as e:
        R.make_report(d)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _drop_columns(d, cols):
    write_synthetic(d, channels=(8,), sizes=(8,))
    pd.read_csv(d / "results.csv").drop(columns=cols).to_csv(d / "results.csv", index=False)


def test_missing_columns_are_named(tmp_path):
    msg = _error_of(tmp_path, lambda d: _drop_columns(d, ["latency_ms_median", "peak_mem_bytes"]))
    assert "lacks required columns: latency_ms_median, peak_mem_bytes" in msg


@pytest.mark.parametrize(
    "case, setup, words",
    [
        ("zero bytes", lambda d: (d.mkdir(), (d / "results.csv").write_text("")), "empty"),
        ("header only", lambda d: (d.mkdir(), (d / "results.csv").write_text(
            ",".join(R.REQUIRED_COLUMNS) + "\n")), "no rows"),
        ("no csv", lambda d: d.mkdir(), "no results file"),
        ("no dir", lambda d: None, "no such results folder"),
        ("bad env", lambda d: (write_synthetic(d, channels=(8,), sizes=(8,)),
                               (d / "env.json").write_text("{oops")), "not valid JSON"),
    ],
)  # fmt: skip
def test_unusable_input_is_one_clear_line(tmp_path, case, setup, words):
    assert words in _error_of(tmp_path, setup)


def test_cli_exits_2_with_one_line_not_a_traceback(tmp_path):
    _drop_columns(tmp_path / "bad", ["macs_formula"])
    proc = subprocess.run([sys.executable, "-m", "bench", "report", str(tmp_path / "bad")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"bench report: error: {tmp_path / 'bad' / 'results.csv'} lacks required columns: "
        "macs_formula"
    ]


def test_results_index_lists_each_device_folder(tmp_path):
    root = tmp_path / "results"
    write_synthetic(root / "cpu-a", channels=(8,), sizes=(8,), profile=False)
    write_synthetic(root / "cpu-b", env=None, channels=(8,), sizes=(8, 32), profile=False)
    (root / "notes").mkdir()  # no results.csv: not a device folder
    path = R.write_results_index(root)
    lines = [x for x in path.read_text().splitlines() if x.startswith("| [")]
    n_a = len(pd.read_csv(root / "cpu-a" / "results.csv"))
    n_b = len(pd.read_csv(root / "cpu-b" / "results.csv"))
    assert lines[0] == f"| [cpu-a](cpu-a/) | Synthetic CPU 9000 | 2024-05-01 | synthetic | {n_a} |"
    assert lines[1].startswith("| [cpu-b](cpu-b/) | ? | ") and lines[1].endswith(f"| — | {n_b} |")
    assert len(lines) == 2


def test_roofline_keeps_one_dtype_and_its_ceiling(res):
    mixed = pd.concat([res.df, res.df.assign(dtype="float16")], ignore_index=True)
    assert R.roofline_dtype(mixed) == "float32"
    assert set(R.roofline_points(mixed)["dtype"]) == {"float32"}
    assert len(R.roofline_points(mixed, "float16")) == len(R.roofline_points(mixed))
    env = {"peak_gmacs_per_s": 50.0, "peak_gmacs_per_s_tf32": 400.0,
           "peak_gmacs_per_s_float16": 900.0, "peak_bandwidth_gb_per_s": 3000.0}  # fmt: skip
    assert R.ceilings(env, "float16") == (900.0, 3000.0)
    assert R.ceilings(env, "float32") == (50.0, 3000.0)
    assert R.ceilings(env | {"allow_tf32_cudnn": True}, "float32") == (400.0, 3000.0)
    assert R.ceilings({"peak_gmacs_per_s": 50.0}, "bfloat16") == (50.0, None)
