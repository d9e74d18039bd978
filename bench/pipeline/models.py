"""The paper's models end to end (Tables 1 and 2): what ``python -m bench models`` runs.

For every registered paper model (:mod:`sepgconv.models`), every
implementation it can run (``naive``; ``rearranged`` too for the g/gc
models), both passes and two batch sizes (2 and a training batch):

* latency: median and IQR of per-call samples. The implementations of one
  (model, batch, pass) are timed interleaved by
  :func:`bench.measure.timing.time_interleaved` (CUDA events on a GPU, a monotonic
  clock on the CPU); ``fwd`` is inference (eval + no_grad, cached filters),
  ``fwdbwd`` a training step with filter construction
  (:func:`bench.measure.timing.make_step`). ``speedup_vs_naive`` = naive median ÷
  this median.
* memory: the working memory of one call (:func:`bench.measure.memory.peak_memory`:
  the CUDA allocator's peak above what was allocated before, or the CPU
  profiler's allocation events), in bytes and MB (2^20 bytes);
  ``peak_mem_with_weights_mb`` adds the parameters and the input, which were
  allocated before the call; on CUDA also ``mem_reserved_bytes`` (what the call
  made the caching allocator reserve) and ``nvml_used_bytes`` (NVML's
  device-used figure after the call: every process, the CUDA context included,
  so not a figure of the model alone). The ``fwdbwd`` rows of batch 2 carry
  ``paper_peak_mem_mb``, the paper's published GPU memory (DESIGN §7), on any
  device: the paper does not say which figure it reports, and the CPU's
  allocator events see the same tensors as the CUDA allocator (not oneDNN's or
  cuDNN's scratch), so a CPU run already tells which of ours matches
  (:mod:`bench.report.paper_models` sets them side by side).
* params; MACs per sample: ``macs`` by the paper's convention (Table 1) and
  ``macs_executed`` by what the implementation runs (see
  :mod:`sepgconv.tables`).

On a shared CPU use ``--threads 1``: with two OpenMP threads on two cores
that other processes also use, a descheduled worker stalls every parallel
region, and calls of a few milliseconds were measured at 0.3–1 s.

Before timing, each rearranged model's forward is checked against the naive
one (same ``state_dict``); a disagreement marks the row ``mismatch``.

Batches: CUDA ``(2, 128)``; CPU ``(2, 32)`` for Table 1 and ``(2, 8)`` for
Table 2; CPU ``--quick``: ``(2, 16)`` for Table 1 and batch 2 for Table 2 (the
training step at batch 2 is the paper's memory figure; the slowest, a
g-p4m-ResNet44 step in ``rearranged``, took 7 s on one AMD EPYC thread, and the
whole quick run 177 s).
Deployment (``--deploy``, the ``fwd`` pass only): next to the native
implementations, rows for what would be shipped (``docs/deploy.md``):
``export`` (:func:`sepgconv.export_modules` of the model, eager), ``export-compiled``
(the same under ``torch.compile``; its compile time, outside the timing, is
logged and kept in ``deploy.json``) and, on the CPU, ``onnxruntime`` (the
ONNX file of :func:`sepgconv.export.to_onnx`, batch axis dynamic, run by an
ONNX Runtime CPU session with as many intra-op threads as torch). Their
``params_measured`` counts the numbers the deployed model stores (F̃ for full
and g layers, w̃ and T_h(K) for gc: more than the native model's), their
``macs_executed`` is the form they run (dense for full and g, separable for
gc), and they are checked against a frozen copy of the naive model they were
exported from. ONNX Runtime allocates outside torch, so its peak memory is not
measured (stated in ``error``). ``deploy.json`` keeps per model the seconds to
export, to compile and to write the ONNX file, and the file's size.
Rows are :class:`bench.store.record.Result` records of kind ``model``,
written to ``models.csv`` by :func:`run_models` as they finish (per model,
batch and pass). Ctrl-C, or SIGTERM (turned into the same ``KeyboardInterrupt``
by :func:`bench.pipeline.run.sigterm_as_interrupt`), stops it with the rows
written so far kept.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import torch

import sepgconv
from sepgconv import GConv2d, models, tables
from sepgconv.counting import layer_macs

from ..measure import contention
from ..measure.memory import is_oom, peak_memory
from ..measure.timing import Timing, make_step, time_interleaved, without_frames
from ..store.record import Result
from ..store.results import ResultsWriter
from .deploy import DEPLOY_IMPLS, NO_TORCH_MEMORY, check_deployed, deploy_variants, first_calls
from .run import sigterm_as_interrupt

PASSES = ("fwd", "fwdbwd")
MB = 2**20
TIMINGS = {
    "quick": Timing(budget_s=0.5, min_samples=3, max_samples=15, warmup_calls=1, warmup_s=0.1),
    "cpu": Timing(budget_s=2.0, min_samples=5, max_samples=30, warmup_calls=1, warmup_s=0.05),
    "cuda": Timing(budget_s=1.0, min_samples=10, max_samples=100, warmup_calls=3, warmup_s=0.1),
}


def batches_for(table: int, device: str, quick: bool) -> tuple[int, ...]:
    """Batch sizes: 2 and a training batch (smaller on the CPU; see the module doc)."""
    if device.startswith("cuda"):
        return (2, 128)
    if quick:
        return (2, 16) if table == 1 else (2,)
    return (2, 32) if table == 1 else (2, 8)


def _rel_diff(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


def bench_model(
    name: str,
    device: str,
    timing: Timing,
    batches: tuple[int, ...],
    passes: tuple[str, ...],
    memory: bool = True,
    log=print,
    write=None,
    deploy: dict | None = None,
) -> list[Result]:
    """Measure one registry model in every implementation, batch and pass;
    ``write(rows)`` (when given) receives each (batch, pass)'s rows as they finish.

    ``deploy``: a dict to add the deployment rows (module doc) and receive their
    export, compile and ONNX facts (``deploy["impls"]``, when given, the subset of
    :data:`DEPLOY_IMPLS` to add); None (default) measures the native model only."""
    spec = models.get_spec(name)
    naive = models.build(name, seed=0, device=device)
    variants = {"naive": naive}
    unavailable = {}  # impl -> why it cannot run here (e.g. Triton kernels on a CPU)
    for impl in models.available_impls(naive)[1:]:
        why = unavailable_reason(naive, impl, device)
        if why:
            unavailable[impl] = why
        else:
            variants[impl] = models.set_impl(copy.deepcopy(naive), impl)
    params = models.count_params(naive)
    macs, layers = tables.paper_macs(naive, naive.example_input(1))
    # auto executes what it chooses per input: counted per row, after its timing
    executed = {impl: executed_macs(m, layers) for impl, m in variants.items() if impl != "auto"}
    cuda = device.startswith("cuda")
    deployed: dict = {}
    if deploy is not None:
        impls = deploy.get("impls", DEPLOY_IMPLS)
        deployed, frozen, info = deploy_variants(naive, device, log, impls)
        deploy[name] = info
        form = "rearranged" if getattr(naive, "variant", "full") == "gc" else "naive"
        for impl in deployed:
            executed[impl] = executed.get(form, executed["naive"])
    results = []
    for batch in batches:
        gen = torch.Generator().manual_seed(batch)
        x = torch.randn(batch, *naive.input_shape, generator=gen).to(device)
        static_bytes = x.numel() * x.element_size() + sum(
            p.numel() * p.element_size() for p in naive.parameters()
        )
        check = _check(variants, x, tolerance=1e-2 if cuda else 1e-3)  # CUDA: TF32 convs
        if deployed:
            first_calls(deployed, x, deploy[name], batch, log)
            check |= check_deployed(deployed, frozen, x, tolerance=1e-2 if cuda else 1e-3)
        for pass_ in passes:
            rows = {}
            timed = variants | (deployed if pass_ == "fwd" else {})
            for impl in timed:
                r = Result(
                    kind="model", model=name, label=spec.label, table=spec.table,
                    width=spec.width, impl=impl, pass_=pass_, batch=batch, device=device,
                )  # fmt: skip
                r.params_measured, r.macs = params, macs
                if impl in deployed:
                    r.params_measured = deploy[name]["params_stored"]
                r.macs_executed = executed.get(impl)
                r.max_rel_diff_vs_naive, status, r.error = check[impl]
                r.status = status
                if batch == 2 and pass_ == "fwdbwd":
                    r.paper_peak_mem_mb = spec.paper_peak_mem_mb
                rows[impl] = r
            _time_pass(timed, rows, x, pass_, device, timing, memory, static_bytes)
            for impl in NO_TORCH_MEMORY:
                if impl in rows and rows[impl].status == "ok" and memory:
                    rows[impl].error = "memory: ONNX Runtime allocates outside torch: not measured"
            if "auto" in variants and rows["auto"].status == "ok":
                rows["auto"].macs_executed = executed_macs(variants["auto"], layers, batch)
            for impl, why in unavailable.items():
                rows[impl] = Result(
                    kind="model", model=name, label=spec.label, table=spec.table,
                    width=spec.width, impl=impl, pass_=pass_, batch=batch, device=device,
                    params_measured=params, macs=macs,
                ).fail("skipped", why)  # fmt: skip
            for r in rows.values():
                log(_line(r))
            results.extend(rows.values())
            if write is not None:
                write(list(rows.values()))
    return results


def unavailable_reason(model: torch.nn.Module, impl: str, device: str) -> str | None:
    """Why ``model``'s GConv layers cannot run ``impl`` on ``device`` here, or None."""
    for _, layer in models.gconv_layers(model):
        if (layer.variant, impl) in sepgconv.implementations():
            why = sepgconv.get_implementation(layer.variant, impl).unavailable_reason(device)
            if why:
                return f"cannot run here: {why}"
    return None


