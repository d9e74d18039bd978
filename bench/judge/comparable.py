"""Comparable or not: whether two runs may get latency verdicts at all.

A latency (absolute or ratio) compared across machine models, torch builds,
thread counts or, on a GPU, TF32 and cuDNN-benchmark settings measures the
change of machine, not of the code — a ratio
too: a different CPU has different caches and vector units, and the
implementations move differently. And a run flagged as *disturbed* by the
contention check (``machine_info.sepgconv_env.contention.disturbed``, see
:mod:`bench.measure.contention`) has wrong latencies throughout. So:

* :data:`BLOCKING` fields that differ between BASE and NEW, a disturbed run
  on either side, or CPU memory bandwidths of the runs (median window) more than
  :data:`BANDWIDTH_TOLERANCE` apart withhold every latency verdict (the deterministic rule
  still runs) and the report says why, up front. ``--force`` judges anyway,
  and says that too.
* A field missing on one side or both (older files) cannot be checked: the
  report lists it as unknown, and the latency verdicts stand.
* :data:`WARN_ONLY` fields that differ are reported, never blocking.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .runs import Run


def _get(mi: dict, path: tuple):
    v = mi
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def cpu_model(run: Run):
    """The CPU model: ``sepgconv_env.cpu_model``, else pytest-benchmark's ``cpu.brand_raw``."""
    return run.env.get("cpu_model") or _get(run.machine_info, ("cpu", "brand_raw"))


def gpu_model(run: Run):
    """The GPU model (``sepgconv_env.device_name`` of a CUDA run), None on the CPU."""
    env = run.env
    return env.get("device_name") if str(env.get("device", "")).startswith("cuda") else None


def cuda_setting(key: str):
    """A reader of a CUDA run's backend flag in ``sepgconv_env`` (None on the CPU,
    where the flag changes nothing and is not recorded)."""

    def read(run: Run):
        return run.env.get(key) if str(run.env.get("device", "")).startswith("cuda") else None

    return read


def cpu_malloc_mode(run: Run):
    """``steady``, ``system``, ``environment`` or ``preloaded`` for a CPU run (None on a
    GPU, where the host allocator does not time the kernels, or when not recorded)."""
    if str(run.env.get("device", "")).startswith("cuda"):
        return None
    malloc = run.env.get("malloc")
    return malloc.get("mode") if isinstance(malloc, dict) else None


# (what, reader): a difference withholds latency verdicts
BLOCKING = (
    ("CPU model", cpu_model),
    ("GPU model", gpu_model),
    ("torch version", lambda r: r.env.get("torch")),
    ("thread count", lambda r: r.env.get("threads")),
    # TF32 runs float32 matmuls / convolutions on tensor cores at ~10 bits of
    # mantissa: several times faster; cudnn.benchmark lets cuDNN pick algorithms by
    # timing them: other kernels. Either change moves every float32 latency on a GPU.
    ("TF32 matmul (allow_tf32_matmul)", cuda_setting("allow_tf32_matmul")),
    ("TF32 cuDNN (allow_tf32_cudnn)", cuda_setting("allow_tf32_cudnn")),
    ("cuDNN benchmark (cudnn_benchmark)", cuda_setting("cudnn_benchmark")),
    # glibc's malloc thresholds fixed or not (bench.measure.allocator): measured up
    # to 2.3x on rows whose large buffers page-fault under the default thresholds
    ("CPU allocator (malloc mode)", cpu_malloc_mode),
)
# machine_info paths whose difference is only reported
WARN_ONLY = (
    ("sepgconv_env", "device"),
    ("sepgconv_env", "cuda"),
    ("sepgconv_env", "cudnn"),
    ("sepgconv_env", "driver"),
    ("sepgconv_env", "cpu_count"),
    ("sepgconv_env", "interop_threads"),
    ("sepgconv_env", "capability"),
    ("sepgconv_env", "profile"),
    ("python_version",),
)


