"""``python -m bench run``: the smoke profile end to end, failures, interruption and resume."""

from __future__ import annotations

import csv
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import sepgconv
from bench import cli
from bench.measure import timing
from bench.pipeline import driver, run
from bench.pipeline.profiler import CATEGORIES, PROFILE_COLUMNS
from bench.store import record, results
from bench.sweep import peers, profiles, shapes
from sepgconv import registry
from sepgconv.impls import GCGConv2dRearranged

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = (
    "group", "layer", "variant", "impl", "c_in", "c_out", "k", "h", "w", "batch", "pass",
    "dtype", "device", "status", "latency_ms_median", "latency_ms_iqr", "n_samples",
    "macs_formula", "macs_measured", "params_formula", "params_measured", "peak_mem_bytes",
    "error", "macs_match", "mem_reserved_bytes", "nvml_used_bytes", "intermediate_filter_bytes",
    "intermediate_activation_bytes", "gmacs_per_s", "speedup_vs_full", "theoretical_speedup",
    "efficiency", "bytes_moved_formula", "noisy",
)  # fmt: skip
STATS = (
    "min", "max", "mean", "stddev", "rounds", "median", "iqr", "q1", "q3", "iqr_outliers",
    "stddev_outliers", "outliers", "ld15iqr", "hd15iqr", "ops", "total", "iterations", "data",
)  # fmt: skip


def _env():
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def _rows(out: Path) -> list[dict]:
    with (out / "results.csv").open(newline="") as f:
        return list(csv.DictReader(f))


pytestmark = pytest.mark.usefixtures("one_thread")


def _smoke_run(out: Path, *extra) -> subprocess.CompletedProcess:
    """``python -m bench run --profile smoke --out OUT --no-report`` as a user types it."""
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "smoke", "--device", "cpu",
           "--out", str(out), "--no-report", *extra]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bench run:" in proc.stdout
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    proc = _smoke_run(out)
    assert "[W" not in proc.stderr, "a C++ warning broke into the progress output"
    return out


@pytest.mark.slow
def test_a_repeated_smoke_run_reports_identical_peak_memory(smoke, tmp_path):
    """Peak memory is a measurement of what the call allocates: the same command on
    the same machine gives the same bytes for every row, whatever the load."""
    _smoke_run(tmp_path, "--no-profile")
    # an impl="auto" row's bytes are those of what it chose, which timing decides:
    # compared where both runs chose the same implementation
    first = {shapes.params_key(r): (r["peak_mem_bytes"], r["auto_choice"]) for r in _rows(smoke)}
    again = {shapes.params_key(r): (r["peak_mem_bytes"], r["auto_choice"]) for r in _rows(tmp_path)}
    assert again.keys() == first.keys()
    same = [k for k in first if first[k][1] == again[k][1]]
    assert len(same) >= len(first) - sum(bool(v[1]) for v in first.values())
    differ = {k: (first[k], again[k]) for k in same if first[k][0] != again[k][0]}
    assert not differ, differ


def test_smoke_csv_has_every_row_and_column(smoke):
    rows = _rows(smoke)
    assert set(REQUIRED) <= set(rows[0])
    expected = {c.key() for c in profiles.get_profile("smoke").cases("cpu")}
    assert {shapes.params_key(r) for r in rows} == expected and len(rows) == len(expected)
    assert {r["status"] for r in rows} <= set(record.STATUSES)
    ours = [r for r in rows if (r["variant"], r["impl"]) not in peers.implementations()]
    runnable = set(sepgconv.available_implementations("cpu")) | {shapes.DENSE[:2]}
    for r in ours:  # every row ran, but those that cannot run here, skipped with the reason
        if (r["variant"], r["impl"]) in runnable:
            assert r["status"] == "ok", r["error"]
        else:
            assert r["status"] == "skipped" and "cannot run here" in r["error"], r
    impls = {(r["variant"], r["impl"]) for r in rows}
    assert set(sepgconv.implementations()) | {shapes.DENSE[:2]} <= impls
    assert {r["memory_format"] for r in rows} == set(shapes.FORMATS)


