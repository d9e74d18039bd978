"""``impl="auto"``: benchmark mode for GConvs — time once per key, keep the fastest.

A layer built with ``impl="auto"`` (:mod:`sepgconv.auto`) has its variant's
parameters. On the first call for a new **key** it times the variant's
implementations that can run on the input's device
(:func:`sepgconv.available_implementations`; ``memory_format="auto"`` also
times both memory formats) — interleaved, the median per candidate, with
candidates that are clearly behind abandoned early (:func:`time_candidates`) —
keeps the fastest and from then on delegates to it. After the first call a
call costs one dict lookup on a cheap input signature (see :mod:`sepgconv.auto`).

The key (:func:`make_key`) is ``(device name, software, layer key)``: the
device name is the GPU's name or the CPU model (:func:`device_name`, the one
CPU-model reader of the project); software names the versions of torch, Triton
(when installed; read without importing it) and sepgconv; the layer key names
the layer's configuration, the input's shape, dtype and memory format, whether
the input wants its gradient, the memory formats tried, the pass (``"train"``:
autograd records the call and the timing covers forward + backward;
``"infer"``: no autograd, forward only), the layer's train/eval mode, the
TF32 and cuDNN flags (``torch.backends.cuda.matmul.allow_tf32``,
``torch.backends.cudnn.allow_tf32``, ``.benchmark``, ``.deterministic``) and,
on the CPU, the thread count.

Where the cache lives: always in this process's memory; also in a JSON file
when one is set (``SEPGCONV_AUTOTUNE_CACHE=/path.json`` or
:func:`set_cache_file`): read on first use, updated after each new timing.
Writes are safe under threads and processes: the read-merge-write runs under
an ``fcntl.flock`` on a sibling ``<file>.lock`` and ends in an atomic
``os.replace`` of a uniquely named temporary file in the same folder, so
concurrent tuners lose no entry. :func:`export` / :func:`save` write it out,
:func:`load` reads one back, :func:`clear` forgets. A key found in the cache is
never timed again, so the choice is deterministic given the cache.

Bounds on tuning (:func:`set_budget`, ``SEPGCONV_AUTOTUNE_BUDGET`` seconds):
``budget_s`` is the soft budget of the timed rounds, ``limit_s`` (default 1 s)
the hard cap of one key's timing, warm-up included (no sample starts that
would end past it). What was abandoned, and why, is in :attr:`Choice.abandoned`.

A disturbed machine (issue 25): choices timed inside :func:`untrusted` (or
while :func:`set_trusted` is False) are used in memory, marked
``source="timed-untrusted"``, never written to the cache file, and timed again
on their next lookup once trust returns.

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

import contextlib
import dataclasses
import functools
import importlib.metadata
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch

from sepgconv import layout

try:  # POSIX: a lock around the cache file's read-merge-write
    import fcntl
except ImportError:  # pragma: no cover - Windows: atomic replace only
    fcntl = None

ENV_CACHE = "SEPGCONV_AUTOTUNE_CACHE"
ENV_BUDGET = "SEPGCONV_AUTOTUNE_BUDGET"
#: /2: the key has a software field (torch, Triton, sepgconv versions) and names
#: the train/eval mode, the input's requires_grad and the TF32 / cuDNN flags
FILE_FORMAT = "sepgconv-autotune/2"
_MIN_SAMPLE_S = 2e-4  # a timed sample repeats calls shorter than this (clock, noise)
_MAX_REPS = 10  # ...at most this many times
#: a candidate whose first two timed calls are both this many times slower than the
#: best call seen is abandoned (see :func:`time_candidates` for the reasoning)
DROP_RATIO = 3.0


@dataclasses.dataclass(frozen=True)
class Choice:
    """What auto chose for one key, and what choosing cost.

    Attributes:
        impl: the implementation chosen (e.g. ``"rearranged"``).
        memory_format: the format it computes in.
        timings_ms: median milliseconds per candidate ``"impl/format"`` over
            the samples it got (empty for an entry loaded without timings).
        tuning_s: wall seconds the timing took (warm-up included).
        rounds: timed rounds of the candidate chosen.
        failed: ``{"impl/format": error}`` for candidates that raised (not timed).
        abandoned: ``{"impl/format": why}`` for candidates timed fewer rounds
            than the winner because they were clearly behind (or the time
            limit came first): never dropped silently.
        source: ``"timed"`` (timed in this process), ``"cache"`` (loaded), or
            ``"timed-untrusted"`` (timed inside :func:`untrusted`: used in
            memory, never written to the cache file).
    """

    impl: str
    memory_format: str
    timings_ms: dict = dataclasses.field(default_factory=dict)
    tuning_s: float = 0.0
    rounds: int = 0
    failed: dict = dataclasses.field(default_factory=dict)
    abandoned: dict = dataclasses.field(default_factory=dict)
    source: str = "timed"


Key = tuple[str, str, str]  # (device name, software versions, layer key)

_entries: dict[Key, Choice] = {}
_lock = threading.RLock()  # guards _entries and the in-process side of file writes
#: bumped whenever the cache changes other than by a new timing (or trust returns):
#: layers look their choice up again
generation = [0]
_settings = {
    "budget_s": float(os.environ.get(ENV_BUDGET, "0.25")),
    "min_rounds": 3,
    "max_rounds": 10,
    "limit_s": 1.0,
    "file": os.environ.get(ENV_CACHE) or None,
    "file_loaded": False,
}
#: reasons the machine is not trusted for timing now (a stack: nested untrusted())
_distrust: list[str] = []


# ---------------------------------------------------------------------- #
# settings
# ---------------------------------------------------------------------- #
def set_budget(
    seconds: float, *, min_rounds: int = 3, max_rounds: int = 10, limit_s: float = 1.0
) -> None:
    """Bound the timing of one key.

    Args:
        seconds: soft budget of the timed rounds: they stop once it is spent
            (after ``min_rounds``), or at ``max_rounds``, or when successive
            halving has left one candidate.
        min_rounds: rounds before any halving or stop (samples per median).
        max_rounds: most rounds.
        limit_s: hard cap of the whole timing of a key, warm-up included: no
            sample starts that would end past it (each candidate's warm-up
            and first timed call always run).
    """
    if seconds < 0 or min_rounds < 1 or max_rounds < min_rounds or limit_s <= 0:
        raise ValueError(f"bad budget: {seconds=}, {min_rounds=}, {max_rounds=}, {limit_s=}")
    _settings.update(
        budget_s=float(seconds), min_rounds=min_rounds, max_rounds=max_rounds,
        limit_s=float(limit_s),
    )  # fmt: skip


def budget() -> dict:
    """The current budget: ``{"budget_s", "min_rounds", "max_rounds", "limit_s"}``."""
    return {k: _settings[k] for k in ("budget_s", "min_rounds", "max_rounds", "limit_s")}


def set_cache_file(path: str | os.PathLike | None) -> None:
    """Persist choices to ``path`` (JSON), loading what it holds; ``None`` stops persisting."""
    _settings.update(file=None if path is None else os.fspath(path), file_loaded=False)
    _ensure_file_loaded()


def cache_file() -> str | None:
    """The JSON file choices persist to, or None (memory only)."""
    return _settings["file"]


# ---------------------------------------------------------------------- #
# trust: the benchmark's hook for a disturbed machine
# ---------------------------------------------------------------------- #
def trusted() -> bool:
    """Whether timings made now may be persisted (see :func:`untrusted`)."""
    return not _distrust


def set_trusted(flag: bool, reason: str = "machine disturbed") -> None:
    """Mark the machine untrusted (``False``, with a reason) or trusted again (``True``).

    While untrusted, new choices are used in memory but marked
    ``source="timed-untrusted"`` and not written to the cache file. When trust
    returns, layers look their choices up again, and untrusted ones are timed
    anew (and then persisted).
    """
    with _lock:
        if not flag:
            _distrust.append(str(reason))
            return
        was = bool(_distrust)
        _distrust.clear()
        if was and any(c.source == "timed-untrusted" for c in _entries.values()):
            generation[0] += 1


@contextlib.contextmanager
def untrusted(reason: str = "machine disturbed"):
    """A block in which the machine is not trusted for timing (see :func:`set_trusted`).

    Example:
        >>> with autotune.untrusted("foreign_cpu 1.00 > 0.25"):
        ...     model(x)  # choices made here are used, not persisted
    """
    with _lock:
        _distrust.append(str(reason))
    try:
        yield
    finally:
        with _lock:
            if _distrust:
                _distrust.pop()
            if not _distrust and any(c.source == "timed-untrusted" for c in _entries.values()):
                generation[0] += 1  # layers look up again: the untrusted entries re-time


# ---------------------------------------------------------------------- #
# the cache
# ---------------------------------------------------------------------- #
def clear() -> None:
    """Forget every choice held in memory (a cache file is left as it is)."""
    with _lock:
        _entries.clear()
        _settings["file_loaded"] = True  # do not read the file back in behind the caller
        generation[0] += 1


def lookup(key: Key) -> Choice | None:
    """The cached choice for ``key``, or None (also for an untrusted choice once
    the machine is trusted again: it is to be timed anew)."""
    _ensure_file_loaded()
    choice = _entries.get(key)
    if choice is not None and choice.source == "timed-untrusted" and trusted():
        return None
    return choice


def record(key: Key, choice: Choice) -> Choice:
    """Cache ``choice`` for ``key`` and return what was cached: while the machine is
    not :func:`trusted`, a timed choice is marked ``"timed-untrusted"`` and kept
    in memory only; otherwise it is also written to the cache file, if one is set."""
    if not trusted() and choice.source == "timed":
        choice = dataclasses.replace(choice, source="timed-untrusted")
    with _lock:
        _entries[key] = choice
    if _settings["file"] is not None and choice.source != "timed-untrusted":
        save(_settings["file"], merge=True)
    return choice


def export() -> dict:
    """Every cached choice as a JSON-able dict (the cache file's content); untrusted
    choices are left out."""
    with _lock:
        items = list(_entries.items())
    return {
        "format": FILE_FORMAT,
        "entries": [
            {"device": d, "software": s, "key": k, **_choice_fields(c)}
            for (d, s, k), c in items
            if c.source != "timed-untrusted"
        ],
    }


def save(path: str | os.PathLike, *, merge: bool = False) -> None:
    """Write :func:`export` to ``path``; ``merge`` keeps the file's other entries.

    Safe under threads and processes: under a lock (``flock`` on ``<path>.lock``)
    the file is read, merged and written to a uniquely named temporary file in
    its folder, which then atomically replaces it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock, _file_lock(path):
        data = export()
        if merge and path.exists():
            mine = {_entry_key(e) for e in data["entries"]}
            theirs = _read(path)
            if theirs.get("format") == FILE_FORMAT:
                data["entries"] = [
                    e for e in theirs["entries"] if _entry_key(e) not in mine
                ] + data["entries"]
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


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
    with _lock:
        if replace:
            _entries.clear()
        _add(data["entries"], overwrite=True)
    return len(data["entries"])


def entries() -> dict[Key, Choice]:
    """A copy of the in-memory cache ``{key: Choice}``."""
    _ensure_file_loaded()
    with _lock:
        return dict(_entries)


def _entry_key(e: dict) -> Key:
    return (e["device"], e["software"], e["key"])


def _choice_fields(c: Choice) -> dict:
    return {k: v for k, v in dataclasses.asdict(c).items() if k != "source"}


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


@contextlib.contextmanager
def _file_lock(path: Path):
    if fcntl is None:  # pragma: no cover
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _add(items: list[dict], overwrite: bool) -> None:
    for e in items:
        key = _entry_key(e)
        if overwrite or key not in _entries:
            fields = {f.name: e[f.name] for f in dataclasses.fields(Choice) if f.name in e}
            _entries[key] = Choice(**(fields | {"source": "cache"}))
    generation[0] += 1


def _ensure_file_loaded() -> None:
    path = _settings["file"]
    if path is not None and not _settings["file_loaded"]:
        with _lock:
            if _settings["file_loaded"]:
                return
            _settings["file_loaded"] = True
            if Path(path).exists():
                data = _read(Path(path))  # whole (writers replace it atomically)
                if data.get("format") == FILE_FORMAT:
                    _add(data["entries"], overwrite=False)  # entries in memory are newer


# ---------------------------------------------------------------------- #
# keys
# ---------------------------------------------------------------------- #
@functools.cache
def device_name(device: str) -> str:
    """A name for the timing device: the GPU's name, or the CPU model.

    The project's one CPU-model reader (``/proc/cpuinfo``'s ``model name``,
    else :mod:`platform`)."""
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


def _version(package: str) -> str:
    try:  # importlib.metadata: no import of the package itself (Triton is heavy)
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "none"


@functools.cache
def software() -> str:
    """The versions a choice depends on: ``"torch=…|triton=…|sepgconv=…"``
    (``triton=none`` where it is not installed)."""
    pkg = sys.modules.get("sepgconv")
    mine = getattr(pkg, "__version__", None) or _version("sepgconv")
    return f"torch={torch.__version__}|triton={_version('triton')}|sepgconv={mine}"


def flags() -> tuple[bool, bool, bool, bool]:
    """``(matmul TF32, cuDNN TF32, cudnn.benchmark, cudnn.deterministic)`` now."""
    return (
        torch._C._get_cublas_allow_tf32(),
        torch._C._get_cudnn_allow_tf32(),
        torch._C._get_cudnn_benchmark(),
        torch._C._get_cudnn_deterministic(),
    )


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
    tf32_mm, tf32_cudnn, bench, det = (int(f) for f in flags())
    key = (
        f"{cfg['variant']}|{cfg['group']}|{'lifting' if cfg['lifting'] else 'group'}"
        f"|cin={cfg['in_channels']}|cout={cfg['out_channels']}|k={cfg['kernel_size']}"
        f"|stride={cfg['stride']}|pad={cfg['padding']}|bias={int(cfg['bias'])}"
        f"|x={'x'.join(map(str, x.shape))}|{str(x.dtype).removeprefix('torch.')}"
        f"|in={layout.format_of(x)}|xgrad={int(x.requires_grad)}|formats={cfg['memory_format']}"
        f"|{pass_}|{'training' if layer.training else 'eval'}"
        f"|tf32_matmul={tf32_mm}|tf32_cudnn={tf32_cudnn}|cudnn_benchmark={bench}"
        f"|cudnn_deterministic={det}{threads}"
    )
    return (device_name(str(x.device)), software(), key)


# ---------------------------------------------------------------------- #
# timing
# ---------------------------------------------------------------------- #
class Timing(NamedTuple):
    """What :func:`time_candidates` measured."""

    medians: dict[str, float]  # seconds per call, over the samples each got
    rounds: int  # rounds the last candidate standing took part in
    abandoned: dict[str, str]  # name -> why it got fewer rounds
    best: str  # the fastest by median of those not abandoned (the choice)


_clock = time.perf_counter  # time_candidates' default clock (tests patch it)


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cpu":
        return lambda: None
    return lambda: torch.accelerator.synchronize(device)


def time_candidates(
    runners: dict[str, Callable[[], object]],
    device: torch.device,
    *,
    warmup: bool = True,
    clock: Callable[[], float] | None = None,
) -> Timing:
    """Median seconds per call of each runner, timed interleaved, within the budget.

    1. One untimed warm-up call each (``warmup=False``: the caller made it).
    2. One timed call each sizes the samples (a sample repeats a call shorter
       than ``_MIN_SAMPLE_S``).
    3. **Early drop**: a candidate whose sizing call took more than
       :data:`DROP_RATIO` (3×) the best one's gets one more call; if that is
       also 3× behind the best call seen, it is abandoned. Why 3×: after the
       warm-up, CPU wall time moves 5–25 % between calls (DESIGN §4) and a GPU
       launch a few µs; a candidate would need a median 3× better than two of
       its own warmed calls to win, which no steady code does; the second call
       guards against one preempted call (10 ms time slice on a busy CPU).
       So a 300 ms candidate is called twice, not 10 times, beside a 1 ms one.
    4. **Rounds with successive halving**: each round takes one sample of every
       candidate still in the field, in an order rotated round by round;
       every ``min_rounds`` rounds the slower half (by median) leaves.
       Rounds stop when one candidate is left, at ``max_rounds``, or once the
       soft budget ``budget_s`` is spent (after ``min_rounds``).
    5. **Hard cap**: no sample starts that would end after ``limit_s`` from
       the start (its last sample predicts its length).

    Args:
        runners: ``{name: zero-argument callable}``.
        device: where they run (synchronised around each sample).
        warmup: make the untimed warm-up call of each runner.
        clock: seconds (default ``time.perf_counter``; tests inject a fake one).

    Returns:
        :class:`Timing`: medians, rounds, ``{name: why}`` for every candidate
        that got fewer rounds than the one kept, and the one kept (the
        fastest by median among those not abandoned: an abandoned candidate's
        one or two samples never outvote the rounds of the others).
    """
    sync = _synchronizer(device)
    clock = _clock if clock is None else clock
    names = list(runners)
    limit = _settings["limit_s"]
    start = clock()
    abandoned: dict[str, str] = {}
    samples: dict[str, list[float]] = {name: [] for name in names}
    reps = {}

    def sample(name: str) -> float:
        run, n = runners[name], reps[name]
        t0 = clock()
        for _ in range(n):
            run()
        sync()
        s = (clock() - t0) / n
        samples[name].append(s)
        return s

    for name in names:
        if warmup:
            runners[name]()  # allocations, eval cache, lazy kernel builds
            sync()
        t0 = clock()
        runners[name]()
        sync()
        once = clock() - t0
        samples[name].append(once)
        reps[name] = max(1, min(_MAX_REPS, int(_MIN_SAMPLE_S / max(once, 1e-9))))

    def best_call() -> float:
        return min(min(samples[n]) for n in field)

    field = list(names)
    if len(field) > 1:  # early drop: clearly behind on the first call, confirmed by a second
        first = best_call()
        for name in sorted(field, key=lambda n: samples[n][0]):
            if samples[name][0] > DROP_RATIO * first:
                if clock() - start + samples[name][0] * reps[name] <= limit:
                    sample(name)  # the confirmation call
                ratio = min(samples[name]) / best_call()
                if ratio > DROP_RATIO:
                    field.remove(name)
                    calls = len(samples[name])
                    abandoned[name] = f"{ratio:.1f}x the best after {calls} call{'s' * (calls > 1)}"
    rounds, in_stage = 0, 0
    while len(field) > 1 and rounds < _settings["max_rounds"]:
        shift = rounds % len(field)
        order = field[shift:] + field[:shift]
        if any(clock() - start + samples[n][-1] * reps[n] > limit for n in order):
            for name in field:
                abandoned.setdefault(
                    name, f"the {limit:g} s limit stopped the rounds after {rounds}"
                )
            break
        for name in order:
            sample(name)
        rounds += 1
        in_stage += 1
        if in_stage >= _settings["min_rounds"] and rounds < _settings["max_rounds"]:
            in_stage = 0
            if clock() - start >= _settings["budget_s"]:
                break  # soft budget spent: the medians decide now
            med = {n: statistics.median(samples[n][1:] or samples[n]) for n in field}
            ranked = sorted(field, key=med.get)
            keep = ranked[: math.ceil(len(ranked) / 2)]
            for name in ranked[len(keep) :]:
                abandoned[name] = (
                    f"halved out after {rounds} rounds: {med[name] / med[ranked[0]]:.2f}x "
                    f"the best median"
                )
            field = [n for n in field if n in keep]
    medians = {n: statistics.median(s[1:] or s) for n, s in samples.items()}
    winner = min(field, key=medians.get)
    abandoned.pop(winner, None)
    return Timing(medians, rounds, abandoned, winner)


__all__ = [
    "Choice",
    "DROP_RATIO",
    "Timing",
    "budget",
    "cache_file",
    "clear",
    "device_name",
    "entries",
    "export",
    "flags",
    "load",
    "lookup",
    "make_key",
    "pass_of",
    "record",
    "save",
    "set_budget",
    "set_cache_file",
    "set_trusted",
    "software",
    "time_candidates",
    "trusted",
    "untrusted",
]
