"""The results folder: ``results.csv``, ``samples.jsonl``, ``benchmark.json``, ``env.json``.

* ``results.csv`` — one row per (shape, implementation, pass, dtype), the
  :class:`bench.record.Result` record flattened; rows are appended and
  flushed as they finish, so an interrupted run keeps them. The key of a row
  is its params columns (:data:`bench.sweep.PARAM_KEYS`).
* ``samples.jsonl`` — the raw per-call latency samples (seconds) of each timed
  row, one JSON object per line, appended *before* the CSV row (the CSV is
  what says a row is done; a duplicate sample line from an interrupted
  write is harmless: the last one wins).
* ``benchmark.json`` — regenerated from the two above in pytest-benchmark's
  JSON format (``machine_info`` with ``cpu.brand_raw`` and ``sepgconv_env``,
  ``commit_info``, ``benchmarks``, ``datetime``, ``version``), so
  ``python -m bench compare`` and ``pytest-benchmark compare`` read it.
* ``env.json`` — :func:`bench.env.collect` plus the run's settings.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
from pathlib import Path

from bench.record import Result
from bench.sweep import PARAM_KEYS, params_key

RESULTS_CSV = "results.csv"
SAMPLES_JSONL = "samples.jsonl"
BENCHMARK_JSON = "benchmark.json"
ENV_JSON = "env.json"
TEST_PATH = "bench/test_sweep.py::test_sweep"  # fullname prefix shared with the pytest path


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
    """

    def __init__(self, out_dir: Path, resume: bool):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.columns = Result.columns()
        csv_path = self.out_dir / RESULTS_CSV
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
                self._samples.write(json.dumps(line) + "\n")
        self._flush(self._samples)
        for r in results:
            self._writer.writerow({k: _cell(v) for k, v in r.row().items()})
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


def _typed(params: dict) -> dict:
    """CSV strings back to ints where the params are ints."""
    out = {}
    for k in PARAM_KEYS:
        v = params[k]
        out[k] = int(v) if k in ("c_in", "c_out", "k", "h", "w", "batch") else v
    return out


def _number(v: str):
    if v in ("", None):
        return None
    if v in ("True", "False"):
        return v == "True"
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


EXTRA_INFO_KEYS = (
    "macs_formula", "macs_measured", "macs_match", "params_formula", "params_measured",
    "peak_mem_bytes", "mem_reserved_bytes", "nvml_used_bytes", "intermediate_filter_bytes",
    "intermediate_activation_bytes", "bytes_moved_formula", "gmacs_per_s", "speedup_vs_full",
    "theoretical_speedup", "efficiency", "noisy",
)  # fmt: skip


def case_name(params: dict) -> str:
    p = params
    return (
        f"{p['group']}-{p['layer']}-c{p['c_in']}x{p['c_out']}-k{p['k']}-h{p['h']}x{p['w']}"
        f"-b{p['batch']}-{p['variant']}-{p['impl']}-{p['pass']}-{p['dtype']}-{p['device']}"
    )


def shape_group(params: dict) -> str:
    p = params
    return (
        f"{p['group']}-{p['layer']}-c{p['c_in']}x{p['c_out']}-k{p['k']}-h{p['h']}x{p['w']}"
        f"-b{p['batch']}-{p['pass']}-{p['dtype']}-{p['device']}"
    )


def benchmark_entry(params: dict, data: list[float], iterations: int, extra: dict) -> dict:
    """One pytest-benchmark ``benchmarks[]`` entry (stats in seconds, raw ``data``)."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for x in data:
        stats.update(x)
    d = stats.as_dict()
    d["data"] = list(data)
    d["iterations"] = iterations
    name = case_name(params)
    return {
        "group": shape_group(params),
        "name": f"test_sweep[{name}]",
        "fullname": f"{TEST_PATH}[{name}]",
        "params": params,
        "param": name,
        "extra_info": extra,
        "options": {
            "disable_gc": True,
            "timer": "cuda.Event"
            if str(params["device"]).startswith("cuda")
            else "perf_counter_ns",
            "min_rounds": len(data),
            "max_time": None,
            "min_time": None,
            "warmup": True,
            "interleaved": True,
        },
        "stats": d,
    }


def machine_info(env: dict) -> dict:
    """pytest-benchmark's machine_info plus ``sepgconv_env`` (the run's env)."""
    try:
        from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info

        info = pytest_benchmark_generate_machine_info()
    except Exception:  # noqa: BLE001 - keep the required fields anyway
        import platform

        info = {"node": platform.node(), "python_version": platform.python_version(), "cpu": {}}
    info.setdefault("cpu", {})
    info["cpu"].setdefault("brand_raw", env.get("cpu_model"))
    info["sepgconv_env"] = env
    return info


def commit_info() -> dict:
    try:
        from pytest_benchmark.utils import get_commit_info

        return get_commit_info("sepgconv")
    except Exception as e:  # noqa: BLE001
        return {"id": "unknown", "error": repr(e), "project": "sepgconv"}


def _previous_samples(out_dir: Path) -> dict[tuple, dict]:
    """Samples of an existing ``benchmark.json`` (a fallback when ``samples.jsonl``
    was not kept, e.g. a published folder resumed elsewhere)."""
    try:
        doc = json.loads((Path(out_dir) / BENCHMARK_JSON).read_text(encoding="utf-8"))
        return {
            params_key(b["params"]): {
                "data": b["stats"]["data"],
                "iterations": b["stats"].get("iterations", 1),
            }
            for b in doc["benchmarks"]
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def write_benchmark_json(out_dir: Path, env: dict) -> Path:
    """Regenerate ``benchmark.json`` from ``results.csv`` + ``samples.jsonl``.

    Only timed rows (``status=ok`` with samples) become benchmarks. Samples
    come from ``samples.jsonl``, else from the previous ``benchmark.json``.
    """
    from pytest_benchmark import __version__ as pb_version

    out_dir = Path(out_dir)
    samples = {**_previous_samples(out_dir), **read_samples(out_dir)}
    benches = []
    for row in read_rows(out_dir):
        rec = samples.get(params_key(row))
        if row.get("status") != "ok" or not rec or not rec.get("data"):
            continue
        extra = {k: _number(row.get(k, "")) for k in EXTRA_INFO_KEYS}
        extra["status"] = row["status"]
        benches.append(
            benchmark_entry(_typed(row), rec["data"], int(rec["iterations"] or 1), extra)
        )
    doc = {
        "machine_info": machine_info(env),
        "commit_info": commit_info(),
        "benchmarks": benches,
        "datetime": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "version": pb_version,
    }
    path = out_dir / BENCHMARK_JSON
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str), encoding="utf-8")
    tmp.replace(path)
    return path


def write_env(out_dir: Path, env: dict) -> Path:
    path = Path(out_dir) / ENV_JSON
    path.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    return path
