"""``python -m bench history add|report``: records, step detection, README, exit codes."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.judge import synthetic as S
from bench.judge.steps import fit, penalty
from bench.judge.trend import judge_history, record_of
from bench.store import history as H

ROOT = Path(__file__).resolve().parents[1]
PARAMS = S.grid(channels=(8,), k_h=S.K_H[:3])  # 12 shapes per pass, 144 benchmarks
WORLD = S.world(PARAMS, 0)


def sha(i: int) -> str:
    return f"{i:02d}" + f"{i * 7919:038x}"


def slower(variant: str, impl: str, factor: float):
    return lambda p: factor if (p["variant"], p["impl"]) == (variant, impl) else 1.0


def history_dir(tmp_path: Path, n: int, step_at: int | None = None, factor=1.25, **kw) -> Path:
    """``n`` synthetic runs written as run folders and added with the CLI's own function."""
    out = tmp_path / "history"
    for i in range(n):
        f = slower("g", "rearranged", factor) if step_at is not None and i >= step_at else None
        run = S.synthetic_run(PARAMS, WORLD, 1000 + i, factors=f)
        H.append(H.history_path(out, "cpu-synthetic-cpu"),
                 record_of(run, commit=sha(i), date=f"2026-12-{i + 1:02d}", **kw))  # fmt: skip
    return out


def bench_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


# ------------------------------------------------------------------ records


def test_record_is_compact_and_complete():
    run = S.synthetic_run(PARAMS, WORLD, 1)
    rec = record_of(run, commit=sha(1))
    assert rec["machine"]["cpu_model"] == "Synthetic CPU" and rec["machine"]["disturbed"] is False
    assert rec["paired"] is True and rec["reference"] == "full/naive"
    assert sum(len(v) for v in rec["benchmarks"].values()) == len(PARAMS)
    shape = next(iter(rec["benchmarks"].values()))
    t, r, se, n = shape["g/rearranged"]
    assert t > 0 and r > 0 and se > 0 and n >= 5
    g = rec["implementations"]["g/rearranged|fwd|float32|cpu"]
    assert g["shapes"] == 12 and g["lo"] < g["ratio"] < g["hi"] and g["versus"] == "full/naive"
    assert rec["implementations"]["full/naive|fwd|float32|cpu"]["versus"] == "dense/torch"
    ratios = [s["g/rearranged"][1] for k, s in rec["benchmarks"].items() if "-fwd-" in k]
    assert g["ratio"] == pytest.approx(math.exp(np.mean(np.log(ratios))), rel=1e-3)
    assert len(json.dumps(rec)) < 200 * len(PARAMS)  # compact: well under 200 bytes each


def test_store_round_trip_and_errors(tmp_path):
    path = H.history_path(tmp_path, "dev")
    rec = record_of(S.synthetic_run(PARAMS, WORLD, 1), commit=sha(1))
    H.append(path, rec)
    H.append(path, rec)
    assert [r["commit"] for r in H.read(path)] == [sha(1)] * 2
    assert list(H.read_all(tmp_path)) == ["dev"]
    with path.open("a") as f:
        f.write('{"schema": 1}\n')
    with pytest.raises(H.HistoryError, match=r"dev.jsonl:3: not a history record"):
        H.read(path)
    path.write_text(json.dumps(dict(rec, schema=99)) + "\n")
    with pytest.raises(H.HistoryError, match="newer"):
        H.read(path)
    with pytest.raises(H.HistoryError, match="lacks"):
        H.append(path, {"commit": "x"})
    assert H.device_slug({"device_slug": "cpu-amd-epyc"}) == "cpu-amd-epyc"
    assert H.device_slug({}, "Intel(R) Xeon(R) CPU @ 2.20GHz") == "cpu-intel-xeon"


# ------------------------------------------------------------ step detection


def test_a_step_is_found_at_its_point_and_a_flat_series_has_none():
    rng = np.random.default_rng(0)
    flat_steps = only_the_step = covered = 0
    for _ in range(100):
        y = rng.normal(0, 0.015, 30)
        se = np.full(30, 0.004)
        flat_steps += bool(fit(y, se).steps)
        y[17:] += 0.1  # about 6 sigma of the run-to-run spread
        steps = fit(y, se).steps
        (step,) = [s for s in steps if s.index == 17]
        covered += step.ci[0] < math.expm1(0.1) < step.ci[1]
        only_the_step += len(steps) == 1
    assert flat_steps <= 6  # calibrated penalty: a few % of flat series
    assert only_the_step >= 94 and covered >= 90


def test_uncertain_points_weigh_less():
    y = np.zeros(20)
    y[10:] = 0.05
    se = np.full(20, 0.002)
    assert [s.index for s in fit(y, se).steps] == [10]
    se[10:] = 0.2  # the jump is well inside the noise of the points after it
    assert fit(y, se).steps == []


