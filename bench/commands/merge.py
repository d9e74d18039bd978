"""``python -m bench merge``: join the folders of a sharded sweep into one.

Usage::

    python -m bench merge SHARD_DIR... --out DIR [--force] [--partial] [--no-report]

Each SHARD_DIR is the folder of one ``python -m bench run --shard I/N``. DIR
gets what one unsharded run of the same sweep writes (:mod:`bench.store.shards`):
``results.csv``, ``samples.jsonl``, ``benchmark.json``, ``env.json`` (every
shard's own environment kept under ``shards``), ``profile.csv``/``traces/``
from the shard that ran the profile, and then the plots and README of
:mod:`bench.report` (unless ``--no-report``), so ``bench compare`` and
``bench history add`` take DIR like any run.

Refused (exit 2): folders that are not the parts of one sweep (another count,
profile or set of implementations, an index twice or missing — ``--partial``
merges an incomplete set —, a row twice). Shards measured on different
machine models (CPU or GPU model, torch version, thread count and the other
fields of :data:`bench.judge.comparable.BLOCKING`) are refused too unless
``--force``: their latencies are not one run's; a forced merge says what
differed in ``env.json`` (``merge_notes``).

Exit code: 0 merged, 1 merged but the report failed, 2 refused or unusable input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..judge import comparable
from ..judge.runs import Run
from ..store import shards


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shard_dirs", nargs="+", type=Path, metavar="SHARD_DIR")
    parser.add_argument("--out", type=Path, required=True, help="the merged results folder")
    parser.add_argument(
        "--force",
        action="store_true",
        help="merge shards measured on different machine models (CPU/GPU model, torch, "
        "threads); env.json says what differed",
    )
    parser.add_argument(
        "--partial", action="store_true", help="merge although some shards are missing"
    )
    parser.add_argument("--no-report", action="store_true", help="skip plots and README")


def machine_differences(parts: list[shards.ShardFolder]) -> list[str]:
    """What differs between the first shard's machine and each other's, by the readers
    of :data:`bench.judge.comparable.BLOCKING` (what makes two runs incomparable)."""

    def run_of(p: shards.ShardFolder) -> Run:
        return Run(str(p.path), {"sepgconv_env": p.env}, {}, {})

    first = run_of(parts[0])
    out = []
    for p in parts[1:]:
        other = run_of(p)
        for what, read in comparable.BLOCKING:
            a, b = read(first), read(other)
            if str(a) != str(b):
                out.append(f"{what} differs: {a!r} ({parts[0].name}) vs {b!r} ({p.name})")
    return out


def main(args) -> int:
    try:
        parts = sorted((shards.load(d) for d in args.shard_dirs), key=lambda p: p.shard["index"])
        shards.check_same_sweep(parts, partial=args.partial)
    except shards.MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    differ = machine_differences(parts)
    if differ and not args.force:
        print(
            "error: the shards ran on different machines; their latencies are not one "
            "run's (--force merges anyway):\n  " + "\n  ".join(differ),
            file=sys.stderr,
        )
        return 2
    notes = [f"forced: {d}" for d in differ]
    count = parts[0].shard["count"]
    missing = sorted(set(range(1, count + 1)) - {p.shard["index"] for p in parts})
    if missing:
        notes.append(f"partial: shards {missing} of {count} missing")
    for p in parts:  # an interrupted shard: its rows so far are merged, and said to be so
        if len(p.rows) < int(p.shard.get("rows") or 0):
            notes.append(f"incomplete: {p.name} has {len(p.rows)} of {p.shard['rows']} rows")
    try:
        environment = shards.merge(parts, args.out, notes)
    except shards.MergeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = sum(len(p.rows) for p in parts)
    print(
        f"bench merge: {len(parts)} of {count} shards, {rows} rows -> {args.out}"
        + (f" (WARNING {'; '.join(notes)})" if notes else "")
    )
    if environment.get("contention", {}) and environment["contention"].get("disturbed"):
        print("WARNING a shard was disturbed: see env.json 'contention'", file=sys.stderr)
    if args.no_report:
        return 0
    from ..report.build import make_report

    try:
        make_report(args.out)
    except Exception as e:  # noqa: BLE001 - the merged results stay; say why
        print(f"report failed: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0
