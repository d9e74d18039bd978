"""The paper's models in a results folder: the memory comparison with the paper's
published GPU column, and the rows ``bench models`` writes for it."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.report import build, paper_models
from sepgconv import models

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20


def _models_csv(folder: Path, rows: list[dict]) -> None:
    (folder / "models").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(folder / paper_models.MODELS_CSV, index=False)


def _row(model, impl, paper, working, weights, reserved=None, **kw) -> dict:
    return {
        "model": model, "impl": impl, "pass": "fwdbwd", "batch": 2, "status": "ok",
        "latency_ms_median": 1.0, "peak_mem_mb": working, "peak_mem_with_weights_mb": weights,
        "mem_reserved_bytes": None if reserved is None else reserved * MB,
        "paper_peak_mem_mb": paper, **kw,
    }  # fmt: skip


def test_memory_table_sets_each_measure_against_the_paper():
    df = pd.DataFrame(
        [
            _row("a", "naive", 100.0, 95.0, 112.0, reserved=120.0),  # working within 10 %
            _row("a", "rearranged", 100.0, 300.0, 305.0, reserved=320.0),  # none within
            _row("b", "naive", 10.0, 8.0, 10.5, reserved=20.0),  # with weights within
            _row("b", "naive", None, 1.0, 1.0) | {"pass": "fwd"},  # no paper figure: left out
            _row("c", "naive", 5.0, 5.0, 5.0) | {"status": "error"},  # not ok: left out
        ]
    )
    df["mem_reserved_mb"] = df["mem_reserved_bytes"] / MB
    table = paper_models.memory_table(df)
    assert list(table["model"]) == ["a", "a", "b"]
    assert table["working ratio"].tolist() == pytest.approx([0.95, 3.0, 0.8])
    assert table["with weights ratio"].tolist() == pytest.approx([1.12, 3.05, 1.05])
    assert table["reserved ratio"].tolist() == pytest.approx([1.2, 3.2, 2.0])
    assert table["within"].tolist() == ["working", "—", "with weights"]
    summary = paper_models.memory_summary(table)
    assert summary[0] == (
        "Rows within 10% of the paper, per measure: **working** 1 of 3, "
        "**with weights** 1 of 3, **reserved** 0 of 3."
    )
    assert summary[1] == (
        "Closest to the paper per model: a: naive, working ×0.950; b: naive, with weights ×1.050."
    )


@pytest.mark.slow
def test_the_report_shows_the_paper_models_of_a_folder(tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(
        ROOT / "results" / "cpu-amd-epyc", folder, ignore=shutil.ignore_patterns("models")
    )
    _models_csv(
        folder,
        [
            _row("gc-p4m-resnet44", "naive", 197.84, 637.35, 644.56),
            _row("gc-p4m-resnet44", "rearranged", 197.84, 197.54, 204.76),
            _row("gc-p4m-resnet44", "rearranged", None, 10.5, 17.7) | {"pass": "fwd"},
        ],
    )
    build.make_report(folder)
    text = (folder / "README.md").read_text()
    section = text.split("## The paper's models")[1].split("## Plots")[0]
    assert "| gc-p4m-resnet44 | 2 | fwdbwd | 1.00 | 1.00 |" in section  # latency table
    assert "| gc-p4m-resnet44 | rearranged | 197.84 | 197.54 | 1.00 | 204.76 | 1.03 |" in section
    assert "**working** 1 of 2, **with weights** 1 of 2" in section
    (folder / paper_models.MODELS_CSV).write_text("model,impl\n")  # unusable: a note, no section
    build.make_report(folder)
    text = (folder / "README.md").read_text()
    assert "## The paper's models" not in text
    assert "models/models.csv has no rows: models section skipped." in text


def test_bench_models_carries_the_paper_figure_on_the_batch_2_training_rows(tmp_path):
    argv = ["models", "--models", "z2cnn", "--batches", "2,3", "--quick", "--device", "cpu"]
    assert main(argv + ["--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "models.csv")))
    carried = {(r["batch"], r["pass"]): r["paper_peak_mem_mb"] for r in rows}
    paper = str(models.get_spec("z2cnn").paper_peak_mem_mb)
    assert carried == {("2", "fwd"): "", ("2", "fwdbwd"): paper, ("3", "fwd"): "",
                       ("3", "fwdbwd"): ""}  # fmt: skip
    assert all(r["nvml_used_bytes"] == "" for r in rows)  # no NVML on the CPU
    assert all(float(r["peak_mem_mb"]) > 0 for r in rows)
