"""``impl="auto"``: benchmark mode for GConvs — time once per key, keep the fastest.

A layer built with ``impl="auto"`` (:mod:`sepgconv.auto`) has its variant's
parameters. On the first call for a new **key** it times the variant's
implementations that can run on the input's device
(:func:`sepgconv.available_implementations`; ``memory_format="auto"`` also
times both memory formats) — interleaved, a few rounds, the median per
candidate — keeps the fastest and from then on delegates to it.

The key (:func:`make_key`) is ``(device name, torch version, layer key)``:
the device name is the GPU's name or the CPU model; the layer key names the
layer's configuration, the input's shape, dtype and memory format, the
memory formats tried, the pass (``"train"``: autograd records the call and the
timing covers forward + backward; ``"infer"``: no autograd, forward only, in
the layer's current train/eval mode) and, on the CPU, the thread count.

Where the cache lives: always in this process's memory; also in a JSON file
when one is set (``SEPGCONV_AUTOTUNE_CACHE=/path.json`` or
:func:`set_cache_file`): read on first use, updated after each new timing.
:func:`export` / :func:`save` write it out, :func:`load` reads one back,
:func:`clear` forgets. A key found in the cache is never timed again, so the
choice is deterministic given the cache. The budget (:func:`set_budget`,
``SEPGCONV_AUTOTUNE_BUDGET`` seconds) bounds the timed rounds per key.

torch.compile / torch.export: the choice is made outside the graph. An eager
call (or a graph break, see :mod:`sepgconv.auto`) times and caches it; a
compiled or exported graph then contains only the chosen implementation.

Example:
    >>> from sepgconv import GConv2d, autotune
    >>> layer = GConv2d(16, 16, 3, variant="gc", impl="auto", padding=1)
    >>> x = torch.randn(8, 16, 4, 32, 32)
    >>> with torch.no_grad():
    ...     y = layer(x)  # first call for this key: times naive and rearranged
    >>> layer.choice(x).impl in ("naive", "rearranged")
    True
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sepgconv import layout

ENV_CACHE = "SEPGCONV_AUTOTUNE_CACHE"
ENV_BUDGET = "SEPGCONV_AUTOTUNE_BUDGET"
FILE_FORMAT = "sepgconv-autotune/1"
_MIN_SAMPLE_S = 2e-4  # a timed sample repeats calls shorter than this (clock, noise)
_MAX_REPS = 10  # ...at most this many times


@dataclasses.dataclass(frozen=True)
class Choice:
    """What auto chose for one key, and what choosing cost.

    Attributes:
        impl: the implementation chosen (e.g. ``"rearranged"``).
        memory_format: the format it computes in.
        timings_ms: median milliseconds per candidate ``"impl/format"``
            (empty for an entry loaded without timings).
        tuning_s: wall seconds the timing took (warm-up included).
        rounds: timed rounds per candidate.
        failed: ``{"impl/format": error}`` for candidates that raised (not timed).
        source: ``"timed"`` (timed in this process) or ``"cache"`` (loaded).
    """

    impl: str
    memory_format: str
    timings_ms: dict = dataclasses.field(default_factory=dict)
    tuning_s: float = 0.0
    rounds: int = 0
    failed: dict = dataclasses.field(default_factory=dict)
    source: str = "timed"


Key = tuple[str, str, str]  # (device name, torch version, layer key)

_entries: dict[Key, Choice] = {}
#: bumped whenever the cache changes other than by a new timing: layers look their choice up again
generation = [0]
_settings = {
    "budget_s": float(os.environ.get(ENV_BUDGET, "0.25")),
    "min_rounds": 3,
    "max_rounds": 10,
    "file": os.environ.get(ENV_CACHE) or None,
    "file_loaded": False,
}


# ---------------------------------------------------------------------- #
# settings
# ---------------------------------------------------------------------- #
def set_budget(seconds: float, *, min_rounds: int = 3, max_rounds: int = 10) -> None:
    """Bound the timing of one key: rounds continue until ``seconds`` have passed
    (after ``min_rounds``) or ``max_rounds`` are done. Warm-up calls are extra."""
    if seconds < 0 or min_rounds < 1 or max_rounds < min_rounds:
        raise ValueError(f"bad budget: {seconds=}, {min_rounds=}, {max_rounds=}")
    _settings.update(budget_s=float(seconds), min_rounds=min_rounds, max_rounds=max_rounds)


def budget() -> dict:
    """The current budget: ``{"budget_s", "min_rounds", "max_rounds"}``."""
    return {k: _settings[k] for k in ("budget_s", "min_rounds", "max_rounds")}


def set_cache_file(path: str | os.PathLike | None) -> None:
    """Persist choices to ``path`` (JSON), loading what it holds; ``None`` stops persisting."""
    _settings.update(file=None if path is None else os.fspath(path), file_loaded=False)
    _ensure_file_loaded()


def cache_file() -> str | None:
    """The JSON file choices persist to, or None (memory only)."""
    return _settings["file"]


# ---------------------------------------------------------------------- #
# the cache
# ---------------------------------------------------------------------- #
def clear() -> None:
    """Forget every choice held in memory (a cache file is left as it is)."""
    _entries.clear()
    _settings["file_loaded"] = True  # do not read the file back in behind the caller
    generation[0] += 1


def lookup(key: Key) -> Choice | None:
    """The cached choice for ``key``, or None."""
    _ensure_file_loaded()
    return _entries.get(key)


def record(key: Key, choice: Choice) -> None:
    """Cache ``choice`` for ``key`` (and write the cache file, if one is set)."""
    _entries[key] = choice
    if _settings["file"] is not None:
        save(_settings["file"], merge=True)


def export() -> dict:
    """Every cached choice as a JSON-able dict (the cache file's content)."""
    return {
        "format": FILE_FORMAT,
        "entries": [
            {"device": d, "torch": t, "key": k, **_choice_fields(c)}
            for (d, t, k), c in _entries.items()
        ],
    }


def save(path: str | os.PathLike, *, merge: bool = False) -> None:
    """Write :func:`export` to ``path`` (atomically); ``merge`` keeps the file's other entries."""
    path = Path(path)
    data = export()
    if merge and path.exists():
        mine = {(e["device"], e["torch"], e["key"]) for e in data["entries"]}
        theirs = _read(path)["entries"]
        data["entries"] = [
            e for e in theirs if (e["device"], e["torch"], e["key"]) not in mine
        ] + data["entries"]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, path)


