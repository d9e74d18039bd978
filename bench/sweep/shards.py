"""Shards: a sweep's cases split into N parts, one per process, machine or CI job.

``python -m bench run --shard I/N`` runs part I (1-based) of N; ``python -m bench
merge`` joins the parts' folders into one (:mod:`bench.store.shards`).

The split (:func:`split`):

* **by shape**: every case of one shape (all implementations, memory formats,
  compiled or eager, both passes) goes to the same shard, so the interleaved
  timing of a shape against its ``full/naive`` reference, and hence its in-run
  ratios, stay within one process;
* **balanced by rows**: the shapes, in the sweep's order, each go to the shard
  holding the fewest cases so far (ties: the lowest index);
* **deterministic**: a function of the case list alone (the profile, the
  implementations, ``--compile``, ``--max-shapes``), never of what is already
  done, so ``--shard I/N --resume`` picks exactly the cases it picked before.
  Every case lands in exactly one shard.

A shard's ``env.json`` records :meth:`Shard.describe`: its index and count and
the position of each of its shapes in the whole sweep, which is how a merge
puts the rows back in the order one unsharded run writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

from .shapes import Case, Shape


@dataclass(frozen=True)
class Shard:
    """Part ``index`` (1-based) of ``count``.

    Example::

        >>> Shard.parse("2/3")
        Shard(index=2, count=3)
    """

    index: int
    count: int

    def __post_init__(self):
        if not 1 <= self.index <= self.count:
            raise ValueError(f"shard {self.index}/{self.count}: write I/N with 1 <= I <= N")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/3"`` -> ``Shard(2, 3)``.

        Raises:
            ValueError: not ``I/N`` with ``1 <= I <= N``.
        """
        parts = str(text).strip().split("/")
        try:
            index, count = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"--shard takes I/N (e.g. 2/3), got {text!r}") from None
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    @property
    def suffix(self) -> str:
        """Folder-name suffix, e.g. ``-shard-2of3``."""
        return f"-shard-{self.index}of{self.count}"

    def select(self, cases: list[Case]) -> list[Case]:
        """The cases of this shard, in the order of ``cases``."""
        return split(cases, self.count)[self.index - 1]

    def describe(self, cases: list[Case]) -> dict:
        """The ``env.json`` record of this shard of ``cases`` (the whole sweep).

        Returns:
            ``{"index", "count", "rows", "rows_total", "shapes": [[position, label], ...]}``
            where ``position`` is the shape's place among the sweep's shapes.
        """
        positions = {s: i for i, s in enumerate(shapes_of(cases))}
        mine = self.select(cases)
        return {
            "index": self.index,
            "count": self.count,
            "rows": len(mine),
            "rows_total": len(cases),
            "shapes": [[positions[s], s.label()] for s in shapes_of(mine)],
        }


def shapes_of(cases: list[Case]) -> list[Shape]:
    """The shapes of ``cases``, each once, in order of first appearance."""
    return list(dict.fromkeys(c.shape for c in cases))


def split(cases: list[Case], count: int) -> list[list[Case]]:
    """``cases`` in ``count`` parts, whole shapes each, balanced by rows (module doc).

    Args:
        cases: the whole sweep, in its order.
        count: the number of shards (>= 1).

    Returns:
        One list per shard (index 0 is shard 1), each in the order of ``cases``;
        a shard gets no cases when there are fewer shapes than shards.
    """
    if count < 1:
        raise ValueError(f"shard count must be >= 1, got {count}")
    by_shape: dict[Shape, list[Case]] = {}
    for c in cases:
        by_shape.setdefault(c.shape, []).append(c)
    owner: dict[Shape, int] = {}
    load = [0] * count
    for shape, its in by_shape.items():
        lightest = min(range(count), key=lambda i: (load[i], i))
        owner[shape] = lightest
        load[lightest] += len(its)
    parts: list[list[Case]] = [[] for _ in range(count)]
    for c in cases:
        parts[owner[c.shape]].append(c)
    return parts