def _promise(r: dict) -> float:
    """The variant's §3.4 cut (full MACs ÷ its rearranged count; 1 for full and dense)."""
    if r["variant"] not in ("g", "gc"):
        return 1.0
    shape = [int(r[k]) for k in ("c_in", "c_out", "g_in", "g_out", "k", "h", "w")]
    count = sepgconv.counting.macs_section34
    return count("full", *shape) / count(r["variant"], *shape)


def test_smoke_counts_and_ratios(smoke):
    rows = _rows(smoke)
    by_key = {shapes.params_key(r): r for r in rows}
    reference = dict(variant="full", impl="naive", memory_format="contiguous", compiled="False")
    ratios = 0
    for r in rows:
        if r["status"] != "ok":
            continue
        assert r["macs_measured"] == r["macs_formula"] and r["macs_match"] == "True"
        assert float(r["latency_ms_median"]) > 0
        if r["sampling"]:  # a row 20x slower than full/naive: the stated few samples
            assert int(r["n_samples"]) == 3 and "the reference's call" in r["sampling"]
        else:
            assert int(r["n_samples"]) >= 5
        assert int(r["peak_mem_bytes"]) > 0
        # the derived columns against the full GConv's row of the same shape and pass
        ref = by_key[shapes.params_key(r | reference)]
        speedup = float(ref["latency_ms_median"]) / float(r["latency_ms_median"])
        executed = int(ref["macs_formula"]) / int(r["macs_formula"])
        assert float(r["speedup_vs_full"]) == pytest.approx(speedup, rel=1e-12)
        assert float(r["theoretical_speedup"]) == pytest.approx(executed, rel=1e-12)
        # efficiency: against the variant's §3.4 promise, whatever the row executed
        assert float(r["efficiency"]) == pytest.approx(speedup / _promise(r), rel=1e-9)
        ratios += r["impl"] != "naive"
        if r["impl"] == "auto":  # what it chose is named, and the MACs are the choice's
            assert r["auto_choice"].split(" ")[0] in sepgconv.impls_of(r["variant"])
            assert float(r["tuning_s"]) >= 0
        if r["impl"] == "naive" or r["variant"] == "dense" or r["auto_choice"] == "naive":
            assert float(r["theoretical_speedup"]) == 1.0
        if (r["variant"], r["impl"]) == ("g", "rearranged"):
            assert int(r["peak_mem_bytes"]) >= int(r["intermediate_activation_bytes"]) // 2
    assert ratios > 0  # rows other than the reference's were checked


def test_smoke_benchmark_json(smoke):
    doc = json.loads((smoke / "benchmark.json").read_text())
    assert {"machine_info", "commit_info", "benchmarks", "datetime", "version"} <= set(doc)
    assert doc["machine_info"]["cpu"]["brand_raw"]
    assert doc["machine_info"]["sepgconv_env"]["torch"] == torch.__version__
    rows = {shapes.params_key(r): r for r in _rows(smoke)}
    assert len(doc["benchmarks"]) == sum(r["status"] == "ok" for r in rows.values())
    for b in doc["benchmarks"]:
        assert {"group", "name", "fullname", "params", "param", "extra_info", "options"} <= set(b)
        assert set(STATS) <= set(b["stats"])
        assert tuple(b["params"]) == shapes.PARAM_KEYS
        row = rows[shapes.params_key(b["params"])]
        assert len(b["stats"]["data"]) == b["stats"]["rounds"] == int(row["n_samples"])
        # raw samples in seconds: their median is the CSV's milliseconds / 1000
        assert b["stats"]["median"] * 1e3 == pytest.approx(float(row["latency_ms_median"]))
        assert b["extra_info"]["macs_measured"] == int(row["macs_measured"])


