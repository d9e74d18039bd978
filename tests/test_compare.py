"""Tests of ``python -m bench compare`` on synthetic runs with known truth.

Runs come from :mod:`bench.judge.synthetic` (seeded): interleaved rounds with a
load common to the implementations of a shape, per-sample noise, rare spikes,
a run-to-run shift per benchmark and a machine drift per run. A change is
injected where a test says and nowhere else. The statistics themselves are
tested in ``test_judge_stats.py``; here the verdicts, exit codes and formats.
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

from bench.judge import compare as C
from bench.judge import render as R
from bench.judge import runs
from bench.judge import synthetic as S
from bench.judge.runs import params_key

ROOT = Path(__file__).resolve().parents[1]
PARAMS = S.grid(channels=(8, 16), k_h=S.K_H[:4])  # 32 shapes per pass, 384 benchmarks
WORLD = S.world(PARAMS, 0)
NOISE = S.Noise()
TARGET = next(p for p in PARAMS if (p["variant"], p["impl"], p["c_in"], p["k"], p["pass"])
              == ("g", "rearranged", 16, 3, "fwd") and p["group"] == "p4" and p["h"] == 16
              and p["layer"] == "group")  # fmt: skip
TARGET_LABEL = "group=p4 layer=group variant=g impl=rearranged c_in=16 c_out=16 k=3 h=16 w=16"


def impl_is(variant: str, impl: str):
    return lambda p: 1.25 if (p["variant"], p["impl"]) == (variant, impl) else 1.0


def one(params: dict, factor: float):
    return {params_key(params): factor}


def macs(p: dict) -> int:
    g = 4 if p["group"] == "p4" else 8
    return p["c_in"] * g * p["k"] ** 2 * p["h"] * p["w"] * p["c_out"] * g


def make_run(seed: int, factors=None, noise=NOISE, params=PARAMS) -> runs.Run:
    return S.synthetic_run(params, WORLD, seed, noise, factors)


def make_doc(seed: int, factors=None, noise=NOISE, params=PARAMS, rounds=True) -> dict:
    """A pytest-benchmark document with deterministic metrics in extra_info."""
    doc = S.run_doc(make_run(seed, factors, noise, params))
    for b in doc["benchmarks"]:
        p = b["params"]
        b["extra_info"] = {"macs_measured": macs(p), "macs_formula": macs(p),
                           "params_measured": 1000, "params_formula": 1000,
                           "peak_mem_bytes": 1000 + seed}  # fmt: skip
        if not rounds:
            del b["stats"]["data_rounds"]
    return doc


def compare(base: dict, new: dict, **kw) -> C.Report:
    return C.compare_runs(runs.parse_run(base, "base"), runs.parse_run(new, "new"), **kw)


def regressions(r: C.Report) -> list:
    return [p.params for p in r.pairs if p.verdict == "regression"]


def impl_regressions(r: C.Report) -> list:
    return [i.group[:2] for i in r.implementations if i.verdict == "regression"]


def write(tmp_path: Path, name: str, doc) -> Path:
    p = tmp_path / name
    p.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return p


def cli(*args) -> subprocess.CompletedProcess:
    """The real CLI in a subprocess."""
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


# ------------------------------------------------------------ regressions


def test_one_slower_benchmark_is_flagged_and_named(tmp_path, inproc):
    base = write(tmp_path, "base.json", make_doc(1))
    new = write(tmp_path, "new.json", make_doc(2, one(TARGET, 1.3)))
    res = cli(base, new)
    assert res.returncode == 1, res.stdout + res.stderr
    flagged = [line for line in res.stdout.splitlines() if " regression " in line]
    assert len(flagged) == 1 and TARGET_LABEL in flagged[0] and "both" in flagged[0]
    assert res.stdout.rstrip().splitlines()[-1].startswith("FAIL")

    doc = json.loads(inproc(base, new, "--format", "json").stdout)
    regs = [p for p in doc["pairs"] if p["verdict"] == "regression"]
    assert [p["params"] for p in regs] == [TARGET]
    ratio = regs[0]["ratio"]
    assert ratio["change"] == pytest.approx(0.3, abs=0.08) and ratio["p_adj"] < 0.01
    assert ratio["method"] == "paired" and ratio["ci95"][0] > 0.1
    assert doc["exit_code"] == 1 and doc["summary"]["regression"] == 1
    assert doc["implementation_summary"]["regression"] == 0  # one shape does not move g/r
    md = inproc(base, new, "--format", "md")
    assert md.returncode == 1 and f"`{TARGET_LABEL}" in md.stdout


def test_one_implementation_slower_everywhere_is_caught_although_no_shape_alone_is():
    """25 % on every shape of g/rearranged, with each shape too noisy to show it alone."""
    noisy = S.Noise(sigma=0.35, round_sigma=0.1, tau=0.02)
    few = [p for p in PARAMS if p["pass"] == "fwd"]
    r = compare(make_doc(1, noise=noisy, params=few),
                make_doc(2, impl_is("g", "rearranged"), noise=noisy, params=few),
                rules=("ratio", "deterministic"))  # fmt: skip
    assert impl_regressions(r) == [("g/rearranged", "fwd")]
    assert r.exit_code == 1
    (g,) = [i for i in r.implementations if i.verdict == "regression"]
    assert g.ratio.change == pytest.approx(0.25, abs=0.08) and g.shapes == {"ratio": 32}
    assert g.ratio.method == "bootstrap-shapes" and g.ratio.ci[0] > 0.1
    # ...while no single shape of it is: the per-benchmark tests are too weak here
    assert not regressions(r)


def test_only_the_slowed_implementation_is_flagged():
    r = compare(make_doc(1), make_doc(2, impl_is("gc", "naive")), rules=("ratio", "deterministic"))
    assert sorted(set(impl_regressions(r))) == [("gc/naive", "fwd"), ("gc/naive", "fwdbwd")]
    assert {(p["variant"], p["impl"]) for p in regressions(r)} <= {("gc", "naive")}
    assert not [i for i in r.implementations if i.verdict == "improvement"]


def test_a_slower_reference_is_a_regression_of_the_reference():
    """The reference's own ratio is to the anchor (dense/torch), so it cannot hide."""
    r = compare(make_doc(1), make_doc(2, impl_is("full", "naive")), rules=("ratio",))
    assert sorted(set(impl_regressions(r))) == [("full/naive", "fwd"), ("full/naive", "fwdbwd")]
    ref = [i for i in r.implementations if i.group[0] == "full/naive"]
    assert {i.versus for i in ref} == {"dense/torch"}
    improved = {i.group[0] for i in r.implementations if i.verdict == "improvement"}
    assert improved == {"g/naive", "g/rearranged", "gc/naive", "gc/rearranged", "dense/torch"}
    # without an anchor the reference has no ratio of its own: nothing is a regression
    r = compare(make_doc(1), make_doc(2, impl_is("full", "naive")), rules=("ratio",), anchor=None)
    assert r.exit_code == 0 and r.count_impl("improvement") == 10