#: how far the two runs' CPU memory bandwidth at their quiet starts may differ
#: (``contention.bandwidth.reference_gb_s``; quiet readings of the AMD EPYC VM:
#: 21.7–24.7 GB/s; beside a process copying 256 MB arrays: 11–13.5). Beyond it
#: another tenant or another memory setup moves the memory-bound rows (g/rearranged
#: p4m C = 32, k = 1: +8.7 % to +13.6 % beside that process; docs/contention.md, "Not the
#: process, the memory bus").
BANDWIDTH_TOLERANCE = 0.25


def cpu_bandwidth_gb_s(run: Run) -> float | None:
    """The copy bandwidth the run agrees with (CPU runs since the probe; else None).

    Its median timing window: ``reference_gb_s · median_frac`` (each window's probe
    reads a fraction of the start's reference). The start's reading alone is one
    probe, and one probe can be far off the rest of its run: two quiet quick runs
    of the same code on the AMD VM read 17.3 and 12.4 GB/s at their starts while
    the second's windows ran at a median 1.42 × its start (17.6 GB/s), and the
    start reading alone withheld every latency verdict (issue #27). A run
    recorded without window fractions falls back to the start's reading.
    """
    b = (contention(run) or {}).get("bandwidth")
    if not isinstance(b, dict) or not isinstance(b.get("reference_gb_s"), (int, float)):
        return None
    frac = b.get("median_frac")
    if isinstance(frac, (int, float)) and frac > 0:
        return float(b["reference_gb_s"]) * float(frac)
    return float(b["reference_gb_s"])


def _bandwidth(base: Run, new: Run, out) -> None:
    a, b = cpu_bandwidth_gb_s(base), cpu_bandwidth_gb_s(new)
    if a is None and b is None:
        return
    if a is None or b is None:
        out.unknown.append(f"CPU memory bandwidth not recorded in {'BASE' if a is None else 'NEW'}")
    elif min(a, b) < (1 - BANDWIDTH_TOLERANCE) * max(a, b):
        out.reasons.append(
            f"CPU memory bandwidth of the runs (median window) differs: {a:.1f} (BASE) vs "
            f"{b:.1f} GB/s (NEW), "
            f"more than {BANDWIDTH_TOLERANCE:.0%}: memory-bound rows move with it"
        )


@dataclass
class Comparability:
    """The outcome of :func:`check`."""

    latency: bool  # are latency verdicts given?
    forced: bool  # given although not comparable (--force)
    reasons: list = field(default_factory=list)  # why not comparable
    unknown: list = field(default_factory=list)  # what could not be checked
    warnings: list = field(default_factory=list)  # other differences (never blocking)

    @property
    def comparable(self) -> bool:
        return not self.reasons


def contention(run: Run) -> dict | None:
    """The run's contention verdict dict, or None when it was not recorded."""
    c = run.env.get("contention")
    return c if isinstance(c, dict) and "disturbed" in c else None


def check(base: Run, new: Run, force: bool = False) -> Comparability:
    """Whether BASE and NEW may get latency verdicts (see the module doc).

    Args:
        base: the baseline run.
        new: the new run.
        force: give latency verdicts even when they are not comparable.

    Returns:
        A :class:`Comparability`.
    """
    out = Comparability(latency=True, forced=False)
    for what, read in BLOCKING:
        a, b = read(base), read(new)
        if a is None and b is None:
            continue
        if a is None or b is None:
            side = "BASE" if a is None else "NEW"
            out.unknown.append(f"{what} not recorded in {side}")
        elif str(a) != str(b):
            out.reasons.append(f"{what} differs: {a!r} (BASE) vs {b!r} (NEW)")
    for side, run in (("BASE", base), ("NEW", new)):
        c = contention(run)
        if c is None:
            out.unknown.append(f"{side} has no contention record: cannot tell if it was disturbed")
        elif c.get("disturbed"):
            why = "; ".join(str(x) for x in (c.get("reasons") or [])) or "no reason given"
            out.reasons.append(f"{side} run was disturbed ({why})")
    _bandwidth(base, new, out)
    for path in WARN_ONLY:
        a, b = _get(base.machine_info, path), _get(new.machine_info, path)
        if a != b and not (a is None or b is None):
            out.warnings.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
    if out.reasons:
        out.latency = force
        out.forced = force
    return out
