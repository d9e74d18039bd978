"""``python -m bench report DIR``: plots and a README from a results folder.

Reads ``DIR/results.csv``, ``DIR/env.json`` and ``DIR/profile.csv`` and writes
``DIR/plots/*.png|svg`` and ``DIR/README.md`` (see :mod:`bench.report.build`).
Exit code 0; 2 for unusable input (one line on stderr) or an internal error.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from pathlib import Path

from ..report.build import ReportError, make_report


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__.split("\n\n")[0].replace("``", "")
    parser.add_argument("dir", metavar="DIR", type=Path, help="results folder (has results.csv)")


def main(args: argparse.Namespace) -> int:
    try:
        written = make_report(args.dir)
    except ReportError as e:
        print(f"bench report: error: {e}", file=sys.stderr)
        return 2
    except Exception:  # a bug in the report: say so, never a silent success
        traceback.print_exc()
        print("bench report: internal error (see above)", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0