def load(source: str | os.PathLike | dict, *, replace: bool = False) -> int:
    """Add the entries of a cache file (or of an :func:`export` dict) to the cache.

    Args:
        source: a path to a JSON cache file, or the dict :func:`export` returns.
        replace: forget the entries held in memory first.

    Returns:
        The number of entries read. Loaded entries win over ones in memory.
    """
    data = source if isinstance(source, dict) else _read(Path(source))
    if data.get("format") != FILE_FORMAT:
        raise ValueError(f"not a {FILE_FORMAT} cache: format={data.get('format')!r}")
    if replace:
        _entries.clear()
    _add(data["entries"], overwrite=True)
    return len(data["entries"])


def entries() -> dict[Key, Choice]:
    """A copy of the in-memory cache ``{key: Choice}``."""
    _ensure_file_loaded()
    return dict(_entries)


def _choice_fields(c: Choice) -> dict:
    return {k: v for k, v in dataclasses.asdict(c).items() if k != "source"}


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _add(items: list[dict], overwrite: bool) -> None:
    for e in items:
        key = (e["device"], e["torch"], e["key"])
        if overwrite or key not in _entries:
            fields = {f.name: e[f.name] for f in dataclasses.fields(Choice) if f.name in e}
            _entries[key] = Choice(**(fields | {"source": "cache"}))
    generation[0] += 1


