"""The pytest-benchmark entry point, run the way a user runs it (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
