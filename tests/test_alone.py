"""The lock that keeps a timing test alone under pytest-xdist (tests/_alone.py).

Each contender is a real process (the kernel's flock between processes is what
the workers rely on) with its lock files in ``tmp_path``. A contender prints
``trying`` before it asks for the locks and ``in`` once it holds them, then
holds them until told to stop.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import _alone
import pytest

fcntl = pytest.importorskip("fcntl")  # POSIX: elsewhere _alone takes no lock

HERE = Path(__file__).parent
HOLD = (
    "import sys; sys.path.insert(0, sys.argv[1]); import _alone\n"
    "print('trying', flush=True)\n"
    "with _alone.held(sys.argv[2] == 'alone', sys.argv[3]):\n"
    "    print('in', flush=True)\n"
    "    sys.stdin.readline()\n"
)
WAIT_S = 60.0  # for a line that must come (a loaded machine is slow to start python)
QUIET_S = 0.5  # for one that must not


class Contender:
    def __init__(self, kind: str, where: Path):
        env = {k: v for k, v in os.environ.items() if k != _alone.ENV}  # not a child of a test
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(HERE), kind, str(where)], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout.readline().strip() == "trying"

    def entered(self, timeout: float) -> bool:
        """Whether ``in`` comes within ``timeout`` s (after ``trying``, already read)."""
        os.set_blocking(self.proc.stdout.fileno(), False)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            line = self.proc.stdout.readline()
            if line:
                assert line.strip() == "in"
                return True
            time.sleep(0.01)
        return False

    def leave(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.proc.wait(timeout=WAIT_S) == 0


@pytest.fixture
def contenders(tmp_path):
    started = []

    def start(kind):
        started.append(Contender(kind, tmp_path))
        return started[-1]

    yield start
    for c in started:
        c.proc.kill()
        c.proc.wait()


def test_a_timing_test_waits_for_the_test_running_beside_it_and_blocks_the_next(contenders):
    other = contenders("shared")
    assert other.entered(WAIT_S)
    timing = contenders("alone")
    assert not timing.entered(QUIET_S)  # a test is running: it waits
    late = contenders("shared")  # arrives while the timing test waits: held at the gate
    assert not late.entered(QUIET_S)
    other.leave()
    assert timing.entered(WAIT_S)
    assert not late.entered(QUIET_S)  # nothing beside the timing test
    timing.leave()
    assert late.entered(WAIT_S)


def test_tests_that_do_not_time_run_side_by_side(contenders):
    first, second = contenders("shared"), contenders("shared")
    assert first.entered(WAIT_S) and second.entered(WAIT_S)


def test_a_process_a_test_starts_takes_no_lock(tmp_path):
    # (a child pytest or bench run: its parent holds the lock for it)
    gate, run = _alone.paths(tmp_path)
    with open(run, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # a timing test elsewhere
        env = {**os.environ, _alone.ENV: "1"}
        child = subprocess.run(
            [sys.executable, "-c", HOLD, str(HERE), "shared", str(tmp_path)], env=env,
            input="\n", capture_output=True, text=True, timeout=WAIT_S,
        )  # fmt: skip
    assert child.stdout.split() == ["trying", "in"]


def _try(path: Path, how: int) -> bool:
    with open(path, "a") as f:
        try:
            fcntl.flock(f, how | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


@pytest.mark.timing
def test_the_suites_timing_tests_hold_the_run_lock_alone():
    # the conftest fixture, in this very test: nothing else may hold the lock now
    _, run = _alone.paths()
    assert not _try(run, fcntl.LOCK_SH)


def test_the_suites_other_tests_share_it():
    _, run = _alone.paths()
    assert _try(run, fcntl.LOCK_SH) and not _try(run, fcntl.LOCK_EX)
