"""Filter expansion F̃ = T_h(F[h⁻¹g]) by one index_select written in the conv's memory order."""

import pytest
import torch
from conftest import GROUPS, IMPLS, impl_id, random_input, randomize_
from torch.profiler import ProfilerActivity, profile

from sepgconv import GConv2d, get_group, layout

FORMATS = ["contiguous", "channels_last"]
NAIVE = [vi for vi in IMPLS if vi[1] == "naive"]


def _layer(variant="full", group="p4", lifting=False, fmt="contiguous", k=3, c_in=3):
    torch.manual_seed(k)
    layer = GConv2d(
        c_in, 4, k, group=group, lifting=lifting, variant=variant, padding=k // 2,
        memory_format=fmt, dtype=torch.float64,
    )  # fmt: skip
    return randomize_(layer)


def _storage_order(fmt):
    """The dims of F̃ [N, h, c, g, ky, kx] in the order the expansion stores them."""
    return (0, 1, 2, 3, 4, 5) if fmt == "contiguous" else (0, 1, 4, 5, 2, 3)


def _previous_expansion(layer, f):
    """The expansion before the flat index: gather per (n, c), then a permuting copy."""
    n, c, gi, k, _ = f.shape
    e = f.reshape(n * c, gi * k * k).index_select(1, layer._expand_index)
    e = e.view(n, c, layer.g_out, gi, k, k)
    return e.permute(0, 2, 1, 3, 4, 5).reshape(n, layer.g_out, c, gi, k, k)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_expanded_filter_matches_the_definition(fmt, lifting, group, k):
    # F̃[n, h, c, g] = T_h(F[n, c, h⁻¹g]), with the group's own tables
    grp = get_group(group)
    layer = _layer("full", group, lifting, fmt, k)
    f, e = layer.weight, layer.expand_filter()
    assert e.shape == (4, grp.order, 3, layer.g_in, k, k)
    for h in range(grp.order):
        for g in range(layer.g_in):
            src = grp.compose(grp.inverse[h], g) if layer.g_in > 1 else 0
            torch.testing.assert_close(e[:, h, :, g], grp.transform(f[:, :, src], h))


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("vi", NAIVE, ids=impl_id)
@pytest.mark.parametrize("group", GROUPS)
def test_conv_weight_is_a_view_in_the_layers_format(fmt, vi, group):
    layer = _layer(vi[0], group, False, fmt)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        (weight,) = layer._build_weights()
    torch.testing.assert_close(weight, layer.expand_filter().reshape(weight.shape))
    assert weight.is_contiguous(memory_format=layout.torch_format(fmt))
    names = [e.name for e in prof.events()]
    assert names.count("aten::index_select") == 1
    assert "aten::copy_" not in names  # no permuting copy after the gather


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
def test_gradcheck_of_the_expansion(fmt, lifting, group):
    layer = _layer("full", group, lifting, fmt, k=3, c_in=2)
    f = layer.weight.detach().clone().requires_grad_()

    def expand(t):
        return layout.expand(t, layer._expansion, layer.g_out, fmt)

    assert torch.autograd.gradcheck(expand, (f,), eps=1e-6, atol=1e-7)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("vi", NAIVE, ids=impl_id)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
