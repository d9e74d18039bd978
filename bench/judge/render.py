"""Rendering of a :class:`bench.judge.compare.Report`: fixed-width table, markdown, JSON.

Order in every format: the settings and the comparability statement, then the
per-implementation verdicts (the primary output), then the per-benchmark
detail, then deterministic changes and benchmarks present on one side only,
and a one-line summary.
"""

from __future__ import annotations

import json
import math

from .compare import VERDICT_ORDER, Implementation, Pair, Report
from .stats import MEDIAN_ONLY, Decision


def fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_change(d: Decision | None) -> str:
    return "-" if d is None or not math.isfinite(d.change) else f"{d.change * 100:+.1f}%"


def fmt_ci(d: Decision | None) -> str:
    if d is None or d.ci is None or not all(math.isfinite(x) for x in d.ci):
        return "-"
    return f"[{d.ci[0] * 100:+.1f}, {d.ci[1] * 100:+.1f}]%"


def fmt_p(d: Decision | None) -> str:
    if d is None or d.p_adj is None:
        return "-"
    return "<1e-4" if d.p_adj < 1e-4 else f"{d.p_adj:.2g}"


def _verdict(obj) -> str:
    return obj.verdict + ("*" if getattr(obj, "method", "") == MEDIAN_ONLY else "")


HEADERS = ("benchmark", "base", "new", "change", "p(adj)", "ratio chg", "p(adj) ratio",
           "verdict", "rule")  # fmt: skip
IMPL_HEADERS = ("implementation", "vs", "shapes", "ratio chg", "95% CI", "p(adj)",
                "abs chg", "95% CI ", "p(adj) ", "verdict", "rule")  # fmt: skip
LEFT = {"benchmark", "implementation", "vs", "verdict", "rule"}


def _row(p: Pair) -> list:
    return [
        p.label, fmt_time(p.base.median), fmt_time(p.new.median), fmt_change(p.absolute),
        fmt_p(p.absolute), fmt_change(p.ratio), fmt_p(p.ratio), _verdict(p), p.rule,
    ]  # fmt: skip


def _impl_row(i: Implementation) -> list:
    shapes = "/".join(str(n) for n in sorted(set(i.shapes.values()))) or "-"
    return [
        i.label, i.versus if i.ratio else "-", shapes, fmt_change(i.ratio), fmt_ci(i.ratio),
        fmt_p(i.ratio), fmt_change(i.absolute), fmt_ci(i.absolute), fmt_p(i.absolute),
        i.verdict, i.rule,
    ]  # fmt: skip


def _sorted(items: list) -> list:
    return sorted(items, key=lambda p: VERDICT_ORDER.index(p.verdict))


def _counts(items: list, count) -> str:
    return ", ".join(f"{count(v)} {v}" for v in VERDICT_ORDER if count(v)) or "none"


def _summary_line(r: Report) -> str:
    status = "FAIL" if r.exit_code else "OK"
    latency = "" if r.comparability.latency else " (latency not judged: not comparable)"
    missing = f"; {len(r.failures)} missing from new" if r.failures else ""
    return (
        f"{status}: implementations: {_counts(r.implementations, r.count_impl)}; "
        f"benchmarks: {len(r.pairs)} compared, {_counts(r.pairs, r.count)}; "
        f"{len(r.deterministic_changes)} deterministic-change{missing}{latency}"
    )


def _settings(r: Report) -> str:
    ref = f"{r.reference[0]}/{r.reference[1]}"
    if r.anchor:
        ref += f" (itself vs {r.anchor[0]}/{r.anchor[1]})"
    tau = ", ".join(
        f"{rule} {'-' if t is None else f'{math.expm1(t) * 100:.1f}%'}" for rule, t in r.tau.items()
    )
    methods = ", ".join(f"{side} {m}" for side, m in r.methods.items())
    return (
        f"rules {','.join(r.rules)}; threshold {r.threshold * 100:g}%; alpha {r.alpha:g} per run "
        f"(Holm: benchmarks and implementations at alpha/2 each); reference {ref}; "
        f"ratios {methods}" + (f"; between-run spread {tau}" if tau else "")
    )


