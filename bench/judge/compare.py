"""The perf-regression check of two benchmark runs (``python -m bench compare BASE NEW``).

BASE and NEW are pytest-benchmark JSON files (the ``benchmark.json`` that
``python -m bench run`` writes, or its folder, or any ``--benchmark-json``
file with ``--benchmark-save-data``). Benchmarks are matched by their
``params`` (all keys), or by ``fullname`` when a benchmark has no params.

Rules (``--rules``, default all three):

* ``ratio``: within each run, the benchmark's latency divided by the
  reference (``--reference-impl``, default full/naive) of the same shape,
  *per interleaving round* (paired), summarised by the 10 % trimmed mean of
  the log ratios; BASE and NEW are compared on that. A uniformly slower machine is no
  regression. The reference itself is divided by the anchor
  (``--anchor-impl``, default dense/torch), so a slower reference is caught.
  Files without round indices (older format) are compared unpaired.
* ``absolute``: the benchmark's own latency (trimmed mean of its log samples).
* ``deterministic``: macs_measured, macs_formula, params_measured,
  params_formula (and peak_mem_bytes on CUDA) must be identical.

Test of one benchmark: ``d`` = the change of the 10 % trimmed mean of the log
paired ratios (log samples for ``absolute``), its variance Yuen's standard
errors of the two runs (``se_base² + se_new²``) plus the between-run spread
``tau²`` estimated from all benchmarks of the run pair; ``t = d / se``
against Student's t (Satterthwaite dof). Family-wise control:
Holm over all benchmark tests of the run at alpha/2, and Holm over the
implementations at alpha/2, so a run of unchanged code fails with probability
at most alpha. A regression needs ``p_adj < alpha`` and a change above
``--threshold``.

Primary verdict, per implementation (variant/impl, pass, dtype, device): the
geometric mean over shapes of its change, with a bootstrap over shapes. A
slowdown that moves every shape is caught there even when no shape alone is
significant. Per-benchmark verdicts are the detail.

Comparability: a baseline from another CPU/GPU model, torch version or thread
count, or a run flagged as disturbed, gets no latency verdict (the
deterministic rule still runs); ``--force`` judges anyway.

Exit status: 0 no regression, 1 a regression (of an implementation or a
benchmark) or a deterministic change, 2 unusable input.
"""

from __future__ import annotations

import collections
import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from . import comparable
from .aggregate import group_label, group_of, shape_mean
from .familywise import split_holm, spread_per_test, tau_dof
from .labels import label_maker
from .missing import missing_failures
from .pairing import estimates, ratio_items
from .runs import InputError, Run
from .stats import (
    MEDIAN_ONLY,
    MIN_SAMPLES,
    Decision,
    Summary,
    decide,
    p_two_sided,
    scipy_available,
    welch_df,
)

RULES = ("absolute", "ratio", "deterministic")
LATENCY_RULES = ("ratio", "absolute")
DETERMINISTIC_KEYS = ("macs_measured", "macs_formula", "params_measured", "params_formula")
CUDA_DETERMINISTIC_KEYS = ("peak_mem_bytes",)  # allocator bytes: deterministic on CUDA only
#: what an impl="auto" row executes follows its choice, which is timed, so may differ
#: between runs of unchanged code: compared only when both runs chose alike
CHOICE_DEPENDENT_KEYS = ("macs_measured", "macs_formula", "peak_mem_bytes")
VERDICT_ORDER = ("regression", "improvement", "noisy", "unchanged", "n/a")


@dataclass
class Pair:
    """One benchmark present in both runs, with its verdicts."""

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
        methods = [d.method for d in (self.ratio, self.absolute) if d is not None]
        return MEDIAN_ONLY if MEDIAN_ONLY in methods else (methods[0] if methods else "")


@dataclass
class Implementation:
    """One (variant/impl, pass, dtype, device) across its shapes: the primary verdict."""

    group: tuple
    label: str
    versus: str  # what its ratio is to: the reference, or the anchor for the reference
    shapes: dict  # rule -> number of shapes
    absolute: Decision | None = None
    ratio: Decision | None = None
    verdict: str = "n/a"
    rule: str = ""


