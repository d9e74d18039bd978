"""The CUDA paths that never ran, checked on the CPU (issue 17).

Each test fakes the CUDA-specific value it needs (``torch.cuda`` functions, the
profiler's events, a signal) and pins one defect a first GPU run would meet:

1. no MAC counter → ``macs_match`` unknown, never False, said once;
2. a CUDA profile without kernels (no CUPTI) → CPU-side times, or no plot, with the reason;
3. ``mem_reserved_bytes`` → the call's own reserve, not earlier rows' cache;
4. SIGTERM → the same clean stop as Ctrl-C (``bench run`` and ``bench models``);
5. a failed call's exception keeps no frames, so its tensors are freed;
6. TF32 and ``cudnn.benchmark`` → recorded, and a difference blocks latency verdicts.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import weakref
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bench import cli
from bench.judge import comparable
from bench.judge.runs import Run
from bench.measure import env, memory, timing
from bench.pipeline import driver, profiler
from bench.pipeline import models as model_bench
from bench.report import build, plots
from bench.store import results
from bench.store.record import Result
from bench.sweep import profiles, shapes

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ["run", "--profile", "smoke", "--device", "cpu", "--no-report", "--no-profile",
         "--no-peers"]  # fmt: skip

GC = shapes.Impl("gc", "rearranged")

pytestmark = pytest.mark.usefixtures("one_thread")


def _rows(path: Path) -> list[dict]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


# ------------------------------------------------------ 1. no MAC counter


def test_a_run_without_fvcore_reports_macs_match_unknown_and_says_so_once(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setitem(sys.modules, "fvcore.nn", None)  # `import fvcore.nn` now fails
    argv = [*SMOKE, "--out", str(tmp_path), "--max-shapes", "1"]
    assert cli.main([*argv, "--impl", "full/naive", "--impl", "gc/rearranged"]) == 0
    rows = _rows(tmp_path / results.RESULTS_CSV)
    assert rows and all(r["status"] == "ok" for r in rows)
    assert all(r["macs_measured"] == "" and r["macs_match"] == "" for r in rows), rows[0]
    assert all("fvcore failed" in r["macs_unsupported"] for r in rows)
    doc = json.loads((tmp_path / results.BENCHMARK_JSON).read_text())
    assert all(b["extra_info"]["macs_match"] is None for b in doc["benchmarks"])
    environment = json.loads((tmp_path / results.ENV_JSON).read_text())
    assert "fvcore" in environment["mac_counter_error"]
    err = capsys.readouterr().err
    assert err.count("MAC counter (fvcore) cannot be imported") == 1, err
    notes = build.load_results(tmp_path).notes
    assert any("MACs were not measured" in n for n in notes), notes


def test_with_fvcore_the_counter_is_recorded_as_available(tmp_path):
    argv = [*SMOKE, "--out", str(tmp_path), "--max-shapes", "1", "--impl", "gc/rearranged"]
    assert cli.main(argv) == 0
    assert json.loads((tmp_path / results.ENV_JSON).read_text())["mac_counter_error"] is None
    assert {r["macs_match"] for r in _rows(tmp_path / results.RESULTS_CSV)} == {"True"}


# --------------------------------------------- 2. a profile without kernels


@dataclass
class _Event:
    """What :func:`bench.pipeline.profiler.categorize` reads of a profiler event."""

    name: str
    cpu_parent: object = None
    sequence_nr: int = -1
    device_type: str = "DeviceType.CPU"
    self_cpu_time_total: float = 0.0
    self_device_time_total: float = 0.0


def _events(device_us: float) -> list[_Event]:
    """A pointwise region with a conv under it, and a top-level copy (µs)."""
    region = _Event("sepgconv.pointwise", self_cpu_time_total=1.0)
    conv = _Event("aten::conv2d", region, self_cpu_time_total=10.0,
                  self_device_time_total=device_us)  # fmt: skip
    copy = _Event("aten::copy_", self_cpu_time_total=3.0, self_device_time_total=device_us / 2)
    kernel = _Event("sm90_kernel", device_type="DeviceType.CUDA", self_device_time_total=device_us)
    return [region, conv, copy] + ([kernel] if device_us else [])


class _FakeProfile:
    events_us = 0.0

    def __init__(self, *args, **kwargs):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def events(self):
        return _events(self.events_us)

    def export_chrome_trace(self, path):
        Path(path).write_text("{}")


@pytest.fixture
def fake_cuda_profiler(monkeypatch):
    monkeypatch.setattr(_FakeProfile, "events_us", 0.0)  # no CUPTI: no kernel recorded
    monkeypatch.setattr(torch.profiler, "profile", _FakeProfile)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    return _FakeProfile


def test_a_cuda_profile_without_kernels_falls_back_to_cpu_times(fake_cuda_profiler, monkeypatch):
    ms, clock = profiler.profile_step(lambda: None, "cuda", 2, 3)
    assert clock == profiler.NO_KERNELS
    assert ms["pointwise conv"] == pytest.approx(11.0 / 2 / 1e3)  # CPU self µs → ms per call
    assert ms["copies/permutes"] == pytest.approx(3.0 / 2 / 1e3)
    monkeypatch.setattr(fake_cuda_profiler, "events_us", 40.0)  # CUPTI: device time, as before
    ms, clock = profiler.profile_step(lambda: None, "cuda", 2, 3)
    assert clock == "device" and ms["pointwise conv"] == pytest.approx(40.0 / 2 / 1e3)
    assert profiler.profile_step(lambda: None, "cpu", 2, 3)[1] == "cpu"


def test_the_fallback_is_said_once_and_marked_in_profile_csv(
    fake_cuda_profiler, monkeypatch, tmp_path, capsys
):
    shape = shapes.Shape("p4", "group", 4, 4, 3, 8, 8, 2, device="cuda")
    impls = [shapes.REFERENCE, GC]

    def prepared(case, count=True):
        return driver.Prepared(driver.base_result(case.shape, case.impl, case.pass_), lambda: 0)

    monkeypatch.setattr(driver, "prepare_case", prepared)
    rows = profiler.profile_shape(shape, impls, passes=("fwd",), trace_dir=None)
    assert rows and {r["clock"] for r in rows} == {profiler.NO_KERNELS}
    assert sum(r["time_ms"] for r in rows) > 0
    assert capsys.readouterr().err.count("recorded no CUDA kernel") == 1
    path = profiler.write_profile_csv(rows, tmp_path / profiler.PROFILE_CSV)
    assert tuple(_rows(path)[0]) == profiler.PROFILE_COLUMNS


def _report_folder(tmp_path: Path, clock: str, time_ms: float) -> Path:
    """A results folder of one row and a profile of two implementations."""
    shape = shapes.Shape("p4", "group", 4, 4, 3, 8, 8, 2)
    r = driver.base_result(shape, shapes.REFERENCE, "fwd")
    r.status = "ok"
    with results.ResultsWriter(tmp_path, resume=False) as w:
        w.write([r])
    prof = [
        {**shapes.Case(shape, im, "fwd").params(), "category": c, "time_ms": time_ms,
         "clock": clock}
        for im in (shapes.REFERENCE, GC)
        for c in profiler.CATEGORIES
    ]  # fmt: skip
    profiler.write_profile_csv(prof, tmp_path / profiler.PROFILE_CSV)
    return tmp_path


def test_an_all_zero_profile_is_not_drawn_and_the_reason_is_given(tmp_path):
    res = build.load_results(_report_folder(tmp_path, "device", 0.0))
    with pytest.raises(plots.Skip, match="every time in profile.csv is 0 ms.*CUPTI"):
        plots.plot_profile(res)


def test_a_cpu_side_profile_says_so_in_the_title_and_readme(tmp_path):
    res = build.load_results(_report_folder(tmp_path, profiler.NO_KERNELS, 0.5))
    fig = plots.plot_profile(res)
    assert "CPU-side self time" in fig._suptitle.get_text()
    assert any("recorded no CUDA kernel" in n for n in res.notes), res.notes


# ------------------------------------------------- 3. mem_reserved_bytes


class _FakeAllocator:
    """The caching allocator's counters, as torch.cuda reports them (bytes).

    ``slack``: free space inside segments that hold live blocks (the input's): what
    ``empty_cache`` cannot give back, and what a small call is served from first.
    """

    def __init__(self, allocated: int, cached: int, slack: int = 0):
        self.allocated = allocated
        self.slack = slack
        self.reserved = allocated + slack + cached  # blocks cached by earlier rows
        self.peak_allocated = self.peak_reserved = 0

    def empty_cache(self):
        self.reserved = self.allocated + self.slack

    def reset_peak_memory_stats(self, device=None):
        self.peak_allocated, self.peak_reserved = self.allocated, self.reserved

    def alloc(self, n: int):
        self.allocated += n
        # free space in existing segments (cached or slack) is reused first
        self.reserved = max(self.reserved, self.allocated + self.slack)
        self.peak_allocated = max(self.peak_allocated, self.allocated)
        self.peak_reserved = max(self.peak_reserved, self.reserved)

    def install(self, monkeypatch):
        cuda = torch.cuda
        monkeypatch.setattr(cuda, "synchronize", lambda *a, **k: None)
        monkeypatch.setattr(cuda, "empty_cache", self.empty_cache)
        monkeypatch.setattr(cuda, "reset_peak_memory_stats", self.reset_peak_memory_stats)
        monkeypatch.setattr(cuda, "memory_allocated", lambda d=None: self.allocated)
        monkeypatch.setattr(cuda, "memory_reserved", lambda d=None: self.reserved)
        monkeypatch.setattr(cuda, "max_memory_allocated", lambda d=None: self.peak_allocated)
        monkeypatch.setattr(cuda, "max_memory_reserved", lambda d=None: self.peak_reserved)
        monkeypatch.setattr(memory.env, "nvml_used_bytes", lambda d: None)


def test_mem_reserved_is_the_calls_own_reserve_not_earlier_rows_cache(monkeypatch):
    gb = 2**30
    fake = _FakeAllocator(allocated=100 * 2**20, cached=6 * gb)  # a g/rearranged row before

    def step():
        fake.alloc(gb)  # the call's working memory, freed at its end
        fake.allocated -= gb

    fake.install(monkeypatch)
    mem = memory.peak_memory(step, "cuda")
    assert mem.peak_mem_bytes == gb
    assert mem.mem_reserved_bytes == gb  # not 7 GB: the 6 GB cache was emptied first
    again = memory.peak_memory(step, "cuda")  # the first call's reserve is not inherited
    assert again.mem_reserved_bytes == gb


def test_mem_reserved_covers_a_call_served_from_its_inputs_segment(monkeypatch):
    # the H200's failure: a 4 MiB input lives in a 20 MiB segment, and the call's 8 MiB
    # fit into its free 16 MiB: the reserve did not grow, yet the call needed it
    mib = 2**20
    fake = _FakeAllocator(allocated=4 * mib, cached=0, slack=16 * mib)

    def step():
        fake.alloc(8 * mib)
        fake.allocated -= 8 * mib

    fake.install(monkeypatch)
    mem = memory.peak_memory(step, "cuda")
    assert mem.peak_mem_bytes == 8 * mib
    assert mem.mem_reserved_bytes >= mem.peak_mem_bytes  # segment growth read 0 here
    assert mem.mem_reserved_bytes == 8 * mib + 16 * mib  # the working memory + the slack


# ---------------------------------------------------------- 4. SIGTERM


class _Killed(Exception):
    """What SIGTERM raises when the code under test installed no handler."""


@pytest.fixture
def sigterm_guard():
    """A SIGTERM handler of the test's own, so a missing fix fails the test instead of
    killing pytest; checks that the code under test restored it."""

    def guard(signum, frame):
        raise _Killed("SIGTERM reached the test's handler: nobody turned it into a stop")

    previous = signal.signal(signal.SIGTERM, guard)
    yield
    assert signal.getsignal(signal.SIGTERM) is guard, "the SIGTERM handler was not restored"
    signal.signal(signal.SIGTERM, previous)


def _terminate_on_call(n: int, real):
    calls = {"n": 0}

    def timed(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            os.kill(os.getpid(), signal.SIGTERM)  # its handler runs before the next line
        return real(*args, **kwargs)

    return timed


@pytest.mark.slow
def test_sigterm_stops_bench_run_like_ctrl_c(tmp_path, monkeypatch, capsys, sigterm_guard):
    monkeypatch.setattr(driver, "time_interleaved", _terminate_on_call(4, timing.time_interleaved))
    argv = [*SMOKE, "--out", str(tmp_path), "--impl", "full/naive", "--impl", "gc/rearranged"]
    assert cli.main(argv) == 130
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    kept = _rows(tmp_path / results.RESULTS_CSV)
    cases = profiles.get_profile("smoke").cases("cpu", [shapes.REFERENCE, GC])
    windows = list(dict.fromkeys((c.shape, c.pass_) for c in cases))
    assert len(kept) == sum((c.shape, c.pass_) in windows[:3] for c in cases)  # 3 were timed
    doc = json.loads((tmp_path / results.BENCHMARK_JSON).read_text())
    assert sorted(shapes.params_key(b["params"]) for b in doc["benchmarks"]) == sorted(
        shapes.params_key(r) for r in kept if r["status"] == "ok"
    )
    environment = json.loads((tmp_path / results.ENV_JSON).read_text())
    assert environment["interrupted"] == "SIGTERM" and environment["wall_s"] > 0
    assert doc["machine_info"]["sepgconv_env"]["interrupted"] == "SIGTERM"


@pytest.mark.slow
def test_ctrl_c_still_writes_wall_s_and_exits_130(tmp_path, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(driver, "time_interleaved", interrupted)
    assert cli.main([*SMOKE, "--out", str(tmp_path), "--impl", "full/naive"]) == 130
    environment = json.loads((tmp_path / results.ENV_JSON).read_text())
    assert environment["interrupted"] == "SIGINT" and "wall_s" in environment
    assert (tmp_path / results.BENCHMARK_JSON).is_file()


MODELS = ["models", "--device", "cpu", "--quick", "--models", "z2cnn", "--batches", "2",
          "--passes", "fwd,fwdbwd", "--no-memory"]  # fmt: skip


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT"])
def test_bench_models_stops_cleanly(tmp_path, monkeypatch, capsys, sigterm_guard, how):
    real = timing.time_interleaved
    if how == "SIGTERM":
        timed = _terminate_on_call(2, real)
    else:
        calls = {"n": 0}

        def timed(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt
            return real(*args, **kwargs)

    monkeypatch.setattr(model_bench, "time_interleaved", timed)
    try:
        code = cli.main([*MODELS, "--out", str(tmp_path)])
    except KeyboardInterrupt:
        pytest.fail("bench models let the interrupt escape (a traceback for the user)")
    assert code == 130
    assert f"{how}: stopped" in capsys.readouterr().err
    kept = _rows(tmp_path / results.MODELS_CSV)
    assert {(r["model"], r["pass"]) for r in kept} == {("z2cnn", "fwd")}  # the finished pass
    environment = json.loads((tmp_path / results.ENV_JSON).read_text())
    assert environment["interrupted"] == how and "wall_s" in environment


@pytest.mark.slow
def test_bench_run_sent_sigterm_leaves_a_valid_benchmark_json(tmp_path):
    """As a user (or ``timeout``) does it: a real process, a real signal."""
    cmd = [sys.executable, "-m", "bench", "run", "--profile", "quick", "--device", "cpu",
           "--out", str(tmp_path), "--no-report", "--no-profile", "--no-peers",
           "--impl", "full/naive"]  # fmt: skip
    environ = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    csv_path = tmp_path / results.RESULTS_CSV
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            if csv_path.is_file() and len(csv_path.read_text().splitlines()) >= 3:
                break  # a header and two rows
            time.sleep(0.2)
        assert proc.poll() is None, "the run ended before it could be terminated"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err[-2000:]
    assert "terminated (SIGTERM)" in err
    kept = _rows(csv_path)
    doc = json.loads((tmp_path / results.BENCHMARK_JSON).read_text())
    assert len(doc["benchmarks"]) == sum(r["status"] == "ok" for r in kept) >= 2
    assert json.loads((tmp_path / results.ENV_JSON).read_text())["interrupted"] == "SIGTERM"


# ------------------------------------------- 5. failed calls keep no frames


def _failing_step(refs: list, after: int = 0):
    """A step that allocates a tensor (watched by a weakref) and then fails, from its
    ``after + 1``-th call on."""
    calls = {"n": 0}

    def step():
        calls["n"] += 1
        big = torch.ones(1024)
        refs.append(weakref.ref(big))
        if calls["n"] > after:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        return big.sum()

    return step


@pytest.mark.parametrize("after", [0, 3], ids=["in-warm-up", "in-timed-rounds"])
def test_a_failed_calls_tensors_are_freed(after):
    refs: list = []
    t = timing.Timing(budget_s=0.005, block_s=0.0005, min_samples=5, max_samples=10, warmup_s=0)
    out = timing.time_interleaved(
        {"bad": _failing_step(refs, after), "ok": lambda: torch.ones(4).sum()}, "cpu", t
    )
    e = out["bad"]
    assert isinstance(e, torch.OutOfMemoryError) and "out of memory" in str(e)
    assert isinstance(out["ok"], timing.Samples)
    assert e.__traceback__ is None and e.__context__ is None and e.__cause__ is None
    assert refs and all(r() is None for r in refs), "the failed call's tensor is alive"


def test_the_cache_is_emptied_after_the_failed_calls_tensors_are_gone(monkeypatch):
    """driver._fail empties the CUDA cache: only useful once the frames let go."""
    refs: list = []
    seen = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: seen.append(refs[-1]() is None))
    r = Result(kind="layer")
    try:
        _failing_step(refs)()
    except torch.OutOfMemoryError as e:
        driver._fail(r, e, "cuda")
    assert r.status == "oom" and "out of memory" in r.error
    assert seen == [True], "the failed call's tensor was alive when the cache was emptied"


# ------------------------------------------------ 6. TF32, cudnn.benchmark


def test_env_records_tf32_and_cudnn_benchmark_on_cuda(monkeypatch):
    @dataclass
    class Props:
        major: int = 9
        minor: int = 0
        total_memory: int = 80 * 2**30
        multi_processor_count: int = 132

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d=None: Props())
    monkeypatch.setattr(env, "_nvml", lambda: None)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    e = env.collect("cuda", roofline_ceilings=False)
    assert e["allow_tf32_matmul"] == torch.backends.cuda.matmul.allow_tf32
    assert e["allow_tf32_cudnn"] == torch.backends.cudnn.allow_tf32
    assert e["cudnn_benchmark"] is True


def _run(**environment) -> Run:
    base = {"device": "cuda", "device_name": "NVIDIA H100", "cpu_model": "x", "torch": "2.11",
            "threads": 8, "allow_tf32_matmul": False, "allow_tf32_cudnn": True,
            "cudnn_benchmark": False, "contention": {"disturbed": False}}  # fmt: skip
    return Run("run", {"sepgconv_env": {**base, **environment}}, {}, {})


@pytest.mark.parametrize(
    "key, why",
    [
        ("allow_tf32_matmul", "TF32 matmul"),
        ("allow_tf32_cudnn", "TF32 cuDNN"),
        ("cudnn_benchmark", "cuDNN benchmark"),
    ],
)
def test_a_tf32_or_cudnn_benchmark_change_withholds_latency_verdicts(key, why):
    same = comparable.check(_run(), _run())
    assert same.comparable and same.latency and not same.unknown
    base = _run()
    new = _run(**{key: not base.env[key]})
    c = comparable.check(base, new)
    assert not c.latency and any(why in r for r in c.reasons), c.reasons
    assert comparable.check(base, new, force=True).forced


def test_the_cuda_flags_do_not_concern_cpu_runs():
    cpu = {"device": "cpu", "allow_tf32_matmul": None, "allow_tf32_cudnn": None}
    c = comparable.check(_run(**cpu), _run(**cpu, cudnn_benchmark=True))
    assert c.comparable and not c.unknown


def test_a_cuda_run_without_the_flags_is_unknown_not_blocking():
    old = _run()
    for key in ("allow_tf32_matmul", "allow_tf32_cudnn", "cudnn_benchmark"):
        del old.env[key]
    c = comparable.check(old, _run())
    assert c.latency and len(c.unknown) == 3


def test_profile_columns_hold_what_the_report_reads():
    assert set(build.PROFILE_COLUMNS) <= set(profiler.PROFILE_COLUMNS)
