"""The environment of a run, and the roofline ceilings measured on the spot.

:func:`collect` returns one flat dict (written to ``env.json`` and, as
``machine_info["sepgconv_env"]``, into ``benchmark.json``): torch version,
device and its model, CPU model, threads, CUDA/cuDNN/driver versions, TF32
flags, NVML clocks when NVML is there, plus :func:`roofline`'s
``peak_gmacs_per_s`` (a large float32 matmul, MACs = m·n·k) and
``peak_bandwidth_gb_per_s`` (a large tensor copy, bytes read + written).

NVML (``pynvml`` from nvidia-ml-py) is optional: without it, or without an
NVIDIA driver, the NVML fields are simply absent / None.
"""

from __future__ import annotations

import datetime
import functools
import os
import platform
import time

import torch

from . import allocator
from .slug import slugify


def cpu_model() -> str:
    """The CPU's model name: :func:`sepgconv.autotune.device_name`'s, the project's one
    CPU-model reader (``/proc/cpuinfo``, else :mod:`platform`), so that a run's
    machine and the autotune cache's device are the same string."""
    from sepgconv.autotune import device_name as library_device_name

    name = library_device_name("cpu")
    return name if name and name != "cpu" else "unknown-cpu"


def device_name(device: str) -> str:
    """GPU name for CUDA devices, CPU model otherwise."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return cpu_model()


def device_slug(device: str) -> str:
    """``cpu-intel-xeon-platinum-8375c`` / ``nvidia-h100-80gb-hbm3``."""
    name = slugify(device_name(device))
    if device.startswith("cuda"):
        return name
    return name if name.startswith("cpu") else f"cpu-{name}"


# ---------------------------------------------------------------------- #
# NVML
# ---------------------------------------------------------------------- #
@functools.lru_cache(maxsize=1)
def _nvml():
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - no library, no driver: NVML absent
        return None


def _nvml_handle(device: torch.device):
    nv = _nvml()
    if nv is None or device.type != "cuda":
        return None
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        uuid = str(torch.cuda.get_device_properties(index).uuid)
        return nv.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
    except Exception:  # noqa: BLE001 - fall back to the index
        try:
            return nv.nvmlDeviceGetHandleByIndex(index)
        except Exception:  # noqa: BLE001
            return None


def nvml_used_bytes(device: torch.device | str) -> int | None:
    """NVML's device-memory-used figure (every process), or None without NVML."""
    handle = _nvml_handle(torch.device(device))
    if handle is None:
        return None
    try:
        return int(_nvml().nvmlDeviceGetMemoryInfo(handle).used)
    except Exception:  # noqa: BLE001
        return None


