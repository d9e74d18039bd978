"""Was the machine disturbed while we measured? (DESIGN §4; pyperf's system checks.)

A disturbed machine makes every latency wrong at once, and the samples of a
row cannot always tell (a steady 2× slowdown is not noisy), so the machine is
watched directly. Two kinds of readings, all from the kernel and cheap:

* :class:`Counters` — cumulative counters read at the start and end of a
  window (a run, or the interleaved timing of one shape): the CPU time the
  whole machine spent busy (``/proc/stat``), the CPU time of this process
  (``os.times``), the time this process's threads waited for a CPU while
  runnable (``/proc/self/task/*/schedstat``), the time any task waited for a
  CPU (``/proc/pressure/cpu``, PSI) and the time the hypervisor gave our vCPUs
  to someone else (steal). Absent files read as None: the checks that need
  them are skipped, never guessed.
* :func:`window` turns two readings into rates: ``foreign_cpu`` (cores' worth
  of CPU used by *other* processes: machine busy minus ours), ``wait_frac``
  (share of the window our threads spent waiting for a CPU, per thread),
  ``psi_some`` (share of the window in which some task waited), ``steal_frac``.

On the CPU each timing window also ends with a
:class:`bench.measure.bandwidth.BandwidthProbe`: a copy
of 64 MiB against the same copy at the run's quiet start (``bandwidth_frac``).
Other tenants of a VM's host take memory bandwidth that none of the counters
above show, and it moves the rows whose intermediates stream from memory
(docs/contention.md, "Not the process, the memory bus").

Per row the sweep keeps ``foreign_cpu`` and ``wait_frac`` of its shape's timing
window (``disturbed`` counts the bandwidth too); per run :func:`judge_run`
compares everything with :data:`THRESHOLDS` and says *disturbed* with the
reasons (console, ``env.json``, README banner, plot titles; ``--strict`` fails;
``bench compare`` refuses latency verdicts).
On CUDA the GPU is warmed to its working clocks before the reference reading
(:func:`bench.measure.env.warm_gpu`), each timing window records the other
compute processes NVML lists on the GPU, and the run's verdict compares NVML
readings taken under load at both ends (:func:`gpu_reasons`: bad throttle
reasons, other processes, a clock drop under load; never the idle-to-boost jump).

The thresholds were chosen from runs on this project's 2-core machine, quiet
and loaded (docs/contention.md, "Contention"): a quiet machine shows foreign_cpu ≈ 0.0–0.1
cores and wait_frac < 0.02; one busy process elsewhere gives ≈ 1 core and
wait_frac 0.3–0.5.
"""

from __future__ import annotations

import glob
import os
import time
from dataclasses import asdict, dataclass, replace

from . import bandwidth, gpu_probe
from .gpu_probe import gpu_probe_summary, gpu_reasons  # noqa: F401 (re-exported)

#: limits above which a window counts as disturbed (see the module doc)
THRESHOLDS = {
    "foreign_cpu": 0.25,  # cores used by other processes during a timing window
    "wait_frac": 0.10,  # share of the window our threads waited for a CPU
    "psi_some": 0.10,  # share of the window some task waited for a CPU
    "steal_frac": 0.05,  # share of CPU time the hypervisor gave to others
    "disturbed_rows": 0.10,  # share of a run's timing windows that were disturbed
    "ceiling_change": 0.35,  # matmul / copy ceiling, end vs start of the run
    "bandwidth_drop": 0.25,  # a window's copy bandwidth below 75 % of the run's start
    "gpu_drop": gpu_probe.GPU_DROP,  # CUDA: a window's matmul probe under 75 % of the warm start
}
#: /proc/stat and os.times count in clock ticks: each reading of the machine's busy
#: time can be off by a tick per CPU and our own by one tick, so a window's foreign
#: CPU time is known to within (CPUs + 1) ticks; that much is forgiven before
#: comparing with the threshold (a 50 ms window of a tiny shape would otherwise read
#: one stray tick as 0.2 cores)
_SLACK_TICKS = (os.cpu_count() or 1) + 1
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


