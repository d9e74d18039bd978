"""The pytest-benchmark entry point, run the way a user runs it (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import session
from bench.sweep import guard, profiles, shapes

ROOT = Path(__file__).resolve().parents[1]


def test_pytest_benchmark_json_has_params_and_extra_info(tmp_path):
    out = tmp_path / "pb.json"
    cmd = [
        sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "--sweep-profile", "smoke",
        "--sweep-device", "cpu", "--benchmark-json", str(out), "-k", "p4-group-c4x4 and fwd",
        "--benchmark-max-time", "0.002", "--benchmark-min-rounds", "3", "-q",
        "-p", "no:cacheprovider",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    benches = doc["benchmarks"]
    cases = [c for c in profiles.get_profile("smoke").cases("cpu") if c.shape.c_out == 4]
    cases = [c for c in cases if c.shape.group == "p4" and c.shape.layer == "group"]
    ran = [c for c in cases if not guard.unavailable_reason(c)]  # the others are skipped
    assert len(benches) == len(ran)  # fwd and fwdbwd (-k matches both), every impl and format
    assert doc["machine_info"]["sepgconv_env"]["device"] == "cpu"
    assert doc["machine_info"]["sepgconv_env"]["malloc"]["mode"] in ("steady", "environment")
    for b in benches:
        assert tuple(b["params"]) == shapes.PARAM_KEYS
        assert b["params"]["group"] == "p4" and b["params"]["c_in"] == 4
        assert b["name"].startswith("test_sweep[p4-group-c4x4-k3-h8x8-b1-")
        info = b["extra_info"]
        assert info["macs_formula"] == info["macs_measured"] > 0
        if b["params"]["impl"] != "e2cnn":  # e2cnn counts its steerable basis
            assert info["params_formula"] == info["params_measured"] > 0
        assert info["peak_mem_bytes"] > 0
        assert b["stats"]["rounds"] >= 3
    assert {shapes.impl_of(b["params"]) for b in benches} == {c.impl for c in ran}
    # the contention record of bench run: the session's verdict and gate, each window's flags
    record = doc["machine_info"]["sepgconv_env"]
    assert record["contention"]["rows_total"] == len(benches)
    assert record["contention"]["disturbed"] == bool(record["contention"]["reasons"])
    assert set(record["gate"]) >= {"quiet", "forced", "reasons", "window"}
    for b in benches:
        assert set(session.WINDOW_KEYS) <= set(b["extra_info"])
        assert isinstance(b["extra_info"]["disturbed"], bool)
    disturbed = sum(b["extra_info"]["disturbed"] for b in benches)
    assert record["contention"]["rows_disturbed"] == disturbed
    # bench compare reads what it wrote
    compare = subprocess.run(
        [sys.executable, "-m", "bench", "compare", str(out), str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert compare.returncode == 0, compare.stdout[-2000:] + compare.stderr[-2000:]
    assert f"{len(benches)} compared" in compare.stdout


# a plugin for the subprocess: the readings it needs, made up (no real load in tests)
_DISTURBED = """
from bench.measure import contention, gate, session

def pytest_configure(config):
    # every timing window reads as disturbed; the gate's look passes as quiet
    contention.THRESHOLDS.update(dict.fromkeys(contention.THRESHOLDS, -1.0))
    quiet = contention.Window(1.0, 0.0, 0.0, 0.0, 0.0)
    session.gate.check = lambda **kw: gate.GateResult(quiet, [])
"""

_BUSY = """
from bench.measure import contention, gate

def pytest_configure(config):
    busy = contention.Window(1.0, 1.0, 0.5, 0.5, 0.0)  # one busy process beside us
    now = [0.0]
    gate._look = lambda seconds, threads: busy
    gate._clock = lambda: now[0]
    gate._sleep = lambda s: now.__setitem__(0, now[0] + s)
"""


def _run_with(tmp_path, plugin_code, *extra):
    (tmp_path / "made_up.py").write_text(plugin_code)
    cmd = [
        sys.executable, "-m", "pytest", "bench/", "--benchmark-only", "--sweep-profile", "smoke",
        "--sweep-device", "cpu", "-k", "p4-group-c4x4 and gc-rearranged and fwd-float32",
        "--benchmark-max-time", "0.002", "--benchmark-min-rounds", "3", "-q",
        "-p", "no:cacheprovider", "-p", "made_up", *extra,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "SEPGCONV_BENCH_FORCE"}
    env |= {"OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_a_disturbed_session_warns_and_fails_unless_allowed(tmp_path):
    out = tmp_path / "pb.json"
    proc = _run_with(tmp_path, _DISTURBED, "--benchmark-json", str(out))
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "WARNING DISTURBED RUN: " in proc.stdout
    assert "passed" in proc.stdout and "failed" not in proc.stdout  # the tests themselves pass
    doc = json.loads(out.read_text())
    assert doc["machine_info"]["sepgconv_env"]["contention"]["disturbed"] is True
    assert all(b["extra_info"]["disturbed"] for b in doc["benchmarks"])
    allowed = _run_with(tmp_path, _DISTURBED, "--benchmark-allow-disturbed")
    assert allowed.returncode == 0, allowed.stdout[-3000:]
    assert "WARNING DISTURBED RUN: " in allowed.stdout


@pytest.mark.slow
def test_a_busy_machine_stops_the_session_before_timing(tmp_path):
    proc = _run_with(tmp_path, _BUSY, "--sweep-wait-quiet", "12")
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-2000:]
    text = proc.stdout + proc.stderr
    assert "waiting up to 12 s" in text
    assert "error: machine busy after 1" in text and "other processes use 1.00 cores" in text
    assert "--sweep-force" in text and "passed" not in text
