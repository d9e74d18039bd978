"""pytest-benchmark entry point for the sweep (with ``bench/test_sweep.py``).

Usage::

    pytest bench/ --benchmark-only                         # smoke profile
    pytest bench/ --benchmark-only --sweep-profile quick   # or full
    pytest bench/ --benchmark-only --benchmark-json out.json
    pytest bench/ --benchmark-only --benchmark-autosave    # .benchmarks/, then
    pytest bench/ --benchmark-only --benchmark-compare     # against the last save
    pytest bench/ --benchmark-only -n auto                 # pytest-xdist: one worker per GPU

Options added here: ``--sweep-profile`` (``smoke`` | ``quick`` | ``full``,
default ``smoke``), ``--sweep-device`` (default: ``cuda`` when available) and
``--allow-parallel-cpu`` (CPU workers of ``-n N`` time at once, pinned to
their own cores, instead of taking turns; see :mod:`bench.workers`), and those of
the contention record (:mod:`bench.measure.session`, as ``bench run`` keeps it):
``--sweep-wait-quiet SECONDS`` (a busy machine is waited for, then the session
stops with exit 2), ``--sweep-force`` (time anyway, marked) and
``--benchmark-allow-disturbed`` (a disturbed session passes; by default it fails).

Each test is one row of the sweep (one :class:`bench.sweep.shapes.Case`, id like
``p4-group-c4x4-k3-h8x8-b1-g-rearranged-fwd-float32-cpu``). Before timing, the
row is built, checked against its reference (a mismatch fails the test; a
shape that cannot fit is skipped), counted (fvcore vs formula) and its peak
memory measured; those numbers go to ``benchmark.extra_info`` and the
identifying keys to the JSON's ``params`` (what ``python -m bench compare``
matches on). On CUDA every test gets a synchronising timer through the
``benchmark`` marker (:func:`cuda_sync_timer`) unless ``--benchmark-timer`` is
given. Unlike ``python -m bench run``, tests run one after another, not
interleaved.

With pytest-xdist (``-n N``) each worker times its share and the controller
writes one JSON with every case once (:mod:`bench.workers`): one worker per
visible GPU; on the CPU the workers take turns unless ``--allow-parallel-cpu``.
"""

from __future__ import annotations

import os
import tempfile
import time

import pytest

from . import workers
from .measure import gate
from .measure import session as watched
from .sweep import profiles

DEFAULT_TIMER = "time.perf_counter"  # pytest-benchmark's default --benchmark-timer


def cuda_sync_timer() -> float:
    """``time.perf_counter()`` after ``torch.cuda.synchronize()``: pytest-benchmark
    never synchronises by itself, so without this it would time kernel launches."""
    import torch

    torch.cuda.synchronize()
    return time.perf_counter()


def pytest_addoption(parser):
    group = parser.getgroup("sepgconv sweep")
    group.addoption(
        "--sweep-profile",
        default="smoke",
        choices=list(profiles.PROFILES),
        help="sweep profile to run as benchmarks (default: smoke)",
    )
    group.addoption(
        "--sweep-device", default=None, help="cpu or cuda (default: cuda if available, else cpu)"
    )
    group.addoption(
        workers.ALLOW_PARALLEL_CPU,
        action="store_true",
        default=False,
        help="with -n N on the CPU: time in all workers at once, each pinned to its own "
        "physical cores (they share memory bandwidth, L3 and the turbo budget: numbers "
        "move); default: the workers take turns",
    )
    watched.add_options(group)


def _device(config) -> str:
    return config.getoption("--sweep-device") or profiles.default_device()


def _machine(config) -> dict:
    """What a placement is planned from: device, option, CPUs, GPUs."""
    import torch

    device = _device(config)
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    allow = bool(config.getoption(workers.ALLOW_PARALLEL_CPU))
    return dict(device=device, allow_parallel_cpu=allow, cpus=cpus or [0], gpus=gpus)


def _plan(config, count: int) -> list[dict]:
    if getattr(config, "_sepgconv_plan", None) is None:
        if getattr(config, "_sepgconv_lock", None) is None:
            fd, config._sepgconv_lock = tempfile.mkstemp(prefix="sepgconv-turns-", suffix=".lock")
            os.close(fd)
        config._sepgconv_plan = workers.plan(count, **_machine(config), lock=config._sepgconv_lock)
    return config._sepgconv_plan


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    workers.hide_benchmark_only(config)  # before pytest-benchmark's session (trylast)
    json_path = config.getoption("benchmark_json", None)
    if isinstance(json_path, str | os.PathLike):  # results/local/… in a fresh clone
        os.makedirs(os.path.dirname(os.fspath(json_path)) or ".", exist_ok=True)
    if workers.is_worker(config):
        config._sepgconv_placement = config.workerinput.get(workers.KEY) or {}
        workers.apply(config._sepgconv_placement)
    elif workers.is_controller(config) and isinstance(config.getoption("numprocesses", None), int):
        try:  # a placement that would distort the timings stops here, cleanly
            _plan(config, config.getoption("numprocesses"))
        except ValueError as e:
            raise pytest.UsageError(str(e)) from None