@dataclass
class Report:
    base: Run
    new: Run
    threshold: float
    alpha: float
    rules: tuple
    reference: tuple
    anchor: tuple | None
    pairs: list
    implementations: list
    common: dict  # params equal across every benchmark
    comparability: comparable.Comparability
    tau: dict  # rule -> between-run spread (log) or None
    methods: dict  # "base"/"new" -> how the ratios were formed
    notes: list
    missing_in_new: list  # labels only in BASE
    missing_in_base: list  # labels only in NEW
    failures: list = field(default_factory=list)  # why NEW fails beyond verdicts (exit 1)

    def count(self, verdict: str) -> int:
        return sum(p.verdict == verdict for p in self.pairs)

    def count_impl(self, verdict: str) -> int:
        return sum(i.verdict == verdict for i in self.implementations)

    @property
    def env_warnings(self) -> list:
        return self.comparability.warnings

    @property
    def deterministic_changes(self) -> list:
        return [(p, c) for p in self.pairs for c in p.deterministic]

    @property
    def exit_code(self) -> int:
        failed = self.count("regression") or self.count_impl("regression")
        return 1 if failed or self.deterministic_changes or self.failures else 0


@dataclass
class _Test:
    target: object  # Pair or Implementation
    rule: str
    d: float
    se_w: float  # within-run standard error of d (nan: no test)
    dofs: tuple  # dof of each within-run variance component
    var_parts: tuple
    method: str
    p: float | None = None
    se: float | None = None
    ci: tuple | None = None


def _has(extra: dict, metric: str) -> bool:
    """A metric that was measured (None, "" and NaN mean it was not)."""
    v = extra.get(metric)
    return not (v is None or v == "" or (isinstance(v, float) and math.isnan(v)))


def _combine(obj) -> None:
    judged = [(r, d) for r, d in (("absolute", obj.absolute), ("ratio", obj.ratio)) if d]
    for verdict in ("regression", "improvement", "noisy", "unchanged"):
        rules = [r for r, d in judged if d.verdict == verdict]
        if rules:
            obj.verdict = verdict
            obj.rule = "" if verdict == "unchanged" else ("both" if len(rules) == 2 else rules[0])
            return
    obj.verdict, obj.rule = "n/a", ""


def _deterministic(pair: Pair, b, n, unjudged: collections.Counter) -> None:
    """Deterministic changes of one benchmark into ``pair``; what could not be
    compared is counted in ``unjudged`` by its note (``{}``: the count)."""
    device = str(n.params.get("device", ""))
    keys = DETERMINISTIC_KEYS + (CUDA_DETERMINISTIC_KEYS if device.startswith("cuda") else ())
    chose = (b.extra_info.get("auto_choice"), n.extra_info.get("auto_choice"))
    if n.params.get("impl") == "auto" and chose[0] != chose[1]:
        keys = tuple(k for k in keys if k not in CHOICE_DEPENDENT_KEYS)
        unjudged["impl=auto chose differently in {} benchmark(s): their MACs and memory "
                 "follow the choice and are not compared"] += 1  # fmt: skip
    for m in keys:
        in_b, in_n = _has(b.extra_info, m), _has(n.extra_info, m)
        if in_b and in_n:
            if b.extra_info[m] != n.extra_info[m]:
                pair.deterministic.append((m, b.extra_info[m], n.extra_info[m]))
        elif in_b or in_n:  # not gated: say so
            side = "base" if in_b else "new"
            unjudged[f"{m} is in {side} only for {{}} benchmark(s): not compared"] += 1