def test_smoke_env_and_profile(smoke):
    env = json.loads((smoke / "env.json").read_text())
    assert env["peak_gmacs_per_s"] > 0 and env["peak_bandwidth_gb_per_s"] > 0
    assert env["device"] == "cpu" and env["cpu_model"] and env["profile"] == "smoke"
    assert env["malloc"]["mode"] in ("steady", "system", "environment", "preloaded")
    with (smoke / "profile.csv").open(newline="") as f:
        prof = list(csv.DictReader(f))
    assert tuple(prof[0]) == PROFILE_COLUMNS
    assert {r["category"] for r in prof} == set(CATEGORIES)
    rear = [r for r in prof if (r["variant"], r["impl"], r["pass"]) == ("g", "rearranged", "fwd")]
    by_cat = {r["category"]: float(r["time_ms"]) for r in rear}
    assert by_cat["pointwise conv"] > 0 and by_cat["spatial conv"] > 0
    assert by_cat["copies/permutes"] > 0
    traces = sorted(p.name for p in (smoke / "traces").iterdir())
    assert "trace_g_rearranged_fwdbwd.json" in traces and "trace_dense_torch_fwd.json" in traces


# ---------------------------------------------------------------- failures
class _Broken(GCGConv2dRearranged):
    impl = "broken"

    def _conv(self, x, weights, bias):
        raise RuntimeError("broken on purpose")


class _Wrong(GCGConv2dRearranged):
    impl = "wrong"

    def _conv(self, x, weights, bias):
        return super()._conv(x, weights, bias) * 1.01


class _Hungry(GCGConv2dRearranged):
    impl = "hungry"

    def _conv(self, x, weights, bias):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 TB")


def _run(out: Path, *extra: str) -> int:
    argv = ["run", "--profile", "smoke", "--device", "cpu", "--out", str(out), "--no-report",
            "--no-profile", "--no-peers", *extra]  # fmt: skip
    return cli.main(argv)


@pytest.mark.slow
def test_failing_and_wrong_implementations_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, ("gc", "broken"), _Broken)
    monkeypatch.setitem(registry._REGISTRY, ("gc", "wrong"), _Wrong)
    monkeypatch.setitem(registry._REGISTRY, ("gc", "hungry"), _Hungry)
    impls = ("full/naive", "gc/broken", "gc/wrong", "gc/hungry")
    code = _run(tmp_path, *(a for i in impls for a in ("--impl", i)))
    assert code == 0
    rows = _rows(tmp_path)
    wanted = [shapes.Impl(*i.split("/")) for i in impls]
    assert len(rows) == len(profiles.get_profile("smoke").cases("cpu", wanted))
    by_impl: dict = {}
    for r in rows:
        by_impl.setdefault(r["impl"], []).append(r)
    assert all(
        r["status"] == "error" and "broken on purpose" in r["error"] for r in by_impl["broken"]
    )
    assert all(r["status"] == "mismatch" and r["latency_ms_median"] == "" for r in by_impl["wrong"])
    assert all(r["status"] == "oom" for r in by_impl["hungry"])
    assert all(r["status"] == "ok" for r in by_impl["naive"])
    assert _run(tmp_path / "strict", "--impl", "gc/broken", "--strict") == 1


@pytest.mark.slow
def test_a_cpu_run_times_on_one_thread_unless_told(tmp_path):
    torch.set_num_threads(2)  # the fixture restores the caller's setting afterwards
    assert _run(tmp_path / "default", "--impl", "full/naive", "--max-shapes", "1") == 0
    env = json.loads((tmp_path / "default" / "env.json").read_text())
    assert env["threads"] == results.CPU_THREADS == 1
    assert torch.get_num_threads() == 2  # an in-process run leaves the caller's count
    code = _run(tmp_path / "two", "--impl", "full/naive", "--max-shapes", "1", "--threads", "2")
    assert code == 0
    assert json.loads((tmp_path / "two" / "env.json").read_text())["threads"] == 2


@pytest.mark.slow
def test_interrupt_then_resume_loses_and_duplicates_nothing(tmp_path, monkeypatch):
    impls = ("--impl", "full/naive", "--impl", "gc/rearranged")
    real = timing.time_interleaved
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "time_interleaved", flaky)
    assert _run(tmp_path, *impls) == 130
    kept = _rows(tmp_path)
    cases = profiles.get_profile("smoke").cases(
        "cpu", [shapes.REFERENCE, shapes.Impl("gc", "rearranged")]
    )
    groups = list(dict.fromkeys((c.shape, c.pass_) for c in cases))
    assert len(kept) == sum((c.shape, c.pass_) in groups[:3] for c in cases)  # 3 timed groups
    monkeypatch.setattr(driver, "time_interleaved", real)
    (tmp_path / results.SAMPLES_JSONL).unlink()  # not kept: benchmark.json has them too
    assert _run(tmp_path, "--resume", *impls) == 0
    rows = _rows(tmp_path)
    keys = [shapes.params_key(r) for r in rows]
    assert len(keys) == len(set(keys)) == len(cases)
    assert rows[: len(kept)] == kept  # the first rows were kept as they were
    assert all(r["status"] == "ok" for r in rows)
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    assert sorted(shapes.params_key(b["params"]) for b in doc["benchmarks"]) == sorted(keys)
    assert all(b["stats"]["data"] for b in doc["benchmarks"])