def test_uniformly_slower_machine_passes_ratio_rule_but_not_absolute(tmp_path, inproc):
    base = write(tmp_path, "base.json", make_doc(1))
    new = write(tmp_path, "new.json", make_doc(2, lambda p: 1.2))
    assert inproc(base, new, "--rules", "ratio,deterministic").returncode == 0
    res = inproc(base, new, "--rules", "absolute")
    assert res.returncode == 1
    r = compare(make_doc(1), make_doc(2, lambda p: 1.2))
    assert r.count_impl("regression") == len(r.implementations)
    assert {p.rule for p in r.pairs if p.verdict == "regression"} == {"absolute"}


def test_below_threshold_passes_and_improvements_do_not_fail():
    base = make_doc(1)
    assert compare(base, make_doc(2, one(TARGET, 1.07))).exit_code == 0
    r = compare(base, make_doc(2, one(TARGET, 0.7)))
    assert r.exit_code == 0 and [p.params for p in r.pairs if p.verdict == "improvement"] == [
        TARGET
    ]


def test_too_few_samples_are_shown_not_tested():
    noise = S.Noise()
    base = make_doc(1, noise=noise)
    new = make_doc(2, one(TARGET, 1.5), noise=noise)
    for doc in (base, new):
        (b,) = [b for b in doc["benchmarks"] if b["params"] == TARGET]
        b["stats"]["data"] = b["stats"]["data"][:4]
        b["stats"]["data_rounds"] = b["stats"]["data_rounds"][:4]
    r = compare(base, new)
    (t,) = [p for p in r.pairs if p.params == TARGET]
    assert t.verdict == "noisy" and t.ratio.p_adj is None and r.exit_code == 0
    assert any("fewer than 5 samples" in n for n in r.notes)


