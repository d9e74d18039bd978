"""``python -m bench compare BASE NEW``: perf-regression check of two benchmark runs.

The rules and verdicts are described in :mod:`bench.judge.compare` (shown by
``--help``). Exit codes: 0 no regression, 1 regression or deterministic
change, 2 unusable input (one line on stderr, never a traceback).
"""

from __future__ import annotations

import argparse
import math
import sys
import traceback

from ..judge import compare as judge_compare
from ..judge.compare import RULES, compare_runs
from ..judge.render import FORMATS, RENDERERS
from ..judge.runs import InputError, load_run


def _threshold(text: str) -> float:
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a threshold: {text!r} (write 10% or 0.10)") from None
    if not t.endswith("%") and v >= 1:
        raise argparse.ArgumentTypeError(f"ambiguous threshold {text!r}: write 10% or 0.10")
    if not (0 <= v < 10) or math.isnan(v):
        raise argparse.ArgumentTypeError(f"threshold out of range: {text!r}")
    return v


def _alpha(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v < 1:
        raise argparse.ArgumentTypeError(f"alpha must be in (0, 1): {text!r}")
    return v


def _rules(text: str) -> tuple:
    rules = tuple(r.strip() for r in text.split(",") if r.strip())
    bad = [r for r in rules if r not in RULES]
    if bad or not rules:
        raise argparse.ArgumentTypeError(f"rules are a comma list of {', '.join(RULES)}")
    return rules


def _reference(text: str) -> tuple:
    parts = text.split("/")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"write VARIANT/IMPL, e.g. full/naive: {text!r}")
    return tuple(parts)


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
        help="significance level of the two-sided Mann-Whitney U test (default 0.01)",
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


def main(args: argparse.Namespace) -> int:
    try:
        base, new = load_run(args.base), load_run(args.new)
        report = compare_runs(
            base, new, threshold=args.threshold, alpha=args.alpha, rules=args.rules,
            reference=args.reference,
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
