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
        'flags = (["spills"] if r["stack_bytes"] > 0 else [])',
        'flags = (["spills"] if r["stack_bytes"] > 1 << 30 else [])',
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
        "fused-int32-plane",
        "the fused forward multiplies channel × plane in int32",
        "sepgconv/fused/kernels_fwd.py",
        "plane = H.to(tl.int64) * W",
        "plane = H * W",
        ("tests/test_fused_offsets.py",),
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
