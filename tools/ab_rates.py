#!/usr/bin/env python3
"""Measured false-alarm and detection rates of ``python -m bench ab``, per run, on real pairs.

Each *pair* is one real ``bench ab`` run of this checkout against itself
(``bench ab . .``: both sides the same tree, each in its own worker):

* ``same``: the same code on both sides, with a neighbour process (a memory
  copy loop, one core) started about halfway through the run: a false alarm is
  a run that exits 1;
* ``1.10``, ``1.25``, ``1.50``: head's ``--impl`` target slowed by that factor
  through the test-only hook (``--head-env SEPGCONV_TEST_SLOWDOWN=...``, a
  repeated forward; a training step slows by less): *caught* is exit 1 with the
  target's forward flagged as a regression, *clean* is nothing else flagged.

Conditions are interleaved (same, 1.10, 1.25, 1.50, same, ...), so slow drifts
of the machine spread over all of them. Every run takes the timing lock
(``flock``), so it never overlaps another timing job on a shared machine.
Results go to ``OUT/pairs.jsonl`` or ``--log`` (one line per pair, appended: a
stopped session resumes by counting what is there; each line keeps every
implementation's measured change and adjusted p, and the load average at the
start and end of the run) and a summary table to stdout.

Usage (the issue's protocol: 20 pairs per condition)::

    python tools/ab_rates.py --pairs 20 --out results/ab-rates
    python tools/ab_rates.py --pairs 3 --max-shapes 4 --out /tmp/ab-rates   # a short look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NEIGHBOUR = (
    "import numpy as np\n"
    "a = np.ones(2**25)\n"  # 256 MB: beyond every cache, the memory bus is shared
    "while True:\n"
    "    b = a.copy()\n"
)


def run_pair(cond: str, args, out: Path, expected_s: float) -> dict:
    """One ``bench ab`` run of condition ``cond``; its outcome as a dict."""
    cmd = [
        sys.executable, "-m", "bench", "ab", str(ROOT), str(ROOT), "--profile", args.profile,
        "--max-shapes", str(args.max_shapes), "--format", "json", "--out", str(out),
    ]  # fmt: skip
    for impl in args.impl:
        cmd += ["--impl", impl]
    if args.threshold:
        cmd += ["--threshold", args.threshold]
    if cond != "same":
        cmd += ["--head-env", f"SEPGCONV_TEST_SLOWDOWN={args.target}={cond}"]
    if args.lock:
        cmd = ["flock", args.lock, *cmd]
    t0, load0 = time.time(), os.getloadavg()[0]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    neighbour, started = None, None
    wants = cond == "same" or args.neighbour_always
    while proc.poll() is None:  # start it about halfway through the run (lock held)
        if started is None and _lock_held_by(proc):
            started = time.time()
        if wants and started is not None and time.time() - started >= expected_s / 2:
            neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR])
            break
        if not wants and started is not None:
            break
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    run_s = time.time() - (started or t0)
    if neighbour is not None:
        neighbour.send_signal(signal.SIGTERM)
        neighbour.wait()
    wall = time.time() - t0
    flagged, target_caught, impls, verdict = [], False, [], None
    try:
        verdict = json.loads(stdout)
        for i in verdict["implementations"]:
            if i["verdict"] == "regression":
                flagged.append(i["label"])
            r = i.get("ratio") or {}
            impls.append([i["label"], r.get("change"), r.get("p_adj"), i["verdict"]])
        target_caught = any(f.startswith(f"{args.target} fwd ") for f in flagged)
        failures = verdict.get("failures", [])
        det = len(verdict.get("deterministic_changes", []))
        bench_regs = [p["label"] for p in verdict["pairs"] if p["verdict"] == "regression"]
    except (json.JSONDecodeError, KeyError):
        failures, det, bench_regs = [stderr.strip()[-300:]], 0, []
    others = [f for f in flagged if not f.startswith(f"{args.target} ")]
    v, i = args.target.split("/")
    other_benches = [b for b in bench_regs if f"variant={v} impl={i} " not in b + " "]
    return {
        "condition": cond, "exit": proc.returncode, "flagged_impls": flagged,
        "target_caught": target_caught, "others_flagged": others,
        "benchmark_regressions": bench_regs, "other_benchmarks": other_benches,
        "failures": failures, "deterministic_changes": det,
        "neighbour": neighbour is not None, "wall_s": round(wall, 1), "run_s": round(run_s, 1),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "impls": impls,
        "load1": [round(load0, 2), round(os.getloadavg()[0], 2)], "label": args.label,
        "threshold": _bar(verdict),
    }  # fmt: skip


def _bar(verdict) -> float | None:
    """The bar the run was judged at (``bench ab``'s ``--threshold``), from its verdict."""
    try:
        return verdict["settings"]["threshold"]
    except (TypeError, KeyError):
        return None


def _lock_held_by(proc: subprocess.Popen) -> bool:
    """True once the ``flock`` child has started ``python -m bench ab`` (the lock is
    held): its process has a child."""
    try:
        return bool(Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split())
    except OSError:
        return True


def _target_change(row: dict, target: str) -> float | None:
    """The measured change of the target's forward in one pair (None: not recorded)."""
    for label, change, _p, _v in row.get("impls", []):
        if label.startswith(f"{target} fwd "):
            return change
    return None


def summary(rows: list[dict], target: str) -> str:
    lines = ["| condition | pairs | exit 1 | target caught | nothing else flagged | "
             "target fwd change, median [min, max] | run s, median | "
             "load avg (1 min), median [max] |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for cond in dict.fromkeys(r["condition"] for r in rows):
        mine = [r for r in rows if r["condition"] == cond]
        n = len(mine)
        fails = sum(r["exit"] == 1 for r in mine)
        caught = "-" if cond == "same" else f"{sum(r['target_caught'] for r in mine)} of {n}"
        clean = sum(not r["others_flagged"] and not r["failures"] for r in mine)
        ch = sorted(c for c in (_target_change(r, target) for r in mine) if c is not None)
        change = (f"{100 * statistics.median(ch):+.1f} % [{100 * ch[0]:+.1f}, {100 * ch[-1]:+.1f}]"
                  if ch else "-")  # fmt: skip
        run_s = statistics.median(r["run_s"] for r in mine)
        loads = [max(r["load1"]) for r in mine if "load1" in r]
        load = f"{statistics.median(loads):.2f} [{max(loads):.2f}]" if loads else "-"
        lines.append(f"| {cond if cond == 'same' else f'{target} x{cond}'} | {n} | {fails} | "
                     f"{caught} | {clean} of {n} | {change} | {run_s:.0f} | {load} |")  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=20, help="pairs per condition (default 20)")
    ap.add_argument("--conditions", default="same,1.10,1.25,1.50")
    ap.add_argument("--target", default="gc/rearranged", help="the slowed implementation")
    ap.add_argument(
        "--impl",
        action="append",
        default=None,
        help="implementations in each run (default: the target and g/rearranged)",
    )
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--max-shapes", type=int, default=6)
    ap.add_argument("--threshold", default="",
                    help="bench ab's --threshold (default: bench ab's own)")  # fmt: skip
    ap.add_argument("--lock", default="/tmp/sepgconv-timing.lock", help="'' for none")
    ap.add_argument(
        "--neighbour-always",
        action="store_true",
        help="a neighbour halfway through every pair, not only same-code ones",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "ab-rates")
    ap.add_argument(
        "--log",
        type=Path,
        default=None,
        help="the pairs file (default OUT/pairs.jsonl); each run's files stay in OUT",
    )
    ap.add_argument("--label", default="", help="free text kept in every row (e.g. the commit)")
    args = ap.parse_args(argv)
    args.impl = args.impl or [args.target, "g/rearranged"]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.log or args.out / "pairs.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    rows = [json.loads(x) for x in log.read_text().splitlines()] if log.exists() else []
    conds = args.conditions.split(",")
    expected = 10.0 * args.max_shapes  # seconds of one run, until one is measured
    for i in range(args.pairs):
        for cond in conds:
            if sum(r["condition"] == cond for r in rows) > i:
                continue  # done in an earlier session
            k = sum(r["condition"] == cond for r in rows)
            row = run_pair(cond, args, args.out / f"{cond}-{k:02d}", expected)
            expected = 0.5 * expected + 0.5 * row["run_s"]
            rows.append(row)
            with log.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"{cond:>5} #{k + 1}: exit {row['exit']}, flagged {row['flagged_impls']}, "
                  f"{row['wall_s']} s", flush=True)  # fmt: skip
    print(summary(rows, args.target))
    print(f"machine: {os.uname().nodename}, {os.cpu_count()} CPUs; pairs in {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