def test_a_change_within_the_noise_is_noisy_not_a_regression():
    """σ = 0.25 per sample: a +20 % change of one benchmark is above the threshold but
    inside its noise band, so the test cannot confirm it. Judged on the threshold
    alone (the noise band ignored) it would be a regression."""
    noise = S.Noise(sigma=0.25, round_sigma=0.05, spike_prob=0.0, tau=0.01)
    r = compare(make_doc(1, noise=noise), make_doc(2, one(TARGET, 1.2), noise=noise),
                rules=("ratio",))  # fmt: skip
    (t,) = [p for p in r.pairs if p.params == TARGET]
    assert t.ratio.change > t.ratio.bar == 0.10  # above the threshold...
    assert t.ratio.p_adj >= r.alpha  # ...but the test cannot tell it from the noise
    assert t.verdict == "noisy" and not regressions(r) and r.exit_code == 0
    # the same +20 % at σ = 0.01 is far outside the noise: a regression
    quiet = S.Noise(sigma=0.01, round_sigma=0.05, spike_prob=0.0, tau=0.01)
    r = compare(make_doc(1, noise=quiet), make_doc(2, one(TARGET, 1.2), noise=quiet),
                rules=("ratio",))  # fmt: skip
    assert regressions(r) == [TARGET]


def test_pairing_cancels_the_load_of_a_round():
    """Heavy load common to each round: only the paired ratio sees a 30 % change."""
    loaded = S.Noise(sigma=0.02, round_sigma=0.4, spike_prob=0.0, tau=0.01)
    base, new = make_doc(1, noise=loaded), make_doc(2, one(TARGET, 1.3), noise=loaded)
    r = compare(base, new, rules=("ratio",))
    assert regressions(r) == [TARGET] and r.methods == {"base": "paired", "new": "paired"}
    # the same samples without their rounds: unpaired, said so, and blind to it
    base_u, new_u = copy.deepcopy(base), copy.deepcopy(new)
    for doc in (base_u, new_u):
        for b in doc["benchmarks"]:
            del b["stats"]["data_rounds"]
    r = compare(base_u, new_u, rules=("ratio",))
    assert r.methods == {"base": "unpaired", "new": "unpaired"}
    assert any("no round indices" in n and "unpaired" in n for n in r.notes)
    assert regressions(r) == []


def test_old_files_without_rounds_are_judged_unpaired(tmp_path, inproc):
    base = write(tmp_path, "b.json", make_doc(1, rounds=False))
    new = write(tmp_path, "n.json", make_doc(2, one(TARGET, 1.5)))
    res = inproc(base, new, "--format", "json")
    doc = json.loads(res.stdout)
    assert doc["ratio_methods"] == {"base": "unpaired", "new": "paired"}
    assert any("BASE has no round indices" in n for n in doc["notes"])
    (t,) = [p for p in doc["pairs"] if p["params"] == TARGET]
    assert t["ratio"]["method"] == "unpaired" and t["verdict"] == "regression"


# ------------------------------------------------------- false alarms per run


@pytest.mark.slow
@pytest.mark.parametrize("tau", [0.0, 0.04])
def test_at_most_one_false_alarm_in_20_runs_of_unchanged_code(tau):
    """20 pairs of runs of unchanged code (384 benchmarks, nightly rules).

    With ``tau`` = 4 % a benchmark's ratio moves between runs by about 6 %, so
    many cross the 10 % threshold by chance: the between-run spread in the test
    and Holm over the run keep every run clean.
    """
    noise = S.Noise(tau=tau)
    fails = flagged = 0
    for seed in range(20):
        r = C.compare_runs(make_run(2 * seed, noise=noise), make_run(2 * seed + 1, noise=noise),
                           rules=("ratio", "deterministic"))  # fmt: skip
        fails += r.exit_code
        flagged += r.count("regression") + r.count("improvement")
        if tau:  # the change of a ratio: two runs, each a benchmark and its reference
            assert r.tau["ratio"] == pytest.approx(2 * tau, rel=0.3)
    # the target is at most 1 run in 20 (nominal: alpha = 1 %); flagged counts improvements too
    assert fails <= 1 and flagged <= 1


# ------------------------------------------------------------- comparability


