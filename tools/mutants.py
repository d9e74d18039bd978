#!/usr/bin/env python3
"""Mutation check: plant known bugs one at a time and see which the tests catch.

Tests guard properties, so a bug planted in a property must fail at least one
test. Each mutant below is one small, representative bug in ``sepgconv/`` or
``bench/`` (a kernel not rotated, a bias dropped on one path, a MAC formula off
by one, a wrong group law, a statistics rule, the interleaving, the memory
replay, ...), with the test files (or test selections) that should catch it.

For every mutant the tool edits one file of a *scratch copy* of the repository
(the files git tracks plus untracked ones it does not ignore, copied to a
temporary folder; the checkout itself is never modified), runs only that
mutant's tests there, restores the file, and reports a table::

    | mutant | file | tests | result | failed | s |

``caught`` means at least one selected test failed; ``survived`` that all
passed (a hole in the tests, or a mutant that changes nothing observable);
``stale`` that the text to replace is no longer in the file exactly once (the
code moved on: update the mutant). The exit status is 1 when a mutant survived
or is stale, 0 otherwise.

Usage (from the repository root, in the test environment)::

    python tools/mutants.py                 # every mutant (about 4 min on 2 cores)
    python tools/mutants.py --list          # the mutants and their tests
    python tools/mutants.py --only bias-dropped-gc-rearranged memory-frees-ignored
    python tools/mutants.py --baseline      # first run each selection unmutated

It is not part of the default ``pytest`` run (``tests/`` holds no test that
calls it): run it by hand when tests change, or before closing an issue about
them.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    """One planted bug: replace ``old`` (which must occur once in ``path``) by ``new``."""

    name: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]  # pytest arguments: files, node ids, ``-k`` expressions


MUTANTS = [
    # ------------------------------------------------------------ sepgconv
    Mutant(
        "kernel-not-rotated-gc-rearranged",
        "gc/rearranged uses K for every h instead of T_h(K)",
        "sepgconv/impls.py",
        "depthwise = self.kernel.reshape(n, k * k).index_select(1, self._spatial_perm)",
        "depthwise = self.kernel.reshape(n, k * k).repeat(1, go)",
        ("tests/test_equivariance.py", "-k", "gc-rearranged"),
    ),
    Mutant(
        "kernel-rotation-wrong-g-rearranged",
        "g/rearranged rotates K by a wrong permutation",
        "sepgconv/impls.py",
        "k_t = self.kernel.reshape(n, c, k * k).index_select(2, self._spatial_perm)",
        "k_t = self.kernel.reshape(n, c, k * k).index_select(2, self._spatial_perm.flip(0))",
        ("tests/test_equivariance.py", "-k", "g-rearranged and not gc-rearranged"),
    ),
    Mutant(
        "bias-dropped-gc-rearranged",
        "gc/rearranged forgets the bias in its spatial conv",
        "sepgconv/impls.py",
        "return F.conv2d(xt, depthwise, bias, self.stride, self.padding, groups=groups)",
        "return F.conv2d(xt, depthwise, None, self.stride, self.padding, groups=groups)",
        ("tests/test_gconv_api.py", "-k", "to_impl"),
    ),
    Mutant(
        "bias-dropped-eval-cache",
        "the eval-mode cache holds the weights but drops the bias (every implementation)",
        "sepgconv/gconv.py",
        "self._cache = (key, self._derived())",
        "self._cache = (key, (self._build_weights(), None))",
        ("tests/test_gconv_api.py", "-k", "to_impl or cache"),
    ),
    Mutant(
        "bias-order-per-group",
        "the bias is laid out (h, n) instead of (n, h) over the folded channels",
        "sepgconv/gconv.py",
        "self.bias.repeat_interleave(self.g_out)",
        "self.bias.repeat(self.g_out)",
        ("tests/test_equivariance.py", "-k", "expand_filter"),
    ),
    Mutant(
        "cache-never-invalidated",
        "the eval cache ignores parameter versions and optimiser steps",
        "sepgconv/gconv.py",
        "if self._cache is None or self._cache[0] != key:",
        "if self._cache is None:",
        ("tests/test_gconv_api.py", "-k", "cache"),
    ),
    Mutant(
        "macs-gc-rearranged-off-by-one",
        "gc/rearranged spatial MACs count k² + 1 taps",
        "sepgconv/counting.py",
        "spatial = s.c_out * s.g_out * s.k**2 * s.h_out * s.w_out",
        "spatial = s.c_out * s.g_out * (s.k**2 + 1) * s.h_out * s.w_out",
        ("tests/test_counting.py",),
    ),
    Mutant(
        "macs-section34-g-off-by-one",
        "the §3.4 g formula counts G_in + k² + 1",
        "sepgconv/counting.py",
        "return c_in * c_out * g_out * h * w * (g_in + k * k)",
        "return c_in * c_out * g_out * h * w * (g_in + k * k + 1)",
        ("tests/test_counting.py",),
    ),
    Mutant(
        "params-formula-gc",
        "the gc parameter formula counts k instead of k²",
        "sepgconv/counting.py",
        "n = c_out * (c_in * g_in + k * k)",
        "n = c_out * (c_in * g_in + k)",
        ("tests/test_counting.py",),
    ),
    Mutant(
        "group-action-u-not-inverse",
        "the G axis of u·X reads X[u g] instead of X[u⁻¹ g]",
        "sepgconv/groups.py",
        "[self.cayley[self.inverse[u]][g] for g in range(self.order)]",
        "[self.cayley[u][g] for g in range(self.order)]",
        ("tests/test_groups.py",),
    ),
    Mutant(
        "cayley-reversed",
        "the Cayley table composes b·a instead of a·b (differs for p4m)",
        "sepgconv/groups.py",
        "[index[_matmul(a, b)] for b in self.matrices] for a in self.matrices",
        "[index[_matmul(b, a)] for b in self.matrices] for a in self.matrices",
        ("tests/test_groups.py",),
    ),
    Mutant(
        "init-without-gain-g",
        "g's pointwise init forgets the He gain (output variance halves)",
        "sepgconv/impls.py",
        "# Var(K·w) = Var(K)·Var(w) = gain² / (C_in·G_in·k²): He on the expanded filter.\n"
        "        nn.init.normal_(self.kernel, 0.0, 1.0 / self.kernel_size)\n"
        "        nn.init.normal_(self.pointwise, 0.0, INIT_GAIN / math.sqrt(",
        "# Var(K·w) = Var(K)·Var(w) = gain² / (C_in·G_in·k²): He on the expanded filter.\n"
        "        nn.init.normal_(self.kernel, 0.0, 1.0 / self.kernel_size)\n"
        "        nn.init.normal_(self.pointwise, 0.0, 1.0 / math.sqrt(",
        ("tests/test_gconv_api.py", "-k", "init"),
    ),
    Mutant(
        "unrunnable-impl-built",
        "GConv2d(impl=...) that no device here can run builds, and fails at its first call",
        "sepgconv/gconv.py",
        "checks.runnable(type(self), device)",
        "None",
        ("tests/test_fused.py", "tests/test_gconv_api.py", "-k", "refused or unavailable"),
    ),
    Mutant(
        "built-on-cpu-for-cuda-refused",
        "a layer only CUDA runs is refused when built on the CPU of a CUDA machine",
        "sepgconv/checks.py",
        'elsewhere = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])',
        'elsewhere = ["cpu"]',
        ("tests/test_fused.py", "tests/test_gconv_api.py", "-k", "refused or unavailable"),
    ),
    Mutant(
        "replica-parameters-lost",
        "a DataParallel replica (empty _parameters) does not know its parameters' names",
        "sepgconv/gconv.py",
        "replica._replica_params = tuple(self._parameters)",
        "pass",
        ("tests/test_parallel.py", "-k", "replica and not distributed"),
    ),
    Mutant(
        "auto-replica-shares-delegates",
        "an auto layer's DataParallel replica computes with the original's delegates",
        "sepgconv/auto.py",
        "replica._delegates, replica._chosen, replica._choices = {}, {}, {}",
        "pass",
        ("tests/test_parallel.py", "-k", "replica and not distributed"),
    ),
    # ------------------------------------------------------------ bench
    Mutant(
        "stats-noise-band-ignored",
        "a change beyond the threshold is a regression whatever its p-value",
        "bench/judge/stats.py",
        "significant = p_adj is None or p_adj < alpha",
        "significant = True",
        ("tests/test_judge_stats.py", "tests/test_compare.py", "-k", "decide or noise"),
    ),
    Mutant(
        "stats-within-run-noise-dropped",
        "a benchmark's test uses the between-run spread only, not its own samples' noise",
        "bench/judge/compare.py",
        "t.se = math.sqrt(t.se_w**2 + t2)",
        "t.se = math.sqrt(t2) if t2 else t.se_w",
        ("tests/test_compare.py", "-k", "noise"),
    ),
    Mutant(
        "ratio-on-raw-samples",
        "the ratio rule's statistic is taken on the raw samples, not the paired ratios",
        "bench/judge/pairing.py",
        "lr = paired_log_ratios(bv, b.rounds, rv, r.rounds)",
        "lr = np.log(bv)",
        ("tests/test_judge_stats.py", "-k", "ratio"),
    ),
    Mutant(
        "holm-not-adjusted",
        "Holm's step-down multiplies by nothing (raw p-values)",
        "bench/judge/familywise.py",
        "running = max(running, min(1.0, (m - rank) * p[i]))",
        "running = max(running, min(1.0, p[i]))",
        ("tests/test_judge_stats.py", "-k", "holm"),
    ),
    Mutant(
        "interleave-never-rotated",
        "every round visits the callables in the same order",
        "bench/measure/timing.py",
        "shift = r % len(keys)",
        "shift = 0",
        ("tests/test_bench_measure.py", "-k", "interleaved"),
    ),
    Mutant(
        "timing-block-not-per-call",
        "a CPU sample is the whole block's time, not per call",
        "bench/measure/timing.py",
        "samples.per_call_s.append(block / iters)",
        "samples.per_call_s.append(block)",
        ("tests/test_bench_measure.py", "-k", "interleaved"),
    ),
    Mutant(
        "memory-frees-ignored",
        "the CPU peak replay adds allocations and ignores frees",
        "bench/measure/memory.py",
        "        live += nbytes\n",
        "        live += max(nbytes, 0)\n",
        ("tests/test_bench_measure.py", "-k", "cpu_peak"),
    ),
    Mutant(
        "memory-events-unsorted",
        "the CPU peak replay takes the events in trace order, not time order",
        "bench/measure/memory.py",
        "for _, nbytes in sorted(events, key=lambda ev: ev[0]):",
        "for _, nbytes in events:",
        ("tests/test_bench_measure.py", "-k", "cpu_peak"),
    ),
    Mutant(
        "speedup-inverted",
        "speedup_vs_full is this row's median over the reference's",
        "bench/store/record.py",
        "result.speedup_vs_full = reference_ms / med",
        "result.speedup_vs_full = med / reference_ms",
        ("tests/test_bench_measure.py", "-k", "derive"),
    ),
    Mutant(
        "time-limit-natural-order",
        "a time-limited run takes the shapes in the profile's order (a cut run covers one series)",
        "bench/pipeline/run.py",
        "by_shape = {s: by_shape[s] for s in spread_order(list(by_shape))}",
        "by_shape = dict(by_shape)",
        ("tests/test_bench_run.py", "-k", "time_limit"),
    ),
    Mutant(
        "paper-memory-ratio-inverted",
        "the memory comparison divides the paper's figure by ours",
        "bench/report/paper_models.py",
        'rows[f"{label} ratio"] = rows[col] / rows["paper_peak_mem_mb"]',
        'rows[f"{label} ratio"] = rows["paper_peak_mem_mb"] / rows[col]',
        ("tests/test_paper_models.py",),
    ),
    Mutant(
        "xdist-malloc-of-the-controller",
        "under pytest -n, machine_info keeps the controller's allocator state (never fixed)",
        "bench/conftest.py",
        '        info["malloc"] = workers.malloc_state(placement)',
        "        pass",
        ("tests/test_shards.py", "-k", "xdist"),
    ),
    Mutant(
        "gate-never-waits",
        "bench run refuses a busy machine at once instead of waiting for it to go quiet",
        "bench/measure/gate.py",
        "while reasons and clock() - start < wait_s:",
        "while False:",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate-lets-busy-through",
        "bench run measures on a machine that stayed busy, without --force",
        "bench/measure/gate.py",
        "raise MachineBusy(",
        "print(",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "gate-force-unmarked",
        "a run forced on a busy machine is not marked forced",
        "bench/measure/gate.py",
        "result.forced = True",
        "pass",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "run-ignores-gate-look",
        "the run judges a second look of its own, not the gate's, as its window before",
        "bench/measure/contention.py",
        "self.before = settle(settle_s, threads) if before is None else before",
        "self.before = settle(settle_s, threads)",
        ("tests/test_gate.py",),
    ),
    Mutant(
        "pytest-disturbed-passes",
        "a disturbed pytest-benchmark session exits 0 without --benchmark-allow-disturbed",
        "bench/conftest.py",
        "session.exitstatus = pytest.ExitCode.TESTS_FAILED",
        "pass",
        ("tests/test_bench_pytest.py", "-k", "disturbed"),
    ),
    Mutant(
        "pytest-windows-unrecorded",
        "pytest-benchmark's extra_info lacks each timing's window (foreign_cpu, disturbed)",
        "bench/test_sweep.py",
        "benchmark.extra_info.update(watched.window_info(start, threads, case.shape.device))",
        "pass",
        ("tests/test_bench_pytest.py", "-k", "extra_info"),
    ),
    Mutant(
        "pytest-gate-open",
        "pytest bench/ times on a busy machine without waiting or refusing",
        "bench/measure/session.py",
        "wait_s=max(config.getoption(WAIT), 0.0), force=forced(config),",
        "wait_s=0.0, force=True,",
        ("tests/test_bench_pytest.py", "-k", "busy"),
    ),
    Mutant(
        "subcommand-unlisted",
        "python -m bench forgets a subcommand (its module is then reached by no fast test)",
        "bench/cli.py",
        '    "stability": ("stability", ',
        '    "_stability": ("report", ',
        ("tests/test_fast_subset.py",),
    ),
    Mutant(
        "bandwidth-not-compared",
        "bench compare ignores the runs' memory bandwidth at their starts",
        "bench/judge/comparable.py",
        "    _bandwidth(base, new, out)\n",
        "",
        ("tests/test_compare.py", "-k", "bandwidth"),
    ),
    Mutant(
        "bandwidth-probe-skipped",
        "a CPU timing window ends without the bandwidth probe",
        "bench/measure/contention.py",
        "w = replace(w, bandwidth_frac=bandwidth.probe().frac())",
        "pass",
        ("tests/test_contention.py", "-k", "bandwidth or slow_probe"),
    ),
    # ------------------------------------------------------------ GPU suite (#22)
    Mutant(
        "gpu-idle-clock-compared",
        "the run's GPU clocks compared even when the start is an idle reading (every "
        "H200 run was 'disturbed' by 345 -> 1980 MHz)",
        "bench/measure/gpu_probe.py",
        'if start.get("loaded") and end.get("loaded") and a and b '
        "and b < (1 - GPU_CLOCK_DROP) * a:",
        "if a and b and abs(b / a - 1) > GPU_CLOCK_DROP:",
        ("tests/test_contention.py", "-k", "h200 or gpu_reasons"),
    ),
    Mutant(
        "gpu-neighbour-ignored",
        "a timing window ignores the other processes NVML lists on the GPU",
        "bench/measure/contention.py",
        "        if self.gpu_foreign:\n",
        "        if False:\n",
        ("tests/test_contention.py", "-k", "gpu_windows"),
    ),
    Mutant(
        "reserved-is-segment-growth",
        "mem_reserved_bytes back to the reserve's growth (0 when the call fits its "
        "input's segment)",
        "bench/measure/memory.py",
        "mem_reserved_bytes=int(torch.cuda.max_memory_reserved(device) - before),",
        "mem_reserved_bytes=int(torch.cuda.max_memory_reserved(device) - reserved_before),",
        ("tests/test_cuda_paths.py", "-k", "mem_reserved"),
    ),
    Mutant(
        "slow-rows-not-reduced",
        "a row 300x slower than full/naive is sampled like the others",
        "bench/measure/timing.py",
        "    return slow and planned > SLOW_SAMPLES and planned * t > SLOW_FLOOR_S",
        "    return False",
        ("tests/test_bench_measure.py", "-k", "far_behind"),
    ),
    Mutant(
        "auto-warms-first",
        "auto rows warm up in the registry's order (before the kernels they time compile)",
        "bench/pipeline/driver.py",
        'for im in sorted(impls, key=lambda im: im.impl == "auto"):',
        "for im in impls:",
        ("tests/test_bench_measure.py", "-k", "warm"),
    ),
    Mutant(
        "baseline-not-bootstrapped",
        "bench compare --bootstrap leaves a missing baseline missing (exit 2 every night)",
        "bench/commands/compare.py",
        "    if base_path.exists():\n        return None",
        "    if True:\n        return None",
        ("tests/test_compare.py", "-k", "first_night"),
    ),
    Mutant(
        "compile-only-launches",
        "compile-only mode launches the kernels instead of compiling them",
        "sepgconv/fused/launch.py",
        "return lambda *args, **kwargs: self.kernel.warmup(*args, grid=grid, **kwargs)",
        "return self.kernel[grid]",
        ("tests/test_precompile.py",),
    ),
    # ------------------------------------------------------------ report: what a reader sees
    Mutant(
        "plot-local-colour-cycle",
        "the scaling plot colours lines by their place in its own legend, not by implementation",
        "bench/report/plots.py",
        'ax.plot(line["x"], line["latency_ms"], gid=f"line:{label}", **line_kw(label))',
        'ax.plot(line["x"], line["latency_ms"], gid=f"line:{label}",\n'
        '                            **{**line_kw(label), "color": f"C{order.index(label) % 10}"})',
        ("tests/test_report_look.py", "-k", "one_colour"),
    ),
    Mutant(
        "variant-hues-too-close",
        "g is drawn in a hue next to gc's (the two families look alike)",
        "bench/report/style.py",
        '"g": (0.58, 0.75), "gc": (0.06, 0.85)',
        '"g": (0.10, 0.75), "gc": (0.06, 0.85)',
        ("tests/test_report_look.py", "-k", "hue or lightness"),
    ),
    Mutant(
        "trivial-tradeoff-panels-kept",
        "the trade-off plot keeps panels whose points all sit at (1, 1)",
        "bench/report/data.py",
        "if (np.abs(np.log(cut)) <= np.log(TRIVIAL_FACTOR)).all():",
        "if False:",
        ("tests/test_report_look.py", "-k", "trivial"),
    ),
    Mutant(
        "profile-labels-overprinted",
        "the profile draws vertical bars with one x tick label per implementation (they collide)",
        "bench/report/plots.py",
        'ax.barh(range(len(s)), s[cat], left=left, color=ccol[cat], gid=f"bar:{cat}")\n'
        "            left += s[cat].to_numpy()\n"
        "        ax.set_yticks(range(len(s)), list(s.index))",
        'ax.bar(range(len(s)), s[cat], bottom=left, color=ccol[cat], gid=f"bar:{cat}")\n'
        "            left += s[cat].to_numpy()\n"
        "        ax.set_xticks(range(len(s)), list(s.index))",
        ("tests/test_report_look.py", "-k", "printed_over"),
    ),
    Mutant(
        "speedup-axes-shared",
        "the speedup plot gives x the range of y too (an empty band left of the data)",
        "bench/report/plots.py",
        'xlim = log_limits([1, *pts["promised_speedup"]], pad=1.25)',
        'xlim = log_limits([1, *pts["promised_speedup"], *pts["speedup_vs_full"]], pad=1.25)',
        ("tests/test_report_look.py", "-k", "fitted"),
    ),
    Mutant(
        "best-impl-one-group",
        "the best-implementation map shows one group only",
        "bench/report/data.py",
        'for key in ["layer", "dtype", "batch"]:',
        'for key in ["group", "layer", "dtype", "batch"]:',
        ("tests/test_report_look.py", "-k", "both_groups"),
    ),
    Mutant(
        "efficiency-against-executed-macs",
        "efficiency divides by the MAC cut executed (auto that chose naive looks efficient)",
        "bench/report/data.py",
        'efficiency=d["speedup_vs_full"] / d["promised_speedup"],',
        'efficiency=d["speedup_vs_full"] / d["theoretical_speedup"],',
        ("tests/test_report_look.py", "-k", "promise"),
    ),
    Mutant(
        "memory-against-the-wrong-reference",
        "memory × full divides by the median reference peak, not the same shape's",
        "bench/report/data.py",
        'mem_vs_full=(d["peak_mem_bytes"] / d["ref_peak_mem_bytes"]).where(ref_ok),',
        'mem_vs_full=(d["peak_mem_bytes"] / d["ref_peak_mem_bytes"].median()).where(ref_ok),',
        ("tests/test_report.py", "-k", "summary_table"),
    ),
    Mutant(
        "implementation-count-of-configurations",
        "the report's header counts configurations as implementations (22 vs the console's 11)",
        "bench/report/markdown.py",
        'f"{n_impls} implementations in {n_configs} configurations',
        'f"{n_configs} implementations in {n_configs} configurations',
        ("tests/test_report_look.py", "-k", "memory_column"),
    ),
    Mutant(
        "csv-efficiency-against-executed-macs",
        "results.csv's efficiency divides by the MAC cut the row executed, not the promise",
        "bench/store/record.py",
        "        promise = promised_speedup(result)\n",
        "        promise = result.theoretical_speedup\n",
        ("tests/test_bench_measure.py", "-k", "derive"),
    ),
    Mutant(
        "best-impl-empty-maps-drawn",
        "the best-implementation plot draws a map for a resolution the group did not sweep",
        "bench/report/plots.py",
        "ax.set_visible(not s.empty)",
        "ax.set_visible(True)",
        ("tests/test_report_look.py", "-k", "empty_map"),
    ),
    # ------------------------------------------------------------ impl="auto" (issue 23)
    Mutant(
        "auto-hot-path-ignores-requires-grad",
        "auto's call signature leaves out x.requires_grad: a stale choice serves the call",
        "sepgconv/auto.py",
        "            grad,\n            x.requires_grad,\n",
        "            grad,\n",
        ("tests/test_autotune.py", "-k", "tells_apart"),
    ),
    Mutant(
        "auto-key-ignores-eval-mode",
        "the cache key does not tell train and eval mode apart",
        "sepgconv/autotune.py",
        "|{'training' if layer.training else 'eval'}",
        "",
        ("tests/test_autotune.py", "-k", "tells_apart"),
    ),
    Mutant(
        "auto-key-ignores-tf32",
        "the cache key leaves out torch.backends.cuda.matmul.allow_tf32",
        "sepgconv/autotune.py",
        "|tf32_matmul={tf32_mm}|",
        "|",
        ("tests/test_autotune.py", "-k", "tells_apart"),
    ),
    Mutant(
        "auto-key-ignores-versions",
        "the cache key leaves out the torch / Triton / sepgconv versions",
        "sepgconv/autotune.py",
        "return (device_name(str(x.device)), software(), key)",
        'return (device_name(str(x.device)), "", key)',
        ("tests/test_autotune.py", "-k", "tells_apart"),
    ),
    Mutant(
        "auto-version-imports-triton",
        "reading Triton's version imports it (import sepgconv turns heavy)",
        "sepgconv/autotune.py",
        "|triton={_version('triton')}|",
        "|triton={__import__('triton').__version__}|",
        ("tests/test_autotune.py", "-k", "import_triton"),
    ),
    Mutant(
        "auto-hot-path-outlives-the-generation",
        "auto's hot path keeps serving a choice after the cache changed under it",
        "sepgconv/auto.py",
        "                self._fast.clear()\n"
        "                self._fast_generation = autotune.generation[0]\n            try:",
        "                self._fast_generation = autotune.generation[0]\n            try:",
        ("tests/test_autotune.py", "-k", "generation"),
    ),
    Mutant(
        "auto-hot-path-survives-a-move",
        "auto's hot path survives .double(): a float input skips the dtype check",
        "sepgconv/auto.py",
        'for memo in ("_fast", "_chosen"):',
        "for memo in ():",
        ("tests/test_autotune.py", "-k", "moving"),
    ),
    Mutant(
        "auto-keeps-the-slowest",
        "auto keeps the slowest candidate",
        "sepgconv/auto.py",
        'impl, fmt = timing.best.split("/")',
        'impl, fmt = max(timing.medians, key=timing.medians.get).split("/")',
        ("tests/test_autotune.py", "-k", "keeps_the_fastest"),
    ),
    Mutant(
        "auto-load-drops-entries",
        "autotune.load reads the file but adds no entry (a cached choice is timed again)",
        "sepgconv/autotune.py",
        "        if overwrite or key not in _entries:",
        "        if False:",
        ("tests/test_autotune.py", "-k", "round_trip"),
    ),
    Mutant(
        "autotune-no-early-drop",
        "a candidate 100x behind is timed every round",
        "sepgconv/autotune.py",
        "DROP_RATIO = 3.0",
        "DROP_RATIO = 1e9",
        ("tests/test_autotune.py", "-k", "at_most_twice"),
    ),
    Mutant(
        "autotune-one-call-abandons",
        "one slow (preempted) call abandons a candidate: no confirmation call",
        "sepgconv/autotune.py",
        "                    sample(name)  # the confirmation call",
        "                    pass",
        ("tests/test_autotune.py", "-k", "not_enough_to_abandon"),
    ),
    Mutant(
        "autotune-no-halving",
        "successive halving keeps the whole field",
        "sepgconv/autotune.py",
        "keep = ranked[: math.ceil(len(ranked) / 2)]",
        "keep = ranked",
        ("tests/test_autotune.py", "-k", "halving"),
    ),
    Mutant(
        "autotune-no-time-limit",
        "a key's timing runs past limit_s",
        "sepgconv/autotune.py",
        "if any(clock() - start + samples[n][-1] * reps[n] > limit for n in order):",
        "if False:",
        ("tests/test_autotune.py", "-k", "time_limit"),
    ),
    Mutant(
        "autotune-abandoned-can-win",
        "the winner is the lowest median of all, abandoned candidates' one or two calls included",
        "sepgconv/autotune.py",
        "winner = min(field, key=medians.get)",
        "winner = min(medians, key=medians.get)",
        ("tests/test_autotune.py", "-k", "never_wins"),
    ),
    Mutant(
        "autotune-file-no-flock",
        "the cache file's read-merge-write holds no file lock (another process's entry is lost)",
        "sepgconv/autotune.py",
        "with _lock, _file_lock(path):",
        "with _lock:",
        ("tests/test_autotune.py", "-k", "two_processes"),
    ),
    Mutant(
        "autotune-file-no-locks",
        "the cache file's read-merge-write holds no lock at all (threads lose entries)",
        "sepgconv/autotune.py",
        "with _lock, _file_lock(path):",
        "with contextlib.nullcontext():",
        ("tests/test_autotune.py", "-k", "six_threads or another_wait or two_processes"),
    ),
    Mutant(
        "autotune-untrusted-persisted",
        "a choice timed on a disturbed machine is written to the cache file",
        "sepgconv/autotune.py",
        'if not trusted() and choice.source == "timed":',
        "if False:",
        ("tests/test_autotune.py", "-k", "untrusted"),
    ),
    Mutant(
        "autotune-untrusted-never-retimed",
        "a choice timed on a disturbed machine is kept after trust returns",
        "sepgconv/autotune.py",
        'if choice is not None and choice.source == "timed-untrusted" and trusted():',
        "if False:",
        ("tests/test_autotune.py", "-k", "untrusted"),
    ),
    Mutant(
        "expansion-backward-index-add",
        "the full GConv's F~ backward is index_select's own (an index_add: atomics on a GPU)",
        "sepgconv/layout.py",
        "e = _Expand.apply(f2, index, inverse, g_out)  # [N, L] in the asked order",
        "e = f2.index_select(1, index)",
        ("tests/test_expansion.py", "-k", "index_add"),
    ),
    Mutant(
        "expansion-inverse-ignores-blocks",
        "the backward's inverse index ignores the output group blocks",
        "sepgconv/layout.py",
        "block = positions - positions % m  # h·L",
        "block = positions * 0",
        ("tests/test_expansion.py", "-k", "inverse or gradient or gradcheck"),
    ),
    Mutant(
        "busy-run-persists-auto-choices",
        "a forced run on a busy machine lets impl='auto' persist what it chose there",
        "bench/pipeline/run.py",
        "    if gate is not None and not gate.quiet:\n        from sepgconv import autotune",
        "    if False:\n        from sepgconv import autotune",
        ("tests/test_gate.py", "-k", "persisted"),
    ),
    Mutant(
        "export-fold-group-major-out",
        "the exported dense conv folds its output channels (h, n), not (n, h) as Unflatten reads",
        "sepgconv/export.py",
        "f = layer.expand_filter().reshape(n * go, c * gi, k, k)",
        "f = layer.expand_filter().transpose(0, 1).reshape(n * go, c * gi, k, k)",
        ("tests/test_export.py", "-k", "equals_the_layer and full"),
    ),
    Mutant(
        "export-fold-group-major-in",
        "the exported gc pointwise conv reads input channels (g, c), not (c, g) as Flatten folds",
        "sepgconv/export.py",
        "pointwise = w_t.permute(0, 2, 1, 3).reshape(n * go, c * gi, 1, 1)",
        "pointwise = w_t.permute(0, 2, 3, 1).reshape(n * go, c * gi, 1, 1)",
        ("tests/test_export.py", "-k", "equals_the_layer and gc"),
    ),
    Mutant(
        "export-unfold-swapped",
        "the exported layer unfolds [B, C·G] as (G, C)",
        "sepgconv/export.py",
        'mods["unfold"] = nn.Unflatten(1, (n, go))',
        'mods["unfold"] = nn.Unflatten(1, (go, n))',
        ("tests/test_export.py", "-k", "equals_the_layer and p4m"),
    ),
    Mutant(
        "export-bias-tiled",
        "the exported bias is tiled over the group axis instead of repeated per channel",
        "sepgconv/export.py",
        "layer.bias.repeat_interleave(go)",
        "layer.bias.repeat(go)",
        ("tests/test_export.py", "-k", "equals_the_layer and group"),
    ),
    Mutant(
        "export-gc-kernel-unrotated",
        "the exported separable layers apply K unrotated for every output group element",
        "sepgconv/export.py",
        "spatial = layer.group.spatial_perm(k).reshape(-1).to(layer.kernel.device)",
        "spatial = layer.group.spatial_perm(k)[:1].expand(go, -1).reshape(-1)",
        ("tests/test_export.py", "-k", "per_element and separable"),
    ),
    Mutant(
        "export-bn-state-dropped",
        "GroupBatchNorm exported as a fresh BatchNorm3d (running statistics and affine lost)",
        "sepgconv/export.py",
        "        bn.load_state_dict(module.state_dict())\n",
        "",
        ("tests/test_export.py", "-k", "batch_norm_state"),
    ),
    Mutant(
        "export-bn-mode-lost",
        "the exported batch norm is left in training mode in an eval model",
        "sepgconv/export.py",
        "        return bn.train(module.training)",
        "        return bn",
        ("tests/test_export.py", "-k", "own_containers"),
    ),
    Mutant(
        "export-in-place",
        "export_modules converts the model it was given instead of a copy",
        "sepgconv/export.py",
        "exported = copy.deepcopy(model)",
        "exported = model",
        ("tests/test_export.py", "-k", "detached_copies"),
    ),
    Mutant(
        "onnx-native-fused",
        "to_onnx exports the native model even where it has a fused (Triton) layer",
        "sepgconv/export.py",
        "module = export_modules(model) if plain else copy.deepcopy(model)",
        "module = copy.deepcopy(model)",
        ("tests/test_export_onnx.py", "-k", "fused"),
    ),
    Mutant(
        "deploy-rows-in-training",
        "bench models --deploy times the deployed models in the training pass too",
        "bench/pipeline/models.py",
        'timed = variants | (deployed if pass_ == "fwd" else {})',
        "timed = variants | deployed",
        ("tests/test_deploy_bench.py", "-k", "forward_pass"),
    ),
    Mutant(
        "deploy-table-against-itself",
        "the Deployed table divides a g/gc model's latency by its own, not the full model's",
        "bench/report/paper_models.py",
        '"× full latency": r["latency_ms_median"] / f["latency_ms_median"],',
        '"× full latency": r["latency_ms_median"] / r["latency_ms_median"],',
        ("tests/test_deploy_bench.py", "-k", "deploy_table"),
    ),
    # ------------------------------------------------------------ g/rearranged blocks, fused
    Mutant(
        "g-rearranged-partial-sums-dropped",
        "g/rearranged keeps only the last input-channel block's partial sum",
        "sepgconv/impls.py",
        "acc = part if acc is None else acc + part",
        "acc = part",
        ("tests/test_g_rearranged_blocks.py", "-k", "every_blocking"),
    ),
    Mutant(
        "g-rearranged-unbounded-block",
        "g/rearranged builds X̃ whole again (no memory bound on the block)",
        "sepgconv/impls.py",
        "budget = max((ftilde + out) // 4, G_BLOCK_FLOOR)",
        "budget = 1 << 62",
        ("tests/test_g_rearranged_blocks.py", "-k", "bound or peak"),
    ),
    Mutant(
        "compile-gate-ignores-spills",
        "compile_check's gate does not flag local memory (spills)",
        "sepgconv/fused/compile_check.py",
        'flags = (["spills"] if r["local_ops"] > 0 else [])',
        'flags = (["spills"] if r["local_ops"] > 1 << 30 else [])',
        ("tests/test_compile_gate.py", "-k", "spilling"),
    ),
    Mutant(
        "fused-fp16-accumulator",
        "the fused kernels accumulate fp16 inputs in fp16",
        "sepgconv/fused/launch.py",
        "return tl.float64 if dtype == torch.float64 else tl.float32",
        "return {torch.float64: tl.float64, torch.float16: tl.float16}.get(dtype, tl.float32)",
        ("tests/test_fused.py", "-k", "float16"),
    ),
    Mutant(
        "fused-stage-no-barrier",
        "the forward reads the staged X̃ tile back without a barrier after writing it "
        "(a race on a GPU; the interpreter runs a program's lanes in lockstep and cannot see it)",
        "sepgconv/fused/common.py",
        "    tl.store(slot_ptr + lane, xt)\n    tl.debug_barrier()\n",
        "    tl.store(slot_ptr + lane, xt)\n",
        ("tests/test_fused_taps.py", "-k", "barriers"),
    ),
    Mutant(
        "fused-stage-overwrites-unread-slot",
        "the forward writes the next X̃ tile into its slot without waiting for the threads "
        "still reading the previous one (write after read; invisible to the interpreter)",
        "sepgconv/fused/common.py",
        "    tl.debug_barrier()\n    tl.store(slot_ptr + lane, xt)\n",
        "    tl.store(slot_ptr + lane, xt)\n",
        ("tests/test_fused_taps.py", "-k", "barriers"),
    ),
    Mutant(
        "fused-tap-shift-transposed",
        "the g forward's shifted tap load swaps the tap's row and column offsets",
        "sepgconv/fused/common.py",
        "for dx in range(0, K):\n"
        "                v = tl.load(slot_ptr + row + (tap0 + dy * HW + dx)",
        "for dx in range(0, K):\n"
        "                v = tl.load(slot_ptr + row + (tap0 + dx * HW + dy)",
        ("tests/test_fused_taps.py", "-k", "partial"),
    ),
    Mutant(
        "fused-tap-shift-mirrored",
        "the gc forward's shifted tap load walks the tap's columns backwards",
        "sepgconv/fused/common.py",
        "for dx in tl.static_range(K):\n"
        "                v = tl.load(slot_ptr + row + (tap0 + dy * HW + dx)",
        "for dx in tl.static_range(K):\n"
        "                v = tl.load(slot_ptr + row + (tap0 + dy * HW + (K - 1 - dx))",
        ("tests/test_fused_taps.py", "-k", "partial"),
    ),
    Mutant(
        "fused-dot-tap-shift-mirrored",
        "the tl.dot g forward's shifted x load walks the tap's columns backwards",
        "sepgconv/fused/kernels_dot.py",
        "ix = ix0 + dx\n",
        "ix = ix0 + (K - 1 - dx)\n",
        ("tests/test_fused_dot.py", "-m", "not slow", "-k", "naive"),
    ),
    Mutant(
        "fused-dot-wrong-channel-of-j",
        "the tl.dot g forward takes T_h(K) of input channel j mod C_in instead of j // G_in",
        "sepgconv/fused/kernels_dot.py",
        "kt_row = (j // G_IN) * (K * K)",
        "kt_row = (j % C_IN) * (K * K)",
        ("tests/test_fused_dot.py", "-m", "not slow", "-k", "naive"),
    ),
    Mutant(
        "fused-dot-path-never-chosen",
        "the launcher never picks the tl.dot g forward (bf16/fp16/TF32 stay on CUDA cores)",
        "sepgconv/fused/_runtime.py",
        'return "g_dot" if tensor_cores and cg >= DOT_MIN_CG else "fwd"',
        'return "fwd"',
        ("tests/test_fused_dot.py", "-m", "not slow", "-k", "path or half"),
    ),
    Mutant(
        "fused-work-queue-skips-items",
        "the forward's programs claim two items at a time and compute one (items are lost)",
        "sepgconv/fused/kernels_fwd.py",
        "        item = tl.atomic_add(counter_ptr, 1)\n",
        "        item = tl.atomic_add(counter_ptr, 2)\n",
        ("tests/test_fused_taps.py", "-k", "persistent"),
    ),
    Mutant(
        "fused-wgrad-taps-outside-the-tile",
        "the weight gradients pair a halo pixel with output pixels of the neighbouring tiles",
        "sepgconv/fused/common.py",
        "ok = ok & (oy >= OY0) & (oy < OY1) & (ox >= OX0) & (ox < OX1)",
        "ok = ok & (oy >= 0) & (oy < OY1) & (ox >= 0) & (ox < OX1)",
        ("tests/test_fused_taps.py", "-k", "partial"),
    ),
    Mutant(
        "fused-int32-plane",
        "the fused forward multiplies channel × plane in int32",
        "sepgconv/fused/kernels_fwd.py",
        "plane = H.to(tl.int64) * W",
        "plane = H * W",
        ("tests/test_fused_offsets.py",),
    ),
    # ------------------------------------------------ issue #27: A/B, compare, history
    Mutant(
        "slowdown-hook-no-repeat",
        "the test-only slowdown hook never repeats the forward (a planted regression vanishes)",
        "sepgconv/_slowdown.py",
        "for _ in range(repeats):",
        "for _ in range(0):",
        ("tests/test_slowdown.py",),
    ),
    Mutant(
        "slowdown-hook-no-fraction",
        "the test-only slowdown hook drops the fraction of its factor (1.25 plants nothing)",
        "sepgconv/_slowdown.py",
        "_busy_until(t0 + factor * own)",
        "_busy_until(t0 + (1 + whole) * own)",
        ("tests/test_slowdown.py", "-k", "every_call"),
    ),
    Mutant(
        "ab-reference-on-min-samples",
        "bench ab times a slow reference on min_samples (a fast row's ratio: 5 pairs)",
        "bench/ab/session.py",
        "                plan[k] = max(plan[k], densest)",
        "                plan[k] = plan[k]",
        ("tests/test_ab.py", "-k", "densest"),
    ),
    Mutant(
        "ab-row-cold-in-its-pass",
        "bench ab's worker times a row's first round of a pass without the untimed call "
        "(the other pass's warm-ups ran after it: a cold first sample)",
        "bench/ab/worker.py",
        "                    step()  # untimed: the row's first call in this pass",
        "                    pass  # untimed: the row's first call in this pass",
        ("tests/test_ab.py", "-k", "untimed"),
    ),
    Mutant(
        "ab-bar-on-the-slowdown-it-must-catch",
        "bench ab judges at a 10 % bar, the size of the slowdown it must catch (a significant "
        "+8.5 % reading is lost)",
        "bench/commands/ab.py",
        "AB_THRESHOLD = 0.05",
        "AB_THRESHOLD = 0.10",
        ("tests/test_ab.py", "-k", "bar_lets"),
    ),
    Mutant(
        "timing-test-shares-the-machine",
        "a timing test takes the run lock shared, like any test (an xdist neighbour runs "
        "beside it)",
        "tests/_alone.py",
        "            fcntl.flock(run, fcntl.LOCK_EX)",
        "            fcntl.flock(run, fcntl.LOCK_SH)",
        ("tests/test_alone.py",),
    ),
    Mutant(
        "timing-test-without-a-gate",
        "a test passes no gate: a stream of tests on the other worker keeps a timing test waiting",
        "tests/_alone.py",
        "            fcntl.flock(gate, fcntl.LOCK_SH)  # waits while a timing test waits or runs",
        "            pass",
        ("tests/test_alone.py",),
    ),
    Mutant(
        "timing-marker-ignored",
        "the suite's fixture never asks for the lock alone (the marker is read wrongly)",
        "tests/conftest.py",
        'request.node.get_closest_marker("timing") is not None',
        'request.node.get_closest_marker("timed") is not None',
        ("tests/test_alone.py",),
    ),
    Mutant(
        "ab-base-always-first",
        "bench ab times base before head in every round (a drift favours one side)",
        "bench/ab/session.py",
        "for role in ROLES if r % 2 == 0 else ROLES[::-1]:",
        "for role in ROLES:",
        ("tests/test_ab.py", "-k", "alternate"),
    ),
    Mutant(
        "ab-block-from-head-only",
        "bench ab sizes each row's block from head's warm-up alone (sides time unequal blocks)",
        "bench/ab/session.py",
        "est[k] = max(min(ts), 1e-9)",
        "est[k] = max(ts[-1], 1e-9)",
        ("tests/test_ab.py", "-k", "same_calls"),
    ),
    Mutant(
        "compare-missing-implementation-passes",
        "an implementation or reference rows missing from NEW are listed but exit 0",
        "bench/judge/compare.py",
        "return 1 if failed or self.deterministic_changes or self.failures else 0",
        "return 1 if failed or self.deterministic_changes else 0",
        ("tests/test_compare.py", "-k", "missing"),
    ),
    Mutant(
        "bandwidth-gate-start-probe",
        "the comparability gate uses the start's single bandwidth probe, not the median window",
        "bench/judge/comparable.py",
        'return float(b["reference_gb_s"]) * float(frac)',
        'return float(b["reference_gb_s"])',
        ("tests/test_compare.py", "-k", "median_window"),
    ),
    Mutant(
        "history-red-for-one-night",
        "bench history fails only on the night a step begins, not while it is open",
        "bench/judge/trend.py",
        "and math.expm1(now - step.before) > threshold",
        "and step.index == len(s.points) - 1",
        ("tests/test_history.py", "-k", "three_nights"),
    ),
    Mutant(
        "history-acknowledgements-ignored",
        "an acknowledged step still fails the report",
        "bench/judge/trend.py",
        'if same_commit and same_impl and a.device in ("", slug):',
        "if False:",
        ("tests/test_history.py", "-k", "acknowledged"),
    ),
    Mutant(
        "history-missing-implementation-passes",
        "an implementation missing from the latest history record does not fail",
        "bench/judge/trend.py",
        "s.missing_latest = bool(s.points) and s.points[-1].commit != latest",
        "s.missing_latest = False",
        ("tests/test_history.py", "-k", "missing_from_the_latest"),
    ),
    Mutant(
        "history-no-step-across-shape-sets",
        "levels are not re-taken over the shapes common with the latest record",
        "bench/judge/trend.py",
        "if len(shared) >= MIN_COMMON:",
        "if False:",
        ("tests/test_history.py", "-k", "shape_set"),
    ),
    Mutant(
        "grad-out-always-contiguous",
        "a training step's grad_out is NCHW whatever the layer's format (a timed copy)",
        "bench/measure/timing.py",
        "memory_format=layout.torch_format(layer._format),",
        "memory_format=torch.contiguous_format,",
        ("tests/test_bench_measure.py", "-k", "grad_out"),
    ),
    Mutant(
        "gc-gemm-route-transposed-map",
        "gc/rearranged's GEMM route lays X̃ out with H and W swapped",
        "sepgconv/impls.py",
        "xt = xt.view(b, hgt, wid, nh).permute(0, 3, 1, 2)",
        "xt = xt.view(b, wid, hgt, nh).permute(0, 3, 2, 1)",
        ("tests/test_gc_routes.py",),
    ),
    Mutant(
        "gc-route-table-ignored",
        "gc/rearranged never takes the GEMM route (the CUDA route goes untested)",
        "sepgconv/impls.py",
        'if gc_route(x.device.type, x.dtype, self._format, tf32) == "gemm":',
        "if False:",
        ("tests/test_gc_routes.py",),
    ),
    Mutant(
        "gc-gemm-route-on-cuda-cores",
        "float32 takes the GEMM route under PyTorch's default matmul precision (CUDA cores)",
        "sepgconv/impls.py",
        "(dtype == torch.float32 and tf32_matmul)",
        "dtype == torch.float32",
        ("tests/test_gc_routes.py", "-k", "rule"),
    ),
]


# ---------------------------------------------------------------------------- #
# running
# ---------------------------------------------------------------------------- #
def scratch_copy(dest: Path) -> None:
    """The files git tracks, and untracked ones it does not ignore, copied to ``dest``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def run_tests(copy: Path, args: tuple[str, ...], timeout: float) -> tuple[int, int, str]:
    """``(failed, passed, last line)`` of pytest on ``args`` in ``copy``."""
    env = dict(os.environ, PYTHONPATH=str(copy), PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
           "-o", "addopts=", *args]  # fmt: skip
    try:
        proc = subprocess.run(
            cmd, cwd=copy, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return -1, 0, f"timed out after {timeout:.0f} s"
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
    last = lines[-1] if lines else proc.stderr.strip()[-200:]

    def count(word: str) -> int:
        m = re.search(rf"(\d+) {word}", last)
        return int(m.group(1)) if m else 0

    failed = count("failed") + count("errors?")
    if proc.returncode not in (0, 1) and not failed:  # collection or usage error
        failed = -1
    return failed, count("passed"), last


def check_imports(copy: Path) -> None:
    """The scratch copy's packages are the ones imported there (not the checkout's)."""
    env = dict(os.environ, PYTHONPATH=str(copy))
    code = "import sepgconv, bench; print(sepgconv.__file__); print(bench.__file__)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True
    )
    paths = out.stdout.split()
    here = copy.resolve()
    if out.returncode or not all(Path(p).resolve().is_relative_to(here) for p in paths):
        raise SystemExit(f"the scratch copy does not import its own packages: {out}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="+", metavar="NAME", help="run these mutants only")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--baseline", action="store_true",
                    help="first run each mutant's tests on the unmutated copy")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per mutant")
    args = ap.parse_args(argv)
    mutants = MUTANTS
    if args.only:
        unknown = set(args.only) - {m.name for m in MUTANTS}
        if unknown:
            ap.error(f"unknown mutants {sorted(unknown)}; known: {[m.name for m in MUTANTS]}")
        mutants = [m for m in MUTANTS if m.name in args.only]
    if args.list:
        for m in mutants:
            print(f"{m.name}: {m.what} [{m.path}] -> pytest {' '.join(m.tests)}")
        return 0

    rows, bad = [], 0
    with tempfile.TemporaryDirectory(prefix="sepgconv-mutants-") as tmp:
        copy = Path(tmp)
        scratch_copy(copy)
        check_imports(copy)
        for m in mutants:
            target = copy / m.path
            original = target.read_text()
            t0 = time.perf_counter()
            if original.count(m.old) != 1:
                rows.append((m, "stale", "", 0.0))
                bad += 1
                continue
            if args.baseline:
                failed, _, last = run_tests(copy, m.tests, args.timeout)
                if failed:
                    rows.append((m, "baseline fails", last, time.perf_counter() - t0))
                    bad += 1
                    continue
            target.write_text(original.replace(m.old, m.new))
            try:
                failed, passed, last = run_tests(copy, m.tests, args.timeout)
            finally:
                target.write_text(original)
            if failed > 0:
                result, detail = "caught", f"{failed} of {failed + passed}"
            elif failed < 0:
                result, detail = "error", last
                bad += 1
            else:
                result, detail = "survived", f"0 of {passed}"
                bad += 1
            rows.append((m, result, detail, time.perf_counter() - t0))
            print(f"{m.name}: {result} ({detail}, {rows[-1][3]:.0f} s)", file=sys.stderr)
    print("| mutant | file | tests | result | failed tests | s |")
    print("|---|---|---|---|---|---|")
    for m, result, detail, secs in rows:
        print(f"| {m.name} | {m.path} | `{' '.join(m.tests)}` | {result} | {detail} | {secs:.0f} |")
    caught = sum(r[1] == "caught" for r in rows)
    print(f"\n{caught} of {len(rows)} mutants caught")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