def _ensure_file_loaded() -> None:
    path = _settings["file"]
    if path is not None and not _settings["file_loaded"]:
        _settings["file_loaded"] = True
        if Path(path).exists():
            data = _read(Path(path))
            if data.get("format") == FILE_FORMAT:
                _add(data["entries"], overwrite=False)  # entries in memory are newer


# ---------------------------------------------------------------------- #
# keys
# ---------------------------------------------------------------------- #
@functools.cache
def device_name(device: str) -> str:
    """A name for the timing device: the GPU's name, or the CPU model."""
    dev = torch.device(device)
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    if dev.type == "cpu":
        try:
            with open("/proc/cpuinfo") as f:
                for line in f:
                    if line.startswith("model name"):
                        return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or platform.machine() or "cpu"
    return dev.type


def pass_of(layer: torch.nn.Module, x: torch.Tensor) -> str:
    """``"train"`` if autograd records this call, else ``"infer"``."""
    if torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in layer._own_parameters())
    ):
        return "train"
    return "infer"


def make_key(layer, x: torch.Tensor, pass_: str) -> Key:
    """The cache key of ``layer`` called on ``x`` in pass ``pass_`` (see the module doc)."""
    cfg = layer.config()
    threads = f"|threads={torch.get_num_threads()}" if x.device.type == "cpu" else ""
    key = (
        f"{cfg['variant']}|{cfg['group']}|{'lifting' if cfg['lifting'] else 'group'}"
        f"|cin={cfg['in_channels']}|cout={cfg['out_channels']}|k={cfg['kernel_size']}"
        f"|stride={cfg['stride']}|pad={cfg['padding']}|bias={int(cfg['bias'])}"
        f"|x={'x'.join(map(str, x.shape))}|{str(x.dtype).removeprefix('torch.')}"
        f"|in={layout.format_of(x)}|formats={cfg['memory_format']}|{pass_}{threads}"
    )
    return (device_name(str(x.device)), torch.__version__, key)


# ---------------------------------------------------------------------- #
# timing
# ---------------------------------------------------------------------- #
def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cpu":
        return lambda: None
    return lambda: torch.accelerator.synchronize(device)


def time_candidates(
    runners: dict[str, Callable[[], object]], device: torch.device
) -> tuple[dict[str, float], int]:
    """Median seconds per call of each runner, timed interleaved within the budget.

    One untimed warm-up call each, then one timed call each to size the
    samples (a sample repeats a call that is shorter than ``_MIN_SAMPLE_S``),
    then rounds; each round takes one sample of every runner, in an order
    rotated round by round. Rounds stop after ``min_rounds`` once the budget
    is spent, or at ``max_rounds``.

    Args:
        runners: ``{name: zero-argument callable}``.
        device: where they run (synchronised around each sample).

    Returns:
        ``({name: median seconds per call}, rounds)``.
    """
    sync = _synchronizer(device)
    names = list(runners)
    reps = {}
    for name in names:
        runners[name]()  # warm-up: allocations, eval cache, lazy kernel builds
        sync()
        t0 = time.perf_counter()
        runners[name]()
        sync()
        once = time.perf_counter() - t0
        reps[name] = max(1, min(_MAX_REPS, int(_MIN_SAMPLE_S / max(once, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    rounds = 0
    while rounds < _settings["max_rounds"]:
        shift = rounds % len(names)
        for name in names[shift:] + names[:shift]:
            run, n = runners[name], reps[name]
            t0 = time.perf_counter()
            for _ in range(n):
                run()
            sync()
            samples[name].append((time.perf_counter() - t0) / n)
        rounds += 1
        spent = time.perf_counter() - start
        if rounds >= _settings["min_rounds"] and spent >= _settings["budget_s"]:
            break
    return {name: statistics.median(s) for name, s in samples.items()}, rounds


__all__ = [
    "Choice",
    "budget",
    "cache_file",
    "clear",
    "device_name",
    "entries",
    "export",
    "load",
    "lookup",
    "make_key",
    "pass_of",
    "record",
    "save",
    "set_budget",
    "set_cache_file",
    "time_candidates",
]
