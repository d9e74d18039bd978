"""Main memory's copy bandwidth now, against the same copy at a quiet moment (the CPU
half of :mod:`bench.measure.contention`: what other tenants of a VM's host take).

Other tenants share the host's memory bandwidth and last-level cache, and no CPU
counter of the guest shows them; it moves the rows whose intermediates stream
from memory (docs/contention.md, "Not the process, the memory bus"), so each CPU timing
window ends with a probe (:func:`bench.measure.contention.close_window`).
"""

from __future__ import annotations

import time

#: bytes of one copy (beyond the caches), and copies per probe
PROBE_BYTES = 64 * 2**20
PROBE_COPIES = 3


class ReferenceProbe:
    """A rate measured now against a reference taken at a quiet moment: what the CPU
    bandwidth probe and the GPU matmul probe (:mod:`bench.measure.gpu_probe`) share.
    A subclass gives :meth:`rate`; ``fracs`` keeps every window's fraction."""

    def __init__(self):
        self.reference: float | None = None
        self.fracs: list[float] = []

    def rate(self) -> float:
        raise NotImplementedError

    def set_reference(self) -> None:
        """The reference: the best of three probes (call it when the machine is quiet)."""
        self.reference = max(self.rate() for _ in range(3))
        self.fracs = []

    def frac(self) -> float:
        """This moment's rate / the reference (the first call sets the reference)."""
        if self.reference is None:
            self.set_reference()
        f = self.rate() / self.reference
        self.fracs.append(f)
        return f

    def summary(self, drop: float, reference_key: str, digits: int) -> dict | None:
        """For ``env.json``: the reference (as ``reference_key``, rounded to ``digits``),
        and the windows' fractions, those under ``1 − drop`` counted low (None: none)."""
        if self.reference is None or not self.fracs:
            return None
        low = sum(f < 1 - drop for f in self.fracs)
        fracs = sorted(self.fracs)
        return {reference_key: round(self.reference, digits), "windows": len(fracs),
                "median_frac": round(fracs[len(fracs) // 2], 3),
                "min_frac": round(fracs[0], 3), "windows_low": low}  # fmt: skip


class BandwidthProbe(ReferenceProbe):
    """Copy bandwidth of main memory now, against a reference taken at a quiet moment.

    A probe is the fastest of :data:`PROBE_COPIES` copies of :data:`PROBE_BYTES`
    (read + write, in GB/s), with the run's torch threads; about 15 ms. Measured on
    the AMD EPYC VM (one thread): 24–27 GB/s alone, 11–13.5 GB/s beside one process
    copying 256 MB arrays, whose bandwidth no CPU counter of ours would see had it
    been another VM's. ``fracs`` keeps every window's fraction of the reference.
    """

    def __init__(self):
        import torch

        super().__init__()
        self._src = torch.ones(PROBE_BYTES // 4)
        self._dst = torch.empty_like(self._src)

    def gb_s(self) -> float:
        best = float("inf")
        for _ in range(PROBE_COPIES):
            t = time.perf_counter()
            self._dst.copy_(self._src)
            best = min(best, time.perf_counter() - t)
        return 2 * PROBE_BYTES / max(best, 1e-9) / 1e9

    def rate(self) -> float:
        return self.gb_s()


_probe: BandwidthProbe | None = None


def probe() -> BandwidthProbe:
    """The process's probe (its buffers are allocated once)."""
    global _probe
    if _probe is None:
        _probe = BandwidthProbe()
    return _probe
