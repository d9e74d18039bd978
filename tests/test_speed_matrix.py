"""tools/speed_matrix.py (the GPU step of #23/#24) runs its whole path on the CPU."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
import torch

from sepgconv import impls

ROOT = Path(__file__).resolve().parents[1]


def _tool():
    spec = importlib.util.spec_from_file_location("speed_matrix", ROOT / "tools/speed_matrix.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_tiny_matrix_on_the_cpu(tmp_path):
    sm = _tool()
    subjects = "full/naive,dense,gc/rearranged:conv,gc/rearranged:gemm,g/naive"
    code = sm.main([
        "--device", "cpu", "--shapes", "p4:2:6:2", "--precisions", "tf32",
        "--subjects", subjects, "--budget", "0.002", "--out", str(tmp_path),
    ])  # fmt: skip
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "speed_matrix.csv")))
    assert len(rows) == 5 * 2 * 2  # subjects × formats × passes
    assert {r["status"] for r in rows} == {"ok"}
    for r in rows:
        if r["subject"] == "full/naive":
            assert float(r["speedup_vs_full"]) == 1.0
        if r["subject"].startswith("gc/"):
            # §3.4 at p4, C 2, k 3: C·G·k² / (C·G + k²) = 8·9 / (8 + 9)
            assert float(r["mac_cut"]) == pytest.approx(72 / 17)
            ratio = float(r["speedup_vs_full"]) / float(r["mac_cut"])
            assert float(r["efficiency"]) == pytest.approx(ratio)
    assert "torch" in (tmp_path / "speed_matrix.md").read_text().splitlines()[0]
    assert impls.GC_ROUTE is None  # the forced routes are undone


def test_flags_and_routes_are_restored_and_routes_forced():
    sm = _tool()
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    with sm.precision(not before[0]):
        assert torch.backends.cuda.matmul.allow_tf32 is (not before[0])
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    seen = []
    step = sm.routed(lambda: seen.append(impls.GC_ROUTE), "gemm")
    step()
    assert seen == ["gemm"] and impls.GC_ROUTE is None


def test_unknown_choices_exit_2(tmp_path, capsys):
    sm = _tool()
    assert sm.main(["--device", "cpu", "--precisions", "fp64", "--out", str(tmp_path)]) == 2
    assert "valid choices" in capsys.readouterr().err