def test_forward_and_gradients_match_the_previous_expansion(fmt, vi, group, lifting):
    layer = _layer(vi[0], group, lifting, fmt, k=3)
    grad_out = torch.randn(layer.expand_filter().shape, dtype=torch.float64)
    new = layer.expand_filter()
    old = _previous_expansion(layer, layer.filter())
    torch.testing.assert_close(new, old, rtol=0, atol=0)
    params = list(layer.parameters())[:-1]  # the bias is not in F̃
    g_new = torch.autograd.grad((new * grad_out).sum(), params)
    g_old = torch.autograd.grad((old * grad_out).sum(), params)
    for a, b in zip(g_new, g_old, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("vi", NAIVE, ids=impl_id)
def test_training_step_compiles_with_fullgraph(fmt, vi):
    layer = _layer(vi[0], "p4m", False, fmt).float()
    x = random_input(layer, dtype=torch.float32).requires_grad_()
    params = list(layer.parameters())
    expected = layer(x)
    g_expected = torch.autograd.grad(expected.square().sum(), params)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)  # traces the backward
    y = compiled(x)
    torch.testing.assert_close(y, expected)
    for a, b in zip(torch.autograd.grad(y.square().sum(), params), g_expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_expansion_index_orders():
    # one output channel, C_in = 2, G_in = 4, k = 1 (p = 0): contiguous writes (h, c, g),
    # channels_last writes (h, p, c, g) — the same here, k = 1; k = 2 tells them apart
    layer = _layer("full", "p4", False, "contiguous", k=2, c_in=2)
    e_idx = layer._expand_index.view(4, 16)
    contiguous = layout.expansion_index(e_idx, 2, 4, 2, "contiguous").view(4, 2, 4, 4)
    channels_last = layout.expansion_index(e_idx, 2, 4, 2, "channels_last").view(4, 4, 2, 4)
    torch.testing.assert_close(contiguous.permute(0, 3, 1, 2), channels_last)
    assert sorted(contiguous[0].reshape(-1).tolist()) == list(range(32))  # a permutation


# ---------------------------------------------------------------------- #
# the backward: a gather and a sum over h, no index_add (no atomics on a GPU)
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
def test_the_inverse_index_inverts_every_output_block(fmt, lifting, group):
    layer = _layer("full", group, lifting, fmt, k=3, c_in=2)
    index, g_out = layer._expansion, layer.g_out
    m = index.numel() // g_out
    inv = layout.inverse_expansion_index(index, g_out)
    pos = torch.arange(index.numel())
    # inv[h·L + j] lies in block h and points at F's entry j
    assert torch.equal(inv // m, pos // m)
    assert torch.equal(index[inv], pos % m)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
def test_the_backward_gathers_and_sums_without_index_add(fmt, lifting, group):
    layer = _layer("full", group, lifting, fmt, k=3).float()
    x = random_input(layer, dtype=torch.float32)
    layer(x).sum()  # the inverse index is built (and kept) on the first call
    y = layer(x)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y.square().sum().backward()
    names = [e.name for e in prof.events()]
    assert not any(n.startswith("aten::index_add") for n in names)
    assert "aten::index_select" in names  # the gather by the inverse index


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
def test_the_gradient_is_the_index_add_one_with_or_without_a_kept_inverse(fmt, group, lifting):
    layer = _layer("full", group, lifting, fmt, k=3)
    f = layer.weight.detach().clone().requires_grad_()
    index, g_out = layer._expansion, layer.g_out
    grad_out = torch.randn(layer.expand_filter().shape, dtype=torch.float64)
    n = f.shape[0]
    reference = layout.expand(f.detach(), index, g_out, fmt)  # F̃ in its storage order
    flat = f.reshape(n, -1).index_select(1, index)  # the old expansion: backward index_add
    g_flat = torch.empty_like(reference).copy_(grad_out)  # dF̃ laid out as F̃ is stored
    g_flat = g_flat.permute(*_storage_order(fmt)).reshape(n, -1)
    (g_ref,) = torch.autograd.grad((flat * g_flat).sum(), f)
    inv = layout.inverse_expansion_index(index, g_out)
    for inverse in (None, inv):
        e = layout.expand(f, index, g_out, fmt, inverse)
        assert torch.equal(e, layout.expand(f.detach(), index, g_out, fmt))  # bitwise
        (g,) = torch.autograd.grad((e * grad_out).sum(), f)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-12)
        (g_again,) = torch.autograd.grad((layout.expand(f, index, g_out, fmt, inverse)
                                          * grad_out).sum(), f)  # fmt: skip
        assert torch.equal(g, g_again)  # deterministic


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("group", GROUPS)
def test_gradgradcheck_of_the_expansion(fmt, group):
    layer = _layer("full", group, False, fmt, k=3, c_in=2)
    f = layer.weight.detach().clone().requires_grad_()

    def expand(t):
        return layout.expand(t, layer._expansion, layer.g_out, fmt)

    assert torch.autograd.gradgradcheck(expand, (f,), eps=1e-6, atol=1e-7)