def pytest_sessionstart(session):
    config = session.config
    workers.reenable(config)
    if workers.is_worker(config):
        return
    import torch

    try:  # a busy machine: wait for it (bounded), else stop before timing anything
        watched.start(config, _device(config), torch.get_num_threads(),
                      in_controller=workers.is_controller(config))  # fmt: skip
    except gate.MachineBusy as e:
        pytest.exit(f"error: {e}", returncode=2)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session):
    """A worker: its benchmarks into ``workeroutput`` (before xdist sends it). Otherwise:
    the contention verdict before pytest-benchmark writes its JSON (its own
    sessionfinish wrapper runs inside this one); a disturbed session fails."""
    config = session.config
    if workers.is_worker(config):
        workers.worker_output(config, config._sepgconv_placement)
    else:
        bs = getattr(config, "_benchmarksession", None)
        watched.finish(config, bs.benchmarks if bs is not None else [])
    yield
    if not workers.is_worker(config) and watched.failed(config) and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table
def pytest_terminal_summary(terminalreporter):
    for i, line in enumerate(watched.summary_lines(terminalreporter.config)):
        terminalreporter.write_line(line, red=True, bold=i == 0)


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The session's ``contention`` verdict and ``gate`` record in ``machine_info``
    (written at the end only: they are not the machine, see the compare hook)."""
    output_json["machine_info"].setdefault("sepgconv_env", {}).update(watched.record(config))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_benchmark_compare_machine_info(config, benchmarksession, machine_info,
                                          compared_benchmark):  # fmt: skip
    """``--benchmark-compare``: a saved run's contention record is not a machine difference."""
    saved = (compared_benchmark.get("machine_info") or {}).get("sepgconv_env") or {}
    for volatile in ("contention", "gate"):
        saved.pop(volatile, None)
    yield


def pytest_report_header(config):
    plan = getattr(config, "_sepgconv_plan", None)
    if not plan:
        return None
    p = plan[0]
    if len(plan) == 1:
        where = f"GPU {p['gpu']}" if p["gpu"] is not None else "the CPU"
        return f"sepgconv: one xdist worker, on {where}"
    if p["mode"] == "turns":
        return (
            f"sepgconv: {len(plan)} CPU workers take turns (timings as with one worker); "
            f"{workers.ALLOW_PARALLEL_CPU} runs them at once, pinned to their own cores"
        )
    where = "one GPU each" if p["gpu"] is not None else "CPU"
    pins = f", {p['threads']} cores/threads each" if p["cpus"] else ", not pinned"
    return f"sepgconv: {len(plan)} workers at once ({where}{pins}; see bench/workers.py)"


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_auto_num_workers(config):
    return workers.auto_count(**_machine(config))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    info = node.workerinput
    index = int(str(info["workerid"]).removeprefix("gw"))
    node.workerinput[workers.KEY] = _plan(node.config, int(info["workercount"]))[index]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids):
    if not getattr(node.config, "_sepgconv_ids", None):
        node.config._sepgconv_ids = list(ids)  # the order of the JSON's benchmarks


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    workers.collect(node.config, node)


def pytest_unconfigure(config):
    lock = getattr(config, "_sepgconv_lock", None)
    if lock:
        try:
            os.unlink(lock)
        except OSError:
            pass


@pytest.fixture(autouse=True)
def _worker_turn(request):
    """CPU workers of ``-n N`` in turns: hold the shared lock for the whole test."""
    with workers.turn(getattr(request.config, "_sepgconv_placement", None)):
        yield


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    config = metafunc.config
    device = _device(config)
    profile = profiles.get_profile(config.getoption("--sweep-profile"))
    timer = config.getoption("benchmark_timer", DEFAULT_TIMER)
    sync = device.startswith("cuda") and str(timer) == DEFAULT_TIMER
    params = []
    for case in profile.cases(device):
        options = {"group": f"{case.shape.label()}-{case.pass_}"}
        if sync:
            options["timer"] = cuda_sync_timer
        params.append(pytest.param(case, id=case.id(), marks=pytest.mark.benchmark(**options)))
    metafunc.parametrize("case", params)


@pytest.fixture(scope="session")
def mac_cache() -> dict:
    """fvcore counts shared by the tests of one session."""
    return {}


@pytest.fixture(scope="session")
def steady_allocator() -> dict:
    """glibc's malloc thresholds fixed before the first timed case, as in ``bench run``
    (:mod:`bench.measure.allocator`); what was done goes to ``machine_info``."""
    from .measure import allocator

    return allocator.steady()


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the GPU/torch/threads environment under ``machine_info["sepgconv_env"]``::

    machine_info["sepgconv_env"] = bench.measure.env.collect(device, roofline_ceilings=False)

    With pytest-xdist, ``sepgconv_env["xdist"]`` records the workers' placement, and
    ``threads`` is a worker's when they ran at once, pinned.
    """
    from .measure import env

    info = env.collect(_device(config), roofline_ceilings=False)
    for volatile in ("date", "load_avg"):  # not the machine: keep --benchmark-compare quiet
        info.pop(volatile, None)
    placement = workers.machine_info(config)
    if placement:
        info["xdist"] = placement
        info["malloc"] = workers.malloc_state(placement)  # the workers timed, not this process
        threads = {w.get("threads") for w in placement["placement"]}
        if len(threads) == 1 and None not in threads:
            info["threads"] = threads.pop()
    machine_info["sepgconv_env"] = info
