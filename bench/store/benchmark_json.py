"""``benchmark.json``: a results folder in pytest-benchmark's JSON format.

Regenerated from ``results.csv`` + ``samples.jsonl`` (:mod:`bench.store.results`):
``machine_info`` (with ``cpu.brand_raw`` and ``sepgconv_env``, the run's
``env.json``), ``commit_info``, ``benchmarks``, ``datetime``, ``version``, so
``python -m bench compare`` and ``pytest-benchmark compare`` read it. Each
benchmark's ``params`` are the row's identifying keys and ``extra_info`` its
deterministic and derived metrics (:data:`EXTRA_INFO_KEYS`).
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from ..sweep.shapes import PARAM_KEYS, params_key
from .record import SCHEMA_VERSION
from .results import BENCHMARK_JSON, read_rows, read_samples

TEST_PATH = "bench/test_sweep.py::test_sweep"  # fullname prefix shared with the pytest path


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
    "theoretical_speedup", "efficiency", "noisy", "auto_choice", "compile_s", "sampling",
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


def benchmark_entry(
    params: dict, data: list[float], iterations: int, extra: dict, rounds: list[int] | None = None
) -> dict:
    """One pytest-benchmark ``benchmarks[]`` entry (stats in seconds, raw ``data``).

    ``stats["data_rounds"]`` (when known) holds the interleaving round of each
    sample in ``data`` (:class:`bench.measure.timing.Samples`): samples of one
    run's benchmarks with the same round were taken back to back.
    """
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for x in data:
        stats.update(x)
    d = stats.as_dict()
    d["data"] = list(data)
    if rounds is not None and len(rounds) == len(data):
        d["data_rounds"] = [int(r) for r in rounds]
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
    info["sepgconv_schema_version"] = SCHEMA_VERSION
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
                "rounds": b["stats"].get("data_rounds"),
                "iterations": b["stats"].get("iterations", 1),
            }
            for b in doc["benchmarks"]
        }
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def folder_samples(out_dir: Path) -> dict[tuple, dict]:
    """The raw samples of a results folder by params key: ``samples.jsonl``, and for
    rows it lacks, the folder's ``benchmark.json``."""
    return {**_previous_samples(out_dir), **read_samples(out_dir)}


def write_benchmark_json(out_dir: Path, env: dict) -> Path:
    """Regenerate ``benchmark.json`` from ``results.csv`` + ``samples.jsonl``.

    Only timed rows (``status=ok`` with samples) become benchmarks. Samples
    come from ``samples.jsonl``, else from the previous ``benchmark.json``.
    """
    from pytest_benchmark import __version__ as pb_version

    out_dir = Path(out_dir)
    samples = folder_samples(out_dir)
    benches = []
    for row in read_rows(out_dir):
        rec = samples.get(params_key(row))
        if row.get("status") != "ok" or not rec or not rec.get("data"):
            continue
        extra = {k: _number(row.get(k, "")) for k in EXTRA_INFO_KEYS}
        extra["status"] = row["status"]
        iterations = int(rec["iterations"] or 1)
        benches.append(
            benchmark_entry(_typed(row), rec["data"], iterations, extra, rec.get("rounds"))
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
