"""Exact equivariance and naive-vs-rearranged equivalence for every implementation."""

import pytest
import torch
import torch.nn.functional as F
from conftest import GROUPS, IMPLS, impl_id, random_input, randomize_

from sepgconv import GConv2d, get_group

TOL = dict(rtol=1e-10, atol=1e-10)
LAYERS = ["lifting", "group"]


def _layer(group, layer_kind, vi, k, *, stride=1, padding="same", seed=0):
    gen = torch.Generator().manual_seed(seed)
    c_in, c_out = (int(v) for v in torch.randint(1, 5, (2,), generator=gen))
    torch.manual_seed(seed)
    layer = GConv2d(
        c_in,
        c_out,
        k,
        group=group,
        lifting=layer_kind == "lifting",
        variant=vi[0],
        impl=vi[1],
        stride=stride,
        padding=padding,
        dtype=torch.float64,
    )
    return randomize_(layer)


def _element_cases():
    for g in GROUPS:
        for u in range(get_group(g).order):
            yield pytest.param(g, u, id=f"{g}-{get_group(g).element_name(u)}")


@pytest.mark.parametrize("k", [1, 3, 5])
@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("layer_kind", LAYERS)
@pytest.mark.parametrize(("group", "u"), list(_element_cases()))
def test_equivariant(group, u, layer_kind, vi, k):
    layer = _layer(group, layer_kind, vi, k, seed=k)
    grp = get_group(group)
    x = random_input(layer, size=9)
    torch.testing.assert_close(layer(grp.act(x, u)), grp.act(layer(x), u), **TOL)


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("layer_kind", LAYERS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_equivariant_stride2_centred_grid(group, layer_kind, vi, k):
    # (H + 2p - k) % stride == 0: the strided grid is centred, equivariance is exact.
    layer = _layer(group, layer_kind, vi, k, stride=2)
    assert (9 + 2 * layer.padding - k) % 2 == 0
    grp = get_group(group)
    x = random_input(layer, size=9)
    for u in range(grp.order):
        torch.testing.assert_close(layer(grp.act(x, u)), grp.act(layer(x), u), **TOL)


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_stride2_off_centre_grid_is_not_exact(vi):
    # The documented limit: H = 8, k = 3, p = 1, stride 2 samples an off-centre grid.
    layer = _layer("p4", "group", vi, 3, stride=2)
    x = random_input(layer, size=8)
    diff = (layer(get_group("p4").act(x, 1)) - get_group("p4").act(layer(x), 1)).abs().max()
    assert diff > 1e-3


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("k", [2, 4])
def test_even_kernels_are_equivariant_with_symmetric_padding(vi, k):
    layer = _layer("p4m", "group", vi, k, padding=1)
    grp = get_group("p4m")
    x = random_input(layer, size=7)
    for u in range(grp.order):
        torch.testing.assert_close(layer(grp.act(x, u)), grp.act(layer(x), u), **TOL)


def _separable_pairs():
    # every implementation this CPU runs, other than the naive reference
    for variant, impl in IMPLS:
        if impl != "naive":
            yield pytest.param(variant, impl, id=f"{variant}-{impl}")


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [1, 3, 4, 5])
@pytest.mark.parametrize("layer_kind", LAYERS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(("variant", "impl"), list(_separable_pairs()))
def test_naive_and_other_impls_agree_with_gradients(variant, impl, group, layer_kind, k, stride):
    torch.manual_seed(k)
    other = GConv2d(
        3,
        4,
        k,
        group=group,
        lifting=layer_kind == "lifting",
        variant=variant,
        impl=impl,
        stride=stride,
        padding=1,
        dtype=torch.float64,
    )
    randomize_(other)
    naive = GConv2d(**(other.config() | {"impl": "naive"}), dtype=torch.float64)
    naive.load_state_dict(other.state_dict())  # the same state_dict, unchanged

    x1 = random_input(other, size=10).requires_grad_()
    x2 = x1.detach().clone().requires_grad_()
    y1, y2 = other(x1), naive(x2)
    torch.testing.assert_close(y1, y2, **TOL)
    grad_out = torch.randn_like(y1)
    (y1 * grad_out).sum().backward()
    (y2 * grad_out).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    for (name, p1), (_, p2) in zip(other.named_parameters(), naive.named_parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, **TOL, msg=f"grad of {name}")


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("layer_kind", LAYERS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(("k", "stride", "padding"), [(1, 1, 0), (3, 1, 1), (3, 2, 0), (4, 1, 2)])
def test_expand_filter_plus_dense_conv_reproduces_forward(
    vi, layer_kind, group, k, stride, padding
):
    layer = _layer(group, layer_kind, vi, k, stride=stride, padding=padding)
    x = random_input(layer, size=9)
    f = layer.expand_filter()
    n, go, c, gi = f.shape[:4]
    assert f.shape == (layer.out_channels, layer.g_out, layer.in_channels, layer.g_in, k, k)
    y = F.conv2d(
        x.reshape(x.shape[0], c * gi, 9, 9),
        f.reshape(n * go, c * gi, k, k),
        stride=stride,
        padding=padding,
    )
    y = y.view(x.shape[0], n, go, *y.shape[-2:]) + layer.bias.view(1, -1, 1, 1, 1)
    torch.testing.assert_close(layer(x), y, **TOL)


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("layer_kind", LAYERS)
@pytest.mark.parametrize("group", GROUPS)
def test_gradcheck(vi, layer_kind, group):
    torch.manual_seed(0)
    layer = GConv2d(
        2,
        2,
        3,
        group=group,
        lifting=layer_kind == "lifting",
        variant=vi[0],
        impl=vi[1],
        padding=1,
        dtype=torch.float64,
    )
    randomize_(layer)
    x = random_input(layer, batch=1, size=3).requires_grad_()
    params = tuple(layer.parameters())

    def fn(inp, *ps):
        return torch.func.functional_call(
            layer, dict(zip(dict(layer.named_parameters()), ps, strict=True)), (inp,)
        )

    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-7, fast_mode=True)


def test_full_expanded_filter_matches_definition():
    # F̃[n, h, c, g] = T_h(F[n, c, h⁻¹g]), spelled out with the group's own tables.
    grp = get_group("p4m")
    layer = GConv2d(2, 3, 3, group="p4m", dtype=torch.float64)
    f, e = layer.weight, layer.expand_filter()
    for h in range(grp.order):
        for g in range(grp.order):
            src = grp.compose(grp.inverse[h], g)
            torch.testing.assert_close(e[:, h, :, g], grp.transform(f[:, :, src], h), **TOL)