@pytest.mark.slow
def test_resume_after_a_hard_kill_mid_row_loses_nothing(tmp_path):
    impls = ("--impl", "full/naive")
    assert _run(tmp_path, *impls) == 0
    complete = _rows(tmp_path)
    csv_path = tmp_path / results.RESULTS_CSV
    text = csv_path.read_text()
    csv_path.write_text(text[: text.rstrip("\n").rfind("\n") + 1] + "p4,group,full,na")  # cut
    assert _run(tmp_path, "--resume", *impls) == 0
    rows = _rows(tmp_path)
    assert [shapes.params_key(r) for r in rows] == [shapes.params_key(r) for r in complete]
    assert all(r["status"] == "ok" and r["macs_measured"] for r in rows)


def test_derived_columns_point_the_right_way():
    shape = shapes.Shape("p4", "group", 8, 8, 3, 16, 16, 2)
    r = driver.base_result(shape, shapes.Impl("gc", "rearranged"), "fwdbwd")
    r.status = "ok"
    full_macs = sepgconv.counting.dense_macs(shape.layer_shape())
    r.set_samples(timing.Samples([0.001] * 3, 1))  # 1 ms per call
    record.derive(r, 4.0, full_macs)  # the full GConv took 4 ms
    assert r.speedup_vs_full == pytest.approx(4.0)
    assert (
        r.theoretical_speedup == pytest.approx(full_macs / r.macs_formula)
        and r.theoretical_speedup > 1
    )
    assert r.efficiency == pytest.approx(4.0 / r.theoretical_speedup)
    assert r.gmacs_per_s == pytest.approx(3 * r.macs_formula / 1e-3 / 1e9)  # fwd + 2× bwd


def test_resume_refuses_a_csv_of_another_schema(tmp_path, capsys):
    (tmp_path / results.RESULTS_CSV).write_text("group,layer,whatever\np4,group,1\n")
    assert _run(tmp_path, "--resume", "--impl", "full/naive") == 2
    assert "columns differ" in capsys.readouterr().err


def test_unknown_impl_is_a_usage_error(tmp_path, capsys):
    assert _run(tmp_path, "--impl", "g/nope") == 2
    assert "unknown implementation" in capsys.readouterr().err


