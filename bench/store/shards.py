"""The results folders of a sharded sweep: checked, then merged into one folder.

``python -m bench run --shard I/N`` writes one folder per part, each with an
``env.json`` whose ``shard`` record (:meth:`bench.sweep.shards.Shard.describe`)
names its index, the count and the position of each of its shapes in the
whole sweep. :func:`merge` writes one folder with what one unsharded run
writes, through the same writers:

* ``results.csv`` and ``samples.jsonl``: every shard's rows, in the sweep's
  order (by shape position; a shape's rows as its shard wrote them);
* ``benchmark.json``: regenerated from those two
  (:func:`bench.store.benchmark_json.write_benchmark_json`);
* ``env.json``: the lowest shard's environment, with every shard's own under
  ``shards``, the contention verdicts joined (disturbed when any shard was)
  and ``wall_s`` the longest shard's;
* ``profile.csv`` and ``traces/``: from the shard that ran the profile.

A merge is refused (:class:`MergeError`) when the folders are not the parts of
one sweep: a folder that is no shard, shards of different counts, profiles,
implementations or settings, an index twice, a missing index (unless
``partial``), a row twice or a row outside its shard's shapes. Whether the
shards ran on the same machine model is the caller's question (the command
asks :mod:`bench.judge.comparable`).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..sweep.shapes import Shape, params_key
from .benchmark_json import folder_samples, write_benchmark_json
from .record import Result
from .results import ENV_JSON, RESULTS_CSV, ResultsWriter, StoreError, read_rows, write_env

#: env.json settings that must agree between the parts of one sweep
SAME_SWEEP = ("profile", "device", "implementations", "compiled_rows", "max_shapes")
#: the per-operator profile's files (copied from the shard that ran it)
PROFILE_FILES = ("profile.csv", "traces")


class MergeError(Exception):
    """Folders that cannot be merged (one line: what and where)."""


def read_env(folder: Path) -> dict | None:
    """``folder/env.json`` as a dict, None when absent or unreadable."""
    try:
        doc = json.loads((Path(folder) / ENV_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def check_resume(out: Path, shard) -> None:
    """Refuse to resume ``out`` as ``shard`` (a :class:`bench.sweep.shards.Shard` or None)
    when its rows belong to another part of the sweep.

    Raises:
        StoreError: ``out`` holds rows of another shard, or of an unsharded run.
    """
    if not read_rows(out):
        return
    had = (read_env(out) or {}).get("shard")
    was = f"{had['index']}/{had['count']}" if isinstance(had, dict) else None
    now = None if shard is None else str(shard)
    if was != now:
        raise StoreError(
            f"{out} holds the rows of {'shard ' + was if was else 'an unsharded run'}; "
            f"resuming it as {'shard ' + now if now else 'an unsharded run'} would mix "
            "parts: resume with the same --shard, or use another --out"
        )


@dataclass
class ShardFolder:
    """One shard's folder as read for a merge."""

    path: Path
    env: dict
    shard: dict  # env["shard"]
    rows: list[dict]

    @property
    def name(self) -> str:
        return f"shard {self.shard['index']}/{self.shard['count']} ({self.path})"


def load(folder: Path) -> ShardFolder:
    """Read one shard's folder.

    Raises:
        MergeError: no results.csv of this version's columns, no env.json, no shard record.
    """
    folder = Path(folder)
    csv_path = folder / RESULTS_CSV
    if not csv_path.is_file():
        raise MergeError(f"{folder}: no {RESULTS_CSV}")
    with csv_path.open(newline="", encoding="utf-8") as f:
        header = next(csv.reader(f), [])
    if header != Result.columns("layer"):
        raise MergeError(f"{csv_path}: its columns differ from this version's")
    env = read_env(folder)
    if env is None:
        raise MergeError(f"{folder}: no readable {ENV_JSON}")
    shard = env.get("shard")
    if not isinstance(shard, dict) or not {"index", "count", "shapes"} <= set(shard):
        raise MergeError(f"{folder}: not a shard (its {ENV_JSON} has no 'shard' record)")
    return ShardFolder(folder, env, shard, read_rows(folder))


def check_same_sweep(parts: list[ShardFolder], partial: bool = False) -> None:
    """Refuse parts that are not of one sweep (see the module doc).

    Raises:
        MergeError: naming the first problem found.
    """
    if not parts:
        raise MergeError("no shard folders given")
    first = parts[0]
    for p in parts[1:]:
        if p.shard["count"] != first.shard["count"]:
            raise MergeError(f"{p.name} and {first.name}: different shard counts")
        for key in SAME_SWEEP:
            if p.env.get(key) != first.env.get(key):
                raise MergeError(
                    f"{p.name} and {first.name}: not one sweep ({key} "
                    f"{p.env.get(key)!r} vs {first.env.get(key)!r})"
                )
    indices = [p.shard["index"] for p in parts]
    twice = sorted({i for i in indices if indices.count(i) > 1})
    if twice:
        raise MergeError(f"shard index given twice: {twice}")
    missing = sorted(set(range(1, first.shard["count"] + 1)) - set(indices))
    if missing and not partial:
        raise MergeError(
            f"shards {missing} of {first.shard['count']} are missing (merge them too, "
            "or pass --partial for a merge that lacks them)"
        )


