"""gc/rearranged's two routes (``sepgconv.impls.GC_ROUTES``): the same maths, exactly.

``"conv"``: a 1×1 and a depthwise ``F.conv2d`` in the layer's format (the CPU's
route). ``"gemm"``: X̃ as one matrix product written NHWC, then the depthwise
convolution on that NHWC map (the CUDA route; see ``GCGConv2dRearranged._conv_gemm``).
Both are forced here on the CPU, in both formats, for group and lifting layers,
strides 1 and 2, batch 1 (a size-1 batch axis has degenerate strides) and more;
each must match naive in float64, forward, input gradient and parameter
gradients, and stay exactly equivariant.
"""

from __future__ import annotations

import pytest
import torch
from conftest import randomize_

from sepgconv import GConv2d, impls, to_memory_format

TOL = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture
def route(request, monkeypatch):
    """Force the route to ``request.param``."""
    monkeypatch.setattr(impls, "GC_ROUTE", request.param)
    return request.param


def _pair(group, lifting, fmt, stride, k=3, c_in=3, c_out=4, bias=True):
    torch.manual_seed(0)
    kw = dict(group=group, lifting=lifting, stride=stride, padding=k // 2, bias=bias,
              memory_format=fmt, dtype=torch.float64)  # fmt: skip
    layer = randomize_(GConv2d(c_in, c_out, k, variant="gc", impl="rearranged", **kw))
    return layer, layer.to_impl("naive")


def _input(layer, batch, fmt, size=7):
    shape = (batch, layer.in_channels) + (() if layer.lifting else (layer.g_in,)) + (size, size)
    return to_memory_format(torch.randn(*shape, dtype=torch.float64), fmt)


@pytest.mark.parametrize("route", ["conv", "gemm"], indirect=True)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("lifting", [False, True], ids=["group", "lifting"])
@pytest.mark.parametrize("stride,batch", [(1, 2), (2, 3), (1, 1)])
def test_route_matches_naive_forward_and_backward(route, fmt, group, lifting, stride, batch):
    layer, naive = _pair(group, lifting, fmt, stride)
    x = _input(layer, batch, fmt).requires_grad_(True)
    x2 = x.detach().clone().requires_grad_(True)
    y, y_ref = layer(x), naive(x2)
    torch.testing.assert_close(y, y_ref, **TOL)
    assert y.is_contiguous() if fmt == "contiguous" else y.stride() == y_ref.stride()
    g = torch.randn_like(y)
    y.backward(g)
    y_ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, **TOL)
    for name in ("kernel", "pointwise", "bias"):
        torch.testing.assert_close(getattr(layer, name).grad, getattr(naive, name).grad, **TOL)


@pytest.mark.parametrize("route", ["conv", "gemm"], indirect=True)
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
def test_route_is_exactly_equivariant(route, fmt):
    from sepgconv import get_group

    layer, _ = _pair("p4m", False, fmt, 1)
    layer.eval()
    x = _input(layer, 2, fmt, size=8)
    group = get_group("p4m")
    for u in range(group.order):
        with torch.no_grad():
            lhs = layer(group.act(x, u))
            rhs = group.act(layer(x), u)
        torch.testing.assert_close(lhs, rhs, **TOL)


def test_the_route_override_is_consulted(monkeypatch):
    """Each route runs its own code: forcing "gemm" calls the GEMM route, "conv" does not
    (an override that nothing read would pass the tests above)."""
    layer, _ = _pair("p4", False, "contiguous", 1)
    x = _input(layer, 2, "contiguous")
    calls = []
    real = impls.GCGConv2dRearranged._conv_gemm

    def spy(self, *args):
        calls.append("gemm")
        return real(self, *args)

    monkeypatch.setattr(impls.GCGConv2dRearranged, "_conv_gemm", spy)
    for forced in ("gemm", "conv", None):
        monkeypatch.setattr(impls, "GC_ROUTE", forced)
        layer(x)
    assert calls == ["gemm"]  # None on the CPU: the conv route


@pytest.mark.parametrize(
    "device,dtype,fmt,tf32,expected",
    [
        ("cpu", torch.float32, "contiguous", True, "conv"),
        ("cpu", torch.bfloat16, "contiguous", False, "conv"),
        ("cuda", torch.float32, "contiguous", False, "conv"),  # GEMM would be on CUDA cores
        ("cuda", torch.float32, "contiguous", True, "gemm"),
        ("cuda", torch.bfloat16, "contiguous", False, "gemm"),
        ("cuda", torch.float16, "contiguous", False, "gemm"),
        ("cuda", torch.float64, "contiguous", True, "conv"),
        ("cuda", torch.bfloat16, "channels_last", False, "conv"),  # cuDNN is NHWC already
    ],
)
def test_the_route_rule(device, dtype, fmt, tf32, expected):
    assert impls.gc_route(device, dtype, fmt, tf32) == expected