@dataclass(frozen=True)
class Counters:
    """Cumulative counters at one instant (seconds; None where not readable)."""

    wall_s: float
    machine_busy_s: float | None  # all CPUs, /proc/stat (user+nice+system+irq+softirq)
    machine_total_s: float | None  # all CPUs, busy + idle + iowait + steal
    steal_s: float | None
    own_cpu_s: float  # this process (all threads) and its finished children, user + system
    own_wait_s: float | None  # this process's threads, runnable but not running
    psi_some_s: float | None  # /proc/pressure/cpu "some" total


def _proc_stat() -> tuple[float, float, float] | tuple[None, None, None]:
    text = _read("/proc/stat")
    if not text or not text.startswith("cpu "):
        return None, None, None
    v = [int(x) for x in text.split("\n", 1)[0].split()[1:]]
    v += [0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]  # guest is inside user
    busy = user + nice + system + irq + softirq
    return busy / _TICK, (busy + idle + iowait + steal) / _TICK, steal / _TICK


def _own_wait_s() -> float | None:
    total, seen = 0, False
    for path in glob.glob("/proc/self/task/*/schedstat"):
        text = _read(path)
        if text:
            total += int(text.split()[1])  # ns waiting on a runqueue
            seen = True
    return total * 1e-9 if seen else None


def _psi_some_s() -> float | None:
    text = _read("/proc/pressure/cpu")
    if not text:
        return None
    for line in text.splitlines():
        if line.startswith("some"):
            fields = dict(kv.split("=") for kv in line.split()[1:])
            return int(fields["total"]) * 1e-6
    return None


def read_counters() -> Counters:
    """The counters now."""
    busy, total, steal = _proc_stat()
    t = os.times()
    # our CPU includes our finished children (a compiler that torch.compile ran):
    # the kernel adds a child's time to ours when it is waited for
    ours = t.user + t.system + t.children_user + t.children_system
    return Counters(time.perf_counter(), busy, total, steal, ours, _own_wait_s(), _psi_some_s())


@dataclass(frozen=True)
class Window:
    """Rates over a window between two readings (None where a counter is missing)."""

    seconds: float
    foreign_cpu: float | None  # cores' worth of CPU used by other processes
    wait_frac: float | None  # our threads' waiting time / (window × threads)
    psi_some: float | None  # share of the window in which some task waited for a CPU
    steal_frac: float | None  # stolen / all CPU time
    bandwidth_frac: float | None = None  # CPU: copy bandwidth after it / at the run's start
    gpu_foreign: int | None = None  # CUDA: other compute processes NVML lists on the GPU
    gpu_frac: float | None = None  # CUDA: matmul probe after it / at the run's warm start

    def reasons(self, threads: int = 1) -> list[str]:
        """What in this window exceeds :data:`THRESHOLDS` (empty: quiet). The foreign
        CPU is judged after forgiving the clock-tick resolution (``_SLACK_TICKS``)."""
        out = []
        for name in ("foreign_cpu", "wait_frac", "psi_some", "steal_frac"):
            value = getattr(self, name)
            if value is None:
                continue
            judged = value
            if name == "foreign_cpu":
                judged = max(value * self.seconds - _SLACK_TICKS / _TICK, 0.0) / self.seconds
            if judged > THRESHOLDS[name]:
                out.append(f"{name} {value:.2f} > {THRESHOLDS[name]:g}")
        floor = 1 - THRESHOLDS["bandwidth_drop"]
        if self.bandwidth_frac is not None and self.bandwidth_frac < floor:
            out.append(f"bandwidth_frac {self.bandwidth_frac:.2f} < {floor:g}")
        if self.gpu_foreign:
            out.append(f"{self.gpu_foreign} other process(es) on the GPU")
        gpu_floor = 1 - THRESHOLDS["gpu_drop"]
        if self.gpu_frac is not None and self.gpu_frac < gpu_floor:
            out.append(f"gpu_frac {self.gpu_frac:.2f} < {gpu_floor:g}")
        return out

    def as_dict(self) -> dict:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def window(a: Counters, b: Counters, threads: int = 1) -> Window:
    """Rates between readings ``a`` and ``b`` (``threads``: our compute threads)."""
    dt = max(b.wall_s - a.wall_s, 1e-9)

    def delta(name):
        x, y = getattr(a, name), getattr(b, name)
        return None if x is None or y is None else max(y - x, 0.0)

    busy, total, steal = delta("machine_busy_s"), delta("machine_total_s"), delta("steal_s")
    own, wait, psi = delta("own_cpu_s"), delta("own_wait_s"), delta("psi_some_s")
    foreign = None if busy is None else max(busy - own, 0.0) / dt
    return Window(
        seconds=dt,
        foreign_cpu=foreign,
        wait_frac=None if wait is None else wait / (dt * max(threads, 1)),
        psi_some=None if psi is None else min(psi / dt, 1.0),
        steal_frac=None if not total or steal is None else steal / total,
    )