@pytest.mark.parametrize(
    "path, value, why",
    [
        (("cpu", "brand_raw"), "Other CPU", "CPU model differs"),
        (("sepgconv_env", "torch"), "2.14.0", "torch version differs"),
        (("sepgconv_env", "threads"), 1, "thread count differs"),
        (("sepgconv_env", "contention"), {"disturbed": True, "reasons": ["wait_frac 0.6"]},
         "NEW run was disturbed (wait_frac 0.6)"),
    ],
)  # fmt: skip
def test_not_comparable_gets_no_latency_verdict(tmp_path, inproc, path, value, why):
    new = make_doc(2, one(TARGET, 1.5))
    new["machine_info"][path[0]][path[1]] = value
    if path == ("cpu", "brand_raw"):
        new["machine_info"]["sepgconv_env"]["cpu_model"] = value
    b, n = write(tmp_path, "b.json", make_doc(1)), write(tmp_path, "n.json", new)
    res = inproc(b, n)
    assert res.returncode == 0, res.stdout
    assert "NO LATENCY VERDICT" in res.stdout and why in res.stdout
    assert res.stdout.index("NO LATENCY VERDICT") < res.stdout.index("BENCHMARKS")
    assert " regression " not in res.stdout
    doc = json.loads(inproc(b, n, "--format", "json").stdout)
    assert doc["comparability"]["latency_verdicts"] is False
    assert any(why in x for x in doc["comparability"]["reasons"])
    # deterministic rules still run...
    det = copy.deepcopy(new)
    det["benchmarks"][0]["extra_info"]["macs_measured"] += 1
    assert inproc(b, write(tmp_path, "d.json", det)).returncode == 1
    # ...and --force judges latency anyway, and says so
    res = inproc(b, n, "--force")
    assert res.returncode == 1 and "FORCED" in res.stdout


def test_unknown_contention_is_said_not_blocking():
    new = make_doc(2, one(TARGET, 1.5))
    del new["machine_info"]["sepgconv_env"]["contention"]
    r = compare(make_doc(1), new)
    assert r.exit_code == 1 and r.comparability.latency
    assert r.comparability.unknown == [
        "NEW has no contention record: cannot tell if it was disturbed"
    ]


def test_other_environment_differences_are_warnings_only():
    base, new = make_doc(1), make_doc(2)
    base["machine_info"]["python_version"] = "3.11.7"
    new["machine_info"]["python_version"] = "3.12.1"
    new["machine_info"]["sepgconv_env"]["profile"] = "full"
    r = compare(base, new)
    assert r.exit_code == 0 and r.comparability.latency
    assert any("python_version" in w for w in r.env_warnings)


# ---------------------------------------------------- deterministic metrics


def test_changed_mac_count_is_a_deterministic_change(tmp_path, inproc):
    new = make_doc(2)
    (b,) = [b for b in new["benchmarks"] if b["params"] == TARGET]
    b["extra_info"]["macs_measured"] += 1
    res = inproc(write(tmp_path, "b.json", make_doc(1)), write(tmp_path, "n.json", new))
    assert res.returncode == 1
    assert "DETERMINISTIC CHANGES" in res.stdout and "macs_measured" in res.stdout
    r = compare(make_doc(1), new)
    assert [(p.params, c[0]) for p, c in r.deterministic_changes] == [(TARGET, "macs_measured")]
    assert r.count("regression") == 0
    del b["extra_info"]["macs_measured"]  # on one side only: not compared, and said so
    r = compare(make_doc(1), new)
    assert r.exit_code == 0
    assert "macs_measured is in base only for 1 benchmark(s): not compared" in r.notes
    b["extra_info"]["macs_measured"] = macs(TARGET) + 1
    assert compare(make_doc(1), new, rules=("absolute", "ratio")).exit_code == 0


def test_peak_memory_is_deterministic_on_cuda_only():
    assert compare(make_doc(1), make_doc(2)).exit_code == 0  # peak bytes differ: CPU, fine
    cuda = [dict(p, device="cuda") for p in PARAMS[:60]]
    world = S.world(cuda, 0)
    base = S.run_doc(S.synthetic_run(cuda, world, 1))
    new = copy.deepcopy(base)
    for doc in (base, new):
        for b in doc["benchmarks"]:
            b["extra_info"] = {"peak_mem_bytes": 4096}
    assert compare(base, new).exit_code == 0
    new["benchmarks"][0]["extra_info"]["peak_mem_bytes"] += 512
    r = compare(base, new)
    assert r.exit_code == 1 and [c[0] for _, c in r.deterministic_changes] == ["peak_mem_bytes"]


