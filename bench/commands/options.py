"""Option parsers shared by the subcommands (argparse ``type=`` callables)."""

from __future__ import annotations

import argparse
import contextlib
import math
import os

from ..judge.compare import RULES


def threshold(text: str) -> float:
    """``10%`` or ``0.10`` -> 0.10.

    Args:
        text: the option's text.

    Returns:
        The threshold as a fraction.
    """
    t = text.strip()
    try:
        v = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a threshold: {text!r} (write 10% or 0.10)") from None
    if not t.endswith("%") and v >= 1:
        raise argparse.ArgumentTypeError(f"ambiguous threshold {text!r}: write 10% or 0.10")
    if not (0 <= v < 10) or math.isnan(v):
        raise argparse.ArgumentTypeError(f"threshold out of range: {text!r}")
    return v


def _number(text: str, what: str, ok, bound: str) -> float:
    """``float(text)`` when ``ok`` of it, else the option's error (``what`` it should
    be, or the ``bound`` it broke)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(f"{bound}: {text!r}")
    return v


def alpha(text: str) -> float:
    """A level in (0, 1).

    Args:
        text: the option's text.

    Returns:
        The level.
    """
    return _number(text, "a number", lambda v: 0 < v < 1, "alpha must be in (0, 1)")


def rules(text: str) -> tuple:
    """``ratio,deterministic`` -> ``("ratio", "deterministic")``.

    Args:
        text: the option's text.

    Returns:
        The rules, each one of :data:`bench.judge.compare.RULES`.
    """
    chosen = tuple(r.strip() for r in text.split(",") if r.strip())
    bad = [r for r in chosen if r not in RULES]
    if bad or not chosen:
        raise argparse.ArgumentTypeError(f"rules are a comma list of {', '.join(RULES)}")
    return chosen


def reference(text: str) -> tuple:
    """``full/naive`` -> ``("full", "naive")``.

    Args:
        text: the option's text.

    Returns:
        ``(variant, impl)``.
    """
    parts = text.split("/")
    if len(parts) != 2 or not all(parts):
        raise argparse.ArgumentTypeError(f"write VARIANT/IMPL, e.g. full/naive: {text!r}")
    return tuple(parts)


def anchor(text: str) -> tuple | None:
    """Like :func:`reference`, or ``none`` -> None.

    Args:
        text: the option's text.

    Returns:
        ``(variant, impl)`` or None.
    """
    return None if text.strip().lower() == "none" else reference(text)


def seconds(text: str) -> float:
    """A positive, finite number of seconds: ``300``, ``90.5``.

    Args:
        text: the option's text.

    Returns:
        The seconds.
    """
    ok = lambda v: v > 0 and math.isfinite(v)  # noqa: E731
    return _number(text, "a number of seconds", ok, "seconds must be positive and finite")


def shard(text: str):
    """``2/3`` -> :class:`bench.sweep.shards.Shard` ``(2, 3)``.

    Args:
        text: the option's text, ``I/N`` with ``1 <= I <= N``.

    Returns:
        The shard.
    """
    from ..sweep.shards import Shard  # lazily: the sweep imports torch

    try:
        return Shard.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


@contextlib.contextmanager
def torch_threads(n: int | None):
    """``torch.set_num_threads(n)`` for the block (``None``/0: unchanged), the
    caller's count restored afterwards: a command called in-process (as the tests
    and the pytest plugin do) leaves no trace on the process."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def inductor_in_process(enabled: bool):
    """Inductor compiles in a pool of worker processes by default; their CPU time
    reads as other processes' to the contention check (a quiet ``--compile`` run was
    flagged at 0.62 foreign cores over the run, every timing window quiet). For a
    compiled run it compiles in this process instead, unless
    ``TORCHINDUCTOR_COMPILE_THREADS`` says otherwise."""
    if not enabled or os.environ.get("TORCHINDUCTOR_COMPILE_THREADS"):
        yield
        return
    from torch._inductor import config

    with config.patch(compile_threads=1):
        yield