def bandwidth_summary(probe: bandwidth.BandwidthProbe) -> dict | None:
    """For ``env.json``: the probe's reference and its windows' fractions (None: none)."""
    return probe.summary(THRESHOLDS["bandwidth_drop"], "reference_gb_s", 2)


def close_window(start: Counters, threads: int, device) -> Window:
    """The window from ``start`` to now; on the CPU with its ``bandwidth_frac``, on
    CUDA with the other compute processes NVML lists on the GPU (``gpu_foreign``)."""
    w = window(start, read_counters(), threads)
    if str(device).startswith("cpu"):
        w = replace(w, bandwidth_frac=bandwidth.probe().frac())
    elif str(device).startswith("cuda"):
        from . import env

        procs = env.gpu_processes(device)
        w = replace(w, gpu_frac=gpu_probe.probe(device).frac())
        if procs:
            w = replace(w, gpu_foreign=procs["foreign"])
    return w


def settle(seconds: float = 1.0, threads: int = 1) -> Window:
    """Watch an idle window of ``seconds`` (before a run: is the machine quiet now?)."""
    a = read_counters()
    time.sleep(seconds)
    return window(a, read_counters(), threads)


def judge_run(
    before: Window,
    during: Window,
    rows_disturbed: int,
    rows_total: int,
    ceilings: tuple[dict, dict] | None = None,
    gpu: tuple[dict, dict] | None = None,
    threads: int = 1,
    probe_summary: dict | None = None,
    gpu_probe: dict | None = None,
) -> dict:
    """The run's verdict: ``{"disturbed": bool, "reasons": [...], ...}`` for env.json.

    Args:
        before: an idle window just before the run (:func:`settle`).
        during: the whole run's window.
        rows_disturbed, rows_total: timing windows (one per shape and pass)
            whose own window exceeded the thresholds, and all of them.
        ceilings: the roofline readings at the start and at the end
            (``peak_gmacs_per_s``, ``peak_bandwidth_gb_per_s``), if measured.
        gpu: NVML readings (:func:`bench.measure.env.gpu_state`) at the start
            and the end, on CUDA.
        threads: our compute threads (normalises ``wait_frac``).
        probe_summary: the CPU bandwidth probe's :func:`bandwidth_summary`; its low
            windows are judged by the windows' share rule (a lone slow probe is
            not a run's fault), and the reason names the cause.
        gpu_probe: the GPU matmul probe's :func:`gpu_probe_summary`, judged alike.
    """
    reasons = [f"before the run: {r}" for r in before.reasons(threads)]
    share = rows_disturbed / rows_total if rows_total else 0.0
    if share > THRESHOLDS["disturbed_rows"]:
        reasons.append(
            f"{rows_disturbed} of {rows_total} timing windows disturbed "
            f"({share:.0%} > {THRESHOLDS['disturbed_rows']:.0%})"
        )
    reasons += [f"over the run: {r}" for r in during.reasons(threads)]
    if ceilings is not None:
        start, end = ceilings
        for key in ("peak_gmacs_per_s", "peak_bandwidth_gb_per_s"):
            x, y = start.get(key), end.get(key)
            if x and y and abs(y / x - 1) > THRESHOLDS["ceiling_change"]:
                reasons.append(f"{key} moved {y / x - 1:+.0%} between start and end")
    if gpu is not None:
        reasons += gpu_reasons(*gpu)
    for summary, drop, what, since, note in (
        (probe_summary, "bandwidth_drop", "memory bandwidth", "the run's start", ""),
        (gpu_probe, "gpu_drop", "GPU matmul probe", "the run's warm start",
         ": another process shares the GPU?"),
    ):  # fmt: skip
        low = summary and summary["windows_low"]
        if low and low > THRESHOLDS["disturbed_rows"] * summary["windows"]:
            reasons.append(
                f"{what} under {1 - THRESHOLDS[drop]:.0%} of {since} in {low} of "
                f"{summary['windows']} windows (lowest {summary['min_frac']:.0%}){note}"
            )
    return {
        "disturbed": bool(reasons),
        "reasons": reasons,
        "before": before.as_dict(),
        "during": during.as_dict(),
        "rows_disturbed": rows_disturbed,
        "rows_total": rows_total,
        "ceilings_end": None if ceilings is None else ceilings[1],
        "gpu_end": None if gpu is None else gpu[1],
        "bandwidth": probe_summary,
        "gpu_probe": gpu_probe,
        "gpu_start": None if gpu is None else gpu[0],
        "thresholds": dict(THRESHOLDS),
    }


