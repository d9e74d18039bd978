"""g/rearranged in blocks: equal to naive for every blocking, and its memory is bounded."""

import pytest
import torch
from conftest import randomize_

from sepgconv import GConv2d, impls
from sepgconv.counting import LayerShape

TOL = dict(rtol=1e-10, atol=1e-10)


def _pair(group, fmt, bias=True, lifting=False, stride=1):
    torch.manual_seed(0)
    kw = dict(group=group, lifting=lifting, padding=1, stride=stride, bias=bias,
              memory_format=fmt, dtype=torch.float64)  # fmt: skip
    naive = randomize_(GConv2d(5, 3, 3, variant="g", impl="naive", **kw))
    rearr = GConv2d(5, 3, 3, variant="g", impl="rearranged", **kw)
    rearr.load_state_dict(naive.state_dict())
    return naive, rearr


def _run(layer, x):
    x = x.detach().clone().requires_grad_(True)
    y = layer(x)
    y.backward(torch.cos(torch.arange(y.numel(), dtype=y.dtype)).view_as(y))
    return y, x.grad, [p.grad for p in layer.parameters()]


@pytest.mark.parametrize("blocks", [(1, 1, 2), (2, 2, 5), (1, 3, 1), (3, 1, 5)])
@pytest.mark.parametrize("fmt", ["contiguous", "channels_last"])
@pytest.mark.parametrize(
    "group,lifting,stride", [("p4", False, 1), ("p4m", False, 2), ("p4m", True, 1)]
)
def test_every_blocking_equals_naive(monkeypatch, blocks, fmt, group, lifting, stride):
    monkeypatch.setattr(impls, "g_rearranged_blocks", lambda s: blocks)
    naive, rearr = _pair(group, fmt, lifting=lifting, stride=stride)
    shape = (3, 5, 7, 7) if lifting else (3, 5, naive.g_in, 7, 7)
    x = torch.randn(*shape, dtype=torch.float64)
    y0, dx0, dp0 = _run(naive, x)
    y1, dx1, dp1 = _run(rearr, x)
    torch.testing.assert_close(y1, y0, **TOL)
    torch.testing.assert_close(dx1, dx0, **TOL)
    for a, b in zip(dp1, dp0, strict=True):
        torch.testing.assert_close(a, b, **TOL)
    with torch.no_grad():
        torch.testing.assert_close(rearr(x), y0, **TOL)


def test_blocks_bound_x_tilde_and_cover_the_shape():
    for s in [
        LayerShape(64, 64, 4, 4, 3, 32, 32, padding=1, batch=8),
        LayerShape(64, 64, 8, 8, 3, 32, 32, padding=1, batch=8),
        LayerShape(256, 8, 4, 4, 5, 64, 64, padding=2, batch=1),
        LayerShape(3, 4, 1, 4, 3, 8, 8, padding=1, batch=2),
    ]:
        bb, nb, cb = impls.g_rearranged_blocks(s)
        assert 1 <= bb <= s.batch and 1 <= nb <= s.c_out and 1 <= cb <= s.c_in
        block = bb * nb * s.g_out * cb * s.h_in * s.w_in
        ftilde = s.c_out * s.g_out * s.c_in * s.g_in * s.k**2
        out = s.batch * s.c_out * s.g_out * s.h_out * s.w_out
        assert block <= max((ftilde + out) // 4, impls.G_BLOCK_FLOOR, s.g_out * s.h_in * s.w_in)
        assert impls.GGConv2dRearranged.intermediate_elements(s)["activations"] == 2 * block
    small = LayerShape(3, 4, 1, 4, 3, 8, 8, padding=1, batch=2)  # X̃ under the floor: one block
    assert impls.g_rearranged_blocks(small) == (2, 4, 3)
    wide = LayerShape(256, 8, 4, 4, 5, 64, 64, padding=2, batch=1)  # C_in split, partial sums
    assert impls.g_rearranged_blocks(wide)[:2] == (1, 1)


@pytest.mark.parametrize("pass_", ["fwd", "fwdbwd"])
def test_measured_peak_is_within_twice_full(pass_):
    from bench.measure.memory import peak_memory
    from bench.measure.timing import make_step

    peaks = {}
    for variant, impl in (("full", "naive"), ("g", "rearranged")):
        torch.manual_seed(0)
        layer = GConv2d(16, 16, 3, group="p4", variant=variant, impl=impl, padding=1)
        x = torch.randn(2, 16, 4, 16, 16, requires_grad=pass_ == "fwdbwd")
        step = make_step(layer, x, pass_)
        step()
        peaks[variant] = peak_memory(step, "cpu").peak_mem_bytes
    # X̃ whole would be 16x the output (2·16·4·16·16·16 floats = 2 MiB, 4 MiB with its copy)
    assert peaks["g"] <= 2 * peaks["full"], peaks