# ------------------------------------------------------- unusable input


@pytest.mark.parametrize(
    "case",
    ["missing", "empty", "malformed", "no-benchmarks", "empty-list", "no-match", "not-object",
     "bad-rounds"],
)  # fmt: skip
def test_unusable_input_exits_2_with_one_line(tmp_path, inproc, case):
    good = write(tmp_path, "good.json", make_doc(1))
    bad_rounds = make_doc(1)
    bad_rounds["benchmarks"][3]["stats"]["data_rounds"] = [0, 1]
    no_match = make_doc(1, params=[TARGET])
    no_match["benchmarks"][0]["params"]["h"] = 999
    other = {
        "missing": tmp_path / "nope.json",
        "empty": write(tmp_path, "empty.json", ""),
        "malformed": write(tmp_path, "bad.json", '{"benchmarks": [{"name": '),
        "no-benchmarks": write(tmp_path, "nob.json", {"machine_info": {}, "version": "5"}),
        "empty-list": write(tmp_path, "el.json", {"benchmarks": []}),
        "no-match": write(tmp_path, "nm.json", no_match),
        "not-object": write(tmp_path, "list.json", [1, 2, 3]),
        "bad-rounds": write(tmp_path, "br.json", bad_rounds),
    }[case]
    for res in ([cli(good, other)] if case == "missing" else []) + [inproc(other, good)]:
        assert res.returncode == 2, (case, res.stdout, res.stderr)
        assert "Traceback" not in res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("bench compare: error:"), res.stderr
        assert res.stdout == ""


def test_mangled_documents_never_crash():
    """Random damage to a valid document: it compares, or it is an InputError."""
    rng = random.Random(0)
    junk = [None, "x", -1, 0, 1.5, [], {}, [None], {"a": 1}, float("nan"), True]
    few = PARAMS[:12]
    base = runs.parse_run(make_doc(1, params=few), "base")
    template = make_doc(2, one(TARGET, 1.0), params=few)
    outcomes = set()
    for _ in range(150):
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


# ------------------------------------------------ listings, matching, options


def test_benchmarks_missing_on_one_side_are_listed(tmp_path, inproc):
    gone = next(p for p in PARAMS if (p["variant"], p["impl"]) == ("gc", "rearranged"))
    added = dict(TARGET, batch=64)
    base = make_doc(1)
    new = make_doc(2)
    new["benchmarks"] = [b for b in new["benchmarks"] if b["params"] != gone]
    extra = copy.deepcopy(new["benchmarks"][0])
    extra["params"] = added
    new["benchmarks"].append(extra)
    res = inproc(write(tmp_path, "b.json", base), write(tmp_path, "n.json", new), "--format",
                 "json")  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert len(doc["only_in_base"]) == 1 and "variant=gc impl=rearranged" in doc["only_in_base"][0]
    assert len(doc["only_in_new"]) == 1 and "batch=64" in doc["only_in_new"][0]
    assert len(doc["pairs"]) == len(PARAMS) - 1


def test_matching_is_by_params_not_by_name_or_order():
    base, new = make_doc(1), make_doc(2)
    new["benchmarks"].reverse()
    for b in new["benchmarks"]:
        b["name"] = b["fullname"] = "renamed_" + b["name"]
        b["params"] = dict(reversed(list(b["params"].items())))
    r = compare(base, new)
    assert len(r.pairs) == len(PARAMS) and r.exit_code == 0


def test_fullname_matching_without_params():
    base, new = make_doc(1), make_doc(2, one(TARGET, 1.4))
    for doc in (base, new):
        for b in doc["benchmarks"]:
            b["params"] = None
    r = compare(base, new)
    assert len(r.pairs) == len(PARAMS) and not r.implementations
    (reg,) = [p for p in r.pairs if p.verdict == "regression"]
    assert "g-rearranged-16-16-3-16-16" in reg.label and reg.rule == "absolute"