def _nvml_info(device: torch.device) -> dict:
    nv, handle = _nvml(), _nvml_handle(device)
    if handle is None:
        return {}
    info = {}
    for key, fn in (
        ("driver", lambda: nv.nvmlSystemGetDriverVersion()),
        ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)),
        ("mem_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM)),
        ("sm_clock_max_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_SM)),
        ("mem_clock_max_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_MEM)),
        ("power_limit_w", lambda: nv.nvmlDeviceGetPowerManagementLimit(handle) / 1000),
        ("temperature_c", lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
    ):
        try:
            value = fn()
            info[key] = value.decode() if isinstance(value, bytes) else value
        except Exception:  # noqa: BLE001
            pass
    return info


def gpu_state(device: torch.device | str) -> dict:
    """NVML's clocks, throttle reasons, temperature and power now ({} without NVML).

    ``throttle_reasons`` is NVML's bitmask of why the clocks are below their
    maximum (``nvmlDeviceGetCurrentClocksThrottleReasons``; see
    :data:`bench.measure.contention.GPU_THROTTLE_BAD`).
    """
    nv, handle = _nvml(), _nvml_handle(torch.device(device))
    if handle is None:
        return {}
    reasons = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None
    )
    state = {}
    for key, fn in (
        ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_SM)),
        ("sm_clock_max_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(handle, nv.NVML_CLOCK_SM)),
        ("mem_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(handle, nv.NVML_CLOCK_MEM)),
        ("throttle_reasons", lambda: int(reasons(handle))),
        ("temperature_c", lambda: nv.nvmlDeviceGetTemperature(handle, nv.NVML_TEMPERATURE_GPU)),
        ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(handle) / 1000),
    ):
        try:
            state[key] = fn()
        except Exception:  # noqa: BLE001 - one unreadable field leaves the others
            pass
    return state


def gpu_processes(device: torch.device | str) -> dict:
    """Compute processes NVML lists on the GPU, and how many are not this one.

    ``{"listed": N, "foreign": M, "foreign_pids": [...], "foreign_memory_bytes": B}``
    ({} without NVML). Inside a PID namespace NVML lists host PIDs, so this
    process's own PID may be missing from the list; it is then taken to be one of
    the listed entries (a process holding a CUDA context is always listed), so
    ``foreign = listed - 1``. A neighbour that NVML does not list at all (no
    permission, or MIG) is invisible here; the clock-under-load check of
    :func:`bench.measure.contention.gpu_reasons` still sees its effect.
    """
    nv, handle = _nvml(), _nvml_handle(torch.device(device))
    if handle is None:
        return {}
    try:
        procs = list(nv.nvmlDeviceGetComputeRunningProcesses(handle))
    except Exception:  # noqa: BLE001 - not supported / no permission: unknown
        return {}
    return foreign_processes([(int(p.pid), p.usedGpuMemory) for p in procs], os.getpid())


def foreign_processes(procs: list[tuple[int, int | None]], me: int) -> dict:
    """The :func:`gpu_processes` summary of NVML's ``(pid, used bytes)`` list."""
    pids = [pid for pid, _ in procs]
    if me in pids:
        others = [(pid, used) for pid, used in procs if pid != me]
    else:  # our own entry under a host PID: assume it is the one using the most memory
        others = sorted(procs, key=lambda p: p[1] or 0)[:-1] if procs else []
    return {
        "listed": len(procs),
        "foreign": len(others),
        "foreign_pids": sorted(pid for pid, _ in others),
        "foreign_memory_bytes": int(sum(used or 0 for _, used in others)),
    }


def gpu_loaded_state(device: torch.device | str, seconds: float = 0.25) -> dict:
    """:func:`gpu_state` read while the GPU runs matmuls (its clocks under load).

    Matmuls worth about ``seconds`` are queued, NVML is read while they run, then
    the device is synchronised. Idle GPUs sit at low clocks and boost when work
    arrives: only a reading under load says what clocks the timed work gets.
    The result carries ``"loaded": True`` and :func:`gpu_processes`' ``foreign``.
    """
    dev = torch.device(device)
    state = gpu_state(dev)
    if not state:
        return {}
    a = torch.randn(2048, 2048, device=dev)
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(4):
        a @ a
    torch.cuda.synchronize(dev)
    one = max((time.perf_counter() - t0) / 4, 1e-6)
    for _ in range(max(1, min(int(seconds / one), 20000))):
        a @ a  # queued: the GPU is busy for about `seconds` from here
    time.sleep(min(seconds / 2, 0.5))
    state = gpu_state(dev) | {"loaded": True}
    torch.cuda.synchronize(dev)
    procs = gpu_processes(dev)
    if procs:
        state["foreign_processes"] = procs["foreign"]
        state["foreign_pids"] = procs["foreign_pids"]
    return state


def warm_gpu(device: torch.device | str, max_s: float = 4.0) -> dict:
    """Bring the GPU to its working clocks; the last :func:`gpu_loaded_state`.

    Loaded readings are repeated until the SM clock under load is steady (two
    readings within 2 %) or ``max_s`` passed: the reference a run's end is
    compared with (DESIGN §4: a GPU that boosts from idle is not disturbed).
    """
    t0 = time.perf_counter()
    state = gpu_loaded_state(device)
    while state and time.perf_counter() - t0 < max_s:
        nxt = gpu_loaded_state(device)
        a, b = state.get("sm_clock_mhz"), nxt.get("sm_clock_mhz")
        state = nxt
        if a and b and abs(b / a - 1) <= 0.02:
            break
    if state:
        state["warm_s"] = round(time.perf_counter() - t0, 2)
    return state


# ---------------------------------------------------------------------- #
# environment + roofline
# ---------------------------------------------------------------------- #
def collect(device: str, roofline_ceilings: bool = True) -> dict:
    """The environment of a run on ``device`` (a flat, JSON-ready dict)."""
    import sepgconv

    dev = torch.device(device)
    env = {
        "device": dev.type,
        "device_name": device_name(device),
        "device_slug": device_slug(device),
        "cpu_model": cpu_model(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "sepgconv": sepgconv.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "interop_threads": torch.get_num_interop_threads(),
        "cpu_count": os.cpu_count(),
        "load_avg": collect_load_avg(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "driver": None,
        "nvml": _nvml() is not None,
        "malloc": allocator.state(),  # fixed or not by bench.measure.allocator.steady
    }
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update(
            capability=f"{props.major}.{props.minor}",
            gpu_memory_bytes=int(props.total_memory),
            multiprocessors=props.multi_processor_count,
            allow_tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
            allow_tf32_cudnn=torch.backends.cudnn.allow_tf32,
            cudnn_benchmark=torch.backends.cudnn.benchmark,
        )
        env.update(_nvml_info(dev))
    if roofline_ceilings:
        env.update(roofline(device))
    return env


def collect_load_avg() -> list[float] | None:
    """1, 5 and 15 minute load averages (others' load skews CPU timings)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (OSError, AttributeError):
        return None


def _best_s(fn, device: torch.device, repeats: int, budget_s: float) -> float:
    """Fastest of ``repeats`` timed calls (after one warm-up), within ``budget_s``."""
    fn()
    best, start = float("inf"), time.perf_counter()
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() - start > budget_s:
            break
    return best


def _matmul(n: int, dev: torch.device, dtype: torch.dtype = torch.float32):
    a = torch.randn(n, n, device=dev, dtype=dtype)
    b = torch.randn(n, n, device=dev, dtype=dtype)
    return lambda: torch.mm(a, b)


def _copy(numel: int, dev: torch.device):
    src = torch.randn(numel, device=dev)
    dst = torch.empty_like(src)
    return lambda: dst.copy_(src)


def roofline(device: str) -> dict:
    """Ceilings measured now: float32 matmul GMAC/s and copy GB/s (≤ ~5 s on CPU).

    Matmul: ``n×n @ n×n`` (n = 2048 on CPU, 8192 on CUDA), MACs = n³. Copy:
    ``dst.copy_(src)`` of 256 MiB (CPU) / 1 GiB (CUDA) of float32, bytes =
    2 × size (read + write). The fastest repetition counts. On CUDA the float32
    matmul follows ``torch.backends.cuda.matmul.allow_tf32`` (recorded beside
    it); ``peak_gmacs_per_s_tf32`` / ``_float16`` / ``_bfloat16`` are measured
    too, since cuDNN runs float32 convolutions in TF32 by default.
    """
    dev = torch.device(device)
    cuda = dev.type == "cuda"
    repeats = 10 if cuda else 5
    n = 8192 if cuda else 2048
    t_mm = _best_s(_matmul(n, dev), dev, repeats, budget_s=2.0)
    numel = (2**30 if cuda else 2**28) // 4
    t_cp = _best_s(_copy(numel, dev), dev, repeats, budget_s=2.0)
    nbytes = 2 * numel * 4
    extra = {}
    if cuda:  # what the low-precision and TF32 rows can reach (m = n = k = n)
        for name, dtype, tf32 in (
            ("tf32", torch.float32, True),
            ("float16", torch.float16, False),
            ("bfloat16", torch.bfloat16, False),
        ):
            before = torch.backends.cuda.matmul.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = tf32
            try:
                t = _best_s(_matmul(n, dev, dtype), dev, repeats, budget_s=1.0)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = before
            extra[f"peak_gmacs_per_s_{name}"] = n**3 / t / 1e9
    return {
        "peak_gmacs_per_s": n**3 / t_mm / 1e9,
        "peak_bandwidth_gb_per_s": nbytes / t_cp / 1e9,
        "roofline_matmul_n": n,
        "roofline_copy_bytes": nbytes,
        **extra,
    }