def test_a_default_run_writes_only_files_git_ignores():
    """The main job must not edit tracked files: its default folder is ignored."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    target = results.LOCAL_RESULTS / "cpu-some-model" / "results.csv"
    probe = subprocess.run(
        ["git", "check-ignore", "-q", str(target)], cwd=ROOT, capture_output=True
    )
    assert probe.returncode == 0, f"{target} is not ignored by git"
    for tool in (".venv", ".tox/py/x"):  # tox 4 writes a .venv redirect file, and .tox/
        assert subprocess.run(["git", "check-ignore", "-q", tool], cwd=ROOT).returncode == 0


@pytest.mark.slow
def test_a_compiled_row_is_checked_and_times_its_compiling_apart():
    shape = shapes.Shape("p4", "group", 4, 4, 3, 8, 8, 1)
    case = shapes.Case(shape, shapes.Impl("gc", "rearranged", "channels_last", True), "fwdbwd")
    prepared = driver.prepare_case(case)
    r = prepared.result
    assert r.status == "ok", r.error
    assert r.compiled and r.compile_s > 0 and r.macs_match  # fvcore counts the eager module
    prepared.step()  # the compiled training step runs again without recompiling errors


@pytest.mark.slow
def test_a_compiled_run_compiles_in_its_own_process(tmp_path, monkeypatch):
    from torch._inductor import config

    monkeypatch.delenv("TORCHINDUCTOR_COMPILE_THREADS", raising=False)
    seen = []
    real = driver.time_interleaved

    def spy(*args, **kwargs):
        seen.append(config.compile_threads)
        return real(*args, **kwargs)

    monkeypatch.setattr(driver, "time_interleaved", spy)
    before = config.compile_threads
    assert _run(tmp_path, "--impl", "full/naive", "--max-shapes", "1", "--compile") == 0
    assert seen and set(seen) == {1}  # no worker pool: its CPU would read as foreign
    assert config.compile_threads == before


def test_spread_order_is_a_permutation_whose_prefixes_spread():
    for n in range(1, 70):
        order = run.spread_order(list(range(n)))
        assert sorted(order) == list(range(n))
        if n >= 4:  # the first item, then the middle, then the quarters
            assert order[:2] == [0, n // 2]
            assert set(order[2:4]) == {n // 4, (3 * n) // 4}
    order = run.spread_order(list(range(48)))  # the full profile's shape count
    for p in (8, 16, 32):  # no gap in a prefix is wider than twice an even spacing
        gaps = [b - a for a, b in itertools.pairwise(sorted(order[:p]) + [48])]
        assert max(gaps) <= 2 * 48 / p


class _Clock:
    """``time`` for :mod:`bench.pipeline.run` whose clock moves 10 s per measured shape."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now


@pytest.mark.slow
def test_a_time_limit_ends_the_run_early_with_spread_shapes_then_resume_runs_the_rest(
    tmp_path, monkeypatch
):
    clock = _Clock()
    real = driver.measure_shape

    def slow(shape, *args, **kwargs):
        yield from real(shape, *args, **kwargs)
        clock.now += 10.0

    monkeypatch.setattr(run, "time", clock)
    monkeypatch.setattr(driver, "measure_shape", slow)
    impls = ("--impl", "full/naive")
    assert _run(tmp_path, *impls, "--time-limit", "25") == 0  # shapes start at 0, 10, 20 s
    prof = profiles.get_profile("smoke")
    every = prof.shapes("cpu")
    done = list(dict.fromkeys((r["group"], r["layer"], r["c_in"], r["c_out"], r["k"])
                              for r in _rows(tmp_path)))  # fmt: skip
    wanted = [(s.group, s.layer, str(s.c_in), str(s.c_out), str(s.k))
              for s in run.spread_order(every)[:3]]  # fmt: skip
    assert done == wanted != [(s.group, s.layer, str(s.c_in), str(s.c_out), str(s.k))
                              for s in every[:3]]  # fmt: skip
    limit = json.loads((tmp_path / "env.json").read_text())["time_limit"]
    assert limit == {"limit_s": 25.0, "shapes_todo": len(every), "stopped": True, "shapes_done": 3}
    from bench.report.build import load_results

    assert any("time limit of 25 s after 3 of 6" in n for n in load_results(tmp_path).notes)
    assert _run(tmp_path, *impls, "--resume") == 0
    keys = [shapes.params_key(r) for r in _rows(tmp_path)]
    assert len(keys) == len(set(keys)) == len(prof.cases("cpu", [shapes.REFERENCE]))
    assert "time_limit" not in json.loads((tmp_path / "env.json").read_text())


def test_a_time_limit_must_be_a_positive_number_of_seconds(tmp_path, capsys):
    for bad in ("0", "-5", "nan", "inf", "ten"):
        with pytest.raises(SystemExit) as e:
            _run(tmp_path, "--time-limit", bad)
        assert e.value.code == 2
    assert "seconds" in capsys.readouterr().err


@pytest.mark.slow
def test_a_time_limit_spent_before_the_first_shape_still_runs_one(tmp_path):
    assert _run(tmp_path, "--impl", "full/naive", "--time-limit", "0.001") == 0
    limit = json.loads((tmp_path / "env.json").read_text())["time_limit"]
    assert limit["shapes_done"] == 1 and limit["stopped"]
    assert (
        len({(r["group"], r["c_in"], r["c_out"], r["k"], r["layer"]) for r in _rows(tmp_path)}) == 1
    )