def _benchmark_tests(base, new, matched, pairs, rules, reference, anchor) -> list:
    tests = []
    for rule in LATENCY_RULES:
        if rule not in rules:
            continue
        if rule == "absolute":
            keys = matched
            ib = [(base.benches[k], None) for k in keys]
            in_ = [(new.benches[k], None) for k in keys]
        else:
            items_b, why_b = ratio_items(base, matched, reference, anchor)
            items_n, why_n = ratio_items(new, matched, reference, anchor)
            dens_b = {k: den for k, _, den in items_b}
            dens_n = {k: den for k, _, den in items_n}
            keys = [k for k in matched if k in dens_b and k in dens_n]
            for k in matched:
                if k not in keys:
                    why = why_n.get(k) or why_b.get(k) or "no reference"
                    if why == "no reference":
                        why += " in new" if k in why_n else " in base"
                    pairs[k].note = f"ratio rule: {why}"
            ib = [(base.benches[k], dens_b[k]) for k in keys]
            in_ = [(new.benches[k], dens_n[k]) for k in keys]
        for k, eb, en in zip(keys, estimates(ib), estimates(in_), strict=True):
            method = MEDIAN_ONLY if MEDIAN_ONLY in (eb.method, en.method) else en.method
            if eb.method != en.method and MEDIAN_ONLY not in (eb.method, en.method):
                method = "unpaired"  # one side without rounds
            parts = (eb.se**2, en.se**2)
            tests.append(
                _Test(pairs[k], rule, en.value - eb.value, math.sqrt(sum(parts)),
                      (eb.dof, en.dof), parts, method)
            )  # fmt: skip
    return tests


def _test_benchmarks(tests: list) -> dict:
    """p-values of the benchmark tests, with tau per rule; returns {rule: tau}."""
    taus = {}
    for rule in LATENCY_RULES:
        mine = [t for t in tests if t.rule == rule]
        if not mine:
            continue
        labels = [group_of(t.target.params) for t in mine]
        tau, spreads = spread_per_test(
            np.array([t.d for t in mine]), np.array([t.se_w for t in mine]), labels
        )
        taus[rule] = tau
        for t, (t_use, m_use) in zip(mine, spreads, strict=True):
            if not math.isfinite(t.se_w):
                continue
            t2 = (t_use or 0.0) ** 2
            t.se = math.sqrt(t.se_w**2 + t2)
            df = welch_df([*t.var_parts, t2], [*t.dofs, tau_dof(m_use)])
            t.p = 1.0 if t.se == 0 else p_two_sided(t.d / t.se, df)
            t.ci = (math.expm1(t.d - 1.96 * t.se), math.expm1(t.d + 1.96 * t.se))
    return taus


def _implementation_tests(tests: list, rng, reference, anchor) -> list:
    """One test per (group, rule) over the shapes of the group, with Implementation targets."""
    by_group: dict[tuple, dict[str, list]] = {}
    for t in tests:
        g = group_of(t.target.params)
        if g is not None and math.isfinite(t.d):
            by_group.setdefault(g, {}).setdefault(t.rule, []).append(t.d)
    out = []
    ref = f"{reference[0]}/{reference[1]}"
    for g in sorted(by_group):
        versus = f"{anchor[0]}/{anchor[1]}" if anchor and g[0] == ref else ref
        impl = Implementation(g, group_label(g), versus, {})
        for rule, ds in sorted(by_group[g].items()):
            m = shape_mean(np.array(ds), rng)
            impl.shapes[rule] = m.n
            t = _Test(impl, rule, m.mean, m.se, (), (), "bootstrap-shapes", p=m.p_value, se=m.se)
            t.ci = (math.expm1(m.lo), math.expm1(m.hi))
            out.append(t)
    return out


def _decide(tests: list, threshold: float, alpha: float, latency: bool) -> None:
    adj = split_holm([t.p for t in tests])
    for t, p_adj in zip(tests, adj, strict=True):
        d = decide(
            t.d, p_adj, alpha=alpha, threshold=threshold, method=t.method, p_value=t.p,
            se=t.se, ci=t.ci,
        )  # fmt: skip
        if not latency:
            d = dataclasses.replace(d, verdict="n/a")
        setattr(t.target, t.rule, d)