def banner(contention: dict | None) -> str | None:
    """One line for the console, README and plot titles, or None for a quiet run."""
    if not contention or not contention.get("disturbed"):
        return None
    reasons = contention.get("reasons") or ["unknown"]
    more = f" (+{len(reasons) - 2} more)" if len(reasons) > 2 else ""
    return "DISTURBED RUN: " + "; ".join(reasons[:2]) + more


class RunWatch:
    """Watches a whole run: an idle look before, the counters over it, the
    ceilings and GPU state at both ends; :meth:`verdict` judges it.

    Args:
        device: the timed device.
        threads: our compute threads (``torch.get_num_threads()``).
        settle_s: length of the idle look before the run.
    """

    def __init__(self, device: str, threads: int, settle_s: float = 1.0, before=None):
        from . import env

        self.device, self.threads = device, threads
        # ``before``: the look bench.measure.gate took just now (else one is taken here)
        self.before = settle(settle_s, threads) if before is None else before
        # CUDA: warmed to its working clocks first, so the references are loaded readings
        self.gpu_start = None
        if device.startswith("cuda"):
            self.gpu_start = env.warm_gpu(device)
            gpu_probe.probe(device).set_reference()
        if device.startswith("cpu"):  # the bandwidth reference, at the quiet start
            bandwidth.probe().set_reference()
        self.start = read_counters()

    def verdict(self, windows_disturbed: list[bool], ceilings_start: dict | None) -> dict:
        """The run's contention verdict (see :func:`judge_run`).

        Args:
            windows_disturbed: one flag per timing window of the run.
            ceilings_start: the roofline readings taken at the start (None: the
                ceilings are not re-measured).
        """
        from . import env

        during = window(self.start, read_counters(), self.threads)
        ceilings = None
        if ceilings_start and ceilings_start.get("peak_gmacs_per_s"):
            ceilings = (ceilings_start, env.roofline(self.device))
        gpu = None
        if self.gpu_start is not None:
            gpu = (self.gpu_start, env.gpu_loaded_state(self.device))
        probed = bandwidth_summary(bandwidth.probe()) if self.device.startswith("cpu") else None
        gpu_probed = None
        if self.device.startswith("cuda"):
            gpu_probed = gpu_probe_summary(gpu_probe.probe(self.device))
        return judge_run(
            self.before, during, sum(windows_disturbed), len(windows_disturbed),
            ceilings, gpu, self.threads, probed, gpu_probed,
        )  # fmt: skip
