"""Sharded sweeps: ``bench run --shard I/N``, ``bench merge``, and ``pytest bench/ -n N``.

The runs here are the smoke profile limited to three implementations, without
profile, peers or report, so that an unsharded run, its three shards and their
merge take seconds; the roofline ceilings (seconds of matmul and copy per run,
no part of any row) are stubbed in the in-process runs.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import cli, workers
from bench.judge.runs import load_run
from bench.measure import env
from bench.store import results
from bench.store import shards as shard_store
from bench.sweep import guard, profiles, shapes
from bench.sweep.shards import Shard, split

ROOT = Path(__file__).resolve().parents[1]
IMPLS = ("full/naive", "gc/rearranged", "dense/torch")
N = 3
#: columns that do not depend on timing: equal in a sharded and an unsharded run
DETERMINISTIC = (
    *shapes.PARAM_KEYS, "status", "macs_formula", "macs_measured", "macs_match",
    "params_formula", "params_measured", "intermediate_filter_bytes",
    "intermediate_activation_bytes", "mem_estimate_bytes", "bytes_moved_formula",
    "theoretical_speedup", "g_in", "g_out",
)  # fmt: skip
CEILINGS = {"peak_gmacs_per_s": 50.0, "peak_bandwidth_gb_per_s": 10.0}


def _run(out: Path, *extra: str) -> int:
    impls = [a for i in IMPLS for a in ("--impl", i)]
    argv = ["run", "--profile", "smoke", "--device", "cpu", "--out", str(out), "--no-report",
            "--no-profile", "--no-peers", *impls, *extra]  # fmt: skip
    return cli.main(argv)


def _merge(*argv) -> int:
    return cli.main(["merge", *map(str, argv)])


def _subprocess(*argv: str, timeout: int = 300) -> subprocess.CompletedProcess:
    envs = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=envs, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _cases(prof: str = "smoke"):
    wanted = [shapes.Impl(*i.split("/")) for i in IMPLS]
    return profiles.get_profile(prof).cases("cpu", wanted)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One unsharded smoke run and its three shards (in-process, ceilings stubbed)."""
    root = tmp_path_factory.mktemp("shards")
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(env, "roofline", lambda device: dict(CEILINGS))
        try:
            assert _run(root / "whole") == 0
            for i in range(1, N + 1):
                assert _run(root / f"part{i}", "--shard", f"{i}/{N}") == 0
        finally:
            torch.set_num_threads(threads)
    return {"whole": root / "whole", **{f"part{i}": root / f"part{i}" for i in range(1, N + 1)}}


def _parts(runs) -> list[Path]:
    return [runs[f"part{i}"] for i in range(1, N + 1)]


def _copy_parts(runs, where: Path) -> list[Path]:
    out = []
    for p in _parts(runs):
        shutil.copytree(p, where / p.name)
        out.append(where / p.name)
    return out


def _table(folder: Path) -> list[tuple]:
    return [tuple(r[c] for c in DETERMINISTIC) for r in results.read_rows(folder)]


# ---------------------------------------------------------------------- #
# the split
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("prof", ["smoke", "quick"])
@pytest.mark.parametrize("count", [1, 2, 3, 5, 64])
def test_the_split_is_deterministic_disjoint_whole_shapes_and_covers_every_case(prof, count):
    cases = _cases(prof)
    parts = split(cases, count)
    assert parts == split(list(cases), count)  # the same every time (resume relies on it)
    assert len(parts) == count
    flat = [c for part in parts for c in part]
    assert sorted(c.key() for c in flat) == sorted(c.key() for c in cases)  # each case once
    owners = {}
    for i, part in enumerate(parts):
        for c in part:
            assert owners.setdefault(c.shape, i) == i, f"{c.shape.label()} split across shards"
        assert part == [c for c in cases if c in set(part)]  # in the sweep's order
    sizes = [len(p) for p in parts]
    biggest_shape = max(sum(c.shape == s for c in cases) for s in {c.shape for c in cases})
    assert max(sizes) - min(sizes) <= biggest_shape  # balanced by rows


