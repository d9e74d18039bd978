"""``results/history/README.md``: the history's steps, named by commit, and its plots."""

from __future__ import annotations

import math

from .trend import Series


def _pct(x: float) -> str:
    return f"{x * 100:+.1f} %"


def short(commit: str) -> str:
    return commit[:10]


def step_lines(s: Series, threshold: float) -> list[str]:
    """One markdown bullet per step of ``s``.

    Args:
        s: a judged series.
        threshold: the regression threshold.

    Returns:
        The bullets.
    """
    out = []
    for step, note in s.steps:
        p = s.points[step.index]
        lo, hi = step.ci
        kind = (
            "**regression**" if step.change > threshold
            else "improvement" if step.change < -threshold / (1 + threshold)
            else "small step"
        )  # fmt: skip
        text = (
            f"- `{s.label}` (ratio to {s.versus}): {_pct(step.change)} "
            f"[{_pct(lo)}, {_pct(hi)}] at commit `{p.commit}` ({p.date[:10]}): {kind}"
        )
        out.append(text + (f"; {note}" if note else ""))
    return out


def _latest(s: Series) -> str:
    p = s.points[-1]
    ratio = math.exp(p.y)
    return f"{ratio:.3g} [{math.exp(p.y - 1.96 * p.se):.3g}, {math.exp(p.y + 1.96 * p.se):.3g}]"


def history_markdown(
    by_slug: dict[str, tuple[list[dict], list[Series]]], threshold: float, plots: dict
) -> str:
    """The README of the history folder.

    Args:
        by_slug: ``{device slug: (records, judged series)}``.
        threshold: the regression threshold.
        plots: ``{(slug, implementation): relative path of its plot}``.

    Returns:
        Markdown text.
    """
    out = [
        "# Benchmark history",
        "",
        "Written by `python -m bench history report` from `results/history/<device>.jsonl` "
        "(one record per run, added by `python -m bench history add RUN_DIR`). Each series "
        "is one implementation's *level*: the geometric mean over its shapes of its paired "
        "in-run ratio to the reference, with the run's 95 % measurement interval as the band. "
        "Steps come from a piecewise-constant fit weighted by each run's standard error plus "
        "the series' own run-to-run spread (`bench/judge/steps.py`); disturbed runs are drawn "
        "hollow and left out of the fit; isolated outliers are marked ×. A step up larger "
        f"than {threshold * 100:g} % is a regression; the report fails while one is open "
        "(the series has not come back, and the step is not acknowledged in "
        "`results/history/acknowledged.toml`) and when an implementation is missing from "
        "the latest run.",
    ]
    for slug, (records, series) in by_slug.items():
        m = records[-1].get("machine", {})
        latest = str(records[-1]["commit"])
        out += ["", f"## {slug}", ""]
        out.append(
            f"{len(records)} runs, commits `{short(str(records[0]['commit']))}` … "
            f"`{short(latest)}`; latest on {m.get('cpu_model') or m.get('device_name')}, "
            f"torch {m.get('torch')}, {m.get('threads')} threads, profile {m.get('profile')}."
        )
        regs = [s for s in series if s.latest_regression is not None]
        failing = [(s, why) for s in series for why in s.failing]
        acked = [(s, a) for s in series for _, a in s.open_regressions if a is not None]
        out.append("")
        if regs:
            out.append(f"**The latest commit `{latest}` starts a regression step in: "
                       + ", ".join(f"`{s.label}`" for s in regs) + ".**")  # fmt: skip
        if failing:
            out.append("**Failing:** " + "; ".join(f"`{s.label}` {why}" for s, why in failing)
                       + ".")  # fmt: skip
        if acked:
            out.append("Acknowledged open steps: " + "; ".join(
                f"`{s.label}` at `{a.commit}` ({a.reason})" for s, a in acked) + ".")  # fmt: skip
        if not (regs or failing or acked):
            if records[-1].get("machine", {}).get("disturbed"):
                out.append(f"The latest run (`{short(latest)}`) was disturbed: not judged.")
            else:
                out.append(f"No open regression step (`{short(latest)}`).")
        out += ["", "| implementation | ratio to | latest ratio [95 % CI] | runs | "
                "run-to-run sd | steps |", "|---|---|---|---|---|---|"]  # fmt: skip
        for s in series:
            tau = "-" if s.fit is None else f"{math.expm1(s.fit.tau) * 100:.1f} %"
            out.append(f"| `{s.label}` | {s.versus} | {_latest(s)} | {len(s.points)} | {tau} | "
                       f"{len(s.steps)} |")  # fmt: skip
        steps = [line for s in series for line in step_lines(s, threshold)]
        out += ["", "### Steps", ""] + (steps or ["None found."])
        disturbed = [r for r in records if (r.get("machine") or {}).get("disturbed")]
        if disturbed:
            out += ["", f"{len(disturbed)} disturbed run(s) left out of the fit: "
                    + ", ".join(f"`{short(str(r['commit']))}`" for r in disturbed)]  # fmt: skip
        shown = sorted((impl, path) for (sl, impl), path in plots.items() if sl == slug)
        if shown:
            out += [""] + [f"![{impl}]({path})" for impl, path in shown]
    return "\n".join(out) + "\n"