def _comparability_lines(r: Report) -> list:
    c = r.comparability
    out = []
    if c.reasons and not c.forced:
        out.append("NO LATENCY VERDICT (not comparable; deterministic rules still apply; "
                   "--force judges anyway):")  # fmt: skip
        out += [f"  - {why}" for why in c.reasons]
    elif c.reasons:
        out.append("FORCED latency verdicts although not comparable:")
        out += [f"  - {why}" for why in c.reasons]
    out += [f"unknown: {u}" for u in c.unknown]
    out += [f"WARNING environment differs: {w}" for w in c.warnings]
    return out


def _det_lines(r: Report) -> list:
    return [f"{p.label}: {m} {a!r} -> {b!r}" for p, (m, a, b) in r.deterministic_changes]


def _skipped_ratio_lines(r: Report) -> list:
    """Why the ratio rule did not judge some pairs (references without an anchor aside)."""
    reasons: dict[str, int] = {}
    for p in r.pairs:
        if p.note and p.note != "ratio rule: is the reference":
            reasons[p.note] = reasons.get(p.note, 0) + 1
    return [f"{n} benchmark(s) not judged by the {why}" for why, n in reasons.items()]


def _fixed(headers: tuple, rows: list) -> list:
    rows = [list(headers)] + rows
    widths = [max(len(row[i]) for row in rows) for i in range(len(headers))]
    out = []
    for j, row in enumerate(rows):
        cells = [
            c.ljust(w) if headers[i].strip() in LEFT else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def render_table(r: Report) -> str:
    """The comparison as a fixed-width text report (the default ``--format table``).

    Args:
        r: the report.

    Returns:
        The text, ending with a newline.
    """
    out = [f"base: {r.base.source}", f"new:  {r.new.source}", _settings(r)]
    if r.common:
        out.append("common params: " + " ".join(f"{k}={v}" for k, v in r.common.items()))
    out += _comparability_lines(r)
    out += [f"FAIL: {f}" for f in r.failures]
    out += [f"note: {n}" for n in r.notes]
    if r.implementations:
        out += ["", "IMPLEMENTATIONS (change of the geometric mean over shapes; "
                "95% CI by bootstrap over shapes)"]  # fmt: skip
        out += _fixed(IMPL_HEADERS, [_impl_row(i) for i in _sorted(r.implementations)])
    out += ["", "BENCHMARKS"]
    out += _fixed(HEADERS, [_row(p) for p in _sorted(r.pairs)])
    if any(p.method == MEDIAN_ONLY for p in r.pairs):
        out.append("* median-only: no raw samples, decided on medians and the threshold")
    out += _skipped_ratio_lines(r)
    if r.deterministic_changes:
        out += ["", "DETERMINISTIC CHANGES (deterministic-change):"]
        out += ["  " + line for line in _det_lines(r)]
    for title, items in (("only in base", r.missing_in_new), ("only in new", r.missing_in_base)):
        if items:
            out += ["", f"{title} ({len(items)}):"] + ["  " + s for s in items]
    out += ["", _summary_line(r)]
    return "\n".join(out) + "\n"


def _md_table(headers: tuple, rows: list) -> list:
    lines = ["| " + " | ".join(h.strip() for h in headers) + " |", "|" + "---|" * len(headers)]
    for row in rows:
        cells = [c.replace("|", "\\|") for c in row]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_md(r: Report) -> str:
    """The comparison as a markdown report (``--format md``; the nightly step summary).

    Args:
        r: the report.

    Returns:
        The text, ending with a newline.
    """
    out = [f"## Benchmark comparison: {_summary_line(r)}", ""]
    out += [f"- base: `{r.base.source}`", f"- new: `{r.new.source}`", f"- {_settings(r)}"]
    if r.common:
        out.append("- common params: " + " ".join(f"`{k}={v}`" for k, v in r.common.items()))
    for line in _comparability_lines(r):
        bullet = line.strip().removeprefix("- ")
        out.append(f"  - {bullet}" if line.startswith("  - ") else f"- **{bullet}**")
    out += [f"- **FAIL: {f}**" for f in r.failures]
    out += [f"- note: {n}" for n in r.notes]
    if r.deterministic_changes:
        out += ["", "### Deterministic changes", ""] + [f"- `{s}`" for s in _det_lines(r)]
    if r.implementations:
        out += ["", "### Implementations (geometric mean over shapes, 95% CI over shapes)", ""]
        out += _md_table(IMPL_HEADERS, [_impl_row(i) for i in _sorted(r.implementations)])
    pairs = _sorted(r.pairs)
    shown = [p for p in pairs if p.verdict not in ("unchanged", "n/a")]
    rest = [p for p in pairs if p.verdict in ("unchanged", "n/a")]
    if shown:
        out += ["", "### Benchmarks changed or noisy", ""]
        out += _md_table(HEADERS, [_row(p) for p in shown])
    if rest:
        out += ["", f"<details><summary>{len(rest)} benchmarks unchanged or not judged</summary>"]
        out += [""] + _md_table(HEADERS, [_row(p) for p in rest]) + ["", "</details>"]
    if any(p.method == MEDIAN_ONLY for p in r.pairs):
        out += ["", "\\* median-only: no raw samples, decided on medians and the threshold"]
    out += [f"- {line}" for line in _skipped_ratio_lines(r)]
    for title, items in (("Only in base", r.missing_in_new), ("Only in new", r.missing_in_base)):
        if items:
            out += ["", f"### {title} ({len(items)})", ""] + [f"- `{s}`" for s in items]
    return "\n".join(out) + "\n"


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def render_json(r: Report) -> str:
    """The comparison as the machine-readable report (``--format json``).

    Args:
        r: the report.

    Returns:
        The text, ending with a newline.
    """

    def pair(p: Pair) -> dict:
        return {
            "label": p.label,
            "name": p.name,
            "params": p.params,
            "verdict": p.verdict,
            "rule": p.rule,
            "method": p.method,
            "note": p.note,
            "base": {"median": p.base.median, "rel_iqr": _json_safe(p.base.rel_iqr), "n": p.base.n},
            "new": {"median": p.new.median, "rel_iqr": _json_safe(p.new.rel_iqr), "n": p.new.n},
            "absolute": p.absolute.as_dict() if p.absolute else None,
            "ratio": p.ratio.as_dict() if p.ratio else None,
            "deterministic_changes": [
                {"metric": m, "base": a, "new": b} for m, a, b in p.deterministic
            ],
        }

    def impl(i: Implementation) -> dict:
        return {
            "label": i.label,
            "implementation": i.group[0],
            "pass": i.group[1],
            "dtype": i.group[2],
            "device": i.group[3],
            "versus": i.versus,
            "shapes": i.shapes,
            "verdict": i.verdict,
            "rule": i.rule,
            "ratio": i.ratio.as_dict() if i.ratio else None,
            "absolute": i.absolute.as_dict() if i.absolute else None,
        }

    c = r.comparability
    doc = {
        "base": r.base.source,
        "new": r.new.source,
        "settings": {
            "threshold": r.threshold,
            "alpha": r.alpha,
            "rules": list(r.rules),
            "reference": {"variant": r.reference[0], "impl": r.reference[1]},
            "anchor": {"variant": r.anchor[0], "impl": r.anchor[1]} if r.anchor else None,
        },
        "exit_code": r.exit_code,
        "comparability": {
            "latency_verdicts": c.latency,
            "comparable": c.comparable,
            "forced": c.forced,
            "reasons": c.reasons,
            "unknown": c.unknown,
        },
        "ratio_methods": r.methods,
        "between_run_sd_log": {k: _json_safe(v) for k, v in r.tau.items()},
        "summary": {v: r.count(v) for v in VERDICT_ORDER}
        | {"deterministic-change": len(r.deterministic_changes), "compared": len(r.pairs)},
        "implementation_summary": {v: r.count_impl(v) for v in VERDICT_ORDER},
        "environment_warnings": r.env_warnings,
        "notes": r.notes,
        "common_params": r.common,
        "implementations": [impl(i) for i in r.implementations],
        "pairs": [pair(p) for p in r.pairs],
        "deterministic_changes": [
            {"label": p.label, "params": p.params, "metric": m, "base": a, "new": b}
            for p, (m, a, b) in r.deterministic_changes
        ],
        "only_in_base": r.missing_in_new,
        "only_in_new": r.missing_in_base,
        "failures": r.failures,
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


RENDERERS = {"table": render_table, "md": render_md, "json": render_json}
FORMATS = tuple(RENDERERS)
