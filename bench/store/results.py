"""The results folder: ``results.csv``, ``samples.jsonl``, ``benchmark.json``, ``env.json``.

* ``results.csv`` — one row per (shape, implementation, pass, dtype), the
  :class:`bench.store.record.Result` record flattened; rows are appended and
  flushed as they finish, so an interrupted run keeps them. The key of a row
  is its params columns (:data:`bench.sweep.shapes.PARAM_KEYS`).
* ``samples.jsonl`` — the raw per-call latency samples (seconds) of each timed
  row and the interleaving round of each (``rounds``), one JSON object per
  line, appended *before* the CSV row (the CSV is what says a row is done; a
  duplicate sample line from an interrupted write is harmless: the last one
  wins).
* ``benchmark.json`` — regenerated from the two above in pytest-benchmark's
  JSON format by :mod:`bench.store.benchmark_json`.
* ``env.json`` — :func:`bench.measure.env.collect` plus the run's settings.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

from ..sweep.shapes import PARAM_KEYS, params_key
from .record import SCHEMA_VERSION, Result

#: where runs go by default: ignored by git, so a run never overwrites the published
#: folders (results/<device-slug>/, refreshed deliberately with --out)
LOCAL_RESULTS = Path("results") / "local"
#: torch threads of a CPU run unless --threads says otherwise: one thread gave the
#: steadiest in-run ratios on the project's shared 2-core VM, quiet and loaded
#: (docs/contention.md, "Timing that holds on a shared machine"; ``python -m bench stability``)
CPU_THREADS = 1
RESULTS_CSV = "results.csv"
SAMPLES_JSONL = "samples.jsonl"
BENCHMARK_JSON = "benchmark.json"
ENV_JSON = "env.json"
MODELS_CSV = "models.csv"
CSV_NAMES = {"layer": RESULTS_CSV, "model": MODELS_CSV}  # by the rows' kind


class StoreError(Exception):
    """A results folder that cannot be resumed (e.g. a CSV of another schema)."""


def _cell(v):
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return v


class ResultsWriter:
    """Appends rows to ``results.csv`` and samples to ``samples.jsonl``, flushing each.

    Args:
        out_dir: the results folder (created).
        resume: keep existing files and append; otherwise start them afresh.
        kind: the rows' kind (:data:`bench.store.record.COLUMNS`): ``"layer"``
            writes ``results.csv``, ``"model"`` writes ``models.csv``.
    """

    def __init__(self, out_dir: Path, resume: bool, kind: str = "layer"):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.columns = Result.columns(kind)
        csv_path = self.out_dir / CSV_NAMES[kind]
        existing = csv_path.is_file() and csv_path.stat().st_size > 0
        if resume and existing:
            for path in (csv_path, self.out_dir / SAMPLES_JSONL):
                _drop_partial_last_line(path)  # a hard kill can cut the last row short
            with csv_path.open(newline="") as f:
                header = next(csv.reader(f), [])
            if header != self.columns:
                raise StoreError(
                    f"{csv_path}: its columns differ from this version's; resume into a new --out"
                )
        if not resume:  # a fresh run: no stale samples to fall back on
            (self.out_dir / BENCHMARK_JSON).unlink(missing_ok=True)
        mode = "a" if resume else "w"
        self._csv = csv_path.open(mode, newline="", encoding="utf-8")
        self._samples = (self.out_dir / SAMPLES_JSONL).open(mode, encoding="utf-8")
        self._writer = csv.DictWriter(self._csv, fieldnames=self.columns)
        if not (resume and existing):
            self._writer.writeheader()
            self._csv.flush()

    def write(self, results: list[Result]) -> None:
        for r in results:
            if r.samples_s:
                line = {"params": r.params(), "iterations": r.iterations_per_sample}
                line["data"] = r.samples_s
                line["rounds"] = r.sample_rounds
                self._samples.write(json.dumps(line) + "\n")
        self._flush(self._samples)
        for r in results:
            self._writer.writerow({k: _cell(v) for k, v in r.row().items()})
        self._flush(self._csv)

    def write_rows(self, rows: list[dict], samples: dict[tuple, dict]) -> None:
        """Rows already flattened (read from another folder's CSV, e.g. by a merge),
        each with its samples record (:func:`read_samples`) when it has one."""
        for row in rows:
            rec = samples.get(params_key(row))
            if rec and rec.get("data"):
                line = {"params": {k: row[k] for k in PARAM_KEYS}}
                line.update(iterations=rec.get("iterations"), data=rec["data"])
                line["rounds"] = rec.get("rounds")
                self._samples.write(json.dumps(line) + "\n")
        self._flush(self._samples)
        for row in rows:
            self._writer.writerow({k: row.get(k, "") for k in self.columns})
        self._flush(self._csv)

    @staticmethod
    def _flush(f) -> None:
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        self._csv.close()
        self._samples.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _drop_partial_last_line(path: Path) -> None:
    """Cut a trailing line that has no newline (a write interrupted by a kill)."""
    if not path.is_file():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def read_rows(out_dir: Path) -> list[dict]:
    """The rows of ``results.csv`` (strings), in file order; [] when absent."""
    path = Path(out_dir) / RESULTS_CSV
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def done_keys(rows: list[dict]) -> set[tuple]:
    return {params_key(r) for r in rows}


def read_samples(out_dir: Path) -> dict[tuple, dict]:
    """``{params key: {"data": [...], "iterations": n}}`` (last line per key wins)."""
    path = Path(out_dir) / SAMPLES_JSONL
    out: dict[tuple, dict] = {}
    if not path.is_file():
        return out
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
                out[params_key(rec["params"])] = rec
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by an interruption
    return out


def write_env(out_dir: Path, env: dict) -> Path:
    """Write ``env.json`` (the environment of a run, with the schema version)."""
    path = Path(out_dir) / ENV_JSON
    env = {"schema_version": SCHEMA_VERSION, **env}
    path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    return path
