"""``python -m bench``: one entry point, one subcommand per module.

Each subcommand lives in its own module, which exposes two functions:

* ``configure(parser: argparse.ArgumentParser) -> None`` declares its options;
* ``main(args: argparse.Namespace) -> int`` runs it and returns the exit code.

Modules are imported only when their subcommand runs, so ``compare`` does not
pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("bench.run", "run a sweep and write results.csv, benchmark.json, env.json, plots"),
    "report": ("bench.report", "turn a results folder into plots and a README"),
    "compare": ("bench.compare", "compare two pytest-benchmark JSON files for regressions"),
    "profile": ("bench.profile", "per-operator torch.profiler breakdown per implementation"),
    "models": ("bench.models", "benchmark the paper's models (Tables 1 and 2)"),
}


def _requested(argv: list[str]) -> set[str]:
    return {a for a in argv if a in SUBCOMMANDS}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="sepgconv benchmark suite: sweep, report, compare, profile, models",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = _requested(argv[:1])
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module_name)
        if name in wanted:
            importlib.import_module(module_name).configure(p)
    args = parser.parse_args(argv)
    module = importlib.import_module(args._module)
    return int(module.main(args) or 0)
