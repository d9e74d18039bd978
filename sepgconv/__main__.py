"""``python -m sepgconv``: the paper's tables and the filter analysis.

Commands::

    python -m sepgconv table1 [--format md|csv] [--no-fvcore]
    python -m sepgconv table2 [--format md|csv] [--no-fvcore]
    python -m sepgconv analyze MODEL_OR_CHECKPOINT [--compare MODEL_OR_CHECKPOINT2]
                               [--plot PATH] [--seed N] [--decompose g|gc --save PATH]
                               [--trust-pickle]

``MODEL`` is a paper model's registry name (random init with ``--seed``);
a checkpoint is a file written by :func:`sepgconv.analysis.save_checkpoint`
(or a bare state_dict of a paper model). See :mod:`sepgconv.analysis`.
"""

from __future__ import annotations

import argparse
import sys


def _table(args) -> int:
    from sepgconv import tables

    number = 1 if args.command == "table1" else 2
    sys.stdout.write(tables.render(number, args.format, fvcore=not args.no_fvcore))
    return 0


def _analyze(args) -> int:
    from sepgconv import analysis

    specs = [args.model] + ([args.compare] if args.compare else [])
    loaded = []
    for spec in specs:
        try:
            loaded.append(analysis.load_model(spec, seed=args.seed, trust_pickle=args.trust_pickle))
        except (FileNotFoundError, ValueError, KeyError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    labels = (
        specs if len(set(specs)) == len(specs) else [f"{s} ({i + 1})" for i, s in enumerate(specs)]
    )
    results = {}
    for label, model in zip(labels, loaded, strict=True):
        sys.stdout.write(analysis.format_report(model, label) + "\n")
        results[label] = analysis.redundancy(model)
    if args.plot:
        analysis.plot_redundancy(results, args.plot)
        print(f"wrote {args.plot}")
    if args.decompose:
        new, errors = analysis.decompose_model(loaded[0], args.decompose)
        worst = max(errors.values(), default=0.0)
        print(
            f"{args.decompose} decomposition: {len(errors)} layers, "
            f"worst relative error {worst:.4f}"
        )
        if args.save:
            analysis.save_checkpoint(args.save, new)
            print(f"wrote {args.save}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sepgconv", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for n in (1, 2):
        p = sub.add_parser(f"table{n}", help=f"Table {n} measured from the code")
        p.add_argument("--format", choices=["md", "csv"], default="md")
        p.add_argument(
            "--no-fvcore", action="store_true", help="skip the fvcore column (faster for Table 2)"
        )
        p.set_defaults(run=_table)
    p = sub.add_parser("analyze", help="PC1 redundancy (Fig. 2) and g/gc decomposition per layer")
    p.add_argument("model", metavar="MODEL_OR_CHECKPOINT")
    p.add_argument("--compare", metavar="MODEL_OR_CHECKPOINT2", help="second model (e.g. after)")
    p.add_argument("--plot", metavar="PATH", help="write a Fig. 2-style bar plot")
    p.add_argument("--seed", type=int, default=0, help="init seed for registry models")
    p.add_argument("--decompose", choices=["g", "gc"], help="fit g/gc layers to the first model")
    p.add_argument("--save", metavar="PATH", help="with --decompose: save the decomposed model")
    p.add_argument(
        "--trust-pickle", action="store_true", help="allow loading a whole pickled model"
    )
    p.set_defaults(run=_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "save", None) and not getattr(args, "decompose", None):
        print("error: --save needs --decompose", file=sys.stderr)
        return 2
    return int(args.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
