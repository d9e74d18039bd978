"""``python -m bench history add|report``: the per-device benchmark history.

``add RUN_DIR [--commit SHA]`` appends the run's compact record (commit, date,
machine, per-benchmark medians and ratios, per-implementation levels with
their uncertainty) to ``results/history/<device-slug>.jsonl``.

``report [--out DIR]`` draws one trend plot per implementation and device,
fits steps, and writes ``README.md`` naming each step with its commit. Exit
status: 0; 1 while a regression step (an upward step of an implementation's
ratio above ``--threshold``) is open — the series has not come back and the
step is not acknowledged in ``--acknowledged`` (default
``results/history/acknowledged.toml``: ``[[step]]`` tables with commit,
implementation, reason) — or when an implementation is missing from the
latest record (acknowledge its last commit to retire it); 2 unusable input.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from ..judge.render_history import history_markdown, step_lines
from ..judge.runs import InputError, load_run
from ..judge.trend import DEFAULT_THRESHOLD, judge_history, load_acknowledged, record_of
from ..store import history as store
from .options import anchor as _anchor
from .options import reference as _reference
from .options import threshold as _threshold


def configure(parser: argparse.ArgumentParser) -> None:
    """Declare the ``add`` and ``report`` actions and their options.

    Args:
        parser: the subcommand's parser.
    """
    parser.description = __doc__.replace("``", "")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    add = sub.add_parser("add", help="append a run to results/history/<device-slug>.jsonl")
    add.add_argument("run", metavar="RUN_DIR", help="a run folder (or its benchmark.json)")
    add.add_argument("--commit", help="the commit the run measured (default: the run's own)")
    add.add_argument("--date", help="ISO date of the run (default: the run's own)")
    add.add_argument("--history", type=Path, default=store.HISTORY_DIR, metavar="DIR",
                     help="history folder (default results/history)")  # fmt: skip
    add.add_argument("--reference-impl", dest="reference", type=_reference,
                     default=("full", "naive"), metavar="VARIANT/IMPL")  # fmt: skip
    add.add_argument("--anchor-impl", dest="anchor", type=_anchor, default=("dense", "torch"),
                     metavar="VARIANT/IMPL")  # fmt: skip
    rep = sub.add_parser("report", help="trend plots, steps and README.md of the history")
    rep.add_argument("--history", type=Path, default=store.HISTORY_DIR, metavar="DIR",
                     help="history folder (default results/history)")  # fmt: skip
    rep.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="where README.md and plots/ go (default: the history folder)",
    )
    rep.add_argument(
        "--threshold",
        type=_threshold,
        default=DEFAULT_THRESHOLD,
        help="smallest upward step that counts as a regression (default 5%%)",
    )
    rep.add_argument("--no-plots", action="store_true", help="README only")
    rep.add_argument("--acknowledged", type=Path, default=None, metavar="TOML",
                     help="reviewed steps that no longer fail (default: "
                     "<history>/acknowledged.toml)")  # fmt: skip


def _add(args) -> int:
    run = load_run(args.run)
    commit = args.commit or str(run.commit_info.get("id") or "")
    if not commit or commit == "unknown":
        raise InputError(f"{run.source}: the run records no commit: pass --commit SHA")
    slug = store.device_slug(run.env, (run.machine_info.get("cpu") or {}).get("brand_raw"))
    rec = record_of(run, commit=commit, date=args.date, reference=args.reference,
                    anchor=args.anchor)  # fmt: skip
    path = store.history_path(args.history, slug)
    store.append(path, rec)
    n = len(rec["implementations"])
    print(f"{path}: added {commit[:10]} ({len(rec['benchmarks'])} benchmarks, {n} groups)")
    if rec["machine"]["disturbed"]:
        print("note: the run was disturbed: drawn, but left out of the step fit")
    return 0


def _report(args) -> int:
    from ..report.history_plots import write_plots

    everything = store.read_all(args.history)
    if not everything:
        raise InputError(f"{args.history}: no history records (*.jsonl)")
    out = args.out or args.history
    ack_path = args.acknowledged or (args.history / "acknowledged.toml")
    try:
        acks = load_acknowledged(ack_path)
    except ValueError as e:
        raise InputError(str(e)) from None
    by_slug, plots, failing, printed = {}, {}, [], []
    for slug, records in everything.items():
        series = judge_history(records, args.threshold, acks, slug)
        by_slug[slug] = (records, series)
        failing += [f"{slug}: {s.label}: {why}" for s in series for why in s.failing]
        for s in series:
            for _step, ack in s.open_regressions:
                if ack is not None:
                    printed.append(f"{slug}: {s.label}: open step at {ack.commit} acknowledged "
                                   f"({ack.reason})")  # fmt: skip
        printed += [f"{slug}: {line[2:]}" for s in series for line in step_lines(s, args.threshold)]
        if not args.no_plots:
            for impl, path in write_plots(slug, series, out / "plots", args.threshold).items():
                plots[(slug, impl)] = path.relative_to(out).as_posix()
    out.mkdir(parents=True, exist_ok=True)
    readme = out / "README.md"
    readme.write_text(history_markdown(by_slug, args.threshold, plots), encoding="utf-8")
    print(readme)
    for line in printed:
        print(line)
    for f in failing:
        print(f"FAIL {f}")
    return 1 if failing else 0


def main(args: argparse.Namespace) -> int:
    """Run ``add`` or ``report``.

    Args:
        args: the parsed options.

    Returns:
        The exit status (see the module doc).
    """
    try:
        return _add(args) if args.action == "add" else _report(args)
    except (InputError, store.HistoryError) as e:
        print(f"bench history: error: {e}", file=sys.stderr)
        return 2
    except Exception:  # a bug: never a silent success, never exit 1
        traceback.print_exc()
        print("bench history: internal error (see above)", file=sys.stderr)
        return 2