def _time_pass(variants, rows, x, pass_, device, timing, memory, static_bytes) -> None:
    """Time the implementations of one (model, batch, pass) interleaved; fill ``rows``."""
    steps = {}
    for impl, m in variants.items():
        if rows[impl].status == "ok":
            try:
                steps[impl] = make_step(m, x, pass_)
            except Exception as e:  # noqa: BLE001 - e.g. out of memory: recorded per impl
                _fail(rows[impl], e)
    start = contention.read_counters()
    # a model far behind naive (g-p4m-ResNet44 rearranged: 225 ms a call on the H200)
    # gets a stated few samples (its row's ``sampling``), as in the sweep
    samples = time_interleaved(steps, device, timing, reference="naive") if steps else {}
    watched = contention.window(start, contention.read_counters(), torch.get_num_threads())
    for impl, s in samples.items():
        r = rows[impl]
        if isinstance(s, BaseException):
            _fail(r, s)
            continue
        r.set_samples(s)  # the same latency columns as bench run's rows
        r.set_window(watched)
        if memory and impl not in NO_TORCH_MEMORY:
            _memory(r, steps[impl], device, static_bytes)
    ref = rows["naive"].latency_ms_median
    for r in rows.values():
        if ref and r.latency_ms_median:
            r.speedup_vs_naive = ref / r.latency_ms_median
    steps.clear()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


