"""The contention record of a pytest-benchmark session (``pytest bench/ --benchmark-only``).

The same record as ``python -m bench run`` (:mod:`bench.measure.contention`,
:mod:`bench.measure.gate`), kept by ``bench/conftest.py`` and ``bench/test_sweep.py``:

* **before** the session (the controller, or the only process): the gate
  (:func:`gate.check`) — busy, it waits up to ``--sweep-wait-quiet`` seconds,
  then stops the session with exit 2 and one line; ``--sweep-force`` (or
  ``SEPGCONV_BENCH_FORCE=1``) measures anyway and marks the run. Its look is the
  session's window before, as in ``bench run``;
* **per benchmark**: the timing's window (:func:`contention.close_window`, with
  the bandwidth probe on the CPU) goes to ``extra_info`` as ``foreign_cpu``,
  ``wait_frac`` and ``disturbed`` (the columns ``bench run`` writes per row);
* **at the end**: :func:`contention.judge_run` over the session's window and the
  benchmarks' flags; the verdict and the gate's record go to the JSON's
  ``machine_info.sepgconv_env`` (``contention``, ``gate``: what ``bench compare``
  reads); a disturbed session prints :func:`contention.banner` and fails (exit 1)
  unless ``--benchmark-allow-disturbed`` (or ``--sweep-force``) is given.

Under pytest-xdist the workers' CPU time is other processes' to the controller,
so the session's own window is not judged there (the per-benchmark windows,
taken in the workers, are).
"""

from __future__ import annotations

from . import bandwidth, contention, gate

ALLOW = "--benchmark-allow-disturbed"
FORCE = "--sweep-force"
WAIT = "--sweep-wait-quiet"
#: the per-benchmark keys of ``extra_info`` (as bench run's results.csv columns)
WINDOW_KEYS = ("foreign_cpu", "wait_frac", "disturbed")


def add_options(group) -> None:
    group.addoption(
        WAIT,
        type=float,
        default=gate.DEFAULT_WAIT_S,
        metavar="SECONDS",
        help=f"before timing, wait at most SECONDS for a busy machine to go quiet, then stop "
        f"with exit 2 (default {gate.DEFAULT_WAIT_S:g}; 0: look once)",
    )
    group.addoption(
        FORCE,
        action="store_true",
        default=False,
        help=f"time on a busy machine without waiting; the run is marked disturbed and does "
        f"not fail for it (also {gate.ENV_FORCE}=1)",
    )
    group.addoption(
        ALLOW,
        action="store_true",
        default=False,
        help="a session disturbed by other processes passes (its JSON still says so); "
        "default: it fails with exit 1",
    )


def _timing(config) -> bool:
    """Benchmarks will be timed in this session."""
    opt = config.getoption
    return not (opt("benchmark_disable", False) or opt("benchmark_skip", False))


def forced(config) -> bool:
    return bool(config.getoption(FORCE)) or gate.env_force()


def start(config, device: str, threads: int, in_controller: bool) -> None:
    """At session start (not in xdist workers): the gate, then the session's watch.

    Raises:
        gate.MachineBusy: the machine stayed busy (the caller exits 2).
    """
    if not _timing(config):
        return
    looked = gate.check(
        wait_s=max(config.getoption(WAIT), 0.0), force=forced(config), threads=threads,
        log=lambda m: print(m, flush=True), what="pytest bench/", force_flag=FORCE,
    )  # fmt: skip
    config._sepgconv_gate = looked
    config._sepgconv_watch = contention.RunWatch(device, threads, before=looked.window)
    config._sepgconv_xdist = in_controller


def window_info(start_counters, threads: int, device: str) -> dict:
    """A benchmark's timing window, for its ``extra_info``."""
    w = contention.close_window(start_counters, threads, device)
    return {"foreign_cpu": w.foreign_cpu, "wait_frac": w.wait_frac,
            "disturbed": bool(w.reasons(threads))}  # fmt: skip


def finish(config, benchmarks) -> dict | None:
    """At session end: the verdict over ``benchmarks`` (pytest-benchmark's), kept on
    ``config`` for the JSON and the summary; None when no watch was started."""
    watch = getattr(config, "_sepgconv_watch", None)
    if watch is None:
        return None
    flags = [bool((getattr(b, "extra_info", None) or {}).get("disturbed")) for b in benchmarks]
    during = contention.window(watch.start, contention.read_counters(), watch.threads)
    probed = None
    if getattr(config, "_sepgconv_xdist", False):  # the workers' CPU is not a neighbour's
        during = contention.Window(during.seconds, None, None, None, during.steal_frac)
    elif watch.device.startswith("cpu"):
        probed = contention.bandwidth_summary(bandwidth.probe())
    verdict = contention.judge_run(
        watch.before, during, sum(flags), len(flags), None, None, watch.threads, probed
    )
    config._sepgconv_verdict = verdict
    return verdict


def record(config) -> dict:
    """``contention`` and ``gate`` for ``machine_info.sepgconv_env`` (empty before the end)."""
    out = {}
    verdict = getattr(config, "_sepgconv_verdict", None)
    if verdict is not None:
        out["contention"] = verdict
    looked = getattr(config, "_sepgconv_gate", None)
    if looked is not None:
        out["gate"] = looked.record()
    return out


def summary_lines(config) -> list[str]:
    """The loud warning of a disturbed session (as ``bench run`` prints it), or []."""
    warning = contention.banner(getattr(config, "_sepgconv_verdict", None))
    if not warning:
        return []
    fails = not (config.getoption(ALLOW) or forced(config))
    return [
        f"WARNING {warning}",
        "  the latencies of this session are not fit to publish or to compare (see the JSON's "
        "machine_info.sepgconv_env.contention); rerun on a quiet machine"
        + (f" (this session fails: {ALLOW} to keep it)" if fails else ""),
    ]


def failed(config) -> bool:
    """The session was disturbed and that is not allowed."""
    verdict = getattr(config, "_sepgconv_verdict", None)
    allowed = config.getoption(ALLOW) or forced(config)
    return bool(verdict and verdict.get("disturbed")) and not allowed
