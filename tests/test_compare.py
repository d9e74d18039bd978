"""Tests of ``python -m bench compare`` on synthetic pytest-benchmark JSON.

Latency samples are drawn from known lognormal distributions (seeded), one
set of true medians per (shape, variant, impl), so a change is injected where
the test says and nowhere else.
"""

from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import IMPLS as REGISTERED

from bench.judge import compare as C
from bench.judge import render as R
from bench.judge import runs
from bench.judge.stats import Summary, summarize

ROOT = Path(__file__).resolve().parents[1]

SHAPES = [
    dict(c_in=8, c_out=8, k=3, h=16, w=16, batch=4),
    dict(c_in=16, c_out=16, k=3, h=32, w=32, batch=4),
    dict(c_in=16, c_out=32, k=5, h=32, w=32, batch=2),
    dict(c_in=32, c_out=32, k=3, h=64, w=64, batch=1),
]
IMPLS = list(REGISTERED)  # synthetic runs cover every registered implementation
IMPL_COST = {"full": 1.0, "g": 0.7, "gc": 0.4}
G = 4  # p4


def bench_params(shape: dict, variant: str, impl: str) -> dict:
    return dict(group="p4", layer="group", variant=variant, impl=impl, **shape,
                **{"pass": "fwd"}, dtype="float32", device="cpu")  # fmt: skip


def all_params() -> list[dict]:
    return [bench_params(s, v, i) for s in SHAPES for v, i in IMPLS]


def true_median(p: dict) -> float:
    size = p["c_in"] * p["c_out"] * p["k"] ** 2 * p["h"] * p["w"] * p["batch"]
    speed = 1.0 if p["impl"] == "naive" else 0.8
    return 2e-5 + size * 2e-11 * IMPL_COST[p["variant"]] * speed


def macs(p: dict) -> int:
    return p["c_in"] * G * p["k"] ** 2 * p["h"] * p["w"] * p["c_out"] * G


def pid(p: dict) -> str:
    return "-".join(str(p[k]) for k in C.PARAM_ORDER)


def stats_of(x: np.ndarray) -> dict:
    q1, med, q3 = np.percentile(x, [25, 50, 75])
    iqr = q3 - q1
    mean, sd = float(x.mean()), float(x.std(ddof=1))
    return {
        "min": float(x.min()), "max": float(x.max()), "mean": mean, "stddev": sd,
        "rounds": int(x.size), "median": float(med), "iqr": float(iqr), "q1": float(q1),
        "q3": float(q3), "iqr_outliers": 0, "stddev_outliers": 0, "outliers": "0;0",
        "ld15iqr": float(x.min()), "hd15iqr": float(x.max()), "ops": 1.0 / mean,
        "total": float(x.sum()), "iterations": 1, "data": [float(v) for v in x],
    }  # fmt: skip


def make_doc(
    seed: int,
    *,
    factors: dict | None = None,
    uniform: float = 1.0,
    sigma: float = 0.03,
    drift: float = 0.01,
    n: int = 40,
    params: list[dict] | None = None,
) -> dict:
    """A pytest-benchmark document; ``factors`` maps pid -> latency multiplier."""
    rng = np.random.default_rng(seed)
    run_factor = uniform * float(np.exp(rng.normal(0.0, drift)))
    benches = []
    for p in params or all_params():
        mult = run_factor * (factors or {}).get(pid(p), 1.0)
        x = true_median(p) * mult * rng.lognormal(0.0, sigma, n)
        name = f"test_layer[{pid(p)}]"
        benches.append({
            "group": f"{p['group']}-{p['layer']}", "name": name,
            "fullname": f"bench/test_suite.py::{name}", "params": dict(p), "param": pid(p),
            "extra_info": {"macs_measured": macs(p), "macs_formula": macs(p),
                           "params_measured": 1000, "params_formula": 1000,
                           "peak_mem_bytes": int(rng.integers(1, 10**6))},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": 5,
                        "max_time": 1.0, "min_time": 5e-06, "warmup": True},
            "stats": stats_of(x),
        })  # fmt: skip
    return {
        "machine_info": {
            "node": f"host-{seed}", "processor": "x86_64", "machine": "x86_64",
            "python_version": "3.11.7", "system": "Linux",
            "cpu": {"brand_raw": "Synthetic CPU @ 3.0GHz", "count": 2},
            "sepgconv_env": {"torch": "2.13.0", "device": "cpu", "device_name": "cpu",
                             "threads": 2, "cuda": None},
        },
        "commit_info": {"id": f"{seed:040x}", "dirty": False, "branch": "main"},
        "benchmarks": benches,
        "datetime": "2026-01-01T00:00:00+00:00",
        "version": "5.1.0",
    }  # fmt: skip


