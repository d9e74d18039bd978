"""The benchmark history: one JSON-lines file per device, ``results/history/<slug>.jsonl``.

Each line is one run's compact record (built by :func:`bench.judge.trend.record_of`),
appended in the order the runs were added (the nightly order)::

    {"schema": 1, "commit": "<sha>", "date": "<iso>", "source": "<path>",
     "machine": {"device_slug", "device", "device_name", "cpu_model", "torch",
                 "threads", "profile", "disturbed", "disturbed_reasons"},
     "reference": "full/naive", "anchor": "dense/torch" | null, "paired": bool,
     "benchmarks": {"<shape id>": {"<variant/impl>": [median_s, ratio, ratio_log_se, n]}},
     "implementations": {"<impl>|<pass>|<dtype>|<device>": {"ratio", "log", "se",
                         "lo", "hi", "shapes", "shapes_id", "versus", "abs_s"}}}

This module only reads and writes the files; what a record means is the judge's.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..measure.slug import slugify

SCHEMA = 1
HISTORY_DIR = Path("results") / "history"
REQUIRED = ("schema", "commit", "machine", "implementations", "benchmarks")


class HistoryError(Exception):
    """An unusable history file or record (one line: what and where)."""


def device_slug(env: dict, brand: str | None = None) -> str:
    """The history file's name for a run: ``sepgconv_env.device_slug``, else derived.

    Args:
        env: the run's ``sepgconv_env``.
        brand: pytest-benchmark's ``cpu.brand_raw``, when there is no env.

    Returns:
        A slug such as ``cpu-amd-epyc`` or ``nvidia-h100-80gb-hbm3``.
    """
    if env.get("device_slug"):
        return slugify(env["device_slug"])
    name = slugify(env.get("device_name") or env.get("cpu_model") or brand or "unknown")
    if str(env.get("device", "cpu")).startswith("cuda") or name.startswith("cpu"):
        return name
    return f"cpu-{name}"


def history_path(root: Path, slug: str) -> Path:
    """``root/<slug>.jsonl``."""
    return Path(root) / f"{slug}.jsonl"


def append(path: Path, record: dict) -> None:
    """Append one record (one line) to ``path``, creating the folder.

    Args:
        path: the history file.
        record: the record (see the module doc).

    Raises:
        HistoryError: the record lacks a required field.
    """
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise HistoryError(f"record lacks {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, separators=(",", ":"), sort_keys=True, default=str)
    with path.open("a", encoding="utf-8") as f:
        f.write(line + "\n")


def read(path: Path) -> list[dict]:
    """The records of one history file, in file order.

    Args:
        path: the history file.

    Returns:
        The records.

    Raises:
        HistoryError: unreadable file, a line that is not a JSON object with the
            required fields, or a newer schema.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise HistoryError(f"{path}: cannot read: {e}") from None
    out = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise HistoryError(f"{path}:{i}: not JSON ({e.msg})") from None
        if not isinstance(rec, dict) or any(k not in rec for k in REQUIRED):
            raise HistoryError(f"{path}:{i}: not a history record ({', '.join(REQUIRED)})")
        if not isinstance(rec["schema"], int) or rec["schema"] > SCHEMA:
            raise HistoryError(f"{path}:{i}: schema {rec['schema']!r} is newer than {SCHEMA}")
        if not isinstance(rec["implementations"], dict) or not isinstance(rec["machine"], dict):
            raise HistoryError(f"{path}:{i}: 'implementations' and 'machine' must be objects")
        out.append(rec)
    return out


def read_all(root: Path) -> dict[str, list[dict]]:
    """Every ``<slug>.jsonl`` under ``root``: ``{slug: records}`` (sorted by slug).

    Args:
        root: the history folder.

    Returns:
        The records per device slug (files without records are left out).

    Raises:
        HistoryError: see :func:`read`.
    """
    out = {}
    for p in sorted(Path(root).glob("*.jsonl")):
        recs = read(p)
        if recs:
            out[p.stem] = recs
    return out