def test_same_params_twice_are_told_apart_by_fullname():
    base, new = make_doc(1), make_doc(2, one(TARGET, 1.4))
    for doc in (base, new):  # a second test function with the same parametrization
        twin = copy.deepcopy(next(b for b in doc["benchmarks"] if b["params"] == TARGET))
        twin["fullname"] = twin["fullname"].replace("test_sweep", "test_other")
        if doc is new:
            twin["stats"]["data"] = [x / 1.4 for x in twin["stats"]["data"]]
        doc["benchmarks"].append(twin)
    r = compare(base, new)
    assert any("told apart by fullname" in n for n in r.notes)
    regs = [p for p in r.pairs if p.verdict == "regression"]
    assert regs and all("test_other" not in p.label for p in regs)


def test_folder_argument_and_options(tmp_path, inproc):
    (tmp_path / "run").mkdir()
    write(tmp_path / "run", "benchmark.json", make_doc(2, one(TARGET, 1.3)))
    base = write(tmp_path, "b.json", make_doc(1))
    assert inproc(base, tmp_path / "run", "--threshold", "50%").returncode == 0
    assert inproc(base, tmp_path / "run", "--threshold", "0.2").returncode == 1
    assert inproc(base, tmp_path / "run", "--alpha", "1e-30").returncode == 0
    assert inproc(base, tmp_path / "run", "--anchor-impl", "none").returncode == 1
    res = inproc(base, tmp_path / "run", "--reference-impl", "g/naive", "--rules", "ratio")
    assert res.returncode == 1 and "reference g/naive (itself vs dense/torch)" in res.stdout
    for bad in (["--threshold", "10"], ["--rules", "speed"], ["--reference-impl", "full"],
                ["--alpha", "2"]):  # fmt: skip
        res = inproc(base, tmp_path / "run", *bad)
        assert res.returncode == 2 and "Traceback" not in res.stderr


def test_missing_reference_is_explained(inproc, tmp_path):
    ref = next(p for p in PARAMS if (p["variant"], p["impl"]) == ("full", "naive"))
    new = make_doc(2)
    new["benchmarks"] = [b for b in new["benchmarks"] if b["params"] != ref]
    res = inproc(write(tmp_path, "b.json", make_doc(1)), write(tmp_path, "n.json", new))
    assert res.returncode == 1  # a missing reference row fails NEW (issue #27), named
    assert "5 benchmark(s) not judged by the ratio rule: no reference in new" in res.stdout
    assert "FAIL: reference full/naive is missing from NEW in 1 shape(s)" in res.stdout


def test_median_only_without_raw_samples():
    base, new = make_doc(1), make_doc(2, one(TARGET, 1.5))
    for doc in (base, new):
        for b in doc["benchmarks"]:
            del b["stats"]["data"], b["stats"]["data_rounds"]
    r = compare(base, new)
    assert any("no raw samples" in n for n in r.notes)
    (reg,) = [p for p in r.pairs if p.verdict == "regression"]
    assert reg.params == TARGET and reg.method == "median-only" and reg.ratio.p_adj is None
    assert "* median-only" in R.render_table(r)


def test_without_scipy_the_t_tails_are_approximated(monkeypatch):
    import bench.judge.stats

    monkeypatch.setattr(bench.judge.stats, "_stdtr", False)  # as if the import failed
    r = compare(make_doc(1), make_doc(2, one(TARGET, 1.3)))
    assert any("scipy is not installed" in n for n in r.notes)
    assert regressions(r) == [TARGET]


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
    assert not run.paired
    # NEW: the same file with one benchmark's samples twice as slow, the other's
    # in another order (the same samples: a test on them sees no change)
    doc = json.loads(out.read_text())
    slow, shuffled = doc["benchmarks"]
    slow["stats"]["data"] = [2 * t for t in slow["stats"]["data"]]
    slow["stats"]["median"] *= 2
    shuffled["stats"]["data"] = shuffled["stats"]["data"][::-1]
    r = C.compare_runs(run, runs.parse_run(doc, "new"))
    verdicts = {p.name: p.verdict for p in r.pairs}
    assert verdicts == {slow["name"]: "regression", shuffled["name"]: "unchanged"}
    (reg,) = [p for p in r.pairs if p.verdict == "regression"]
    assert reg.absolute.change == pytest.approx(1.0, rel=1e-9) and reg.ratio is None
    assert r.exit_code == 1


def test_same_input_same_report():
    a, b = make_doc(1), make_doc(2, one(TARGET, 1.3))
    assert R.render_json(compare(a, b)) == R.render_json(compare(a, b))
    assert np.isfinite(compare(a, b).tau["ratio"])


