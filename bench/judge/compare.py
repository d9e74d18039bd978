"""The perf-regression check of two benchmark runs (``python -m bench compare BASE NEW``).

BASE and NEW are pytest-benchmark JSON files (``--benchmark-json``, or the
``benchmark.json`` that ``python -m bench run`` writes; a folder holding a
``benchmark.json`` works too). Benchmarks are matched by their ``params``
dict (all keys), or by ``fullname`` when a benchmark has no params.

Three rules, each can be switched off with ``--rules``:

* ``absolute``: the latency of the benchmark, NEW against BASE.
* ``ratio``: within each run, the benchmark's latency divided by the median
  latency of the reference implementation (``--reference-impl``, default
  variant ``full`` impl ``naive``) of the same shape (all other params
  equal); the ratios are compared between the runs, so a machine that is
  uniformly slower is not a regression of the code. Significance: the
  per-round samples divided by their run's reference median, compared with
  Mann-Whitney. (The reference benchmarks themselves have no ratio; a
  regression *of the reference* shows under ``absolute`` only, and under
  ``ratio`` as improvements of everything else.)
* ``deterministic``: the ``extra_info`` metrics macs_measured, macs_formula,
  params_measured, params_formula (``DETERMINISTIC_KEYS``) and, on CUDA only,
  peak_mem_bytes (``CUDA_DETERMINISTIC_KEYS``) must be identical; a change is
  a failure of its own kind, ``deterministic-change``.

Latency verdicts (``regression``, ``improvement``, ``unchanged``, ``noisy``;
see ``bench.judge.stats``): a regression needs significance (Mann-Whitney U on the
raw samples, two-sided, p < alpha) *and* an effect above ``--threshold``.
``noisy`` means IQR/median > 10 % on either side; such a pair still fails when
its change is significant and exceeds the noise band too. Without raw samples
the medians and the threshold alone decide (marked ``median-only``).

Environment mismatches and benchmarks present on one side only are reported,
never failed. Runs are read by :mod:`bench.judge.runs`; reports rendered by
:mod:`bench.judge.render`; the CLI is :mod:`bench.commands.compare`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .runs import Bench, InputError, Run, _canon, params_key
from .stats import (
    MEDIAN_ONLY,
    Decision,
    Summary,
    decide_all,
    min_p,
    ratio_summary,
    scipy_available,
)

RULES = ("absolute", "ratio", "deterministic")

# extra_info metrics that must not change between runs
DETERMINISTIC_KEYS = ("macs_measured", "macs_formula", "params_measured", "params_formula")
# ...and those that are deterministic on CUDA only (allocator bytes; a CPU figure is not)
CUDA_DETERMINISTIC_KEYS = ("peak_mem_bytes",)
# machine_info fields whose change is reported as an environment mismatch
ENV_FIELDS = (
    ("cpu", "brand_raw"),
    ("sepgconv_env", "device"),
    ("sepgconv_env", "device_name"),
    ("sepgconv_env", "torch"),
    ("sepgconv_env", "cuda"),
    ("sepgconv_env", "cudnn"),
    ("sepgconv_env", "driver"),
    ("sepgconv_env", "threads"),
    ("sepgconv_env", "cpu_count"),
    ("sepgconv_env", "capability"),
    ("sepgconv_env", "profile"),
    ("python_version",),
)
# params shown first, in this order, in benchmark labels
PARAM_ORDER = (
    "group", "layer", "variant", "impl", "c_in", "c_out", "k", "h", "w", "batch",
    "pass", "dtype", "device",
)  # fmt: skip
VERDICT_ORDER = ("regression", "improvement", "noisy", "unchanged", "n/a")


@dataclass
class Pair:
    key: tuple
    label: str
    params: dict
    name: str
    base: Summary
    new: Summary
    absolute: Decision | None = None
    ratio: Decision | None = None
    note: str = ""
    deterministic: list = field(default_factory=list)  # [(metric, base, new)]
    verdict: str = "n/a"
    rule: str = ""

    @property
    def method(self) -> str:
        decisions = [d for d in (self.absolute, self.ratio) if d is not None]
        return MEDIAN_ONLY if any(d.method == MEDIAN_ONLY for d in decisions) else "mann-whitney"


@dataclass
class Report:
    base: Run
    new: Run
    threshold: float
    alpha: float
    rules: tuple
    reference: tuple
    pairs: list
    common: dict  # params equal across every benchmark
    env_warnings: list
    notes: list
    missing_in_new: list  # labels only in BASE
    missing_in_base: list  # labels only in NEW

    def count(self, verdict: str) -> int:
        return sum(p.verdict == verdict for p in self.pairs)

    @property
    def deterministic_changes(self) -> list:
        return [(p, c) for p in self.pairs for c in p.deterministic]

    @property
    def exit_code(self) -> int:
        return 1 if self.count("regression") or self.deterministic_changes else 0


def _env_value(mi: dict, path: tuple):
    v = mi
    for k in path:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def env_mismatches(base: Run, new: Run) -> list:
    out = []
    for path in ENV_FIELDS:
        a, b = _env_value(base.machine_info, path), _env_value(new.machine_info, path)
        if a != b and not (a is None and b is None):
            out.append(f"{'.'.join(path)}: {a!r} -> {b!r}")
    return out


def _labeller(benches: list):
    """Label = the params that vary across all benchmarks; returns (label fn, common)."""
    with_params = [b.params for b in benches if b.params]
    keys = {k for p in with_params for k in p}
    common = {}
    for k in keys:
        vals = {_canon(p.get(k, "<unset>")) for p in with_params}
        if len(vals) == 1 and len(with_params) > 1:
            common[k] = with_params[0][k]
    order = [k for k in PARAM_ORDER if k in keys] + sorted(keys - set(PARAM_ORDER))

    def label(b: Bench) -> str:
        if not b.params:
            return b.fullname or b.name
        shown = [k for k in order if k in b.params and k not in common] or list(b.params)
        text = " ".join(f"{k}={b.params[k]}" for k in shown)
        extra = dict(b.key).get("__fullname__")
        return f"{text} ({extra})" if extra else text

    return label, {k: common[k] for k in order if k in common}


def _has(extra: dict, metric: str) -> bool:
    """A metric that was measured (None, "" and NaN mean it was not)."""
    v = extra.get(metric)
    return not (v is None or v == "" or (isinstance(v, float) and math.isnan(v)))


def _reference_key(bench: Bench, reference: tuple):
    p = bench.params
    if "variant" not in p or "impl" not in p:
        return None
    return params_key(dict(p, variant=reference[0], impl=reference[1]))


def _combine(pair: Pair) -> None:
    judged = [(r, d) for r, d in (("absolute", pair.absolute), ("ratio", pair.ratio)) if d]
    for verdict in ("regression", "improvement", "noisy", "unchanged"):
        rules = [r for r, d in judged if d.verdict == verdict]
        if rules:
            pair.verdict = verdict
            pair.rule = "both" if len(rules) == 2 else rules[0]
            if verdict == "unchanged":
                pair.rule = ""
            return
    pair.verdict, pair.rule = "n/a", ""


def compare_runs(
    base: Run,
    new: Run,
    *,
    threshold: float = 0.10,
    alpha: float = 0.01,
    rules=RULES,
    reference=("full", "naive"),
) -> Report:
    rules = tuple(rules)
    matched = [k for k in new.benches if k in base.benches]
    if not matched:
        raise InputError(
            f"no benchmark of {new.source} matches one of {base.source} "
            "(matched by params, or fullname without params)"
        )
    label, common = _labeller(list(base.benches.values()) + list(new.benches.values()))
    pairs, jobs = [], []  # jobs: (pair, rule, base summary, new summary)
    one_sided: dict[tuple, int] = {}  # (metric, side) -> count
    for key in matched:
        b, n = base.benches[key], new.benches[key]
        pair = Pair(key, label(n), n.params, n.name, b.summary, n.summary)
        if "absolute" in rules:
            jobs.append((pair, "absolute", b.summary, n.summary))
        if "ratio" in rules:
            rk = _reference_key(n, reference)
            if rk is None:
                pair.note = "ratio rule: no variant/impl params"
            elif rk == key:
                pair.note = "ratio rule: is the reference"
            elif rk not in base.benches or rk not in new.benches:
                side = "base" if rk not in base.benches else "new"
                pair.note = f"ratio rule: no reference in {side}"
            else:
                rb = ratio_summary(b.summary, base.benches[rk].summary)
                rn = ratio_summary(n.summary, new.benches[rk].summary)
                jobs.append((pair, "ratio", rb, rn))
        if "deterministic" in rules:
            device = str(n.params.get("device", ""))
            keys = DETERMINISTIC_KEYS + (
                CUDA_DETERMINISTIC_KEYS if device.startswith("cuda") else ()
            )
            for m in keys:
                in_b, in_n = _has(b.extra_info, m), _has(n.extra_info, m)
                if in_b and in_n:
                    if b.extra_info[m] != n.extra_info[m]:
                        pair.deterministic.append((m, b.extra_info[m], n.extra_info[m]))
                elif in_b or in_n:  # not gated: say so
                    side = "base" if in_b else "new"
                    one_sided[(m, side)] = one_sided.get((m, side), 0) + 1
        pairs.append(pair)
    decisions = decide_all([(jb, jn) for _, _, jb, jn in jobs], threshold, alpha)
    for (pair, rule, _, _), d in zip(jobs, decisions, strict=True):
        setattr(pair, rule, d)
    for pair in pairs:
        _combine(pair)
    notes = base.notes + new.notes
    blind = sorted({(a.n, b.n) for _, _, a, b in jobs if a.n and b.n and min_p(a.n, b.n) >= alpha})
    if blind:
        k = sum(1 for _, _, a, b in jobs if a.n and b.n and min_p(a.n, b.n) >= alpha)
        sizes = ", ".join(f"{x} vs {y}" for x, y in blind[:4])
        notes.append(
            f"{k} comparison(s) have too few samples ({sizes}) for p < {alpha:g} to be "
            "possible: they can never be flagged; record more rounds"
        )
    notes += [
        f"{m} is in {side} only for {k} benchmark(s): not compared"
        for (m, side), k in one_sided.items()
    ]
    if not scipy_available() and ("absolute" in rules or "ratio" in rules):
        notes.append("scipy is not installed: no significance test, medians and threshold only")
    return Report(
        base, new, threshold, alpha, rules, tuple(reference), pairs, common,
        env_mismatches(base, new), notes,
        [label(b) for k, b in base.benches.items() if k not in new.benches],
        [label(b) for k, b in new.benches.items() if k not in base.benches],
    )  # fmt: skip
