"""Benchmark runs as ``bench compare`` reads them: pytest-benchmark JSON files.

A run is a pytest-benchmark document (``--benchmark-json``, or the
``benchmark.json`` that ``python -m bench run`` writes; a folder holding a
``benchmark.json`` works too). Benchmarks are keyed by their ``params`` dict
(all keys), or by ``fullname`` when a benchmark has no params. Anything
unusable raises :class:`InputError` with one line saying what and where.

Each benchmark keeps its raw samples (``stats.data``, seconds per call) and,
in runs written since round indices were kept, the interleaving round of each
sample (``stats.data_rounds``): samples of one shape with the same round were
taken back to back, which is what makes a paired in-run ratio possible
(:mod:`bench.judge.pairing`). Older files have no rounds: :attr:`Run.paired`
is False and the ratio rule falls back to an unpaired method.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .stats import Summary
from .stats import summarize as _summarize

#: keys the sweep's params gained in results schema 4, with the value older runs meant
LEGACY_DEFAULTS = {"memory_format": "contiguous", "compiled": False}


class InputError(Exception):
    """Unusable input: reported as one line on stderr, exit code 2."""


@dataclass
class Bench:
    key: tuple
    params: dict
    name: str
    fullname: str
    extra_info: dict
    summary: Summary
    rounds: np.ndarray | None = None  # interleaving round of each sample (ints), or None


@dataclass
class Run:
    source: str
    machine_info: dict
    commit_info: dict
    benches: dict  # key -> Bench, in file order
    notes: list = field(default_factory=list)

    @property
    def paired(self) -> bool:
        """True when every benchmark with raw samples also has their rounds."""
        with_data = [b for b in self.benches.values() if b.summary.values is not None]
        return bool(with_data) and all(b.rounds is not None for b in with_data)

    @property
    def env(self) -> dict:
        """``machine_info.sepgconv_env`` (empty when absent)."""
        env = self.machine_info.get("sepgconv_env")
        return env if isinstance(env, dict) else {}


def _canon(v):
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return json.dumps(v, sort_keys=True, default=str)


def params_key(params: dict) -> tuple:
    """The match key of a benchmark's params (sweep params of schema < 4 read as
    contiguous, eager: :data:`LEGACY_DEFAULTS`)."""
    if "variant" in params and "impl" in params:
        params = {**{k: v for k, v in LEGACY_DEFAULTS.items() if k not in params}, **params}
    return tuple(sorted(((str(k), _canon(v)) for k, v in params.items()), key=lambda kv: kv[0]))


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _parse_bench(b, i: int, where: str) -> Bench:
    if not isinstance(b, dict):
        raise InputError(f"{where}: benchmark #{i} is not an object")
    stats = b.get("stats")
    if not isinstance(stats, dict):
        raise InputError(f"{where}: benchmark #{i} has no 'stats' object")
    median = stats.get("median")
    if not _number(median) or median <= 0:
        raise InputError(f"{where}: benchmark #{i} has no positive 'stats.median'")
    data = stats.get("data")
    values = None
    if data is not None:
        if not isinstance(data, list) or not all(_number(x) and x >= 0 for x in data):
            raise InputError(
                f"{where}: benchmark #{i} has a 'stats.data' that is not a list of times"
            )
        values = np.asarray(data, dtype=float) if data else None
    rounds = stats.get("data_rounds")
    if rounds is not None:
        ok = isinstance(rounds, list) and all(
            isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rounds
        )
        if not ok or values is None or len(rounds) != values.size:
            raise InputError(
                f"{where}: benchmark #{i} has a 'stats.data_rounds' that is not one "
                "round index (int >= 0) per sample of 'stats.data'"
            )
        rounds = np.asarray(rounds, dtype=np.int64)
    iqr = stats.get("iqr")
    summary = _summarize(values, float(median), float(iqr) if _number(iqr) else None)
    if summary.median <= 0:
        raise InputError(f"{where}: benchmark #{i} has a median of zero")
    params = b.get("params")
    if params is not None and not isinstance(params, dict):
        raise InputError(f"{where}: benchmark #{i} has 'params' that is not an object")
    params = params or {}
    name = b.get("name") if isinstance(b.get("name"), str) else ""
    fullname = b.get("fullname") if isinstance(b.get("fullname"), str) else ""
    if params:
        key = params_key(params)
    elif fullname or name:
        key = (("fullname", fullname or name),)
    else:
        raise InputError(f"{where}: benchmark #{i} has neither params nor a name")
    extra = b.get("extra_info")
    extra = extra if isinstance(extra, dict) else {}
    return Bench(key, params, name, fullname, extra, summary, rounds)


def parse_run(doc, source: str = "<run>") -> Run:
    """A ``Run`` from an already-decoded pytest-benchmark document."""
    if not isinstance(doc, dict):
        raise InputError(f"{source}: not a pytest-benchmark JSON object")
    raw = doc.get("benchmarks")
    if not isinstance(raw, list):
        raise InputError(f"{source}: no 'benchmarks' list (not a pytest-benchmark JSON file?)")
    if not raw:
        raise InputError(f"{source}: the 'benchmarks' list is empty")
    mi, ci = doc.get("machine_info"), doc.get("commit_info")
    run = Run(source, mi if isinstance(mi, dict) else {}, ci if isinstance(ci, dict) else {}, {})
    parsed = [_parse_bench(b, i, source) for i, b in enumerate(raw)]
    counts: dict[tuple, int] = {}
    for bench in parsed:
        counts[bench.key] = counts.get(bench.key, 0) + 1
    dup = 0
    for i, bench in enumerate(parsed):
        if counts[bench.key] > 1:  # same params twice (two test functions?)
            dup += 1
            bench.key = bench.key + (("__fullname__", bench.fullname or bench.name or str(i)),)
        if bench.key in run.benches:
            raise InputError(f"{source}: benchmark #{i} duplicates another one")
        run.benches[bench.key] = bench
    if dup:
        run.notes.append(
            f"{source}: {dup} benchmarks share their params with another; told apart by fullname"
        )
    no_data = sum(b.summary.values is None for b in run.benches.values())
    if no_data:
        run.notes.append(
            f"{source}: {no_data} of {len(run.benches)} benchmark(s) have no raw samples "
            "(stats.data; pytest-benchmark needs --benchmark-save-data): decided on medians "
            "with the threshold only"
        )
    return run


def load_run(path) -> Run:
    """Read a run from a pytest-benchmark JSON file or a folder holding ``benchmark.json``.

    Args:
        path: the file or folder.

    Returns:
        The :class:`Run`.

    Raises:
        InputError: missing, unreadable, malformed or unusable input (one line).
    """
    p = Path(path)
    if p.is_dir() and (p / "benchmark.json").is_file():
        p = p / "benchmark.json"
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{p}: is a directory without a benchmark.json") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{p}: cannot read: {e}") from None
    if not text.strip():
        raise InputError(f"{p}: empty file")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{p}: malformed JSON ({e})") from None
    return parse_run(doc, str(p))