def run_compare(base: dict, new: dict, **kw) -> C.Report:
    return C.compare_runs(runs.parse_run(base, "base"), runs.parse_run(new, "new"), **kw)


def write(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def cli(*args) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess (costs a second or two: scipy's import)."""
    return subprocess.run(
        [sys.executable, "-m", "bench", "compare", *map(str, args)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture
def inproc(capsys):
    """The same CLI (``bench.cli.main``) in this process; same result type as ``cli``."""
    from bench.cli import main

    def call(*args) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            rc = main(["compare", *map(str, args)])
        except SystemExit as e:  # argparse
            rc = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, rc, out, err)

    return call


TARGET = bench_params(SHAPES[1], "g", "rearranged")


# ------------------------------------------------------------ regressions


def test_injected_30pct_slowdown_is_flagged_and_named(tmp_path, inproc):
    base = write(tmp_path, "base.json", make_doc(1))
    new = write(tmp_path, "new.json", make_doc(2, factors={pid(TARGET): 1.3}))
    res = cli(base, new)
    assert res.returncode == 1, res.stdout + res.stderr
    label = "variant=g impl=rearranged c_in=16 c_out=16 k=3 h=32 w=32 batch=4"
    flagged = [line for line in res.stdout.splitlines() if "regression" in line.split()]
    assert len(flagged) == 1 and label in flagged[0] and "both" in flagged[0]
    assert "FAIL" in res.stdout

    doc = json.loads(inproc(base, new, "--format", "json").stdout)
    regs = [p for p in doc["pairs"] if p["verdict"] == "regression"]
    assert [p["params"] for p in regs] == [TARGET]
    assert regs[0]["rule"] == "both" and regs[0]["absolute"]["change"] > 0.2
    assert regs[0]["absolute"]["p_value"] < 0.01
    assert doc["exit_code"] == 1 and doc["summary"]["regression"] == 1
    md = inproc(base, new, "--format", "md")
    assert md.returncode == 1 and f"`{label}" in md.stdout


def test_slowdown_below_threshold_or_not_significant_passes():
    base = make_doc(1)
    # 5 % slower: significant with 40 samples, but under the 10 % threshold
    assert run_compare(base, make_doc(2, factors={pid(TARGET): 1.05})).exit_code == 0
    # ...and flagged once the threshold is lowered
    r = run_compare(base, make_doc(2, factors={pid(TARGET): 1.05}), threshold=0.02)
    assert [p.params for p in r.pairs if p.verdict == "regression"] == [TARGET]
    # 30 % slower but only 4 samples a side: p < 0.01 is impossible; inconclusive, and said so
    r = run_compare(make_doc(1, n=4), make_doc(2, n=4, factors={pid(TARGET): 1.3}))
    assert r.exit_code == 0
    (target,) = [p for p in r.pairs if p.params == TARGET]
    assert target.verdict == "noisy" and target.absolute.p_value >= 0.01
    assert any("too few samples (4 vs 4)" in n for n in r.notes)
    # 5 against 5 can reach it (2 / C(10, 5) = 0.0079)
    r = run_compare(make_doc(1, n=5), make_doc(2, n=5, factors={pid(TARGET): 1.3}))
    assert [p.params for p in r.pairs if p.verdict == "regression"] == [TARGET]
    assert not any("too few samples" in n for n in r.notes)


def test_improvement_is_reported_not_failed():
    r = run_compare(make_doc(1), make_doc(2, factors={pid(TARGET): 0.7}))
    assert r.exit_code == 0
    assert [p.params for p in r.pairs if p.verdict == "improvement"] == [TARGET]


def noise_run(seed: int, drift: float) -> runs.Run:
    """Fast path for many seeds: a ``Run`` built from arrays, without JSON."""
    rng = np.random.default_rng(seed)
    params = all_params()
    medians = np.array([true_median(p) for p in params])[:, None]
    x = medians * np.exp(rng.normal(0.0, drift)) * rng.lognormal(0.0, 0.03, (len(params), 40))
    q1, med, q3 = np.percentile(x, [25, 50, 75], axis=1)
    run = runs.Run(f"seed-{seed}", {}, {}, {})
    for i, p in enumerate(params):
        key = runs.params_key(p)
        summary = Summary(float(med[i]), float((q3[i] - q1[i]) / med[i]), x[i])
        run.benches[key] = runs.Bench(key, p, pid(p), pid(p), {}, summary)
    return run


def test_pure_noise_false_positive_rate():
    """200 seeds of base vs. new drawn from the same distributions (20 benchmarks each)."""
    seeds = 200
    for b in noise_run(0, 0.01).benches.values():  # the fast path summarises as parsing does
        ref = summarize(b.summary.values, 1.0)
        assert (b.summary.median, b.summary.rel_iqr) == pytest.approx((ref.median, ref.rel_iqr))
    failed_runs = flagged = sig_only = pairs = 0
    for seed in range(seeds):
        # default settings, with a 1 % run-to-run drift of the whole machine
        r = C.compare_runs(noise_run(2 * seed, 0.01), noise_run(2 * seed + 1, 0.01))
        failed_runs += r.exit_code
        flagged += r.count("regression")
        pairs += len(r.pairs)
        # no effect threshold and no drift: the significance test alone decides, and
        # its rate of false "regression" verdicts must sit near alpha / 2 (two-sided)
        r0 = C.compare_runs(
            noise_run(2 * seed, 0.0), noise_run(2 * seed + 1, 0.0), threshold=0.0,
            rules=("absolute",),
        )  # fmt: skip
        sig_only += r0.count("regression")
    run_fp, pair_fp, sig_fp = failed_runs / seeds, flagged / pairs, sig_only / pairs
    print(f"false positives: runs {run_fp:.2%}, pairs {pair_fp:.2%}, test alone {sig_fp:.2%}")
    assert run_fp <= 0.01
    assert pair_fp <= 0.01
    # 4000 pairs at alpha / 2 = 0.5 %: 20 +- 4.5 expected. Bounded both ways, so a test
    # that never fires, or fires too often, fails here
    assert 0.001 <= sig_fp <= 0.01


def test_uniform_slowdown_passes_ratio_rule_but_not_absolute(tmp_path, inproc):
    base = write(tmp_path, "base.json", make_doc(1))
    new = write(tmp_path, "new.json", make_doc(2, uniform=1.2))
    res = cli(base, new, "--rules", "ratio,deterministic")
    assert res.returncode == 0, res.stdout
    res = inproc(base, new, "--rules", "absolute")
    assert res.returncode == 1
    r = run_compare(make_doc(1), make_doc(2, uniform=1.2))
    assert r.count("regression") == len(r.pairs)
    assert {p.rule for p in r.pairs} == {"absolute"}


def test_ratio_rule_alone_flags_a_single_slowdown():
    r = run_compare(make_doc(1), make_doc(2, uniform=1.2, factors={pid(TARGET): 1.3}),
                    rules=("ratio",))  # fmt: skip
    assert r.exit_code == 1
    assert [(p.params, p.rule) for p in r.pairs if p.verdict == "regression"] == [(TARGET, "ratio")]
    ref = bench_params(SHAPES[1], "full", "naive")
    (ref_pair,) = [p for p in r.pairs if p.params == ref]
    assert ref_pair.verdict == "n/a" and "reference" in ref_pair.note


def test_reference_impl_option():
    # with g/naive as the reference, slowing g/naive down looks like the others improving
    factors = {pid(bench_params(s, "g", "naive")): 1.5 for s in SHAPES}
    r = run_compare(make_doc(1), make_doc(2, factors=factors), rules=("ratio",),
                    reference=("g", "naive"))  # fmt: skip
    assert r.exit_code == 0
    assert r.count("improvement") == len(SHAPES) * (len(IMPLS) - 1)


def test_median_only_without_raw_samples(tmp_path, inproc):
    base, new = make_doc(1), make_doc(2, factors={pid(TARGET): 1.3})
    for doc in (base, new):
        for b in doc["benchmarks"]:
            del b["stats"]["data"]
    res = inproc(write(tmp_path, "b.json", base), write(tmp_path, "n.json", new))
    assert res.returncode == 1
    assert "no raw samples" in res.stdout and "median-only" in res.stdout
    r = run_compare(base, new)
    (reg,) = [p for p in r.pairs if p.verdict == "regression"]
    assert reg.params == TARGET and reg.method == "median-only" and reg.absolute.p_value is None


def test_noisy_pairs():
    noisy = make_doc(2, sigma=0.15)
    r = run_compare(make_doc(1), noisy)
    assert r.count("noisy") > 0 and r.exit_code == 0
    # a slowdown far beyond the noise band is still a regression
    r = run_compare(make_doc(1), make_doc(2, sigma=0.15, factors={pid(TARGET): 2.0}))
    assert [p.params for p in r.pairs if p.verdict == "regression"] == [TARGET]


# ---------------------------------------------------- deterministic metrics


def test_changed_mac_count_is_a_deterministic_change(tmp_path, inproc):
    new = make_doc(2)
    (b,) = [b for b in new["benchmarks"] if b["params"] == TARGET]
    b["extra_info"]["macs_measured"] += 1
    res = inproc(write(tmp_path, "b.json", make_doc(1)), write(tmp_path, "n.json", new))
    assert res.returncode == 1
    assert "DETERMINISTIC CHANGES" in res.stdout and "macs_measured" in res.stdout
    r = run_compare(make_doc(1), new)
    assert [(p.params, c[0]) for p, c in r.deterministic_changes] == [(TARGET, "macs_measured")]
    assert r.count("regression") == 0
    # a metric that only one side has is not compared, and the report says so
    del b["extra_info"]["macs_measured"]
    r = run_compare(make_doc(1), new)
    assert r.exit_code == 0 and r.notes == [
        "macs_measured is in base only for 1 benchmark(s): not compared"
    ]
    b["extra_info"]["macs_measured"] = None  # as the runner writes a count it could not take
    r = run_compare(make_doc(1), new)
    assert r.exit_code == 0 and r.notes == [
        "macs_measured is in base only for 1 benchmark(s): not compared"
    ]
    b["extra_info"]["macs_measured"] = macs(TARGET) + 1
    # switched off, it does not count
    assert run_compare(make_doc(1), new, rules=("absolute", "ratio")).exit_code == 0


def test_peak_memory_is_deterministic_on_cuda_only():
    # make_doc draws peak_mem_bytes at random: on the CPU that is no failure
    assert run_compare(make_doc(1), make_doc(2)).exit_code == 0
    cuda = [dict(p, device="cuda") for p in all_params()]
    base, new = make_doc(1, params=cuda), make_doc(1, params=cuda)
    assert run_compare(base, new).exit_code == 0  # same seed: same bytes
    new["benchmarks"][0]["extra_info"]["peak_mem_bytes"] += 512
    r = run_compare(base, new)
    assert r.exit_code == 1
    assert [c[0] for _, c in r.deterministic_changes] == ["peak_mem_bytes"]


# ------------------------------------------------------- unusable input


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "malformed", "no-benchmarks", "empty-list", "no-match", "not-object"],
)
def test_unusable_input_exits_2_with_one_line(tmp_path, inproc, case):
    good = write(tmp_path, "good.json", make_doc(1))
    other = {
        "missing": tmp_path / "nope.json",
        "empty": write(tmp_path, "empty.json", ""),
        "malformed": write(tmp_path, "bad.json", '{"benchmarks": [{"name": '),
        "no-benchmarks": write(tmp_path, "nob.json", {"machine_info": {}, "version": "5"}),
        "empty-list": write(tmp_path, "el.json", {"benchmarks": []}),
        "no-match": write(tmp_path, "nm.json", make_doc(1, params=[dict(TARGET, h=999)])),
        "not-object": write(tmp_path, "list.json", [1, 2, 3]),
    }[case]
    # the real process once (nothing of scipy is imported on this path), then in-process
    for res in (cli(good, other), inproc(other, good)):
        assert res.returncode == 2, (case, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench compare: error:"), res.stderr
        assert res.stdout == ""


def test_mangled_documents_never_crash():
    """Random damage to a valid document: it compares, or it is an InputError."""
    rng = random.Random(0)
    junk = [None, "x", -1, 0, 1.5, [], {}, [None], {"a": 1}, float("nan"), True]
    base = runs.parse_run(make_doc(1, params=all_params()[:5]), "base")
    template = make_doc(2, params=all_params()[:5])
    outcomes = set()
    for _ in range(300):
        doc = copy.deepcopy(template)
        for _ in range(rng.randint(1, 3)):
            node, path = doc, []
            while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
                k = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
                path.append((node, k))
                node = node[k]
            if path:
                parent, k = path[-1]
                if isinstance(parent, dict) and rng.random() < 0.3:
                    del parent[k]
                else:
                    parent[k] = rng.choice(junk)
        try:
            r = C.compare_runs(base, runs.parse_run(json.loads(json.dumps(doc)), "new"))
            R.render_json(r), R.render_md(r), R.render_table(r)
            outcomes.add(r.exit_code)
        except runs.InputError:
            outcomes.add(2)
    assert outcomes == {0, 1, 2}


# ------------------------------------------------ warnings and listings


def test_environment_mismatch_is_a_warning_only(tmp_path, inproc):
    new = make_doc(2)
    new["machine_info"]["cpu"]["brand_raw"] = "Other CPU"
    new["machine_info"]["sepgconv_env"]["torch"] = "2.14.0"
    res = inproc(write(tmp_path, "b.json", make_doc(1)), write(tmp_path, "n.json", new))
    assert res.returncode == 0, res.stdout
    out = res.stdout
    assert "WARNING environment differs: cpu.brand_raw" in out and "Other CPU" in out
    assert "sepgconv_env.torch: '2.13.0' -> '2.14.0'" in out
    assert out.index("WARNING") < out.index("benchmark")  # up front
    # and it does not hide a regression either
    new2 = make_doc(2, factors={pid(TARGET): 1.3})
    new2["machine_info"]["cpu"]["brand_raw"] = "Other CPU"
    r = run_compare(make_doc(1), new2)
    assert r.exit_code == 1 and len(r.env_warnings) == 1
    # same environment: no warning
    assert run_compare(make_doc(1), make_doc(2)).env_warnings == []


def test_benchmarks_missing_on_one_side_are_listed(tmp_path, inproc):
    params = all_params()
    gone = bench_params(SHAPES[0], "gc", "rearranged")
    added = dict(TARGET, batch=64)
    base = make_doc(1, params=params)
    new = make_doc(2, params=[p for p in params if p != gone] + [added])
    res = inproc(
        write(tmp_path, "b.json", base), write(tmp_path, "n.json", new), "--format", "json"
    )
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["only_in_base"] == [
        "variant=gc impl=rearranged c_in=8 c_out=8 k=3 h=16 w=16 batch=4"
    ]
    assert doc["only_in_new"] == [
        "variant=g impl=rearranged c_in=16 c_out=16 k=3 h=32 w=32 batch=64"
    ]
    assert len(doc["pairs"]) == len(params) - 1
    table = inproc(write(tmp_path, "b.json", base), write(tmp_path, "n.json", new)).stdout
    assert "only in base (1):" in table and "only in new (1):" in table


def test_matching_is_by_params_not_by_name_or_order():
    base, new = make_doc(1), make_doc(2)
    new["benchmarks"].reverse()
    for b in new["benchmarks"]:
        b["name"] = b["fullname"] = "renamed_" + b["name"]
        b["params"] = dict(reversed(list(b["params"].items())))
    r = run_compare(base, new)
    assert len(r.pairs) == len(all_params()) and r.exit_code == 0


def test_fullname_matching_without_params():
    base, new = make_doc(1), make_doc(2, factors={pid(TARGET): 1.3})
    for doc in (base, new):
        for b in doc["benchmarks"]:
            b["params"] = None
    r = run_compare(base, new)
    assert len(r.pairs) == len(all_params())
    (reg,) = [p for p in r.pairs if p.verdict == "regression"]
    assert reg.label == f"bench/test_suite.py::test_layer[{pid(TARGET)}]" and reg.rule == "absolute"


def test_folder_argument_and_options(tmp_path, inproc):
    (tmp_path / "run").mkdir()
    write(tmp_path / "run", "benchmark.json", make_doc(2, factors={pid(TARGET): 1.3}))
    base = write(tmp_path, "b.json", make_doc(1))
    assert inproc(base, tmp_path / "run", "--threshold", "50%").returncode == 0
    assert inproc(base, tmp_path / "run", "--threshold", "0.2").returncode == 1
    for bad in (["--threshold", "10"], ["--rules", "speed"], ["--reference-impl", "full"]):
        res = inproc(base, tmp_path / "run", *bad)
        assert res.returncode == 2 and "Traceback" not in res.stderr


def test_reads_real_pytest_benchmark_output(tmp_path):
    """What pytest-benchmark itself writes with --benchmark-json/--benchmark-save-data."""
    pytest.importorskip("pytest_benchmark")
    (tmp_path / "test_tiny.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('n', [100, 2000])\n"
        "def test_sum(benchmark, n):\n"
        "    benchmark.extra_info['macs_formula'] = n\n"
        "    benchmark(sum, range(n))\n"
    )
    out = tmp_path / "bench.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "-p", "pytest_benchmark.plugin", str(tmp_path),
         "--benchmark-json", str(out), "--benchmark-save-data", "--benchmark-min-rounds=20",
         "--benchmark-max-time=0.05", "--benchmark-warmup=off", "-o", "addopts="],
        cwd=tmp_path, capture_output=True, timeout=120, check=True,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
    )  # fmt: skip
    run = runs.load_run(out)
    assert len(run.benches) == 2 and all(b.summary.n >= 20 for b in run.benches.values())
    assert {b.params["n"] for b in run.benches.values()} == {100, 2000}
    r = C.compare_runs(run, run)
    assert r.exit_code == 0 and r.count("unchanged") + r.count("noisy") == 2