def test_runs_of_an_older_schema_match_contiguous_eager_rows():
    """Params without memory_format/compiled (schema < 4) mean a contiguous eager run."""
    from bench.judge import runs as R

    old = {"group": "p4", "variant": "gc", "impl": "rearranged", "c_in": 8}
    new = {**old, "memory_format": "contiguous", "compiled": False}
    entry = {"stats": {"median": 1e-3, "data": [1e-3] * 5}}
    a = R.parse_run({"benchmarks": [{**entry, "params": old}]})
    b = R.parse_run({"benchmarks": [{**entry, "params": new}]})
    assert list(a.benches) == list(b.benches)
    cl = R.parse_run(
        {"benchmarks": [{**entry, "params": {**new, "memory_format": "channels_last"}}]}
    )
    assert list(cl.benches) != list(b.benches)


def test_an_auto_row_that_chose_differently_is_not_a_deterministic_change():
    auto = [p for p in PARAMS if p["impl"] == "auto"] or None
    base, new = make_doc(1), make_doc(2)
    target = auto[0] if auto else TARGET
    for doc, choice, count in ((base, "naive", 1000), (new, "rearranged", 500)):
        (b,) = [b for b in doc["benchmarks"] if b["params"] == target]
        b["params"] = dict(b["params"], impl="auto")
        b["extra_info"].update(auto_choice=choice, macs_measured=count, macs_formula=count)
    r = compare(base, new)
    assert r.deterministic_changes == [] and r.exit_code == 0
    assert any("impl=auto chose differently in 1 benchmark(s)" in n for n in r.notes)
    (b,) = [b for b in new["benchmarks"] if b["params"]["impl"] == "auto"]
    b["extra_info"]["auto_choice"] = "naive"  # the same choice: its count must match
    r = compare(base, new)
    assert {c[0] for _, c in r.deterministic_changes} == {"macs_measured", "macs_formula"}


def test_an_implementation_that_moves_more_between_runs_gets_its_own_spread():
    # measured on two quiet quick runs: rearranged g/gc ratios move ~3x more between
    # runs than naive ones; a pooled spread would call their tails regressions
    rng = np.random.default_rng(5)
    moves = {params_key(p): float(np.exp(rng.normal(0.0, 0.15))) for p in PARAMS
             if (p["variant"], p["impl"]) == ("g", "rearranged")}  # fmt: skip
    base, new = make_doc(1), make_doc(2, factors=moves)
    r = compare(base, new, rules=("ratio",))
    assert r.count("regression") == 0 and r.count_impl("regression") == 0, regressions(r)
    steady = next(
        p for p in PARAMS if (p["variant"], p["impl"], p["pass"]) == ("gc", "naive", "fwd")
    )
    r = compare(base, make_doc(2, factors={**moves, params_key(steady): 1.4}), rules=("ratio",))
    assert regressions(r) == [steady]  # a steady one is still judged


def test_a_different_cpu_allocator_setting_gets_no_latency_verdict():
    base, new = make_doc(1), make_doc(2, one(TARGET, 1.5))
    for doc, mode in ((base, "steady"), (new, "system")):
        doc["machine_info"]["sepgconv_env"]["malloc"] = {"mode": mode}
    r = compare(base, new)
    assert not r.comparability.latency and r.exit_code == 0
    assert any("malloc mode" in x for x in r.comparability.reasons)
    new["machine_info"]["sepgconv_env"]["malloc"] = {"mode": "steady"}
    assert compare(base, new).exit_code == 1  # alike: judged, and the 50 % is caught


@pytest.mark.parametrize(
    ("base_gb_s", "new_gb_s", "latency"),
    [(23.0, 21.0, True), (23.0, 15.0, False), (15.0, 23.0, False), (23.0, None, True)],
)
def test_a_different_memory_bandwidth_at_the_start_withholds_latency_verdicts(
    base_gb_s, new_gb_s, latency
):
    base, new = make_doc(1), make_doc(2, one(TARGET, 1.5))
    for doc, gb_s in ((base, base_gb_s), (new, new_gb_s)):
        if gb_s is not None:
            doc["machine_info"]["sepgconv_env"]["contention"]["bandwidth"] = {
                "reference_gb_s": gb_s, "windows": 10, "windows_low": 0}  # fmt: skip
    r = compare(base, new)
    assert r.comparability.latency is latency
    if not latency:
        assert r.exit_code == 0
        assert any(
            "CPU memory bandwidth of the runs (median window) differs" in x
            for x in r.comparability.reasons
        )
    else:
        assert r.exit_code == 1  # the planted 1.5x is judged
    if new_gb_s is None:
        assert "CPU memory bandwidth not recorded in NEW" in r.comparability.unknown


