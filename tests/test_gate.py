"""bench.measure.gate: a busy machine is refused before the sweep (made-up readings)."""

from __future__ import annotations

import pytest

from bench import cli
from bench.measure import contention, gate
from bench.measure.contention import Window

QUIET = Window(1.0, 0.02, 0.0, 0.0, 0.0)
BUSY = Window(1.0, 1.00, 0.40, 0.50, 0.0)  # one busy process beside us


class World:
    """A fake clock that only sleeping advances, and looks that return ``readings``."""

    def __init__(self, readings):
        self.readings = list(readings)
        self.now = 100.0
        self.looks = []
        self.sleeps = []
        self.lines = []

    def look(self, seconds, threads):
        self.looks.append(self.now)
        self.now += seconds
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]

    def sleep(self, seconds):
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self):
        return self.now

    def kw(self):
        return dict(look=self.look, sleep=self.sleep, clock=self.clock, log=self.lines.append)


def test_a_quiet_machine_starts_at_once():
    world = World([QUIET])
    result = gate.check(wait_s=60, **world.kw())
    assert result.quiet and result.looks == 1 and world.sleeps == [] and world.lines == []
    assert result.window is QUIET
    assert result.record()["quiet"] is True and result.record()["forced"] is False


def test_a_busy_machine_is_waited_for_then_refused_in_one_line():
    world = World([BUSY])
    with pytest.raises(gate.MachineBusy) as refused:
        gate.check(wait_s=30, **world.kw())
    msg = str(refused.value)
    assert "\n" not in msg
    assert msg.startswith("machine busy after 3")  # 30 s of waiting, plus the looks
    assert "other processes use 1.00 cores (> 0.25)" in msg and "--force" in msg
    # bounded: the waits add up to the limit; a look every RECHECK_S seconds
    assert sum(world.sleeps) <= 30 and max(world.sleeps) <= gate.RECHECK_S
    assert world.now - 100.0 <= 30 + 2 * gate.LOOK_S + gate.RECHECK_S
    assert len(world.looks) >= 30 / (gate.RECHECK_S + gate.LOOK_S)
    assert len(world.lines) == 1 and "waiting up to 30 s" in world.lines[0]


def test_the_wait_ends_when_the_neighbour_goes():
    world = World([BUSY, BUSY, QUIET])
    result = gate.check(wait_s=60, **world.kw())
    assert result.quiet and result.looks == 3 and result.window is QUIET
    assert world.sleeps == [gate.RECHECK_S, gate.RECHECK_S]
    assert result.record()["waited_s"] == pytest.approx(2 * gate.RECHECK_S + 3 * gate.LOOK_S)
    assert "quiet after" in world.lines[-1]


def test_no_wait_looks_once():
    world = World([BUSY, QUIET])
    with pytest.raises(gate.MachineBusy, match=r"^machine busy: other processes"):
        gate.check(wait_s=0, **world.kw())
    assert len(world.looks) == 1 and world.sleeps == []


def test_force_measures_at_once_and_marks_the_result():
    world = World([BUSY, QUIET])
    result = gate.check(wait_s=60, force=True, **world.kw())
    assert result.forced and not result.quiet and len(world.looks) == 1 and world.sleeps == []
    rec = result.record()
    assert rec["forced"] is True and rec["reasons"][0].startswith("foreign_cpu 1.00")
    assert "--force" in world.lines[0]


def test_a_quiet_machine_is_not_marked_forced():
    result = gate.check(wait_s=60, force=True, **World([QUIET]).kw())
    assert result.quiet and not result.forced


def test_the_gate_judges_with_the_runs_thresholds(monkeypatch):
    waiting = Window(1.0, 0.0, 0.30, 0.0, 0.0)  # only our threads waited: still busy
    with pytest.raises(gate.MachineBusy, match=r"wait_frac 0.30 > 0.1"):
        gate.check(wait_s=0, **World([waiting]).kw())
    monkeypatch.setitem(contention.THRESHOLDS, "wait_frac", 0.5)
    assert gate.check(wait_s=0, **World([waiting]).kw()).quiet


def test_the_environment_forces(monkeypatch):
    for value, forced in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv(gate.ENV_FORCE, value)
        assert gate.env_force() is forced


def _refusing(monkeypatch, window) -> World:
    """bench run/models in-process: every look reads ``window``, on a fake clock."""
    monkeypatch.delenv(gate.ENV_FORCE, raising=False)
    world = World([window])
    monkeypatch.setattr(gate, "_look", world.look)
    monkeypatch.setattr(gate, "_sleep", world.sleep)
    monkeypatch.setattr(gate, "_clock", world.clock)
    return world


@pytest.mark.parametrize("command", ["run", "models"])
def test_bench_refuses_a_busy_machine_with_exit_2(command, tmp_path, monkeypatch, capsys):
    world = _refusing(monkeypatch, BUSY)
    argv = [command, "--device", "cpu", "--out", str(tmp_path / "out"), "--wait-quiet", "20"]
    if command == "run":  # (short, should a bug let it through)
        argv += ["--profile", "smoke", "--impl", "gc/rearranged", "--max-shapes", "1"]
        argv += ["--no-profile", "--no-report"]
    else:
        argv += ["--quick", "--models", "z2cnn", "--batches", "2", "--passes", "fwd"]
    assert cli.main(argv) == 2
    err = capsys.readouterr()
    (line,) = [x for x in err.err.splitlines() if x.startswith("error:")]
    assert line.startswith("error: machine busy after 2")
    assert "other processes use 1.00 cores (> 0.25)" in line
    assert "waiting up to 20 s" in err.out
    assert not (tmp_path / "out" / "env.json").exists()  # nothing measured, nothing written
    assert sum(world.sleeps) <= 20


def test_the_run_takes_the_gates_look_as_its_window_before():
    watch = contention.RunWatch("cpu", 1, before=BUSY)
    assert watch.before is BUSY  # (a forced run, end to end: tests/test_contention.py)


def test_auto_choices_made_on_a_busy_forced_run_are_not_persisted(tmp_path, one_thread):
    from bench.measure.contention import Window
    from bench.measure.gate import GateResult
    from bench.pipeline import run as pipeline
    from bench.sweep import profiles
    from sepgconv import autotune

    autotune.clear()
    busy = Window(seconds=1.0, foreign_cpu=1.0, wait_frac=0.4, psi_some=0.5, steal_frac=0.0)
    gate = GateResult(busy, ["foreign_cpu 1.00 > 0.25"], forced=True)
    impls = pipeline.select_impls(["full/naive", "gc/auto"], include_peers=False)
    pipeline.run_sweep(
        profiles.get_profile("smoke"), "cpu", impls, tmp_path, max_shapes=1,
        with_profile=False, gate=gate, log=lambda m: None,
    )  # fmt: skip
    made = autotune.entries().values()
    assert made and all(c.source == "timed-untrusted" for c in made)
    assert autotune.export()["entries"] == []  # nothing a cache file would keep
    autotune.clear()
