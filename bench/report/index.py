"""``results/README.md``: the generated index of the published device folders."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import pandas as pd

from . import data as R
from .markdown import md_table

DATE_KEYS = ("date", "timestamp", "started_at", "started", "created", "time")
PROFILE_KEYS = ("profile", "sweep_profile", "sweep")


def _folder_line(folder: Path) -> tuple:
    env = {}
    try:
        env = json.loads((folder / "env.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    env = env if isinstance(env, dict) else {}
    name = R.device_name(env) if env else "?"
    date = next((str(env[k])[:10] for k in DATE_KEYS if env.get(k)), None)
    if date is None:
        mtime = (folder / "results.csv").stat().st_mtime
        date = _dt.datetime.fromtimestamp(mtime, _dt.timezone.utc).strftime("%Y-%m-%d")
    profile = next((str(env[k]) for k in PROFILE_KEYS if env.get(k)), "—")
    try:
        rows = str(len(pd.read_csv(folder / "results.csv")))
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError):
        rows = "unreadable"
    target = f"{folder.name}/README.md" if (folder / "README.md").is_file() else f"{folder.name}/"
    return (f"[{folder.name}]({target})", name, date, profile, rows)


def render_results_index(results_root: Path) -> str:
    folders = sorted(p for p in Path(results_root).iterdir() if (p / "results.csv").is_file())
    head = [
        "# Published results",
        "One folder per device, published with `python -m bench run --out "
        "results/<device-slug>` (a plain run writes to the ignored `results/local/`): "
        "`results.csv`, `env.json`, `benchmark.json`, `profile.csv`, and the `plots/` and "
        "`README.md` of `python -m bench report`. This index is generated (it is rewritten "
        "whenever a folder directly in `results/` is reported); do not edit it by hand.",
    ]
    if not folders:
        return "\n\n".join([*head, "_No device folders yet._"]) + "\n"
    table = md_table(
        ["folder", "device", "date", "profile", "rows"], [_folder_line(f) for f in folders]
    )
    return "\n\n".join([*head, table]) + "\n"


def write_results_index(results_root: Path) -> Path:
    """Write ``results_root/README.md``: one line per folder holding a results.csv."""
    path = Path(results_root) / "README.md"
    path.write_text(render_results_index(results_root), encoding="utf-8")
    return path