def test_isolated_outlier_is_not_a_step_and_no_step_across_a_new_shape_set():
    rng = np.random.default_rng(1)
    y = rng.normal(0, 0.01, 30)
    y[12] += 0.3  # one bad night in the middle
    f = fit(y, np.full(30, 0.003))
    assert f.steps == [] and f.outliers == [12]
    y = np.r_[np.zeros(10), np.full(10, 0.3)]
    assert fit(y, np.full(20, 0.003), block=[0] * 10 + [1] * 10).steps == []
    assert penalty(100) > penalty(10)


def test_history_step_is_named_at_its_commit():
    records = []
    for i in range(14):
        f = slower("g", "rearranged", 1.25) if i >= 9 else None
        records.append(record_of(S.synthetic_run(PARAMS, WORLD, 50 + i, factors=f), commit=sha(i)))
    series = judge_history(records)
    stepped = {s.label: s.steps for s in series if s.steps}
    assert set(stepped) == {"g/rearranged fwd float32 cpu", "g/rearranged fwdbwd float32 cpu"}
    for steps in stepped.values():
        ((step, _),) = steps
        assert step.change == pytest.approx(0.25, abs=0.03)
    g = next(s for s in series if s.label == "g/rearranged fwd float32 cpu")
    assert g.points[g.steps[0][0].index].commit == sha(9)
    assert all(s.latest_regression is None for s in series)  # the step is not the latest


def test_latest_commit_starting_a_regression_step_fails_but_disturbed_runs_do_not():
    records = [record_of(S.synthetic_run(PARAMS, WORLD, 70 + i), commit=sha(i)) for i in range(10)]
    slow = S.synthetic_run(PARAMS, WORLD, 99, factors=slower("gc", "naive", 1.3))
    records.append(record_of(slow, commit=sha(10)))
    failing = [s.label for s in judge_history(records) if s.latest_regression is not None]
    assert failing == ["gc/naive fwd float32 cpu", "gc/naive fwdbwd float32 cpu"]
    records[-1]["machine"]["disturbed"] = True  # the same run, flagged as disturbed
    assert all(s.latest_regression is None for s in judge_history(records))
    # an improvement step at the latest commit is not a failure
    fast = S.synthetic_run(PARAMS, WORLD, 99, factors=slower("gc", "naive", 0.7))
    records[-1] = record_of(fast, commit=sha(10))
    assert all(s.latest_regression is None for s in judge_history(records))


# ------------------------------------------------------------------- the CLI


def test_cli_add_and_report(tmp_path):
    hist = history_dir(tmp_path, 12, step_at=11)  # the latest commit is the step
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    doc = S.run_doc(S.synthetic_run(PARAMS, WORLD, 5, factors=slower("g", "rearranged", 1.25)))
    doc["commit_info"] = {"id": sha(12)}
    (run_dir / "benchmark.json").write_text(json.dumps(doc))
    res = bench_cli("history", "add", run_dir, "--history", hist)
    assert res.returncode == 0, res.stderr
    assert "cpu-synthetic-cpu.jsonl: added" in res.stdout
    commits = [r["commit"] for r in H.read(hist / "cpu-synthetic-cpu.jsonl")]
    assert commits[-2:] == [sha(11), sha(12)]
    out = tmp_path / "report"
    res = bench_cli("history", "report", "--history", hist, "--out", out)
    # the step began at sha(11), and sha(12) is still slow: open, so the report fails
    assert res.returncode == 1, res.stdout + res.stderr
    want = "FAIL cpu-synthetic-cpu: g/rearranged fwd float32 cpu: open regression step"
    assert want in res.stdout
    readme = (out / "README.md").read_text()
    assert f"at commit `{sha(11)}`" in readme and "**regression**" in readme
    assert (out / "plots" / "cpu-synthetic-cpu" / "g-rearranged.png").stat().st_size > 1000
    assert "![g/rearranged](plots/cpu-synthetic-cpu/g-rearranged.png)" in readme


