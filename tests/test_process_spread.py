"""``tools/process_spread.py`` (a study tool, run by hand) still runs: one process's
rows, and the within/between split of its table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location(
        "process_spread", ROOT / "tools" / "process_spread.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_process_gives_a_ratio_per_shape_and_implementation(tool, one_thread):
    rows = tool.one_process(1)
    assert [r["shape"] for r in rows] == ["p4-c16-k3-h16", "p4m-c32-k1-h32", "p4-c32-k5-h16"]
    for r in rows:
        assert set(r) == {"shape", "rep", "g/rearranged", "gc/rearranged", "g/naive"}
        assert all(v > 0 for k, v in r.items() if "/" in k)


def test_the_log_ratios_are_grouped_per_process(tool):
    def rows(a, b):
        return [{"shape": "s", "rep": 0, "g/naive": a}, {"shape": "s", "rep": 1, "g/naive": b}]

    runs = [rows(1.0, 2.0), rows(4.0, 4.0)]
    by_key = tool._by_key(runs)
    assert list(by_key) == [("s", "g/naive")]
    first, second = by_key[("s", "g/naive")]
    assert first.tolist() == pytest.approx(np.log([1.0, 2.0]).tolist())
    assert second.tolist() == pytest.approx(np.log([4.0, 4.0]).tolist())
