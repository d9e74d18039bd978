"""§3.4 formulas as code versus what the modules hold and what fvcore measures."""

import itertools

import pytest
import torch
from conftest import IMPLS, impl_id, random_input

from sepgconv import GConv2d, counting
from sepgconv.counting import LayerShape, macs_section34, params_formula

GRID = [
    # (group, lifting, c_in, c_out, k, stride, padding, size)
    ("p4", False, 3, 5, 3, 1, 1, 8),
    ("p4", True, 3, 4, 5, 1, 2, 9),
    ("p4m", False, 4, 2, 1, 1, 0, 7),
    ("p4m", True, 1, 6, 7, 1, 3, 10),
    ("p4", False, 2, 3, 7, 2, 0, 11),
    ("p4m", False, 3, 3, 5, 2, 2, 9),
    ("p4", False, 5, 2, 3, 2, 1, 8),
    ("p4m", True, 2, 5, 3, 2, 0, 9),
]


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("case", GRID, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("bias", [False, True])
def test_formula_equals_measured(vi, case, bias):
    group, lifting, c_in, c_out, k, stride, padding, size = case
    layer = GConv2d(
        c_in,
        c_out,
        k,
        group=group,
        lifting=lifting,
        variant=vi[0],
        impl=vi[1],
        stride=stride,
        padding=padding,
        bias=bias,
    )
    x = random_input(layer, batch=2, size=size, dtype=torch.float32)
    count = counting.measure_macs(layer, x)
    assert count.unsupported == {}
    assert isinstance(count.total, int)
    assert count.total == counting.layer_macs(layer, size, size, batch=2)
    assert counting.measure_params(layer) == counting.layer_params(layer)


@pytest.mark.parametrize(
    ("variant", "g_in"), list(itertools.product(["full", "g", "gc"], [1, 4, 8]))
)
def test_section34_table(variant, g_in):
    c_in, c_out, k, g_out, h, w = 3, 5, 3, 8, 7, 6
    p = {
        "full": c_in * g_in * k * k * c_out,
        "g": c_in * c_out * (g_in + k * k),
        "gc": c_out * (c_in * g_in + k * k),
    }[variant]
    m = {
        "full": c_in * g_in * k * k * w * h * c_out * g_out,
        "g": c_in * c_out * g_out * w * h * (g_in + k * k),
        "gc": c_out * g_out * w * h * (c_in * g_in + k * k),
    }[variant]
    assert params_formula(variant, c_in, c_out, g_in, k) == p
    assert params_formula(variant, c_in, c_out, g_in, k, bias=True) == p + c_out
    assert macs_section34(variant, c_in, c_out, g_in, g_out, k, h, w) == m


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_same_padding_stride1_is_the_section34_count(vi):
    layer = GConv2d(6, 7, 5, group="p4m", variant=vi[0], impl=vi[1], padding="same")
    impl = layer.executed_impl(12, 12).impl  # impl="auto": the one it runs at 12×12
    computed = vi[0] if impl != "naive" else "full"  # naive g/gc run the full conv
    section34 = macs_section34(computed, 6, 7, 8, 8, 5, 12, 12)
    if impl == "fused":  # its tiles recompute their halos' X̃: more, never less
        assert counting.layer_macs(layer, 12, 12) >= section34
    else:
        assert counting.layer_macs(layer, 12, 12) == section34


def test_reduction_factors_of_section34():
    c, g, k = 16, 8, 3
    full = macs_section34("full", c, c, g, g, k, 10, 10)
    assert macs_section34("g", c, c, g, g, k, 10, 10) / full == pytest.approx(1 / k**2 + 1 / g)
    assert macs_section34("gc", c, c, g, g, k, 10, 10) / full == pytest.approx(
        1 / k**2 + 1 / (c * g)
    )


def test_output_size_and_errors():
    assert LayerShape(1, 1, 1, 4, 3, 9, 8, stride=2, padding=1).h_out == 5
    assert LayerShape(1, 1, 1, 4, 3, 9, 8, stride=2, padding=1).w_out == 4
    with pytest.raises(ValueError, match="smaller than kernel size 5"):
        counting.output_size(3, 5)
    with pytest.raises(ValueError, match="unknown variant"):
        params_formula("x", 1, 1, 1, 1)


def test_intermediate_bytes_follow_the_memory_story():
    # rearranged g materialises X̃ with C_out·G_out·C_in channels (twice: + transposed copy)
    # one block at a time (here one block: the whole X̃ is under the block floor),
    # rearranged gc one with C_out·G_out channels; naive ones only the filter F̃.
    kw = dict(group="p4", padding=1)
    g = GConv2d(4, 5, 3, variant="g", impl="rearranged", **kw)
    gc = GConv2d(4, 5, 3, variant="gc", impl="rearranged", **kw)
    naive = GConv2d(4, 5, 3, variant="full", **kw)
    assert counting.intermediate_bytes(g, 8, 8, 2)["activations"] == 2 * 2 * 5 * 4 * 4 * 64 * 4
    assert counting.intermediate_bytes(gc, 8, 8, 2)["activations"] == 2 * 5 * 4 * 64 * 4
    assert counting.intermediate_bytes(naive, 8, 8, 2) == {
        "filter": 5 * 4 * 4 * 4 * 9 * 4,
        "activations": 0,
    }
    half = counting.intermediate_bytes(gc, 8, 8, 2, itemsize=2)
    assert half["activations"] == 2 * 5 * 4 * 64 * 2


def test_op_handle_none_removes_a_builtin_count():
    from sepgconv import GroupBatchNorm

    model = torch.nn.Sequential(GConv2d(2, 3, 3, padding=1, bias=False), GroupBatchNorm(3))
    x = torch.randn(1, 2, 4, 6, 6)
    conv_only = counting.layer_macs(model[0], 6, 6)
    assert counting.measure_macs(model, x).total > conv_only  # fvcore counts batch norm
    assert counting.measure_macs(model, x, op_handles={"aten::batch_norm": None}).total == conv_only
