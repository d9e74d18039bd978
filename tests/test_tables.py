"""Tables 1 and 2: parameters equal the paper's at its rounding, MACs within
0.5 %, the fvcore column, and the CLI's CSV."""

import csv
import io
import subprocess
import sys

import pytest

from sepgconv import models, tables

REQUIRED = {"model", "width", "params", "macs", "paper_params", "paper_macs", "macs_fvcore"}


@pytest.fixture(scope="module")
def table1():
    return {r.name: r for r in tables.table(1, fvcore=False)}


@pytest.mark.parametrize("name", models.names(table=1))
def test_table1_row(table1, name):
    row = table1[name]
    assert row.params_match, (row.params, row.paper_params)
    assert abs(row.macs_rel_diff) <= 0.005, (row.macs, row.paper_macs)


def test_table1_matches_hand_counts(table1):
    # g-P4CNN w=10: lifting 243,360 + g layers 4,126,400 (output grids 24², 10², 8², 6²,
    # 4², 1²) + linear 100
    assert table1["g-p4cnn"].macs == 243_360 + 4_126_400 + 100
    assert table1["p4cnn"].macs == 11_673_760 + 100
    assert table1["gc-p4cnn"].macs == 1_797_920 + 100
    # c-Z2CNN: the 1×1 conv runs on the layer's input grid; -0.47 % from the paper
    assert table1["c-z2cnn"].macs == 4_120_530
    assert table1["c-z2cnn"].params == 25_603


def test_paper_macs_per_layer_uses_the_output_grid():
    total, layers = tables.paper_macs(models.build("g-p4cnn"))
    lifting, layer2 = layers[0], layers[1]
    assert lifting.kind == "gconv-full" and lifting.out_shape == (10, 4, 26, 26)
    assert lifting.macs == 1 * 1 * 9 * 10 * 4 * 26 * 26
    assert layer2.kind == "gconv-g" and layer2.out_shape[-2:] == (24, 24)
    assert layer2.macs == 10 * 10 * 4 * 24 * 24 * (4 + 9)
    assert layers[-1].kind == "linear" and layers[-1].macs == 100
    assert total == sum(layer.macs for layer in layers)


def test_fvcore_column_counts_the_rearranged_pointwise_on_the_input_grid():
    # gc-P4CNN w=10: pointwise C_out·G·C_in·G = 1600 MACs per pixel on the extra
    # input-grid pixels 26²−24², 12²−10², 10²−8², 8²−6², 6²−4², 4²−1² (243 in all)
    row = tables.measure_row("gc-p4cnn")
    assert row.macs_fvcore == row.macs + 1600 * 243
    # a model without separable layers: fvcore sees what the paper counts
    assert tables.measure_row("p4cnn").macs_fvcore == 11_673_860


@pytest.mark.parametrize("name", models.names(table=2))
def test_table2_params(name):
    row = tables.measure_row(name, macs=False)
    assert row.params_match, (row.params, row.paper_params)
    assert row.paper_macs is None and row.macs is None


def test_table2_macs_of_plain_resnet44_hand_count():
    conv = 9 * 32 * 32 * 1024  # one 32→32 3×3 conv at 32×32 (= 64→64 at 16², 128→128 at 8²)
    stem = 3 * 9 * 32 * 1024
    stage1 = 14 * conv
    stage2 = 32 * 64 * 9 * 256 + 13 * conv + 32 * 64 * 256  # strided conv, 13 convs, 1×1 shortcut
    stage3 = 64 * 128 * 9 * 64 + 13 * conv + 64 * 128 * 64
    linear = 128 * 10
    expected = stem + stage1 + stage2 + stage3 + linear
    assert tables.paper_macs(models.build("resnet44"))[0] == expected == 388_859_136


def test_markdown_has_both_values_and_the_note(table1):
    text = tables.to_markdown(list(table1.values()), "Table 1")
    assert "| g-P4CNN | 17 | 25,255 | 25.26k |" in text
    assert "Note:" in text and "input grid" in text


@pytest.mark.slow
def test_cli_table1_csv():
    proc = subprocess.run(
        [sys.executable, "-m", "sepgconv", "table1", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    rows = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert REQUIRED <= set(rows[0])
    assert [r["model"] for r in rows] == [
        "Z2CNN",
        "c-Z2CNN",
        "P4CNN",
        "g-P4CNN",
        "gc-P4CNN",
        "g-P4CNN",
        "gc-P4CNN",
    ]
    for r in rows:
        assert r["params_match"] == "True"
        assert abs(int(r["macs"]) / int(r["paper_macs"]) - 1) <= 0.005
        assert int(r["macs_fvcore"]) >= int(r["macs"])