def compare_runs(
    base: Run,
    new: Run,
    *,
    threshold: float = 0.10,
    alpha: float = 0.01,
    rules=RULES,
    reference=("full", "naive"),
    anchor=("dense", "torch"),
    force: bool = False,
    seed: int = 0,
) -> Report:
    """Compare two runs (see the module doc).

    Args:
        base: the baseline run.
        new: the new run.
        threshold: smallest relative latency change that counts.
        alpha: the per-run false-alarm level (family-wise).
        rules: subset of :data:`RULES`.
        reference: ``(variant, impl)`` of the ratio rule's reference.
        anchor: ``(variant, impl)`` the reference's own ratio is to, or None.
        force: give latency verdicts even when the runs are not comparable.
        seed: seed of the bootstrap over shapes (the same input gives the same report).

    Returns:
        A :class:`Report`.

    Raises:
        InputError: no benchmark of NEW matches one of BASE.
    """
    rules, reference = tuple(rules), tuple(reference)
    anchor = tuple(anchor) if anchor else None
    matched = [k for k in new.benches if k in base.benches]
    if not matched:
        raise InputError(
            f"no benchmark of {new.source} matches one of {base.source} "
            "(matched by params, or fullname without params)"
        )
    label, common = label_maker(list(base.benches.values()) + list(new.benches.values()))
    comp = comparable.check(base, new, force)
    rng = np.random.default_rng(seed)
    pairs: dict[tuple, Pair] = {}
    unjudged: collections.Counter = collections.Counter()
    for k in matched:
        b, n = base.benches[k], new.benches[k]
        pairs[k] = Pair(k, label(n), n.params, n.name, b.summary, n.summary)
        if "deterministic" in rules:
            _deterministic(pairs[k], b, n, unjudged)
    tests = _benchmark_tests(base, new, matched, pairs, rules, reference, anchor)
    taus = _test_benchmarks(tests)
    _decide(tests, threshold, alpha, comp.latency)
    impl_tests = _implementation_tests(tests, rng, reference, anchor)
    _decide(impl_tests, threshold, alpha, comp.latency)
    impls = list({id(t.target): t.target for t in impl_tests}.values())
    for obj in list(pairs.values()) + impls:
        _combine(obj)
    methods = {s: ("paired" if r.paired else "unpaired") for s, r in (("base", base), ("new", new))}
    notes = base.notes + new.notes + _notes(tests, taus, methods, rules, unjudged)
    return Report(
        base, new, threshold, alpha, rules, reference, anchor, list(pairs.values()), impls,
        common, comp, taus, methods, notes,
        [label(b) for k, b in base.benches.items() if k not in new.benches],
        [label(b) for k, b in new.benches.items() if k not in base.benches],
        missing_failures(base, new, reference),
    )  # fmt: skip


def _notes(tests, taus, methods, rules, unjudged) -> list:
    notes = []
    if "ratio" in rules and "unpaired" in methods.values():
        sides = " and ".join(s.upper() for s, m in methods.items() if m == "unpaired")
        notes.append(
            f"{sides} has no round indices (stats.data_rounds; an older file): ratios are "
            "unpaired there (trimmed mean of the benchmark against that of the reference, "
            "both standard errors counted), less sensitive than paired ratios"
        )
    for rule, tau in taus.items():
        if tau is None:
            notes.append(
                f"too few benchmarks to estimate the between-run spread of the {rule} rule: "
                "its tests use the within-run noise only"
            )
    few = sum(1 for t in tests if not math.isfinite(t.se_w) and t.method != MEDIAN_ONLY)
    if few:
        notes.append(
            f"{few} comparison(s) have fewer than {MIN_SAMPLES} samples (or pairs) on a side: "
            "not tested, never a regression on their own (they count in their implementation)"
        )
    if tests and not scipy_available():
        notes.append("scipy is not installed: Student-t tails by Wallace's approximation")
    notes += [note.format(k) for note, k in unjudged.items()]
    return notes