def test_cli_report_exit_1_when_the_latest_commit_regresses(tmp_path, capsys):
    from bench.cli import main

    hist = history_dir(tmp_path, 10, step_at=9)
    assert main(["history", "report", "--history", str(hist), "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert "FAIL cpu-synthetic-cpu: g/rearranged fwd float32 cpu: open regression step" in out
    readme = (hist / "README.md").read_text()
    assert f"The latest commit `{sha(9)}` starts a regression step in" in readme
    # a higher threshold: the same step is no regression
    assert main(["history", "report", "--history", str(hist), "--no-plots",
                 "--threshold", "30%"]) == 0  # fmt: skip


@pytest.mark.parametrize("case", ["no-history", "bad-line", "no-commit", "no-run"])
def test_cli_unusable_input_exits_2_with_one_line(tmp_path, capsys, case):
    from bench.cli import main

    hist = tmp_path / "h"
    hist.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    doc = S.run_doc(S.synthetic_run(PARAMS, WORLD, 5))
    doc["commit_info"] = {"id": "unknown"}
    (run_dir / "benchmark.json").write_text(json.dumps(doc))
    if case == "bad-line":
        (hist / "dev.jsonl").write_text("{not json\n")
    argv = {
        "no-history": ["history", "report", "--history", str(hist)],
        "bad-line": ["history", "report", "--history", str(hist)],
        "no-commit": ["history", "add", str(run_dir), "--history", str(hist)],
        "no-run": ["history", "add", str(tmp_path / "nope"), "--history", str(hist)],
    }[case]
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bench history: error:")


def test_one_slugify_for_run_folders_and_history_files():
    from bench.measure import env as measure_env

    assert measure_env.slugify is H.slugify  # one spelling: a run's folder = its history
    assert H.slugify.__module__ == "bench.measure.slug"
    assert H.slugify("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz") == (
        "intel-xeon-platinum-8375c"
    )
    assert H.slugify("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert H.slugify("(R)") == "unknown"


# --------------------------------------------- a regression stays red until dealt with


def _records(n: int, step_at: int | None, factor: float, back_at: int | None = None) -> list:
    out = []
    for i in range(n):
        slow = step_at is not None and i >= step_at and (back_at is None or i < back_at)
        f = slower("g", "rearranged", factor) if slow else None
        out.append(record_of(S.synthetic_run(PARAMS, WORLD, 300 + i, factors=f), commit=sha(i)))
    return out


def _failing(records, **kw) -> dict:
    return {s.label: s.failing for s in judge_history(records, **kw) if s.failing}


def test_a_10_percent_step_three_nights_back_still_fails():
    records = _records(12, step_at=9, factor=1.10)
    failing = _failing(records)
    assert set(failing) == {"g/rearranged fwd float32 cpu", "g/rearranged fwdbwd float32 cpu"}
    for why in failing.values():
        assert why[0].startswith("open regression step") and sha(9)[:10] in why[0]
    assert all(s.latest_regression is None for s in judge_history(records))  # not new tonight


def test_a_series_that_came_back_passes():
    assert _failing(_records(14, step_at=6, factor=1.25, back_at=10)) == {}


def test_an_acknowledged_step_passes_and_only_that_one(tmp_path):
    from bench.judge.trend import load_acknowledged

    toml = tmp_path / "acknowledged.toml"
    toml.write_text(
        f'[[step]]\ncommit = "{sha(9)[:10]}"\nimplementation = "g/rearranged"\n'
        'reason = "the new layout trades speed for memory (reviewed)"\n'
    )
    acks = load_acknowledged(toml)
    records = _records(12, step_at=9, factor=1.10)
    assert _failing(records, acknowledged=acks) == {}
    s = next(s for s in judge_history(records, acknowledged=acks) if s.open_regressions)
    assert s.open_regressions[0][1].reason.startswith("the new layout")
    other = [acks[0].__class__(sha(8)[:10], "g/rearranged", "wrong commit")]
    assert _failing(records, acknowledged=other) != {}
    toml.write_text('[[step]]\ncommit = "abc"\nimplementation = "g/naive"\n')
    with pytest.raises(ValueError, match="reason"):
        load_acknowledged(toml)


def test_an_implementation_missing_from_the_latest_record_fails():
    records = _records(8, None, 1.0)
    last = records[-1]
    for gkey in [g for g in last["implementations"] if g.startswith("gc/naive|")]:
        del last["implementations"][gkey]
    failing = _failing(records)
    assert set(failing) == {"gc/naive fwd float32 cpu", "gc/naive fwdbwd float32 cpu"}
    assert all(w[0].startswith("missing from the latest record") for w in failing.values())
    from bench.judge.trend import Acknowledgement

    retired = [Acknowledgement(sha(6)[:10], "gc/naive", "removed on purpose")]
    assert _failing(records, acknowledged=retired) == {}


def test_a_step_is_fitted_across_a_change_of_shape_set_on_the_common_shapes():
    records = _records(12, step_at=9, factor=1.10)
    # the latest night lost one shape of g/rearranged (say it failed): a new shape set
    last = records[-1]
    shape = next(k for k, v in last["benchmarks"].items() if "g/rearranged" in v and "fwd" in k)
    del last["benchmarks"][shape]["g/rearranged"]
    for gkey, e in last["implementations"].items():
        if gkey.startswith("g/rearranged|fwd|"):
            e["shapes_id"] = "changed"
    failing = _failing(records)
    assert "g/rearranged fwd float32 cpu" in failing


def test_cli_report_reads_the_acknowledged_file(tmp_path, capsys):
    from bench.cli import main

    hist = history_dir(tmp_path, 12, step_at=9, factor=1.10)
    assert main(["history", "report", "--history", str(hist), "--no-plots"]) == 1
    (hist / "acknowledged.toml").write_text(
        f'[[step]]\ncommit = "{sha(9)}"\nimplementation = "g/rearranged"\nreason = "ok"\n'
    )
    assert main(["history", "report", "--history", str(hist), "--no-plots"]) == 0
    assert "acknowledged (ok)" in capsys.readouterr().out