def test_the_split_is_the_same_in_every_process():
    """Each shard is computed by its own process (another machine, another hash seed):
    they must agree on who runs what."""
    code = (
        "import json; from bench.sweep import profiles; from bench.sweep.shards import split; "
        "cases = profiles.get_profile('quick').cases('cpu'); "
        "print(json.dumps([[list(c.key()) for c in part] for part in split(cases, 3)]))"
    )
    envs = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": "12345"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=envs, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    here = [[list(c.key()) for c in part] for part in split(_cases_all("quick"), 3)]
    assert json.loads(proc.stdout) == here


def _cases_all(prof: str):
    return profiles.get_profile(prof).cases("cpu")


def test_a_shard_describes_its_shapes_and_their_places():
    cases = _cases()
    all_shapes = list(dict.fromkeys(c.shape for c in cases))
    records = [Shard(i, N).describe(cases) for i in range(1, N + 1)]
    placed = sorted(pos for r in records for pos, _ in r["shapes"])
    assert placed == list(range(len(all_shapes)))
    for r in records:
        assert r["rows_total"] == len(cases) and r["count"] == N
        assert all(all_shapes[pos].label() == label for pos, label in r["shapes"])
    assert sum(r["rows"] for r in records) == len(cases)


@pytest.mark.parametrize("text", ["0/3", "4/3", "3", "a/b", "1/0", "-1/2"])
def test_a_bad_shard_is_a_usage_error(text, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["run", "--shard", text])
    assert e.value.code == 2
    assert "--shard" in capsys.readouterr().err


# ---------------------------------------------------------------------- #
# run --shard, then merge
# ---------------------------------------------------------------------- #
def test_shards_record_their_part_and_split_the_rows(runs):
    keys = [set(map(shapes.params_key, results.read_rows(p))) for p in _parts(runs)]
    whole = set(map(shapes.params_key, results.read_rows(runs["whole"])))
    assert all(k for k in keys)  # smoke has 6 shapes: each of 3 shards gets some
    assert set().union(*keys) == whole and sum(map(len, keys)) == len(whole)
    for i, p in enumerate(_parts(runs), start=1):
        shard = json.loads((p / "env.json").read_text())["shard"]
        assert (shard["index"], shard["count"]) == (i, N)
        assert shard["rows"] == len(keys[i - 1])


