"""Before a run: is the machine quiet enough to measure? Wait a bounded time, or refuse.

A busy machine makes every latency of a run wrong at once
(:mod:`bench.measure.contention`), and a user learns it best *before* a sweep
of many minutes, not after. :func:`check` looks at the machine for one idle
window (:func:`contention.settle`) and judges it with the same limits as the
run's ``before`` window (:data:`contention.THRESHOLDS`: other processes' CPU,
our threads' run-queue wait, CPU pressure, steal). On CUDA only this CPU side
is judged here (the GPU's clocks are judged over the run).

* quiet: the run starts at once; the window is the run's ``before`` window
  (:class:`contention.RunWatch` takes it instead of looking again);
* busy: it says so in one line and looks again every :data:`RECHECK_S`
  seconds, for at most ``wait_s`` seconds (``--wait-quiet``); quiet by then,
  the run starts;
* still busy: :class:`MachineBusy`, one line naming the neighbour's share
  (``bench run`` exits 2); with ``force`` (``--force``, or the environment
  variable ``SEPGCONV_BENCH_FORCE=1``, which the test suite sets) the run
  starts at once without waiting and is marked: ``env.json`` → ``gate``
  says ``forced`` and the window's reasons, and the run's contention verdict
  is *disturbed* ("before the run: …").

Every argument that touches the world (the look, the sleep, the clock, the
log) can be injected: the tests judge made-up readings with a fake clock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import contention

#: seconds ``bench run`` waits for a busy machine to go quiet (``--wait-quiet``)
DEFAULT_WAIT_S = 60.0
#: length of one look (an idle window)
LOOK_S = 1.0
#: seconds between looks while waiting
RECHECK_S = 5.0
#: set to 1 (true) to behave as ``--force`` (for CI and the test suite)
ENV_FORCE = "SEPGCONV_BENCH_FORCE"


class MachineBusy(RuntimeError):
    """The machine stayed busy for the whole wait; the message is one line."""


@dataclass
class GateResult:
    """What the gate saw: the last look, whether it was quiet, and what was done."""

    window: contention.Window
    reasons: list[str]
    looks: int = 1
    waited_s: float = 0.0
    forced: bool = False
    wait_s: float = DEFAULT_WAIT_S
    lines: list[str] = field(default_factory=list)

    @property
    def quiet(self) -> bool:
        return not self.reasons

    def record(self) -> dict:
        """For ``env.json`` (``gate``)."""
        return {
            "quiet": self.quiet,
            "forced": self.forced,
            "reasons": list(self.reasons),
            "looks": self.looks,
            "waited_s": round(self.waited_s, 1),
            "wait_limit_s": self.wait_s,
            "window": self.window.as_dict(),
        }


def env_force() -> bool:
    """``SEPGCONV_BENCH_FORCE`` is set to a true value."""
    return os.environ.get(ENV_FORCE, "").strip().lower() in {"1", "true", "yes", "on"}


def share(window: contention.Window, reasons: list[str]) -> str:
    """The neighbour's share in words: other processes' cores first, else the reasons."""
    limit = contention.THRESHOLDS["foreign_cpu"]
    if window.foreign_cpu is not None and any(r.startswith("foreign_cpu") for r in reasons):
        return f"other processes use {window.foreign_cpu:.2f} cores (> {limit:g})"
    return "; ".join(reasons)


def _look(seconds: float, threads: int) -> contention.Window:
    return contention.settle(seconds, threads)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _clock() -> float:
    return time.monotonic()


def check(
    *,
    wait_s: float = DEFAULT_WAIT_S,
    force: bool = False,
    threads: int = 1,
    look: Callable[[float, int], contention.Window] | None = None,
    sleep: Callable[[float], None] | None = None,
    clock: Callable[[], float] | None = None,
    log: Callable[[str], None] = print,
    what: str = "bench run",
    force_flag: str = "--force",
) -> GateResult:
    """Look at the machine; wait up to ``wait_s`` for a busy one to go quiet.

    Args:
        wait_s: the longest wait for a busy machine (0: look once).
        force: measure on a busy machine without waiting (the result says ``forced``).
        threads: our compute threads (normalises ``wait_frac``).
        look, sleep, clock, log: the world (see the module doc; default: an idle
            window of the machine, ``time.sleep``, ``time.monotonic``, ``print``).
        what: the command's name, for the lines it prints.
        force_flag: the command's option that forces (named in the refusal).

    Returns:
        The :class:`GateResult` (quiet, or busy and forced).

    Raises:
        MachineBusy: still busy after ``wait_s`` and not ``force``.
    """
    look, sleep, clock = look or _look, sleep or _sleep, clock or _clock
    start = clock()
    window = look(LOOK_S, threads)
    reasons = window.reasons(threads)
    result = GateResult(window, reasons, forced=False, wait_s=wait_s)

    def say(line: str) -> None:
        result.lines.append(line)
        log(line)

    if reasons and force:
        result.forced = True
        say(
            f"{what}: machine busy: {share(window, reasons)}; {force_flag}: measuring anyway, "
            f"the run is marked (its 'gate' record; contention 'disturbed')"
        )
        return result
    if reasons and wait_s > 0:
        say(
            f"{what}: machine busy: {share(window, reasons)}; waiting up to {wait_s:g} s "
            f"for it to go quiet (a look every {RECHECK_S:g} s)"
        )
    while reasons and clock() - start < wait_s:
        sleep(max(min(RECHECK_S, wait_s - (clock() - start)), 0.0))
        window = look(LOOK_S, threads)
        reasons = window.reasons(threads)
        result.looks += 1
    result.window, result.reasons = window, reasons
    result.waited_s = clock() - start if result.looks > 1 else 0.0
    if reasons:
        waited = f" after {result.waited_s:.0f} s" if result.looks > 1 else ""
        raise MachineBusy(
            f"machine busy{waited}: {share(window, reasons)}; rerun when quiet, "
            f"or {force_flag} to measure anyway and mark the run"
        )
    if result.looks > 1:
        say(f"{what}: the machine is quiet after {result.waited_s:.0f} s; starting")
    return result


def add_options(parser) -> None:
    """``--wait-quiet SECONDS`` and ``--force`` (``bench run``, ``bench models``)."""
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"before the run, wait at most SECONDS for a busy machine to go quiet, then "
        f"stop with exit 2 (default {DEFAULT_WAIT_S:g}; 0: look once)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"measure on a busy machine without waiting; the run is marked disturbed "
        f"(env.json 'gate'; also {ENV_FORCE}=1)",
    )


def from_args(args, threads: int, what: str) -> GateResult:
    """:func:`check` with the command's options (raises :class:`MachineBusy`)."""
    wait = getattr(args, "wait_quiet", DEFAULT_WAIT_S)
    force = bool(getattr(args, "force", False)) or env_force()
    return check(
        wait_s=max(wait, 0.0), force=force, threads=threads, what=what,
        log=lambda m: print(m, flush=True),
    )  # fmt: skip
