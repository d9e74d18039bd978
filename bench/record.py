"""One result record per (shape, implementation, pass, dtype); the CSV row is it flattened.

Statuses (:data:`STATUSES`): ``ok`` (timed), ``mismatch`` (output differs
from the reference: not timed), ``error`` (the implementation raised),
``skipped`` (would not fit in memory by formula), ``oom`` (ran out of memory
anyway).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from bench.measure import Samples
from bench.sweep import PARAM_KEYS

STATUSES = ("ok", "mismatch", "error", "skipped", "oom")


@dataclass
class Result:
    """One row: a shape × implementation × pass × dtype. Units in the names.

    ``macs_*`` and ``bytes_moved_formula`` are forward quantities (the same for
    both passes, so they are gated exactly across runs); ``gmacs_per_s`` uses
    the nominal executed MACs (``fwdbwd``: ×3 for group layers, ×2 for lifting
    layers, whose input needs no gradient). ``macs_match`` is False when
    fvcore disagrees with the formula (the status stays ``ok``: the row is
    timed but flagged). ``speedup_vs_full`` = full/naive median ÷ this median,
    ``theoretical_speedup`` = full MACs ÷ this row's formula MACs,
    ``efficiency`` = their ratio.
    """

    group: str
    layer: str
    variant: str
    impl: str
    c_in: int
    c_out: int
    k: int
    h: int
    w: int
    batch: int
    pass_: str
    dtype: str
    device: str
    status: str = "ok"
    error: str = ""
    latency_ms_median: float | None = None
    latency_ms_iqr: float | None = None
    latency_ms_q1: float | None = None
    latency_ms_q3: float | None = None
    latency_ms_min: float | None = None
    n_samples: int | None = None
    iterations_per_sample: int | None = None
    noisy: bool | None = None
    macs_formula: int | None = None
    macs_measured: int | None = None
    macs_match: bool | None = None
    macs_unsupported: str = ""
    params_formula: int | None = None
    params_measured: int | None = None
    peak_mem_bytes: int | None = None
    mem_reserved_bytes: int | None = None
    nvml_used_bytes: int | None = None
    intermediate_filter_bytes: int | None = None
    intermediate_activation_bytes: int | None = None
    mem_estimate_bytes: int | None = None
    bytes_moved_formula: int | None = None
    arithmetic_intensity: float | None = None
    gmacs_per_s: float | None = None
    speedup_vs_full: float | None = None
    theoretical_speedup: float | None = None
    efficiency: float | None = None
    g_in: int | None = None
    g_out: int | None = None
    samples_s: list = field(default_factory=list, repr=False)  # not a CSV column

    @classmethod
    def columns(cls) -> list[str]:
        """CSV columns, in order (``pass_`` is written ``pass``)."""
        return [
            "pass" if f.name == "pass_" else f.name
            for f in dataclasses.fields(cls)
            if f.name != "samples_s"
        ]

    def params(self) -> dict:
        return {k: v for k, v in self.row().items() if k in PARAM_KEYS}

    def row(self) -> dict:
        d = {}
        for f in dataclasses.fields(self):
            if f.name == "samples_s":
                continue
            d["pass" if f.name == "pass_" else f.name] = getattr(self, f.name)
        return d

    def set_samples(self, samples: Samples) -> None:
        for name, value in samples.latency_ms().items():
            setattr(self, name, value)
        self.samples_s = list(samples.per_call_s)
        self.latency_ms_min = min(samples.per_call_s) * 1e3
        self.iterations_per_sample = samples.iterations

    def fail(self, status: str, error: str) -> Result:
        self.status, self.error = status, error.replace("\n", " ")[:500]
        return self


def pass_mac_factor(pass_: str, layer: str) -> int:
    """Nominal executed MACs ÷ forward MACs: fwd 1; fwdbwd 3 (grad input + grad
    weight), 2 for a lifting layer (no input gradient)."""
    if pass_ == "fwd":
        return 1
    return 2 if layer == "lifting" else 3


def derive(result: Result, reference_ms: float | None, full_macs: int | None) -> None:
    """Fill ``gmacs_per_s``, ``speedup_vs_full``, ``theoretical_speedup``, ``efficiency``."""
    med = result.latency_ms_median
    if result.macs_formula and full_macs:
        result.theoretical_speedup = full_macs / result.macs_formula
    if result.status != "ok" or not med:
        return
    if result.macs_formula:
        executed = result.macs_formula * pass_mac_factor(result.pass_, result.layer)
        result.gmacs_per_s = executed / (med * 1e-3) / 1e9
    if reference_ms:
        result.speedup_vs_full = reference_ms / med
        if result.theoretical_speedup:
            result.efficiency = result.speedup_vs_full / result.theoretical_speedup