def _failure(e: BaseException) -> tuple[str, str]:
    """``(status, error text)`` of an exception: ``oom`` or ``error``."""
    status = "oom" if is_oom(e) else "error"
    return status, f"{type(e).__name__}: {e}".replace("\n", " ")[:300]


def _fail(r: Result, e: BaseException) -> None:
    r.status, r.error = _failure(e)
    without_frames(e)  # its frames would keep the failed call's tensors alive


def executed_macs(model: torch.nn.Module, layers: list[tables.LayerMacs], batch: int = 1) -> int:
    """MACs per sample that ``model``'s implementations execute, from the layer shapes
    of one counted forward (:func:`sepgconv.tables.paper_macs`) of the same architecture.

    ``batch`` matters for ``impl="auto"`` only: its layers count the implementation
    they chose for an inference call at that batch (:func:`sepgconv.counting.layer_macs`).
    """
    modules = dict(model.named_modules())
    total = 0
    for layer in layers:
        module = modules[layer.name]
        if isinstance(module, GConv2d):
            total += layer_macs(module, *layer.in_shape[-2:], batch) // batch
        else:
            total += layer.macs
    return total


def _check(variants: dict, x: torch.Tensor, tolerance: float) -> dict:
    """``{impl: (max relative difference to naive, status, error)}`` of one forward.

    The naive model's ``state_dict`` is loaded into the others first: training
    steps update the batch-norm running statistics, and each implementation
    has run a different number of them.
    """
    state = variants["naive"].state_dict()
    out = {}
    try:
        with torch.no_grad():
            ref = variants["naive"].eval()(x)
    except Exception as e:  # noqa: BLE001 - no reference: every row fails alike
        return dict.fromkeys(variants, (None, *_failure(e)))
    for impl, m in variants.items():
        if impl == "naive":
            out[impl] = (0.0, "ok", "")
            continue
        m.load_state_dict(state)
        try:
            with torch.no_grad():
                d = _rel_diff(m.eval()(x), ref)
        except Exception as e:  # noqa: BLE001
            out[impl] = (None, *_failure(e))
            continue
        if d > tolerance or d != d:  # NaN counts as a mismatch
            out[impl] = (d, "mismatch", f"max |y - y_naive| / max |y_naive| = {d:.3g}")
        else:
            out[impl] = (d, "ok", "")
    return out