def shape_label(row: dict) -> str:
    """A row's shape label (:meth:`bench.sweep.shapes.Shape.label`, the key of a shard's
    ``shapes``)."""
    ints = {k: int(row[k]) for k in ("c_in", "c_out", "k", "h", "w", "batch")}
    return Shape(
        row["group"], row["layer"], **ints, dtype=row["dtype"], device=row["device"]
    ).label()


def merged_rows(parts: list[ShardFolder]) -> list[dict]:
    """Every part's rows in the sweep's order (shape position, then as written).

    Raises:
        MergeError: a row outside its shard's shapes, or a row twice.
    """
    keyed = []
    seen: dict[tuple, str] = {}
    for p in parts:
        position = {label: pos for pos, label in p.shard["shapes"]}
        for i, row in enumerate(p.rows):
            label = shape_label(row)
            if label not in position:
                raise MergeError(f"{p.name}: row {i + 1} ({label}) is not of this shard's shapes")
            key = params_key(row)
            if key in seen:
                raise MergeError(f"{p.name}: row {i + 1} ({label}) is in {seen[key]} too")
            seen[key] = p.name
            keyed.append((position[label], p.shard["index"], i, row))
    keyed.sort(key=lambda t: t[:3])
    return [row for *_, row in keyed]


def merged_contention(parts: list[ShardFolder]) -> dict | None:
    """The shards' contention verdicts as one: disturbed when any was, every reason
    named with its shard, windows summed, the worst reading of each ``during`` field."""
    verdicts = [(p, p.env.get("contention")) for p in parts]
    if any(not isinstance(c, dict) for _, c in verdicts):
        return None  # a shard without a verdict: the merged run cannot say it was quiet
    during: dict = {}
    for _, c in verdicts:
        for k, v in (c.get("during") or {}).items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                during[k] = max(during.get(k, v), v)
    reasons = [
        f"shard {p.shard['index']}/{p.shard['count']}: {r}"
        for p, c in verdicts
        for r in c.get("reasons") or []
    ]
    return {
        "disturbed": any(bool(c.get("disturbed")) for _, c in verdicts),
        "reasons": reasons,
        "during": during,
        "rows_disturbed": sum(int(c.get("rows_disturbed") or 0) for _, c in verdicts),
        "rows_total": sum(int(c.get("rows_total") or 0) for _, c in verdicts),
        "thresholds": verdicts[0][1].get("thresholds"),
    }


def merged_env(parts: list[ShardFolder], notes: list[str] | None = None) -> dict:
    """The merged run's ``env.json`` (see the module doc); ``notes`` (e.g. what a
    forced merge overrode) go under ``merge_notes``."""
    merged = {k: v for k, v in parts[0].env.items() if k not in ("shard", "schema_version")}
    walls = [p.env.get("wall_s") for p in parts]
    merged.update(
        resumed=any(bool(p.env.get("resumed")) for p in parts),
        contention=merged_contention(parts),
        wall_s=max((w for w in walls if isinstance(w, (int, float))), default=None),
        shards=[p.env for p in parts],
    )
    if any(p.env.get("interrupted") for p in parts):
        merged["interrupted"] = next(
            p.env["interrupted"] for p in parts if p.env.get("interrupted")
        )
    if notes:
        merged["merge_notes"] = list(notes)
    return merged


def merge(parts: list[ShardFolder], out: Path, notes: list[str] | None = None) -> dict:
    """Write the merged folder ``out`` (see the module doc); return its environment.

    Raises:
        MergeError: ``out`` is one of the shards' folders, or rows cannot be merged.
    """
    out = Path(out)
    if any(out.resolve() == p.path.resolve() for p in parts):
        raise MergeError(f"--out {out} is one of the shards' folders: merge into a new one")
    rows = merged_rows(parts)
    samples: dict[tuple, dict] = {}
    for p in parts:
        samples.update(folder_samples(p.path))
    environment = merged_env(parts, notes)
    with ResultsWriter(out, resume=False) as writer:
        writer.write_rows(rows, samples)
    write_env(out, environment)
    write_benchmark_json(out, environment)
    for name in PROFILE_FILES:  # no stale profile from an earlier merge into out
        target = out / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    source = next((p.path for p in parts if (p.path / PROFILE_FILES[0]).is_file()), None)
    if source is not None:
        shutil.copy2(source / "profile.csv", out / "profile.csv")
        if (source / "traces").is_dir():
            shutil.copytree(source / "traces", out / "traces")
    return environment
