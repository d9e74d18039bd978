"""The one result record: a layer row of the sweep or a model row of ``bench models``.

Every measured quantity is declared once, as a field of :class:`Result`; a
row's *kind* picks which fields are its columns and which identify it:

* ``"layer"`` (``results.csv`` of ``python -m bench run``): one shape ×
  implementation × pass × dtype, identified by :data:`bench.sweep.shapes.PARAM_KEYS`;
* ``"model"`` (``models.csv`` of ``python -m bench models``): one paper model ×
  implementation × batch × pass, identified by :data:`MODEL_KEYS`.

The CSV row is the record flattened in the kind's column order
(:data:`COLUMNS`); :data:`SCHEMA_VERSION` names that order and is written
into ``env.json`` and ``benchmark.json`` (bump it when a column moves).

Statuses (:data:`STATUSES`): ``ok`` (timed), ``mismatch`` (output differs
from the reference: not timed), ``error`` (the implementation raised),
``skipped`` (would not fit in memory, or cannot run on this machine: the
reason is in ``error``), ``oom`` (ran out of memory anyway).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sepgconv.counting import macs_section34

from ..measure.timing import Samples
from ..sweep.shapes import PARAM_KEYS

#: version of the column layout of results.csv / models.csv (1: before the
#: record was shared; 2: models.csv gained latency_ms_min and
#: iterations_per_sample, and its ``params`` column is ``params_measured``;
#: 3: both end with the contention columns foreign_cpu, wait_frac, disturbed;
#: 4: results.csv gains memory_format and compiled among its keys, and
#: auto_choice, tuning_s, compile_s before the contention columns;
#: 5: model rows gain nvml_used_bytes after mem_reserved_bytes;
#: 6: results.csv gains ``sampling`` after compile_s, models.csv after
#: max_rel_diff_vs_naive: a stated reduction of the samples of a row far slower
#: than the reference)
SCHEMA_VERSION = 6
STATUSES = ("ok", "mismatch", "error", "skipped", "oom")
MODEL_KEYS = ("model", "label", "table", "width", "impl", "pass", "batch", "device", "dtype")
_LATENCY = (
    "latency_ms_median", "latency_ms_iqr", "latency_ms_q1", "latency_ms_q3", "latency_ms_min",
    "n_samples", "iterations_per_sample", "noisy",
)  # fmt: skip
_CONTENTION = ("foreign_cpu", "wait_frac", "disturbed")
#: columns of each kind, in CSV order (each a field of Result; ``pass`` is ``pass_``)
COLUMNS = {
    "layer": (
        *PARAM_KEYS, "status", "error", *_LATENCY, "macs_formula", "macs_measured",
        "macs_match", "macs_unsupported", "params_formula", "params_measured", "peak_mem_bytes",
        "mem_reserved_bytes", "nvml_used_bytes", "intermediate_filter_bytes",
        "intermediate_activation_bytes", "mem_estimate_bytes", "bytes_moved_formula",
        "arithmetic_intensity", "gmacs_per_s", "speedup_vs_full", "theoretical_speedup",
        "efficiency", "g_in", "g_out", "auto_choice", "tuning_s", "compile_s", "sampling",
        *_CONTENTION,
    ),
    "model": (
        *MODEL_KEYS, "status", "error", *_LATENCY, "speedup_vs_naive", "params_measured",
        "macs", "macs_executed", "peak_mem_bytes", "peak_mem_mb", "peak_mem_with_weights_mb",
        "mem_reserved_bytes", "nvml_used_bytes", "paper_peak_mem_mb", "max_rel_diff_vs_naive",
        "sampling", *_CONTENTION,
    ),
}  # fmt: skip
KEYS = {"layer": PARAM_KEYS, "model": MODEL_KEYS}


@dataclass
class Result:
    """One row. Units in the names; None (an empty CSV cell) where not measured.

    Layer rows: ``macs_*`` and ``bytes_moved_formula`` are forward quantities
    (the same for both passes, so they are gated exactly across runs);
    ``gmacs_per_s`` uses the nominal executed MACs (``fwdbwd``: ×3 for group
    layers, ×2 for lifting layers, whose input needs no gradient).
    ``macs_match`` is False when fvcore disagrees with the formula (the status
    stays ``ok``: the row is timed but flagged). ``speedup_vs_full`` = full/naive
    median ÷ this median, ``theoretical_speedup`` = full MACs ÷ this row's
    formula MACs (what it executes), ``efficiency`` = ``speedup_vs_full`` ÷ the
    variant's §3.4 promise (:func:`promised_speedup`), the same scale for naive,
    rearranged, fused and auto.

    Model rows: ``macs`` per sample by the paper's convention, ``macs_executed``
    by what the implementation runs; ``speedup_vs_naive`` = the naive model's
    median ÷ this median; ``peak_mem_mb`` = ``peak_mem_bytes`` / 2^20 and
    ``peak_mem_with_weights_mb`` adds the parameters and the input;
    ``paper_peak_mem_mb`` is the paper's published GPU memory (CUDA, batch 2,
    ``fwdbwd``).
    """

    kind: str = "layer"  # "layer" | "model": which columns (not a column itself)
    # identity of a layer row
    group: str | None = None
    layer: str | None = None
    variant: str | None = None
    memory_format: str = "contiguous"
    compiled: bool = False
    c_in: int | None = None
    c_out: int | None = None
    k: int | None = None
    h: int | None = None
    w: int | None = None
    # identity of a model row
    model: str | None = None
    label: str | None = None
    table: int | None = None
    width: str | None = None
    # shared identity
    impl: str | None = None
    batch: int | None = None
    pass_: str | None = None
    dtype: str = "float32"
    device: str | None = None
    # outcome and latency
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
    # counts
    macs_formula: int | None = None
    macs_measured: int | None = None
    macs_match: bool | None = None
    macs_unsupported: str = ""
    macs: int | None = None
    macs_executed: int | None = None
    params_formula: int | None = None
    params_measured: int | None = None
    # memory
    peak_mem_bytes: int | None = None
    peak_mem_mb: float | None = None
    peak_mem_with_weights_mb: float | None = None
    mem_reserved_bytes: int | None = None
    nvml_used_bytes: int | None = None
    paper_peak_mem_mb: float | None = None
    intermediate_filter_bytes: int | None = None
    intermediate_activation_bytes: int | None = None
    mem_estimate_bytes: int | None = None
    # derived
    bytes_moved_formula: int | None = None
    arithmetic_intensity: float | None = None
    gmacs_per_s: float | None = None
    speedup_vs_full: float | None = None
    speedup_vs_naive: float | None = None
    theoretical_speedup: float | None = None
    efficiency: float | None = None
    max_rel_diff_vs_naive: float | None = None
    g_in: int | None = None
    g_out: int | None = None
    # how the row ran, beyond its keys
    auto_choice: str | None = None  # impl="auto": the implementation (and " cl") it chose
    tuning_s: float | None = None  # impl="auto": seconds its choice took (not in the latency)
    compile_s: float | None = None  # compiled rows: the first call, compiling (not in the latency)
    # (fused rows: the first call's excess over the median: Triton compiling and autotuning)
    sampling: str | None = None  # a stated reduction of the samples (a row far behind the ref.)
    # the machine during this row's timing window (bench.measure.contention)
    foreign_cpu: float | None = None  # cores' worth of CPU used by other processes
    wait_frac: float | None = None  # share of the window our threads waited for a CPU
    disturbed: bool | None = None  # the window exceeded the contention thresholds
    samples_s: list = field(default_factory=list, repr=False)  # raw samples, not a column
    sample_rounds: list = field(default_factory=list, repr=False)  # their rounds, not a column

    def __post_init__(self):
        if self.kind not in COLUMNS:
            raise ValueError(f"unknown result kind {self.kind!r}; valid choices: {list(COLUMNS)}")

    @classmethod
    def columns(cls, kind: str = "layer") -> list[str]:
        """CSV columns of ``kind``, in order (``pass_`` is written ``pass``)."""
        return list(COLUMNS[kind])

    def row(self) -> dict:
        """The CSV row: this kind's columns, in order."""
        return {c: getattr(self, "pass_" if c == "pass" else c) for c in COLUMNS[self.kind]}

    def params(self) -> dict:
        """The identifying columns (:data:`KEYS` of the kind), in order."""
        return {c: getattr(self, "pass_" if c == "pass" else c) for c in KEYS[self.kind]}

    def set_samples(self, samples: Samples) -> None:
        """The latency columns and raw samples from ``samples``."""
        for name, value in samples.latency_ms().items():
            setattr(self, name, value)
        self.samples_s = list(samples.per_call_s)
        self.sample_rounds = list(samples.rounds)
        self.latency_ms_min = min(samples.per_call_s) * 1e3
        self.iterations_per_sample = samples.iterations
        self.sampling = samples.reduced

    def set_window(self, w) -> None:
        """The contention columns from a :class:`bench.measure.contention.Window`."""
        self.foreign_cpu, self.wait_frac = w.foreign_cpu, w.wait_frac
        self.disturbed = bool(w.reasons())

    def fail(self, status: str, error: str) -> Result:
        self.status, self.error = status, error.replace("\n", " ")[:500]
        return self


def pass_mac_factor(pass_: str, layer: str) -> int:
    """Nominal executed MACs ÷ forward MACs: fwd 1; fwdbwd 3 (grad input + grad
    weight), 2 for a lifting layer (no input gradient)."""
    if pass_ == "fwd":
        return 1
    return 2 if layer == "lifting" else 3


def promised_speedup(result: Result) -> float | None:
    """The variant's §3.4 promise: full GConv MACs ÷ the rearranged count of the
    row's variant, whatever the implementation executes (DESIGN §4); 1 for the full
    GConv and a dense conv holding F̃, the row's own cut for a variant without a
    §3.4 count (a peer library's)."""
    if result.variant in ("g", "gc"):
        shape = (result.c_in, result.c_out, result.g_in, result.g_out, result.k, result.h,
                 result.w)  # fmt: skip
        return macs_section34("full", *shape) / macs_section34(result.variant, *shape)
    return 1.0 if result.variant in ("full", "dense") else result.theoretical_speedup


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
        promise = promised_speedup(result)
        if promise:
            result.efficiency = result.speedup_vs_full / promise
