"""``tools/gpu-run.sh``, the one command of a lent GPU's session, runs end to end on the
CPU (``--cpu-check``): a renamed option or a broken step shows here, not in the
few minutes of GPU time."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "gpu-run.sh"


def test_the_gpu_script_parses_and_refuses_unknown_arguments(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    proc = subprocess.run(["bash", str(SCRIPT), "--gpu"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "usage" in proc.stderr


@pytest.mark.slow
def test_the_gpu_script_runs_every_step_on_the_cpu(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {
        **os.environ,
        "OUT": str(out),
        "WORK": str(work),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "OMP_NUM_THREADS": "1",
        # the caps guard a lent GPU's minutes; on a shared CPU beside another xdist
        # worker the steps take longer: the test checks the steps, not this machine's pace
        "TESTS_S": "300",
        "SMOKE_S": "300",
        "CAP_SLACK_S": "300",
    }
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--cpu-check"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    log = (out / "log.txt").read_text()
    steps = dict(re.findall(r"^\[(\w+)\.log\] exit (\d+)", log, flags=re.MULTILINE))
    steps_run = ("precompile", "tests", "contention", "speed", "smoke", "sweep", "models",
                 "report")  # fmt: skip
    assert steps == {s: "0" for s in steps_run}, log
    assert "CUDA only" in (out / "precompile.log").read_text()  # a no-op on the CPU
    assert "fvcore ok" in log
    assert "| gc/rearranged:gemm |" in (out / "speed" / "speed_matrix.md").read_text()
    assert "time limit 4 s:" in (out / "sweep.log").read_text()  # it ended by its limit
    with tarfile.open(out / "gpu.tgz") as tar:
        names = set(tar.getnames())
    slug = next(iter(names)).split("/")[0]
    for f in ("results.csv", "env.json", "benchmark.json", "README.md", "models/models.csv",
              "plots/tradeoff.png"):  # fmt: skip
        assert f"{slug}/{f}" in names, f
    readme = (work / slug / "README.md").read_text()
    assert "## The paper's models" in readme and "**Partial run**" in readme
