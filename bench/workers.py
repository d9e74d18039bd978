"""pytest-xdist workers for the pytest-benchmark sweep: ``pytest bench/ --benchmark-only -n N``.

pytest-benchmark turns itself off under xdist (5.x: with ``--benchmark-only``
it refuses to start; without it every benchmark runs once, untimed) and never
sends a worker's results to the controller, so ``--benchmark-json`` would hold
nothing. The sweep's ``conftest.py`` uses this module to make ``-n`` work:

* **timing on**: the xdist check is kept from turning the session off
  (:func:`hide_benchmark_only` before pytest-benchmark's session is built,
  :func:`reenable` after; an explicit ``--benchmark-disable``/``--skip`` is left alone);
* **results joined**: each worker sends its benchmarks (pytest-benchmark's own
  JSON entries, raw data included) in ``workeroutput``; the controller rebuilds
  them (:func:`rebuild`) in collection order, so its ``--benchmark-json`` (and
  ``--benchmark-autosave``, the table, ``--benchmark-compare``) has every case
  once, as a run without ``-n`` has; workers save nothing themselves;
* **placement** (:func:`plan`), decided on the controller, applied on each worker:

  - CUDA: one worker per visible GPU (``CUDA_VISIBLE_DEVICES``): worker ``gwK``
    makes GPU K current (the tests' device stays ``cuda`` in their ids and
    params, so every worker collects the same tests); more workers than GPUs,
    or ``-n > 1`` with an explicit ``--sweep-device cuda:N``, is refused;
    ``-n auto`` means one per GPU. Workers are pinned to disjoint physical
    cores when there are enough, so their launches do not contend either.
  - CPU: parallel workers distort each other's timings — they share the
    memory bandwidth and the last-level cache (a shape that fits L3 alone
    stops fitting beside another), SMT siblings share a core's execution
    units, and more busy cores lower the all-core turbo clock (power and
    thermal limits); on a shared VM they also share the host. So by default
    the workers **take turns** (a file lock held for each whole test:
    building, checking, counting and timing), which makes ``-n N`` on the CPU
    measure what one worker measures, with a warning. ``--allow-parallel-cpu``
    runs them at once, each pinned (``os.sched_setaffinity``) to its own
    physical cores with as many torch threads; ``env`` in the JSON records
    the placement. ``-n auto`` on the CPU means one worker.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from types import SimpleNamespace

from .measure import allocator

ALLOW_PARALLEL_CPU = "--allow-parallel-cpu"
KEY = "sepgconv"  # our entries in xdist's workerinput / workeroutput


def is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def is_controller(config) -> bool:
    """The xdist controller (tests run in workers)."""
    return not is_worker(config) and config.getoption("dist", "no") != "no"


def active(config) -> bool:
    return is_worker(config) or is_controller(config)


# ---------------------------------------------------------------------- #
# placement
# ---------------------------------------------------------------------- #
def physical_cores(cpus: list[int]) -> list[list[int]]:
    """``cpus`` grouped by physical core (SMT siblings together, from sysfs), in order;
    each CPU alone where the topology cannot be read."""
    groups: dict[tuple, list[int]] = {}
    for cpu in sorted(cpus):
        path = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            key = (path.read_text().strip(),)
        except OSError:
            key = (str(cpu),)
        groups.setdefault(key, []).append(cpu)
    return list(groups.values())


def plan(
    count: int,
    device: str,
    allow_parallel_cpu: bool,
    cpus: list[int],
    gpus: int,
    lock: str | None = None,
) -> list[dict]:
    """Where each of ``count`` workers runs (one dict per worker, see the module doc).

    Args:
        count: the number of workers.
        device: the sweep's device (``cpu``, ``cuda`` or ``cuda:N``).
        allow_parallel_cpu: CPU workers time at once (pinned) rather than in turns.
        cpus: the CPUs this process may use (``os.sched_getaffinity(0)``).
        gpus: the visible GPUs (``torch.cuda.device_count()``).
        lock: the turns' lock file (CPU, in turns).

    Returns:
        Per worker: ``mode`` (``"turns"`` or ``"parallel"``), ``cpus`` (pinned, or
        None), ``threads`` (torch threads, or None: torch's default), ``gpu``
        (index made current, or None) and ``lock``.

    Raises:
        ValueError: a placement that would distort the timings (the message says why).
    """
    cores = physical_cores(cpus)
    per = len(cores) // count if count else 0
    pinned = [sum(cores[i * per : (i + 1) * per], []) for i in range(count)] if per else None
    if device.startswith("cuda"):
        if ":" in device and count > 1:
            raise ValueError(
                f"-n {count} with --sweep-device {device}: the workers would share one GPU; "
                "leave the index out (one worker per visible GPU)"
            )
        if gpus < 1:
            raise ValueError(f"--sweep-device {device}: no GPU is visible here")
        if count > gpus:
            raise ValueError(
                f"-n {count} asks for more workers than the {gpus} visible GPU(s): two "
                f"workers on one GPU time each other's kernels; use -n {gpus} or -n auto"
            )
        return [
            dict(mode="parallel", cpus=pinned[i] if pinned else None,
                 threads=per if pinned else None, gpu=i, lock=None)
            for i in range(count)
        ]  # fmt: skip
    if count > 1 and allow_parallel_cpu:
        if not pinned:
            raise ValueError(
                f"-n {count} {ALLOW_PARALLEL_CPU}: only {len(cores)} physical core(s); "
                "each worker needs its own"
            )
        return [
            dict(mode="parallel", cpus=pinned[i], threads=per, gpu=None, lock=None)
            for i in range(count)
        ]
    return [
        dict(mode="turns", cpus=None, threads=None, gpu=None, lock=lock if count > 1 else None)
        for _ in range(count)
    ]


def auto_count(device: str, allow_parallel_cpu: bool, cpus: list[int], gpus: int) -> int:
    """``-n auto``: one worker per visible GPU; on the CPU one, or one per physical core
    with ``--allow-parallel-cpu``."""
    if device.startswith("cuda"):
        return max(gpus, 1)
    return len(physical_cores(cpus)) if allow_parallel_cpu else 1


def apply(placement: dict) -> None:
    """On a worker: pin it, set its torch threads, make its GPU current."""
    import torch

    if placement.get("cpus") and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, placement["cpus"])
    if placement.get("threads"):
        torch.set_num_threads(int(placement["threads"]))
    if placement.get("gpu") is not None:
        torch.cuda.set_device(int(placement["gpu"]))


@contextlib.contextmanager
def turn(placement: dict | None):
    """Hold the workers' shared lock (CPU workers in turns); a no-op otherwise."""
    lock = (placement or {}).get("lock")
    if not lock:
        yield
        return
    try:
        import fcntl
    except ImportError:  # not POSIX: no turns (the warning said so)
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# ---------------------------------------------------------------------- #
# pytest-benchmark under xdist
# ---------------------------------------------------------------------- #
def hide_benchmark_only(config) -> None:
    """Before pytest-benchmark builds its session: hide ``--benchmark-only``, which it
    refuses beside the xdist switch-off (:func:`reenable` restores both)."""
    if active(config) and config.getoption("benchmark_only", False):
        config.option.benchmark_only = False
        config._sepgconv_benchmark_only = True


def reenable(config) -> None:
    """After pytest-benchmark built its session: timing back on where only xdist turned
    it off; workers save nothing (the controller writes the JSON)."""
    bs = getattr(config, "_benchmarksession", None)
    if bs is None or not active(config):
        return
    if getattr(config, "_sepgconv_benchmark_only", False):
        config.option.benchmark_only = bs.only = True
    if bs.xdist_warning:  # disabled by xdist alone, not by --benchmark-disable/--skip
        bs.disabled = is_controller(config)  # the controller times nothing itself
        bs.xdist_warning = bs.xdist_benchmark_found = False
    if is_worker(config):
        bs.json = bs.save = bs.autosave = None


def worker_output(config, placement: dict) -> None:
    """On a worker at the end: its benchmarks and placement into ``workeroutput``."""
    from pytest_benchmark.utils import safe_dumps

    bs = config._benchmarksession
    benches = [b.as_dict(include_data=True) for b in bs.benchmarks if b and not b.has_error]
    worker = {"id": config.workerinput["workerid"], **placement}
    worker["lock"] = bool(placement.get("lock"))  # a temporary path: not the machine
    worker["malloc"] = allocator.state()  # the worker's, not the controller's (times nothing)
    config.workeroutput[KEY] = safe_dumps({"benchmarks": benches, "worker": worker})


def rebuild(entry: dict):
    """A pytest-benchmark ``Metadata`` from one JSON entry (what a worker sent), so the
    controller's session saves, shows and compares it as its own."""
    from pytest_benchmark.stats import Metadata

    fixture = SimpleNamespace(
        name=entry["name"], fullname=entry["fullname"], group=entry.get("group"),
        param=entry.get("param"), params=entry.get("params"),
        extra_info=entry.get("extra_info") or {}, cprofile_stats=None, has_error=False,
    )  # fmt: skip
    stats = entry["stats"]
    meta = Metadata(fixture, stats.get("iterations", 1), entry.get("options") or {})
    for x in stats["data"]:  # per-iteration times already
        meta.stats.update(x)
    return meta


def collect(config, node) -> None:
    """On the controller when a worker is done: add its benchmarks to the session."""
    raw = (getattr(node, "workeroutput", None) or {}).get(KEY)
    if not raw:
        return
    doc = json.loads(raw)
    config._sepgconv_workers = [*getattr(config, "_sepgconv_workers", []), doc["worker"]]
    bs = config._benchmarksession
    bs.benchmarks.extend(rebuild(e) for e in doc["benchmarks"])
    order = {nodeid: i for i, nodeid in enumerate(getattr(config, "_sepgconv_ids", []))}
    bs.benchmarks.sort(key=lambda b: (order.get(b.fullname, len(order)), b.fullname))


def machine_info(config) -> dict | None:
    """The placement of the workers for ``machine_info["sepgconv_env"]["xdist"]``."""
    workers = sorted(getattr(config, "_sepgconv_workers", []), key=lambda w: w["id"])
    if not workers:
        return None
    return {"workers": len(workers), "mode": workers[0]["mode"], "placement": workers}


def malloc_state(placement: dict) -> dict:
    """The allocator state the workers timed under: theirs when they agree, else
    ``{"mode": "mixed", "workers": [...]}`` (which ``bench compare`` will not equate
    with any one mode)."""
    states = [w.get("malloc") or {"mode": "unknown"} for w in placement["placement"]]
    if all(s == states[0] for s in states):
        return states[0]
    return {"mode": "mixed", "workers": states}
