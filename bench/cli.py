"""``python -m bench``: one entry point, one subcommand per module of :mod:`bench.commands`.

Each subcommand module exposes two functions:

* ``configure(parser: argparse.ArgumentParser) -> None`` declares its options;
* ``main(args: argparse.Namespace) -> int`` runs it and returns the exit code.

Modules are imported only when their subcommand runs, so ``compare`` does not
pay for importing torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand -> (module under bench.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": ("run", "run a sweep and write results.csv, benchmark.json, env.json, plots"),
    "merge": ("merge", "join the folders of a sharded run (run --shard I/N) into one"),
    "report": ("report", "turn a results folder into plots and a README"),
    "compare": ("compare", "compare two pytest-benchmark JSON files for regressions"),
    "ab": ("ab", "judge HEAD against BASE (git refs or trees) from one interleaved run"),
    "profile": ("profile", "per-operator torch.profiler breakdown per implementation"),
    "models": ("models", "benchmark the paper's models (Tables 1 and 2)"),
    "history": ("history", "per-device history of runs: add one, or report trends and steps"),
    "stability": ("stability", "which timing setup (threads, affinity) gives the steadiest ratios"),
}


def command_module(name: str):
    """The module of subcommand ``name`` (imported now)."""
    return importlib.import_module(f"{__package__}.commands.{SUBCOMMANDS[name][0]}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="sepgconv benchmark suite: sweep, merge, report, compare, profile, models",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    wanted = {a for a in argv[:1] if a in SUBCOMMANDS}
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name in wanted:
            command_module(name).configure(p)
    args = parser.parse_args(argv)
    return int(command_module(args.command).main(args) or 0)