def test_three_shards_merged_hold_the_rows_of_one_unsharded_run(runs, tmp_path):
    out = tmp_path / "merged"
    proc = _subprocess("-m", "bench", "merge", *map(str, _parts(runs)), "--out", str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "bench merge: 3 of 3 shards" in proc.stdout
    # the same rows, keys and deterministic columns, in the same order
    assert _table(out) == _table(runs["whole"])
    # benchmark.json: valid for bench compare, every timed row once, samples kept
    merged, whole = load_run(out), load_run(runs["whole"])
    assert merged.benches.keys() == whole.benches.keys()
    assert merged.paired and all(b.summary.values is not None for b in merged.benches.values())
    doc = json.loads((out / "benchmark.json").read_text())
    keys = [shapes.params_key(b["params"]) for b in doc["benchmarks"]]
    assert len(keys) == len(set(keys)) == len(whole.benches)  # every timed row once
    # env.json: the machine on top, every shard's own kept
    environment = json.loads((out / "env.json").read_text())
    assert "shard" not in environment
    assert [s["shard"]["index"] for s in environment["shards"]] == [1, 2, 3]
    assert environment["profile"] == "smoke" and environment["cpu_model"]
    assert isinstance(environment["contention"]["disturbed"], bool)
    assert environment["contention"]["rows_total"] == sum(
        s["contention"]["rows_total"] for s in environment["shards"]
    )
    # the report is the one an unsharded run gets: the same plots
    readme = (out / "README.md").read_text()
    assert "merged from 3 shards" in readme
    code = cli.main(["report", str(runs["whole"])])
    assert code == 0
    plots = {p.name for p in (out / "plots").iterdir()}
    assert plots and plots == {p.name for p in (runs["whole"] / "plots").iterdir()}


def test_merge_refuses_shards_of_different_machines_unless_forced(runs, tmp_path, capsys):
    parts = _copy_parts(runs, tmp_path)
    path = parts[1] / "env.json"
    changed = json.loads(path.read_text())
    changed.update(cpu_model="Another CPU 9000", torch="0.0.1")
    path.write_text(json.dumps(changed))
    assert _merge(*parts, "--out", tmp_path / "no", "--no-report") == 2
    err = capsys.readouterr().err
    assert "different machines" in err and "CPU model" in err and "torch version" in err
    assert not (tmp_path / "no" / "results.csv").exists()
    assert _merge(*parts, "--out", tmp_path / "yes", "--no-report", "--force") == 0
    notes = json.loads((tmp_path / "yes" / "env.json").read_text())["merge_notes"]
    assert any("forced" in n and "CPU model" in n for n in notes)


def test_merge_refuses_what_is_not_one_sweep(runs, tmp_path, capsys):
    parts = _copy_parts(runs, tmp_path)
    out = tmp_path / "out"
    assert _merge(parts[0], parts[2], "--out", out, "--no-report") == 2  # shard 2 missing
    assert "missing" in capsys.readouterr().err
    assert _merge(parts[0], parts[2], "--out", out, "--no-report", "--partial") == 0
    assert _merge(parts[0], parts[0], parts[1], "--out", out, "--no-report") == 2  # twice
    assert _merge(runs["whole"], *parts[1:], "--out", out, "--no-report") == 2  # not a shard
    assert "not a shard" in capsys.readouterr().err
    # a row that belongs to another shard (a merge must not duplicate it)
    stray = results.read_rows(parts[0])[0]
    with (parts[1] / "results.csv").open("a", newline="") as f:
        csv.DictWriter(f, fieldnames=list(stray)).writerow(stray)
    assert _merge(*parts, "--out", out, "--no-report") == 2
    assert "not of this shard's shapes" in capsys.readouterr().err
    assert _merge(*parts[1:], "--out", parts[1], "--no-report", "--partial") == 2  # into a shard


def test_resuming_a_folder_of_another_shard_is_refused(runs, tmp_path, capsys):
    part = tmp_path / "part1"
    shutil.copytree(runs["part1"], part)
    before = (part / "results.csv").read_text()
    assert _run(part, "--shard", f"2/{N}", "--resume") == 2
    assert "resume with the same --shard" in capsys.readouterr().err
    assert _run(part, "--resume") == 2  # nor as an unsharded run
    assert (part / "results.csv").read_text() == before
    shard_store.check_resume(part, Shard(1, N))  # the same shard may resume


# ---------------------------------------------------------------------- #
# pytest-benchmark under pytest-xdist
# ---------------------------------------------------------------------- #
def test_worker_placement():
    cpus = [0, 1, 2, 3]
    turns = workers.plan(3, "cpu", False, cpus, 0, lock="/tmp/x.lock")
    assert {p["mode"] for p in turns} == {"turns"} and all(p["lock"] for p in turns)
    assert workers.plan(1, "cpu", False, cpus, 0, lock="/tmp/x.lock")[0]["lock"] is None
    fast = workers.plan(2, "cpu", True, cpus, 0)
    assert all(p["mode"] == "parallel" and p["threads"] for p in fast)
    assert not set(fast[0]["cpus"]) & set(fast[1]["cpus"])
    gpus = workers.plan(2, "cuda", False, cpus, 2)
    assert [p["gpu"] for p in gpus] == [0, 1]
    with pytest.raises(ValueError, match="more workers than"):
        workers.plan(3, "cuda", False, cpus, 2)
    with pytest.raises(ValueError, match="share one GPU"):
        workers.plan(2, "cuda:1", False, cpus, 2)
    with pytest.raises(ValueError, match="no GPU"):
        workers.plan(1, "cuda", False, cpus, 0)
    with pytest.raises(ValueError, match="physical core"):
        workers.plan(8, "cpu", True, cpus, 0)
    assert workers.auto_count("cpu", False, cpus, 0) == 1
    assert workers.auto_count("cuda", False, cpus, 4) == 4


@pytest.mark.slow
@pytest.mark.parametrize("parallel", [False, True], ids=["turns", "parallel-cpu"])
def test_pytest_xdist_writes_every_case_once(tmp_path, parallel):
    pytest.importorskip("xdist")
    out = tmp_path / "pb.json"
    select = "p4-group-c4x4 and (naive or dense)" if parallel else "p4-group-c4x4"
    proc = _subprocess(
        "-m", "pytest", "bench/", "--benchmark-only", "-n", "2", "--sweep-profile", "smoke",
        "--sweep-device", "cpu", "--benchmark-json", str(out), "-k", select,
        "--benchmark-max-time", "0.002", "--benchmark-min-rounds", "3", "-p", "no:cacheprovider",
        *(["--allow-parallel-cpu"] if parallel else []),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert ("at once" if parallel else "take turns") in proc.stdout
    doc = json.loads(out.read_text())
    names = [b["name"] for b in doc["benchmarks"]]
    assert len(names) == len(set(names)), "a case timed twice"
    expected = {
        f"test_sweep[{c.id()}]"
        for c in profiles.get_profile("smoke").cases("cpu")
        if not guard.unavailable_reason(c) and _selected(c.id(), parallel)
    }
    assert set(names) == expected
    assert all(b["stats"]["rounds"] >= 3 and b["params"] for b in doc["benchmarks"])
    assert load_run(out).benches  # bench compare reads it
    placement = doc["machine_info"]["sepgconv_env"]["xdist"]
    assert placement["workers"] == 2
    malloc = doc["machine_info"]["sepgconv_env"]["malloc"]  # the workers', who timed
    assert malloc == placement["placement"][0]["malloc"] and malloc["mode"] != "untouched"
    if parallel:
        a, b = (set(w["cpus"]) for w in placement["placement"])
        assert a and b and not a & b


def test_the_workers_malloc_state_is_theirs_when_they_agree_else_mixed():
    steady = {"library": "glibc 2.36", "mode": "steady"}
    agree = {"placement": [{"id": "gw0", "malloc": steady}, {"id": "gw1", "malloc": steady}]}
    assert workers.malloc_state(agree) == steady
    differ = {"placement": [{"id": "gw0", "malloc": steady}, {"id": "gw1"}]}
    assert workers.malloc_state(differ) == {"mode": "mixed",
                                            "workers": [steady, {"mode": "unknown"}]}  # fmt: skip


def _selected(case_id: str, parallel: bool) -> bool:
    """The ``-k`` expressions of the test above, on a case id."""
    if parallel:
        return "p4-group-c4x4" in case_id and ("naive" in case_id or "dense" in case_id)
    return "p4-group-c4x4" in case_id


# ---------------------------------------------------------------------- #
# the nightly workflow
# ---------------------------------------------------------------------- #
def test_the_nightly_gpu_sweep_runs_in_shards_and_merges_them_before_compare():
    yaml = pytest.importorskip("yaml")
    jobs = yaml.safe_load((ROOT / ".github" / "workflows" / "nightly.yml").read_text())["jobs"]
    matrix = jobs["gpu-shards"]["strategy"]["matrix"]["shard"]
    parsed = [Shard.parse(s) for s in matrix]
    assert sorted(s.index for s in parsed) == list(range(1, parsed[0].count + 1))
    assert jobs["gpu"]["needs"] == "gpu-shards"
    runs_ = [s.get("run", "") for s in jobs["gpu"]["steps"]]
    merge_at = next(i for i, r in enumerate(runs_) if "python -m bench merge" in r)
    compare_at = next(i for i, r in enumerate(runs_) if "python -m bench compare" in r)
    assert merge_at < compare_at
    argv = runs_[merge_at].split("python -m bench merge", 1)[1].split()
    args = _parse("merge", [a.replace('"$OUT"', "out") for a in argv])
    assert args.out == Path("out") and args.shard_dirs
    shard_run = " ".join(s.get("run", "") for s in jobs["gpu-shards"]["steps"])
    assert "--shard" in shard_run and "--no-report" in shard_run


def _parse(sub: str, argv: list[str]):
    import argparse

    parser = argparse.ArgumentParser(exit_on_error=False)
    cli.command_module(sub).configure(parser)
    return parser.parse_args(argv)
