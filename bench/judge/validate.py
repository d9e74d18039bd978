"""Validation of ``bench compare``: per-run false-alarm and detection rates, measured.

``python -m bench.judge.validate [RUN ...] [--synthetic N] [--bootstrap N] [--format md]``

Three sources of "unchanged code" pairs (BASE, NEW), each judged with the
nightly rules (``--rules``, default ``ratio,deterministic``):

* **synthetic** — two runs drawn from one model (:mod:`bench.judge.synthetic`,
  quick-profile shaped, with a run-to-run shift per benchmark);
* **bootstrap** — two bootstrap resamples of one real run: within each shape
  the rounds are resampled *jointly* across its implementations, so the
  pairing survives (:func:`resample_run`); older runs without rounds are
  resampled per benchmark;
* **real** — every pair of the real runs given (same code, same machine; a
  pair with a disturbed run gets no latency verdict, as in the nightly job:
  it is counted and also judged with ``--force``); the comparable pairs also
  get the injected changes below.

On synthetic and bootstrap pairs it also injects regressions into NEW and
counts how often they are caught: every benchmark of one implementation
(cycling through them, the reference included) 25 % slower — caught when
every (pass, dtype) group of it is a regression, and *clean* when nothing
else is flagged — and one benchmark with 30 samples 30 % slower — caught when
that benchmark is flagged. A false alarm is a run that exits 1.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass

import numpy as np

from . import comparable
from .aggregate import group_of
from .compare import RULES, compare_runs
from .runs import Bench, InputError, Run, load_run, params_key
from .stats import summarize
from .synthetic import Noise, grid, synthetic_run, world

IMPL_FACTOR, BENCH_FACTOR = 1.25, 1.30


def _shape_of(params: dict) -> tuple:
    return params_key({k: v for k, v in params.items() if k not in ("variant", "impl")})


def _bench(b: Bench, values: np.ndarray, rounds: np.ndarray | None) -> Bench:
    return Bench(b.key, b.params, b.name, b.fullname, b.extra_info, summarize(values, 0.0), rounds)


def resample_run(run: Run, rng: np.random.Generator, source: str = "") -> Run:
    """A bootstrap resample of ``run`` that keeps the in-run pairing.

    Args:
        run: a run with raw samples.
        rng: random generator.
        source: the resample's name.

    Returns:
        A new run: per shape, its rounds drawn with replacement (as many draws
        as it has rounds), draw ``j`` becoming round ``j`` of every implementation
        that has a sample in the drawn round; without rounds, each benchmark's
        samples are drawn with replacement.
    """
    out = Run(source or f"{run.source}*", run.machine_info, run.commit_info, {})
    shapes: dict[tuple, list[Bench]] = {}
    for b in run.benches.values():
        shapes.setdefault(_shape_of(b.params), []).append(b)
    for members in shapes.values():
        timed = [b for b in members if b.summary.values is not None]
        if any(b.rounds is None for b in timed):
            for b in timed:
                x = b.summary.values
                out.benches[b.key] = _bench(b, x[rng.integers(0, x.size, x.size)], None)
            continue
        pool = np.unique(np.concatenate([b.rounds for b in timed])) if timed else np.array([])
        draws = pool[rng.integers(0, pool.size, pool.size)] if pool.size else pool
        for b in timed:
            where = {int(r): i for i, r in enumerate(b.rounds)}
            picked = [(j, where[int(r)]) for j, r in enumerate(draws) if int(r) in where]
            if len(picked) < 2:
                picked = [(j, j % b.rounds.size) for j in range(b.rounds.size)]
            new_rounds = np.array([j for j, _ in picked])
            values = b.summary.values[[i for _, i in picked]]
            out.benches[b.key] = _bench(b, values, new_rounds)
    return out


def inject(run: Run, factor: float, chosen) -> Run:
    """``run`` with the latencies of the chosen benchmarks multiplied by ``factor``.

    Args:
        run: the run.
        factor: the multiplier.
        chosen: ``f(bench) -> bool``.

    Returns:
        A new run (the others' samples shared).
    """
    out = Run(run.source, run.machine_info, run.commit_info, {}, list(run.notes))
    for k, b in run.benches.items():
        hit = chosen(b) and b.summary.values is not None
        out.benches[k] = _bench(b, b.summary.values * factor, b.rounds) if hit else b
    return out


@dataclass
class Tally:
    """Counts of one scenario over many pairs."""

    runs: int = 0
    fails: int = 0  # exit 1
    caught: int = 0  # the injected change found
    clean: int = 0  # ...and nothing else flagged
    flagged: int = 0  # regressions flagged (benchmarks + implementations), summed

    def row(self, source: str, scenario: str) -> list:
        def rate(k: int) -> str:
            return f"{k}/{self.runs} ({k / self.runs:.1%})" if self.runs else "-"

        if scenario == "null":
            return [source, scenario, str(self.runs), rate(self.fails), "-", "-"]
        return [source, scenario, str(self.runs), "-", rate(self.caught), rate(self.clean)]


def _impl_of(b: Bench) -> str:
    return f"{b.params.get('variant')}/{b.params.get('impl')}"


def judge(base: Run, new: Run, rules, scenario: str, target, tally: Tally, **kw) -> None:
    """Compare one pair and add the outcome to ``tally`` (see the module doc).

    Args:
        base: BASE run.
        new: NEW run (with the injected change, if any).
        rules: the compare rules.
        scenario: "null", "impl" or "bench".
        target: the slowed implementation ("variant/impl") or benchmark key.
        tally: the counts to update.
        **kw: passed to :func:`bench.judge.compare.compare_runs`.
    """
    r = compare_runs(base, new, rules=rules, **kw)
    tally.runs += 1
    tally.fails += r.exit_code
    regs_i = [i for i in r.implementations if i.verdict == "regression"]
    regs_b = [p for p in r.pairs if p.verdict == "regression"]
    tally.flagged += len(regs_i) + len(regs_b)
    if scenario == "impl":
        mine = [i for i in r.implementations if i.group[0] == target]
        caught = bool(mine) and all(i.verdict == "regression" for i in mine)
        others = [i for i in regs_i if i.group[0] != target]
        others += [p for p in regs_b if _impl_of(new.benches[p.key]) != target]
        tally.caught += caught
        tally.clean += caught and not others
    elif scenario == "bench":
        caught = any(p.key == target for p in regs_b)
        tally.caught += caught
        tally.clean += caught and all(p.key == target for p in regs_b) and not regs_i


def scenarios(make_pair, n: int, rules, rng: np.random.Generator, **kw) -> dict:
    """Null, 25 %-implementation and 30 %-benchmark scenarios over ``n`` pairs each.

    Args:
        make_pair: ``f(i) -> (base, new)``, two runs of unchanged code.
        n: pairs per scenario.
        rules: compare rules.
        rng: picks the slowed benchmarks.
        **kw: passed to compare.

    Returns:
        ``{scenario: Tally}``.
    """
    out = {s: Tally() for s in ("null", "impl", "bench")}
    for i in range(n):
        base, new = make_pair(i)
        judge(base, new, rules, "null", None, out["null"], **kw)
        impls = sorted({_impl_of(b) for b in new.benches.values() if group_of(b.params)})
        target = impls[i % len(impls)]
        slowed = inject(new, IMPL_FACTOR, lambda b, t=target: _impl_of(b) == t)
        judge(base, slowed, rules, "impl", target, out["impl"], **kw)
        thirty = [
            k for k, b in new.benches.items()
            if b.summary.n >= 30 and k in base.benches and base.benches[k].summary.n >= 30
            and group_of(b.params)
        ]  # fmt: skip
        if thirty:
            key = thirty[int(rng.integers(0, len(thirty)))]
            slowed = inject(new, BENCH_FACTOR, lambda b, k=key: b.key == k)
            judge(base, slowed, rules, "bench", key, out["bench"], **kw)
    return out


def real_pairs(runs: list[Run], rules, **kw) -> tuple[Tally, Tally, list]:
    """Every pair of real runs of unchanged code: as the nightly job judges it, and forced.

    Args:
        runs: the runs (same code, same machine).
        rules: compare rules.
        **kw: passed to compare.

    Returns:
        ``(as judged, with --force, [(base, new, exit, reasons)])``.
    """
    judged, forced, lines = Tally(), Tally(), []
    for a, b in itertools.combinations(runs, 2):
        r = compare_runs(a, b, rules=rules, **kw)
        judged.runs += 1
        judged.fails += r.exit_code
        f = compare_runs(a, b, rules=rules, force=True, **kw)
        forced.runs += 1
        forced.fails += f.exit_code
        flagged = [i.label for i in f.implementations if i.verdict == "regression"]
        flagged += [p.label for p in f.pairs if p.verdict == "regression"]
        lines.append((a.source, b.source, r.exit_code, f.exit_code, r.comparability.reasons,
                      flagged))  # fmt: skip
    return judged, forced, lines


def _table(rows: list) -> str:
    head = ["source", "scenario", "pairs", "false-alarm runs", "caught", "caught, nothing else"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """The validation CLI (see the module doc).

    Args:
        argv: arguments (default ``sys.argv[1:]``).

    Returns:
        0, or 2 for unusable input.
    """
    ap = argparse.ArgumentParser(prog="python -m bench.judge.validate", description=__doc__)
    ap.add_argument("runs", nargs="*", metavar="RUN", help="real runs (benchmark.json or folder)")
    ap.add_argument("--synthetic", type=int, default=100, help="synthetic pairs per scenario")
    ap.add_argument("--bootstrap", type=int, default=50, help="bootstrap pairs per scenario/run")
    ap.add_argument("--rules", default="ratio,deterministic")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rules = tuple(r for r in args.rules.split(",") if r in RULES)
    rng = np.random.default_rng(args.seed)
    rows = []
    try:
        runs = [load_run(p) for p in args.runs]
    except InputError as e:
        print(f"validate: error: {e}", file=sys.stderr)
        return 2
    if args.synthetic:
        params = grid()
        truth = world(params, args.seed)

        def synth(i: int):
            s = args.seed * 100_000 + 2 * i
            return synthetic_run(params, truth, s), synthetic_run(params, truth, s + 1)

        for name, t in scenarios(synth, args.synthetic, rules, rng).items():
            rows.append(t.row(f"synthetic ({Noise()})", name))
    for run in runs:
        if args.bootstrap:

            def boot(i: int, run=run):
                return resample_run(run, rng, "A"), resample_run(run, rng, "B")

            for name, t in scenarios(boot, args.bootstrap, rules, rng, force=True).items():
                rows.append(t.row(f"bootstrap of {run.source}", name))
    if len(runs) >= 2:
        judged, forced, lines = real_pairs(runs, rules)
        rows.append(judged.row(f"real reruns ({len(runs)} runs)", "null"))
        rows.append(forced.row(f"real reruns ({len(runs)} runs), --force", "null"))
        quiet = [(a, b) for a, b in itertools.combinations(runs, 2)
                 if comparable.check(a, b).comparable]  # fmt: skip
        if quiet:  # injected changes on real comparable pairs, each implementation in turn
            n = min(60, 6 * len(quiet))
            out = scenarios(lambda i: quiet[i % len(quiet)], n, rules, rng)
            for name in ("impl", "bench"):
                rows.append(out[name].row(f"real comparable pairs ({len(quiet)})", name))
    print(_table(rows))
    if len(runs) >= 2:
        print("\nreal pairs (base, new, exit, exit with --force, why not comparable, flagged):")
        for a, b, e, ef, why, flagged in lines:
            print(f"- {a} vs {b}: exit {e}, forced {ef}; {'; '.join(why) or 'comparable'}"
                  + (f"; flagged: {', '.join(flagged[:6])}" if flagged else ""))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
