#!/usr/bin/env python3
"""Where does the run-to-run spread of CPU ratios come from: the process, or the machine?

Times ``g/rearranged``, ``gc/rearranged`` and ``g/naive`` against ``full/naive``
(inference, one thread, glibc's malloc fixed as in ``bench run``) on a few
shapes, ``--reps`` times in each of ``--procs`` fresh processes, and prints per
(shape, implementation) the spread of the log ratio *within* a process (between
repetitions) and *between* processes (of the process means, the within part
removed). With ``--hog`` it also runs the same processes beside a memory-bandwidth
neighbour (a process copying 256 MB arrays) and prints how far each median ratio
moved.

A between-process spread well above the within one would call for timing in
several processes (pyperf's workers); a shift under ``--hog`` for rows whose
intermediate tensors leave the caches says the spread comes from the memory
bandwidth other tenants take, which no process count removes.

Usage (from the repository root, on a quiet machine; about 2 min for the defaults)::

    python tools/process_spread.py [--procs 12] [--reps 5] [--hog]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHAPES = (("p4", 16, 3, 16), ("p4m", 32, 1, 32), ("p4", 32, 5, 16))
IMPLS = (("full", "naive"), ("g", "rearranged"), ("gc", "rearranged"), ("g", "naive"))
HOG = (  # 256 MB copied again and again: the memory bandwidth of one core, taken
    "import numpy as np\na = np.ones(32_000_000); b = np.empty_like(a)\nwhile True: np.copyto(b, a)"
)


def one_process(reps: int) -> list[dict]:
    """In this process: ``reps`` interleaved timings per shape; ratios to full/naive."""
    import torch

    sys.path.insert(0, str(ROOT))
    from bench.measure import allocator
    from bench.measure.timing import Timing, make_step, time_interleaved
    from sepgconv import GConv2d

    allocator.steady()
    torch.set_num_threads(1)
    timing = Timing(budget_s=0.1, block_s=0.005, min_samples=5, max_samples=20, warmup_s=0.01)
    rows = []
    for group, c, k, h in SHAPES:
        steps = {}
        for variant, impl in IMPLS:
            torch.manual_seed(0)
            layer = GConv2d(c, c, k, group=group, variant=variant, impl=impl, padding=k // 2)
            x = torch.randn(1, c, layer.g_in, h, h)
            steps[f"{variant}/{impl}"] = make_step(layer.eval(), x, "fwd")
        for rep in range(reps):
            res = time_interleaved(steps, "cpu", timing)
            base = res["full/naive"].median_s
            ratios = {name: res[name].median_s / base for name in steps if name != "full/naive"}
            rows.append({"shape": f"{group}-c{c}-k{k}-h{h}", "rep": rep, **ratios})
    return rows


def _processes(procs: int, reps: int) -> list[list[dict]]:
    cmd = [sys.executable, __file__, "--child", str(reps)]
    return [json.loads(subprocess.check_output(cmd, text=True)) for _ in range(procs)]


def _by_key(runs: list[list[dict]]) -> dict:
    """(shape, impl) -> one array of log ratios per process."""
    out: dict = {}
    for i, rows in enumerate(runs):
        for row in rows:
            for name, v in row.items():
                if name not in ("shape", "rep"):
                    out.setdefault((row["shape"], name), {}).setdefault(i, []).append(np.log(v))
    return {key: [np.array(v) for v in per.values()] for key, per in out.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=12)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--hog", action="store_true", help="also run beside a bandwidth neighbour")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child is not None:
        print(json.dumps(one_process(args.child)))
        return 0
    quiet = _by_key(_processes(args.procs, args.reps))
    print("| shape | impl | median ratio | within-process SD % | between-process SD % |")
    print("|---|---|---|---|---|")
    for (shape, impl), arrays in quiet.items():
        within = np.sqrt(np.mean([a.var(ddof=1) for a in arrays]))
        means = np.array([a.mean() for a in arrays])
        between = np.sqrt(max(means.var(ddof=1) - within**2 / len(arrays[0]), 0.0))
        median = np.exp(np.median(np.concatenate(arrays)))
        print(f"| {shape} | {impl} | {median:.3f} | {100 * within:.1f} | {100 * between:.1f} |")
    if args.hog:
        hog = subprocess.Popen([sys.executable, "-c", HOG])
        try:
            loaded = _by_key(_processes(max(3, args.procs // 4), args.reps))
        finally:
            hog.kill()
        print("\n| shape | impl | quiet | beside a bandwidth neighbour | shift % |")
        print("|---|---|---|---|---|")
        for key, arrays in quiet.items():
            a = np.exp(np.median(np.concatenate(arrays)))
            b = np.exp(np.median(np.concatenate(loaded[key])))
            print(f"| {key[0]} | {key[1]} | {a:.3f} | {b:.3f} | {100 * (b / a - 1):+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
