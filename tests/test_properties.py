"""Property tests: equivariance and naive/rearranged agreement on random configurations."""

import torch
from conftest import IMPLS, randomize_
from hypothesis import given, settings
from hypothesis import strategies as st

from sepgconv import GConv2d, get_group


@st.composite
def configs(draw):
    group = draw(st.sampled_from(["p4", "p4m"]))
    variant, impl = draw(st.sampled_from(IMPLS))
    k = draw(st.integers(1, 6))
    stride = draw(st.integers(1, 3))
    padding = draw(st.integers(0, 3))
    # a square input whose strided output grid is centred: (H + 2p - k) % stride == 0
    n_out = draw(st.integers(1, 4))
    size = (n_out - 1) * stride + k - 2 * padding
    if size < 1:
        size += stride * ((1 - size + stride - 1) // stride)
    return (
        dict(
            group=group,
            variant=variant,
            impl=impl,
            kernel_size=k,
            stride=stride,
            padding=padding,
            lifting=draw(st.booleans()),
            in_channels=draw(st.integers(1, 4)),
            out_channels=draw(st.integers(1, 4)),
            bias=draw(st.booleans()),
        ),
        size,
        draw(st.integers(0, 7)),
        draw(st.integers(0, 2**31 - 1)),
    )


@settings(max_examples=60, deadline=None)
@given(configs())
def test_random_layers_are_equivariant_and_agree_with_naive(config):
    kwargs, size, u, seed = config
    torch.manual_seed(seed)
    layer = randomize_(GConv2d(**kwargs, dtype=torch.float64))
    grp = get_group(kwargs["group"])
    u %= grp.order
    shape = (2, kwargs["in_channels"]) + (() if kwargs["lifting"] else (grp.order,))
    x = torch.randn(*shape, size, size, dtype=torch.float64)
    y = layer(x)
    torch.testing.assert_close(layer(grp.act(x, u)), grp.act(y, u), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(layer.to_impl("naive")(x), y, rtol=1e-10, atol=1e-10)
