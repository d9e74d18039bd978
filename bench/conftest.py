"""pytest-benchmark entry point for the sweep (with ``bench/test_sweep.py``).

Usage::

    pytest bench/ --benchmark-only                         # smoke profile
    pytest bench/ --benchmark-only --sweep-profile quick   # or full
    pytest bench/ --benchmark-only --benchmark-json out.json
    pytest bench/ --benchmark-only --benchmark-autosave    # .benchmarks/, then
    pytest bench/ --benchmark-only --benchmark-compare     # against the last save

Options added here: ``--sweep-profile`` (``smoke`` | ``quick`` | ``full``,
default ``smoke``) and ``--sweep-device`` (default: ``cuda`` when available).

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
"""

from __future__ import annotations

import time

import pytest

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


def _device(config) -> str:
    return config.getoption("--sweep-device") or profiles.default_device()


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


def pytest_benchmark_update_machine_info(config, machine_info):
    """Add the GPU/torch/threads environment under ``machine_info["sepgconv_env"]``::

    machine_info["sepgconv_env"] = bench.measure.env.collect(device, roofline_ceilings=False)
    """
    from .measure import env

    info = env.collect(_device(config), roofline_ceilings=False)
    for volatile in ("date", "load_avg"):  # not the machine: keep --benchmark-compare quiet
        info.pop(volatile, None)
    machine_info["sepgconv_env"] = info
