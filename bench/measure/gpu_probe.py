"""The GPU's matmul throughput now, against the same burst at the run's warm start (the
GPU half of :mod:`bench.measure.contention`: another process sharing the GPU).

A second process running kernels on the same GPU time-slices it with ours: our
kernels take longer, whether or not NVML lists that process (inside a container
it may not). No clock or throttle reason shows it. So each CUDA timing window
ends with a short burst of matmuls timed with CUDA events, compared with the
same burst just after the GPU was warmed (:func:`bench.measure.env.warm_gpu`).
"""

from __future__ import annotations

from .bandwidth import ReferenceProbe

#: a window's probe below this share of the reference is disturbed (``THRESHOLDS["gpu_drop"]``)
GPU_DROP = 0.25
#: the burst: ``REPS`` products of two ``N``×``N`` float32 matrices (about 4 ms on an
#: H200 at 25.6 TMAC/s without TF32: long enough to span the GPU's time slices)
N = 2048
REPS = 12


class GpuProbe(ReferenceProbe):
    """Matmul throughput of one GPU now (GMAC/s), against a reference at a warm start.

    ``fracs`` keeps every window's fraction of the reference. A probe is the
    faster of two bursts (a lone late launch is not a neighbour).
    """

    def __init__(self, device):
        import torch

        super().__init__()
        self.device = torch.device(device)
        g = torch.Generator(device=self.device).manual_seed(0)
        self._a = torch.randn(N, N, device=self.device, generator=g)

    def _burst_gmacs(self) -> float:
        import torch

        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        stream = torch.cuda.current_stream(self.device)
        start.record(stream)
        for _ in range(REPS):
            self._a @ self._a
        end.record(stream)
        end.synchronize()
        seconds = max(start.elapsed_time(end) * 1e-3, 1e-9)
        return REPS * N**3 / seconds / 1e9

    def gmacs(self) -> float:
        return max(self._burst_gmacs() for _ in range(2))

    def rate(self) -> float:
        return self.gmacs()


_probes: dict[str, GpuProbe] = {}


def probe(device) -> GpuProbe:
    """The process's probe of ``device`` (its matrix is allocated once)."""
    key = str(device)
    if key not in _probes:
        _probes[key] = GpuProbe(device)
    return _probes[key]


def gpu_probe_summary(probe: GpuProbe) -> dict | None:
    """For ``env.json``: the GPU probe's reference and its windows' fractions (None: none)."""
    return probe.summary(GPU_DROP, "reference_gmacs_s", 1)


#: NVML throttle reasons that mean the clocks were held down by something
#: other than idleness or the application clock setting (nvmlClocksThrottleReason*)
GPU_THROTTLE_BAD = {  # (0x1 idle, 0x2 application clocks, 0x4 SW power cap: normal under load)
    0x8: "HW slowdown",
    0x20: "SW thermal slowdown",
    0x40: "HW thermal slowdown",
    0x80: "HW power brake slowdown",
}
#: a loaded SM clock at the end this much below the loaded clock at the start: disturbed
GPU_CLOCK_DROP = 0.15


def gpu_reasons(start: dict, end: dict) -> list[str]:
    """Reasons from NVML readings at the start and the end of a run (empty: fine).

    Only real causes count (DESIGN §4: a GPU that boosts from idle is not
    disturbed):

    * a throttle reason in :data:`GPU_THROTTLE_BAD` (thermal, power brake, HW
      slowdown) at either end;
    * other compute processes on the GPU at either end (``foreign_processes``);
    * the SM clock *under load* (readings with ``"loaded": True``, see
      :func:`bench.measure.env.gpu_loaded_state`) falling by more than
      :data:`GPU_CLOCK_DROP` between the start and the end.

    An idle reading (a clock of 345 MHz before any work) is never compared with a
    loaded one: the first H200 run was flagged for ``345 -> 1980 MHz``, the boost.
    """
    out = []
    for when, state in (("start", start), ("end", end)):
        mask = state.get("throttle_reasons")
        if mask:
            names = [n for bit, n in GPU_THROTTLE_BAD.items() if mask & bit]
            if names:
                out.append(f"GPU throttled at the {when}: {', '.join(names)}")
        others = state.get("foreign_processes")
        if others:
            pids = state.get("foreign_pids") or []
            out.append(
                f"{others} other process(es) on the GPU at the {when}"
                + (f" (pids {', '.join(map(str, pids[:4]))})" if pids else "")
            )
    a, b = start.get("sm_clock_mhz"), end.get("sm_clock_mhz")
    if start.get("loaded") and end.get("loaded") and a and b and b < (1 - GPU_CLOCK_DROP) * a:
        out.append(f"GPU SM clock under load fell {a} -> {b} MHz")
    return out
