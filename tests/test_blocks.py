import pytest
import torch
from conftest import GROUPS

from sepgconv import GroupBatchNorm, GroupMaxPool2d, GroupPool, get_group

TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("reduce", ["max", "mean"])
@pytest.mark.parametrize("group", GROUPS)
def test_group_pool_is_invariant_along_g(group, reduce):
    grp = get_group(group)
    x = torch.randn(2, 3, grp.order, 6, 6, dtype=torch.float64)
    pool = GroupPool(reduce)
    y = pool(x)
    assert y.shape == (2, 3, 6, 6)
    for u in range(grp.order):
        # pooling over G turns the group action into the plain image action
        torch.testing.assert_close(pool(grp.act(x, u)), grp.transform(y, u), **TOL)
    expected = x.amax(2) if reduce == "max" else x.mean(2)
    torch.testing.assert_close(y, expected)


@pytest.mark.parametrize("group", GROUPS)
def test_spatial_max_pool_is_equivariant(group):
    grp = get_group(group)
    x = torch.randn(2, 3, grp.order, 8, 8, dtype=torch.float64)
    pool = GroupMaxPool2d(2)
    assert pool(x).shape == (2, 3, grp.order, 4, 4)
    for u in range(grp.order):
        torch.testing.assert_close(pool(grp.act(x, u)), grp.act(pool(x), u), **TOL)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("group", GROUPS)
def test_group_batch_norm_shares_statistics_over_g(group, training):
    grp = get_group(group)
    bn = GroupBatchNorm(3).double().train(training)
    with torch.no_grad():
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2)
        bn.weight.normal_()
        bn.bias.normal_()
    x = torch.randn(4, 3, grp.order, 5, 5, dtype=torch.float64) * 3 + 1
    y = bn(x)
    for u in range(grp.order):
        torch.testing.assert_close(bn(grp.act(x, u)), grp.act(y, u), **TOL)
    if training:
        # one mean per channel over (B, G, H, W): normalised output has zero mean per channel
        z = (y - bn.bias.view(1, -1, 1, 1, 1)) / bn.weight.view(1, -1, 1, 1, 1)
        torch.testing.assert_close(
            z.mean(dim=(0, 2, 3, 4)), torch.zeros(3, dtype=torch.float64), atol=1e-10, rtol=0
        )
    assert bn.running_mean.shape == (3,)


@pytest.mark.parametrize("block", [GroupPool(), GroupMaxPool2d(2), GroupBatchNorm(3)])
def test_blocks_refuse_non_group_maps(block):
    with pytest.raises(ValueError, match=r"group feature map \[B, C, G, H, W\]"):
        block(torch.randn(2, 3, 8, 8))


def test_group_pool_refuses_unknown_reduce():
    with pytest.raises(ValueError, match=r"valid choices: \['max', 'mean'\]"):
        GroupPool("sum")