def _memory(r: Result, step, device: str, static_bytes: int) -> None:
    try:
        mem = peak_memory(step, device)
    except Exception as e:  # noqa: BLE001 - the latency stays; say why memory is missing
        r.error = f"memory: {type(e).__name__}: {e}".replace("\n", " ")[:300]
        return
    r.peak_mem_bytes, r.mem_reserved_bytes = mem.peak_mem_bytes, mem.mem_reserved_bytes
    r.nvml_used_bytes = mem.nvml_used_bytes
    if mem.peak_mem_bytes is not None:
        r.peak_mem_mb = mem.peak_mem_bytes / MB
        r.peak_mem_with_weights_mb = (mem.peak_mem_bytes + static_bytes) / MB


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _line(r: Result) -> str:
    text = (
        f"{r.model:<16} {r.impl:<10} b={r.batch:<4} {r.pass_:<6} "
        f"{_fmt(r.latency_ms_median, '10.3f')} ms  IQR {_fmt(r.latency_ms_iqr, '8.3f')}  "
        f"peak {_fmt(r.peak_mem_mb, '9.2f')} MB"
    )
    if r.paper_peak_mem_mb is not None:
        text += f" (paper {r.paper_peak_mem_mb:.2f})"
    return text + ("" if r.status == "ok" else f"  [{r.status}: {r.error}]")


@sigterm_as_interrupt()
def run_models(
    names: list[str],
    device: str,
    out: Path,
    *,
    quick: bool = False,
    batches: tuple[int, ...] | None = None,
    passes: tuple[str, ...] | None = None,
    memory: bool = True,
    log=print,
    deploy: bool | tuple[str, ...] = False,
) -> list[Result]:
    """Measure ``names`` and write ``out/models.csv`` as rows finish; the rows.

    ``deploy``: add the deployment rows (True: all of :data:`DEPLOY_IMPLS`, or a
    subset of it) and write ``out/deploy.json`` (module doc).

    Raises:
        KeyboardInterrupt: Ctrl-C or SIGTERM (:class:`bench.pipeline.run.Terminated`),
            after the rows finished so far are written.
    """
    timing = TIMINGS["quick" if quick else ("cuda" if device.startswith("cuda") else "cpu")]
    rows: list[Result] = []
    start = time.perf_counter()
    facts: dict | None = None
    if deploy:
        facts = {"impls": DEPLOY_IMPLS if deploy is True else tuple(deploy)}
    with ResultsWriter(out, resume=False, kind="model") as writer:
        for name in names:
            table = models.get_spec(name).table
            bs = tuple(batches or batches_for(table, device, quick))
            ps = tuple(passes or PASSES)
            rows += bench_model(
                name, device, timing, bs, ps, memory, log=log, write=writer.write, deploy=facts
            )
            if facts is not None:
                (out / "deploy.json").write_text(json.dumps(facts, indent=1) + "\n")
    log(f"wrote {out / 'models.csv'} ({time.perf_counter() - start:.0f} s)")
    return rows


__all__ = [
    "DEPLOY_IMPLS",
    "PASSES",
    "TIMINGS",
    "batches_for",
    "bench_model",
    "run_models",
]