def test_same_params_twice_are_told_apart_by_fullname():
    base, new = make_doc(1), make_doc(2, factors={pid(TARGET): 1.3})
    for doc in (base, new):  # a second test function with the same parametrization
        twin = copy.deepcopy(next(b for b in doc["benchmarks"] if b["params"] == TARGET))
        twin["fullname"] = twin["fullname"].replace("test_layer", "test_other")
        twin["stats"] = stats_of(np.asarray(twin["stats"]["data"]) / 1.3 ** (doc is new))
        doc["benchmarks"].append(twin)
    r = run_compare(base, new)
    assert len(r.pairs) == len(all_params()) + 1
    assert any("told apart by fullname" in n for n in r.notes)
    (reg,) = [p for p in r.pairs if p.verdict == "regression"]
    assert "test_layer" in reg.label and "test_other" not in reg.label


def test_missing_reference_is_explained(inproc, tmp_path):
    ref = bench_params(SHAPES[2], "full", "naive")
    new = make_doc(2, params=[p for p in all_params() if p != ref])
    res = inproc(write(tmp_path, "b.json", make_doc(1)), write(tmp_path, "n.json", new))
    assert res.returncode == 0
    assert "4 benchmark(s) not judged by the ratio rule: no reference in new" in res.stdout


def test_without_scipy_decides_on_medians(monkeypatch):
    import bench.judge.stats

    monkeypatch.setattr(bench.judge.stats, "_mannwhitneyu", False)  # as if the import failed
    r = run_compare(make_doc(1), make_doc(2, factors={pid(TARGET): 1.3}))
    assert any("scipy is not installed" in n for n in r.notes)
    assert {p.method for p in r.pairs} == {"median-only"}
    assert [p.params for p in r.pairs if p.verdict == "regression"] == [TARGET]
