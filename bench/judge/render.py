"""Rendering of a :class:`bench.judge.compare.Report`: fixed-width table, markdown, JSON."""

from __future__ import annotations

import json
import math

from .compare import VERDICT_ORDER, Pair, Report
from .stats import MEDIAN_ONLY, Decision


def fmt_time(s: float) -> str:
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_change(d: Decision | None) -> str:
    return "-" if d is None else f"{d.change * 100:+.1f}%"


def fmt_p(d: Decision | None) -> str:
    if d is None or d.p_value is None:
        return "-"
    return "<1e-4" if d.p_value < 1e-4 else f"{d.p_value:.2g}"


HEADERS = ("benchmark", "base", "new", "change", "p", "ratio chg", "p(ratio)", "verdict", "rule")


def _row(p: Pair) -> list:
    verdict = p.verdict + ("*" if p.method == MEDIAN_ONLY and p.verdict != "n/a" else "")
    return [
        p.label, fmt_time(p.base.median), fmt_time(p.new.median), fmt_change(p.absolute),
        fmt_p(p.absolute), fmt_change(p.ratio), fmt_p(p.ratio), verdict, p.rule,
    ]  # fmt: skip


def _sorted_pairs(r: Report) -> list:
    return sorted(r.pairs, key=lambda p: VERDICT_ORDER.index(p.verdict))


def _summary_line(r: Report) -> str:
    parts = [f"{r.count(v)} {v}" for v in VERDICT_ORDER if r.count(v)]
    det = len(r.deterministic_changes)
    parts.append(f"{det} deterministic-change")
    status = "FAIL" if r.exit_code else "OK"
    return f"{status}: {len(r.pairs)} compared; " + ", ".join(parts)


def _settings(r: Report) -> str:
    return (
        f"rules {','.join(r.rules)}; threshold {r.threshold * 100:g}%; alpha {r.alpha:g}; "
        f"reference {r.reference[0]}/{r.reference[1]}"
    )


def _det_lines(r: Report) -> list:
    return [f"{p.label}: {m} {a!r} -> {b!r}" for p, (m, a, b) in r.deterministic_changes]


def _skipped_ratio_lines(r: Report) -> list:
    """Why the ratio rule did not judge some pairs (the references themselves aside)."""
    reasons: dict[str, int] = {}
    for p in r.pairs:
        if p.note and p.note != "ratio rule: is the reference":
            reasons[p.note] = reasons.get(p.note, 0) + 1
    return [f"{n} benchmark(s) not judged by the {why}" for why, n in reasons.items()]


def render_table(r: Report) -> str:
    out = [f"base: {r.base.source}", f"new:  {r.new.source}", _settings(r)]
    if r.common:
        out.append("common params: " + " ".join(f"{k}={v}" for k, v in r.common.items()))
    out += [f"WARNING environment differs: {w}" for w in r.env_warnings]
    out += [f"note: {n}" for n in r.notes]
    rows = [list(HEADERS)] + [_row(p) for p in _sorted_pairs(r)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADERS))]
    out.append("")
    for j, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in (0, 7, 8) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if j == 0:
            out.append("  ".join("-" * w for w in widths))
    if any(p.method == MEDIAN_ONLY for p in r.pairs):
        out.append("* median-only: no raw samples, decided on medians and the threshold")
    out += _skipped_ratio_lines(r)
    if r.deterministic_changes:
        out += ["", "DETERMINISTIC CHANGES (deterministic-change):"]
        out += ["  " + line for line in _det_lines(r)]
    if r.missing_in_new:
        out += ["", f"only in base ({len(r.missing_in_new)}):"]
        out += ["  " + s for s in r.missing_in_new]
    if r.missing_in_base:
        out += ["", f"only in new ({len(r.missing_in_base)}):"]
        out += ["  " + s for s in r.missing_in_base]
    out += ["", _summary_line(r)]
    return "\n".join(out) + "\n"


def _md_table(pairs: list) -> list:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * len(HEADERS)]
    for p in pairs:
        cells = [c.replace("|", "\\|") for c in _row(p)]
        cells[0] = f"`{cells[0]}`"
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_md(r: Report) -> str:
    out = [f"## Benchmark comparison: {_summary_line(r)}", ""]
    out += [f"- base: `{r.base.source}`", f"- new: `{r.new.source}`", f"- {_settings(r)}"]
    if r.common:
        out.append("- common params: " + " ".join(f"`{k}={v}`" for k, v in r.common.items()))
    out += [f"- **warning** environment differs: {w}" for w in r.env_warnings]
    out += [f"- note: {n}" for n in r.notes]
    if r.deterministic_changes:
        out += ["", "### Deterministic changes", ""] + [f"- `{s}`" for s in _det_lines(r)]
    pairs = _sorted_pairs(r)
    shown = [p for p in pairs if p.verdict not in ("unchanged", "n/a")]
    rest = [p for p in pairs if p.verdict in ("unchanged", "n/a")]
    if shown:
        out += ["", "### Changed or noisy", ""] + _md_table(shown)
    if rest:
        out += ["", f"<details><summary>{len(rest)} unchanged or not judged</summary>", ""]
        out += _md_table(rest) + ["", "</details>"]
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

    doc = {
        "base": r.base.source,
        "new": r.new.source,
        "settings": {
            "threshold": r.threshold,
            "alpha": r.alpha,
            "rules": list(r.rules),
            "reference": {"variant": r.reference[0], "impl": r.reference[1]},
        },
        "exit_code": r.exit_code,
        "summary": {v: r.count(v) for v in VERDICT_ORDER}
        | {"deterministic-change": len(r.deterministic_changes), "compared": len(r.pairs)},
        "environment_warnings": r.env_warnings,
        "notes": r.notes,
        "common_params": r.common,
        "pairs": [pair(p) for p in r.pairs],
        "deterministic_changes": [
            {"label": p.label, "params": p.params, "metric": m, "base": a, "new": b}
            for p, (m, a, b) in r.deterministic_changes
        ],
        "only_in_base": r.missing_in_new,
        "only_in_new": r.missing_in_base,
    }
    return json.dumps(doc, indent=2, default=str) + "\n"


RENDERERS = {"table": render_table, "md": render_md, "json": render_json}
FORMATS = tuple(RENDERERS)
