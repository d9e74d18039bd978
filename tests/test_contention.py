"""bench.measure.contention: the machine watched while we measure, and a disturbed run
flagged everywhere it is shown (console, env.json, README, plots, --strict)."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench import cli
from bench.measure import bandwidth, contention, gpu_probe
from bench.measure.contention import Counters, Window


def counters(wall, busy, total, steal, own, wait, psi):
    return Counters(wall, busy, total, steal, own, wait, psi)


def test_window_rates_follow_from_the_counters():
    a = counters(10.0, 100.0, 400.0, 1.0, 5.0, 0.2, 3.0)
    b = counters(12.0, 103.0, 404.0, 1.2, 6.0, 0.6, 3.5)  # 2 s on 2 CPUs
    w = contention.window(a, b, threads=2)
    assert w.seconds == pytest.approx(2.0)
    assert w.foreign_cpu == pytest.approx((3.0 - 1.0) / 2.0)  # busy minus ours, in cores
    assert w.wait_frac == pytest.approx(0.4 / (2.0 * 2))
    assert w.psi_some == pytest.approx(0.25)
    assert w.steal_frac == pytest.approx(0.2 / 4.0)


def test_missing_counters_give_none_and_no_reason():
    a = counters(0.0, None, None, None, 1.0, None, None)
    b = counters(1.0, None, None, None, 2.0, None, None)
    w = contention.window(a, b)
    assert (w.foreign_cpu, w.wait_frac, w.psi_some, w.steal_frac) == (None, None, None, None)
    assert w.reasons() == []


def test_the_counters_read_on_this_machine():
    c = contention.read_counters()
    assert c.own_cpu_s > 0 and c.wall_s > 0
    if os.path.exists("/proc/stat"):
        assert c.machine_busy_s > 0 and c.machine_total_s >= c.machine_busy_s


def test_a_busy_process_shows_as_foreign_cpu():
    """Whatever else runs: the window's foreign CPU includes a process that spins
    (a child still running: until it is waited for, its CPU is not ours)."""
    if not os.path.exists("/proc/stat"):
        pytest.skip("no /proc/stat")
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 30: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])

    def child_cpu_s() -> float:
        with open(f"/proc/{child.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        a, t0 = contention.read_counters(), child_cpu_s()
        deadline = time.monotonic() + 20  # on a loaded machine the child gets less
        while child_cpu_s() - t0 < 0.5 and time.monotonic() < deadline:
            time.sleep(0.05)
        b, t1 = contention.read_counters(), child_cpu_s()
    finally:
        child.kill()
        child.wait()
    child_s = t1 - t0
    w = contention.window(a, b)
    assert child_s >= 0.5
    # /proc/stat ticks are 10 ms: allow a few ticks per CPU of rounding
    assert w.foreign_cpu * w.seconds >= child_s - 0.1
    assert "foreign_cpu" in " ".join(w.reasons())


def test_finished_children_count_as_ours(monkeypatch):
    """A compiler that torch.compile ran and waited for is this run's CPU, not another
    process's: os.times' children fields are added to ours."""
    times = os.times_result((1.0, 2.0, 3.0, 4.0, 0.0))
    monkeypatch.setattr(contention.os, "times", lambda: times)
    assert contention.read_counters().own_cpu_s == 10.0


def quiet(**over) -> Window:
    w = dict(seconds=1.0, foreign_cpu=0.0, wait_frac=0.0, psi_some=0.0, steal_frac=0.0)
    return Window(**(w | over))


def test_judge_run_quiet_and_each_reason():
    assert contention.judge_run(quiet(), quiet(), 0, 50)["disturbed"] is False
    cases = {
        "before the run: foreign_cpu": dict(before=quiet(foreign_cpu=1.0)),
        "timing windows disturbed": dict(rows=(10, 50)),
        "over the run: psi_some": dict(during=quiet(psi_some=0.5)),
        "over the run: steal_frac": dict(during=quiet(steal_frac=0.2)),
        "peak_gmacs_per_s moved": dict(ceilings=({"peak_gmacs_per_s": 4}, {"peak_gmacs_per_s": 2})),
    }  # fmt: skip
    for text, case in cases.items():
        v = contention.judge_run(
            case.get("before", quiet()), case.get("during", quiet()), *case.get("rows", (0, 50)),
            ceilings=case.get("ceilings"),
        )  # fmt: skip
        assert v["disturbed"] and any(text in r for r in v["reasons"]), text
        assert contention.banner(v).startswith("DISTURBED RUN: ")
    # at the threshold itself: not disturbed (5 of 50 windows = 10 %)
    assert contention.judge_run(quiet(), quiet(), 5, 50)["disturbed"] is False


H200 = Path(__file__).parent / "data" / "h200_contention_2026-12-04.json"


def _loaded(**over) -> dict:
    state = {"sm_clock_mhz": 1980, "sm_clock_max_mhz": 1980, "throttle_reasons": 0x0}
    return state | {"loaded": True, "foreign_processes": 0} | over


def test_the_h200_runs_recorded_nvml_states_are_quiet():
    # the first GPU run (shared/evidence/h200-2026-12-04) was flagged for
    # "GPU SM clock moved 345 -> 1980 MHz": the GPU leaving idle for its boost clock
    rec = json.loads(H200.read_text())
    assert rec["recorded_reasons"] == ["GPU SM clock moved 345 -> 1980 MHz"]
    assert contention.gpu_reasons(rec["gpu_start"], rec["gpu_end"]) == []
    verdict = contention.judge_run(
        Window(**rec["before"]), Window(**rec["during"]), rec["rows_disturbed"],
        rec["rows_total"], (rec["ceilings_start"], rec["ceilings_end"]),
        (rec["gpu_start"], rec["gpu_end"]), rec["threads"],
    )  # fmt: skip
    assert verdict["disturbed"] is False, verdict["reasons"]


def test_gpu_reasons_name_real_causes_only():
    warm = _loaded()
    assert contention.gpu_reasons(warm, warm) == []
    capped = _loaded(throttle_reasons=0x4, sm_clock_mhz=1700)  # SW power cap under load
    assert contention.gpu_reasons(capped, capped) == []
    idle = {"sm_clock_mhz": 345, "sm_clock_max_mhz": 1980, "throttle_reasons": 0x1}
    assert contention.gpu_reasons(idle, warm) == []  # boosting from idle is no cause
    hot = _loaded(throttle_reasons=0x40, sm_clock_mhz=1200)
    reasons = contention.gpu_reasons(warm, hot)
    assert any("HW thermal slowdown" in r for r in reasons)
    assert any("fell 1980 -> 1200 MHz" in r for r in reasons)
    for bit, name in gpu_probe.GPU_THROTTLE_BAD.items():
        assert name in " ".join(contention.gpu_reasons(warm, _loaded(throttle_reasons=bit)))
    slower = _loaded(sm_clock_mhz=1600)  # a clock drop under load, no reason given
    assert any("fell 1980 -> 1600" in r for r in contention.gpu_reasons(warm, slower))
    assert contention.gpu_reasons(warm, _loaded(sm_clock_mhz=1800)) == []  # within 15 %
    shared = _loaded(foreign_processes=1, foreign_pids=[4242])
    assert any("1 other process(es) on the GPU" in r and "4242" in r
               for r in contention.gpu_reasons(shared, warm))  # fmt: skip


def test_nvml_process_lists_count_neighbours_with_and_without_our_pid():
    from bench.measure.env import foreign_processes

    me = 100
    assert foreign_processes([(me, 500)], me)["foreign"] == 0
    both = foreign_processes([(me, 500), (7, 300)], me)
    assert both["foreign"] == 1 and both["foreign_pids"] == [7]
    assert both["foreign_memory_bytes"] == 300
    # in a PID namespace our entry carries a host PID: the largest user is taken as ours
    hidden = foreign_processes([(9001, 2**30), (9002, 2**20)], me)
    assert hidden["foreign"] == 1 and hidden["foreign_pids"] == [9002]
    assert foreign_processes([(9001, 2**30)], me)["foreign"] == 0
    assert foreign_processes([], me)["foreign"] == 0


def test_gpu_windows_with_a_neighbour_or_a_slow_probe_are_disturbed():
    assert quiet(gpu_foreign=0, gpu_frac=0.98).reasons() == []
    assert any("other process" in r for r in quiet(gpu_foreign=2).reasons())
    assert any("gpu_frac 0.50" in r for r in quiet(gpu_frac=0.5).reasons())
    probe = {"reference_gmacs_s": 25000.0, "windows": 20, "median_frac": 0.6,
             "min_frac": 0.4, "windows_low": 15}  # fmt: skip
    v = contention.judge_run(quiet(), quiet(), 0, 20, gpu_probe=probe)
    assert v["disturbed"] and any("GPU matmul probe" in r for r in v["reasons"])
    lone = probe | {"windows_low": 1, "median_frac": 0.99}  # one slow probe: not the run
    assert contention.judge_run(quiet(), quiet(), 0, 20, gpu_probe=lone)["disturbed"] is False


def _smoke(tmp_path, *extra):
    argv = ["run", "--profile", "smoke", "--device", "cpu", "--out", str(tmp_path)]
    argv += ["--impl", "full/naive", "--impl", "gc/rearranged", "--no-profile", *extra]
    return cli.main(argv)


def test_a_run_records_its_verdict_and_per_row_readings(tmp_path):
    _smoke(tmp_path, "--no-report")
    env = json.loads((tmp_path / "env.json").read_text())
    v = env["contention"]
    assert set(v) >= {"disturbed", "reasons", "before", "during", "rows_disturbed", "thresholds"}
    assert v["disturbed"] == bool(v["reasons"])
    assert v["rows_total"] == 12  # 3 shapes x 2 groups x 2 passes, one window each
    doc = json.loads((tmp_path / "benchmark.json").read_text())
    assert doc["machine_info"]["sepgconv_env"]["contention"]["disturbed"] == v["disturbed"]
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header[-3:] == ["foreign_cpu", "wait_frac", "disturbed"]


@pytest.mark.slow
def test_a_disturbed_run_is_flagged_everywhere(tmp_path, monkeypatch, capsys):
    # every reading exceeds a negative limit: the run must come out disturbed
    monkeypatch.setattr(contention, "THRESHOLDS", dict.fromkeys(contention.THRESHOLDS, -1.0))
    assert _smoke(tmp_path) == 0  # without --strict the results stay usable
    assert "WARNING DISTURBED RUN" in capsys.readouterr().err
    env = json.loads((tmp_path / "env.json").read_text())
    # busy by the gate's look too: measured only because the tests force (conftest.py),
    # and marked; that look is the run's window before
    assert env["gate"]["forced"] is True and env["gate"]["quiet"] is False
    assert env["contention"]["before"] == env["gate"]["window"]
    assert env["contention"]["reasons"][0].startswith("before the run: ")
    readme = (tmp_path / "README.md").read_text()
    assert "**DISTURBED RUN.**" in readme
    assert _smoke(tmp_path / "strict", "--strict", "--no-report") == 1


def test_the_report_titles_a_disturbed_run(tmp_path):
    from bench.report import style

    class Fig:
        def suptitle(self, text, **kw):
            self.text, self.kw = text, kw

    fig = Fig()
    style.suptitle(fig, "x", {"contention": {"disturbed": True, "reasons": ["r"]}})
    assert fig.text.startswith("DISTURBED RUN") and fig.kw["color"] == "firebrick"
    style.suptitle(fig, "x", {"contention": {"disturbed": False, "reasons": []}})
    assert "DISTURBED" not in fig.text


def test_settle_takes_the_time_it_is_given():
    t0 = time.perf_counter()
    w = contention.settle(0.2)
    assert 0.19 <= time.perf_counter() - t0 and w.seconds >= 0.19


def test_a_window_names_a_bandwidth_drop():
    w = Window(1.0, 0.0, 0.0, 0.0, 0.0)
    assert w.reasons() == []  # no probe (CUDA, or a run-level window): no reason
    assert dataclasses.replace(w, bandwidth_frac=0.9).reasons() == []
    assert dataclasses.replace(w, bandwidth_frac=0.5).reasons() == ["bandwidth_frac 0.50 < 0.75"]


def _only_bandwidth(monkeypatch, readings):
    """The probe reads ``readings``; the CPU-time limits are out of reach (the machine
    may be busy while the tests run: only the bandwidth decides here)."""
    limits = dict.fromkeys(contention.THRESHOLDS, float("inf"))
    limits.update(bandwidth_drop=0.25, disturbed_rows=0.10)
    monkeypatch.setattr(contention, "THRESHOLDS", limits)
    monkeypatch.setattr(bandwidth, "_probe", None)
    monkeypatch.setattr(bandwidth.BandwidthProbe, "gb_s", lambda self: next(readings))


@pytest.mark.slow
def test_one_slow_probe_marks_its_window_not_the_run(tmp_path, monkeypatch):
    _only_bandwidth(monkeypatch, iter([20.0] * 3 + [19.0] * 6 + [8.0] + [19.0] * 100))
    _smoke(tmp_path, "--no-report")  # window 7 of 12 probes low
    v = json.loads((tmp_path / "env.json").read_text())["contention"]
    assert v["bandwidth"]["windows_low"] == v["rows_disturbed"] == 1
    assert not v["disturbed"] and v["reasons"] == []  # 1 of 12: under the 10 % rule


@pytest.mark.slow
def test_a_bandwidth_drop_marks_its_windows_and_the_run(tmp_path, monkeypatch):
    """The reference comes from the run's quiet start; windows that probe under 75 %
    of it are disturbed rows, counted in env.json and named in the verdict."""
    _only_bandwidth(monkeypatch, iter([20.0] * 3 + [19.0] * 6 + [8.0] * 100))  # 6, then low
    _smoke(tmp_path, "--no-report")
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    v = json.loads((tmp_path / "env.json").read_text())["contention"]
    assert v["bandwidth"] == {"reference_gb_s": 20.0, "windows": 12, "median_frac": 0.95,
                              "min_frac": 0.4, "windows_low": 6}  # fmt: skip
    assert v["disturbed"] and any("memory bandwidth under 75%" in r for r in v["reasons"])

    def window_of(r):
        return r["group"], r["layer"], r["c_in"], r["c_out"], r["k"], r["pass"]

    windows = list(dict.fromkeys(window_of(r) for r in rows))  # in the order timed
    flagged = {window_of(r) for r in rows if r["disturbed"] == "True"}
    assert flagged == set(windows[6:])
