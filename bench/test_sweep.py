"""The sweep as pytest-benchmark tests (see ``bench/conftest.py`` for usage)."""

from __future__ import annotations

import pytest
import torch

from .measure import contention
from .measure import session as watched
from .pipeline import driver
from .store.benchmark_json import EXTRA_INFO_KEYS


def test_sweep(benchmark, case, mac_cache, steady_allocator):
    prepared = driver.prepare_case(case, mac_cache)
    r = prepared.result
    if r.status == "skipped":
        pytest.skip(r.error)
    if r.status != "ok":  # mismatch (correctness before timing), error or oom
        pytest.fail(f"{r.status}: {r.error}", pytrace=False)
    benchmark.params = case.params()  # the keys `python -m bench compare` matches on
    row = r.row()
    # known before timing (latency-derived columns are not: see results.csv of `bench run`)
    benchmark.extra_info.update({k: row[k] for k in EXTRA_INFO_KEYS if row[k] is not None})
    benchmark.extra_info["macs_unsupported"] = r.macs_unsupported
    start = contention.read_counters()  # the timing's window, as bench run keeps per row
    if case.shape.device.startswith("cuda"):
        # make the timed device current, so the synchronising timer waits for it
        with torch.cuda.device(case.shape.device):
            benchmark(prepared.step)
    else:
        benchmark(prepared.step)
    threads = torch.get_num_threads()
    benchmark.extra_info.update(watched.window_info(start, threads, case.shape.device))
