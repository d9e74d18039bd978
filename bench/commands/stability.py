"""``python -m bench stability``: which timing setup gives the steadiest ratios here?

Usage::

    python -m bench stability [--profile quick] [--max-shapes 16] [--repeats 3]
                              [--settings t2,t1,t1-pinned] [--out DIR] [--analyse-only]

Runs the same sweep ``--repeats`` times under each setting — ``t2``: two
intra-op threads (torch's default on a 2-core machine), ``t1``: one thread,
``t1-pinned``: one thread pinned to one CPU with ``taskset`` — interleaving
the settings (t2, t1, t1-pinned, t2, …) so that drift in the machine's load
hits them alike, each run a plain ``python -m bench run`` into
``DIR/<setting>/<i>``. Then it measures how much every in-run ratio moves
between the repeats of one setting, under three estimators
(:mod:`bench.judge.stability`), and writes ``DIR/stability.md``. Runs that
flagged themselves disturbed are counted and left out.

Exit code 0; 2 for unusable arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..judge import stability
from ..store.results import LOCAL_RESULTS
from ..sweep import profiles

SETTINGS = {
    "t2": {"threads": 2, "pinned": False},
    "t1": {"threads": 1, "pinned": False},
    "t1-pinned": {"threads": 1, "pinned": True},
}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0].replace("``", "")
    add = parser.add_argument
    add("--profile", choices=list(profiles.PROFILES), default="quick")
    add("--max-shapes", type=int, default=16, help="shapes of the profile per run (default 16)")
    add("--repeats", type=int, default=3, help="runs per setting (default 3, at least 2)")
    add("--settings", default="t2,t1,t1-pinned", help=f"comma list of {', '.join(SETTINGS)}")
    add("--out", type=Path, default=LOCAL_RESULTS / "stability")
    add("--analyse-only", action="store_true", help="only analyse the runs already in --out")
    add(
        "--keep-disturbed",
        action="store_true",
        help="analyse runs that flagged themselves disturbed too (a study under load)",
    )


def _command(setting: str, args, out: Path) -> list[str]:
    s = SETTINGS[setting]
    cmd = [sys.executable, "-m", "bench", "run", "--profile", args.profile, "--device", "cpu"]
    cmd += ["--max-shapes", str(args.max_shapes), "--threads", str(s["threads"])]
    cmd += ["--no-profile", "--no-report", "--no-peers", "--out", str(out)]
    if s["pinned"]:
        cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 0
        cmd = ["taskset", "-c", str(cpu), *cmd]
    return cmd


def main(args: argparse.Namespace) -> int:
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    bad = [s for s in settings if s not in SETTINGS]
    if bad or args.repeats < 2:
        print(f"error: settings must be of {list(SETTINGS)}, repeats >= 2", file=sys.stderr)
        return 2
    if any(SETTINGS[s]["pinned"] for s in settings) and shutil.which("taskset") is None:
        print("error: taskset is not installed (util-linux)", file=sys.stderr)
        return 2
    if not args.analyse_only:
        for i in range(args.repeats):
            for s in settings:
                out = args.out / s / str(i)
                print(f"stability: {s} run {i + 1}/{args.repeats} -> {out}", flush=True)
                proc = subprocess.run(_command(s, args, out), capture_output=True, text=True)
                if proc.returncode not in (0, 1):
                    print(proc.stderr[-2000:], file=sys.stderr)
    runs, walls, disturbed = {}, {}, {}
    for s in settings:
        folders = sorted(p for p in (args.out / s).glob("*") if (p / "benchmark.json").is_file())
        envs = [json.loads((f / "env.json").read_text()) for f in folders]
        quiet = [
            f
            for f, e in zip(folders, envs, strict=True)
            if args.keep_disturbed or not _disturbed(e)
        ]
        disturbed[s] = len(folders) - len(quiet)
        runs[s] = stability.load_runs(quiet)
        walls[s] = [e.get("wall_s", float("nan")) for e in envs]
    text = stability.render(stability.summarize(runs), walls)
    text += "\n" + "".join(
        f"{s}: {n} run(s) flagged disturbed"
        + (" (kept)" if args.keep_disturbed else " (left out)")
        + "\n"
        for s, n in disturbed.items()
        if n
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stability.md").write_text(text)
    print(text)
    return 0


def _disturbed(env: dict) -> bool:
    return bool((env.get("contention") or {}).get("disturbed"))