def test_the_first_night_on_a_device_records_its_baseline_and_the_next_is_judged(tmp_path, inproc):
    base = tmp_path / "history" / "baselines" / "nvidia-h200.json"
    first = write(tmp_path, "first.json", make_doc(1))
    assert inproc(base, first).returncode == 2  # without --bootstrap: unusable, as before
    res = inproc(base, first, "--bootstrap")
    assert res.returncode == 0 and "recorded this run" in res.stderr
    assert "Baseline recorded" in res.stdout
    assert json.loads(base.read_text()) == json.loads(first.read_text())
    slower = write(tmp_path, "second.json", make_doc(2, one(TARGET, 1.3)))
    assert inproc(base, slower, "--bootstrap").returncode == 1  # judged against it now
    assert json.loads(base.read_text()) == json.loads(first.read_text())  # not replaced
    missing = inproc(tmp_path / "none.json", tmp_path / "absent.json", "--bootstrap")
    assert missing.returncode == 2 and "no benchmark.json" in missing.stderr


def _bandwidth(doc: dict, reference_gb_s: float, median_frac: float | None) -> None:
    bw = {"reference_gb_s": reference_gb_s, "windows": 10, "windows_low": 0}
    if median_frac is not None:
        bw["median_frac"] = median_frac
    doc["machine_info"]["sepgconv_env"]["contention"]["bandwidth"] = bw


def test_the_bandwidth_gate_uses_the_runs_median_window_not_its_start_probe():
    # issue #27: two quiet runs of the same code read 17.3 and 12.4 GB/s at their
    # starts, the second's windows at a median 1.42x its start: the same machine
    base, new = make_doc(1), make_doc(2, one(TARGET, 1.5))
    _bandwidth(base, 17.3, 1.0)
    _bandwidth(new, 12.4, 1.42)
    r = compare(base, new)
    assert r.comparability.latency and not r.comparability.reasons
    assert r.exit_code == 1  # the planted 1.5x is judged
    # a run whose windows really ran slower is still not comparable
    _bandwidth(new, 17.3, 0.6)
    assert not compare(base, new).comparability.latency


def _without(doc: dict, variant: str, impl: str, **more) -> dict:
    doc["benchmarks"] = [
        b for b in doc["benchmarks"]
        if not ((b["params"]["variant"], b["params"]["impl"]) == (variant, impl)
                and all(b["params"][k] == v for k, v in more.items()))
    ]  # fmt: skip
    return doc


def test_an_implementation_missing_from_new_fails_and_is_named(tmp_path, inproc):
    base, new = make_doc(1), _without(make_doc(2), "gc", "rearranged")
    r = compare(base, new)
    assert r.exit_code == 1
    assert not impl_regressions(r) and not regressions(r)
    assert any("gc/rearranged" in f and "missing from NEW" in f for f in r.failures)
    assert all("gc/rearranged" in f for f in r.failures)
    res = inproc(write(tmp_path, "b.json", base), write(tmp_path, "n.json", new))
    assert res.returncode == 1 and "gc/rearranged" in res.stdout and "FAIL" in res.stdout


def test_reference_rows_missing_from_new_fail_and_are_named():
    c_in = PARAMS[0]["c_in"]
    new = _without(make_doc(2), "full", "naive", c_in=c_in)  # some shapes lose it
    r = compare(make_doc(1), new)
    assert r.exit_code == 1
    assert any(f.startswith("reference full/naive is missing from NEW") for f in r.failures)


def test_new_without_some_whole_shapes_does_not_fail_for_them():
    # a time-limited NEW that stopped early lacks shapes, not implementations
    c_in = PARAMS[0]["c_in"]
    new = make_doc(2)
    new["benchmarks"] = [b for b in new["benchmarks"] if b["params"]["c_in"] != c_in]
    r = compare(make_doc(1), new)
    assert r.failures == [] and r.exit_code == 0
