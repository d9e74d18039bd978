"""A test that judges real timings runs alone, even under pytest-xdist.

``tox`` runs the suite in two xdist workers on two cores. A test that times code
and asserts what the statistics make of it (marked ``@pytest.mark.timing``)
would otherwise share the machine with whatever the other worker runs. In CI on
2026-12-05 (the 2-core AMD EPYC VM) the planted 4x slowdown of
``tests/test_ab.py`` then read +464 % with an adjusted p of 0.016 and was judged
noisy, not a regression: the neighbour moved unchanged rows by up to 33 %.

Two advisory locks (``flock``; the kernel drops them when a process dies), files
in the temporary directory, per user, so two pytest sessions on one machine
share them too:

* ``run``: every test holds it *shared*, a timing test *exclusive*: a timing
  test starts when the tests running beside it have ended, and nothing starts
  beside it.
* ``gate``: a timing test holds it exclusive from before it asks for ``run``;
  another test passes through it (shared, released once ``run`` is held). A
  timing test that waits for ``run`` therefore stops new tests from starting,
  so a stream of short tests on the other worker cannot keep it waiting.

A process started by a test (a child ``pytest``, a bench run) inherits
:data:`ENV` and takes no lock: its parent holds one for it (and would otherwise
deadlock with a timing test that waits at the gate).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no locks, tests run as xdist schedules them
    fcntl = None

#: set while a test holds a lock; a child process that inherits it takes none
ENV = "SEPGCONV_TEST_LOCK_HELD"


def paths(where: Path | None = None) -> tuple[Path, Path]:
    """``(gate, run)``: the two lock files (in ``where``, default the temporary directory)."""
    where = Path(where or tempfile.gettempdir())
    stem = f"sepgconv-tests-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
    return where / f"{stem}.gate", where / f"{stem}.run"


@contextlib.contextmanager
def held(alone: bool, where: Path | None = None) -> Iterator[None]:
    """Hold the locks for one test: exclusive when ``alone`` (a timing test), else shared.

    Args:
        alone: the test judges real timings and must run with nothing beside it.
        where: the folder of the lock files (tests of this module; default the
            temporary directory).
    """
    if fcntl is None or os.environ.get(ENV):
        yield
        return
    gate_path, run_path = paths(where)
    with open(gate_path, "a") as gate, open(run_path, "a") as run:
        if alone:
            fcntl.flock(gate, fcntl.LOCK_EX)
            fcntl.flock(run, fcntl.LOCK_EX)
        else:
            fcntl.flock(gate, fcntl.LOCK_SH)  # waits while a timing test waits or runs
            fcntl.flock(run, fcntl.LOCK_SH)
            fcntl.flock(gate, fcntl.LOCK_UN)
        os.environ[ENV] = "1"
        try:
            yield
        finally:
            os.environ.pop(ENV, None)
    # (closing the files released the locks)
