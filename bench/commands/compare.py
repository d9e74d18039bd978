"""``python -m bench compare BASE NEW``: perf-regression check of two benchmark runs.

The rules and verdicts are described in :mod:`bench.judge.compare` (shown by
``--help``). Exit codes: 0 no regression, 1 regression or deterministic
change, 2 unusable input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import traceback
from pathlib import Path

from ..judge import compare as judge_compare
from ..judge.compare import RULES, compare_runs
from ..judge.render import FORMATS, RENDERERS
from ..judge.runs import InputError, load_run
from .options import alpha as _alpha
from .options import anchor as _anchor
from .options import reference as _reference
from .options import rules as _rules
from .options import threshold as _threshold


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (judge_compare.__doc__ + "\n" + __doc__.split("\n\n", 2)[1]).replace(
        "``", ""
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("base", metavar="BASE", help="baseline benchmark.json (or its folder)")
    parser.add_argument("new", metavar="NEW", help="new benchmark.json (or its folder)")
    parser.add_argument(
        "--threshold", type=_threshold, default=0.10,
        help="smallest latency change that counts, e.g. 10%% (default) or 0.10",
    )  # fmt: skip
    parser.add_argument(
        "--alpha", type=_alpha, default=0.01,
        help="per-run false-alarm level: family-wise (Holm) over all tests of a run "
        "(default 0.01)",
    )  # fmt: skip
    parser.add_argument("--format", choices=FORMATS, default="table")
    parser.add_argument(
        "--rules", type=_rules, default=RULES,
        help="comma list of absolute, ratio, deterministic (default: all three)",
    )  # fmt: skip
    parser.add_argument(
        "--reference-impl", dest="reference", type=_reference, default=("full", "naive"),
        metavar="VARIANT/IMPL", help="reference of the ratio rule (default full/naive)",
    )  # fmt: skip
    parser.add_argument(
        "--anchor-impl", dest="anchor", type=_anchor, default=("dense", "torch"),
        metavar="VARIANT/IMPL",
        help="what the reference's own ratio is to (default dense/torch; 'none': no ratio)",
    )  # fmt: skip
    parser.add_argument(
        "--bootstrap", action="store_true",
        help="when BASE does not exist yet, record NEW as BASE, say so and exit 0 (the "
        "first night on a device: there is nothing to compare with)",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true",
        help="give latency verdicts even when the runs are not comparable (other CPU/GPU "
        "model, torch, threads, or a disturbed run)",
    )  # fmt: skip


def bootstrap(base: str, new: str) -> str | None:
    """Record ``new`` (a benchmark.json or its folder) as the baseline ``base`` when
    ``base`` does not exist; the message, or None when there is a baseline already."""
    base_path, new_path = Path(base), Path(new)
    if base_path.exists():
        return None
    if new_path.is_dir():
        new_path = new_path / "benchmark.json"
    if not new_path.is_file():
        raise InputError(f"{new}: no benchmark.json to record as the baseline")
    target = base_path / "benchmark.json" if not base_path.suffix else base_path
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(new_path, target)
    return (
        f"no baseline at {base}: recorded this run ({new_path}) as the baseline; "
        f"no verdict tonight, the next run is judged against it"
    )


def main(args: argparse.Namespace) -> int:
    if getattr(args, "bootstrap", False):
        try:
            recorded = bootstrap(args.base, args.new)
        except InputError as e:
            print(f"bench compare: error: {e}", file=sys.stderr)
            return 2
        if recorded is not None:
            print(f"bench compare: {recorded}", file=sys.stderr)
            sys.stdout.write(f"**Baseline recorded.** {recorded}\n")
            return 0
    try:
        base, new = load_run(args.base), load_run(args.new)
        report = compare_runs(
            base, new, threshold=args.threshold, alpha=args.alpha, rules=args.rules,
            reference=args.reference, anchor=args.anchor, force=args.force,
        )  # fmt: skip
    except InputError as e:
        print(f"bench compare: error: {e}", file=sys.stderr)
        return 2
    except Exception:  # a bug, not a regression: never exit 1 for it
        traceback.print_exc()
        print("bench compare: internal error (see above)", file=sys.stderr)
        return 2
    sys.stdout.write(RENDERERS[args.format](report))
    return report.exit_code
