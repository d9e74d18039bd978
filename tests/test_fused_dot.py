"""The tl.dot g forward (``sepgconv.fused.kernels_dot``), in Triton's interpreter.

The path is chosen by ``launch.forward_path`` (bf16/fp16, or fp32 with TF32, and
``C_in·G_in ≥ 16``); ``SEPGCONV_FUSED_G_FORWARD=dot`` forces it, so the interpreter
runs it in fp64 and fp32 ("ieee") against naive. The backward is the staged path's,
unchanged: the gradients are checked through the same layer call. Shapes are tiny;
the interpreter is a correctness tool, never timed.
"""

import pytest
import torch
import torch.nn.functional as F
from conftest import (
    GROUPS,
    assert_same_forward_and_gradients,
    close_scaled,
    random_input,
    randomize_,
)

from sepgconv import GConv2d, get_group
from sepgconv.fused import _runtime

pytestmark = pytest.mark.skipif(not _runtime.triton_installed(), reason="impl='fused' needs Triton")
TOL64 = dict(rtol=1e-10, atol=1e-10)
HALF_ULP = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8}


@pytest.fixture
def launch():
    from sepgconv.fused import launch

    return launch


@pytest.fixture
def dot(monkeypatch, launch):
    """The interpreter on, the dot path forced, and every dot-path call counted."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(launch.G_FORWARD_ENV, "dot")
    calls = []
    real = launch._forward_dot

    def counted(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(launch, "_forward_dot", counted)
    return calls


def _pair(group, lifting, k, *, stride=1, padding=None, bias=True, c_in=2, c_out=3,
          dtype=torch.float64):  # fmt: skip
    padding = k // 2 if padding is None else padding
    fused = GConv2d(
        c_in, c_out, k, group=group, lifting=lifting, variant="g", impl="fused",
        stride=stride, padding=padding, bias=bias, dtype=dtype,
    )  # fmt: skip
    randomize_(fused)
    naive = GConv2d(**(fused.config() | {"impl": "naive"}), dtype=dtype)
    naive.load_state_dict(fused.state_dict())
    return fused, naive


# ---------------------------------------------------------------------- #
# the choice of path (no kernel runs)
# ---------------------------------------------------------------------- #
def test_forward_path_rule(monkeypatch, launch):
    monkeypatch.delenv(launch.G_FORWARD_ENV, raising=False)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    path = launch.forward_path
    for dtype in (torch.float16, torch.bfloat16):
        assert path(False, dtype, cpu, 16) == "g_dot"
        assert path(False, dtype, cuda, 64) == "g_dot"
        assert path(False, dtype, cuda, 15) == "fwd"  # too short a contraction for tl.dot
        assert path(True, dtype, cuda, 64) == "fwd"  # gc: always the staged kernel
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert path(False, torch.float32, cuda, 32) == "g_dot"  # TF32, as cuDNN
    assert path(False, torch.float32, cpu, 32) == "fwd"  # ieee fp32: CUDA cores
    assert path(False, torch.float64, cuda, 32) == "fwd"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert path(False, torch.float32, cuda, 32) == "fwd"  # strict fp32
    monkeypatch.setenv(launch.G_FORWARD_ENV, "dot")
    assert path(False, torch.float64, cpu, 4) == "g_dot"
    assert path(True, torch.float32, cpu, 64) == "fwd"  # the override is for g only
    monkeypatch.setenv(launch.G_FORWARD_ENV, "staged")
    assert path(False, torch.bfloat16, cuda, 64) == "fwd"
    monkeypatch.setenv(launch.G_FORWARD_ENV, "tensor")
    with pytest.raises(ValueError, match="SEPGCONV_FUSED_G_FORWARD"):
        path(False, torch.float32, cpu, 64)


def test_shipped_configurations_keep_the_wide_tiles(launch):
    configs = launch._KERNELS["g_dot"][1]
    assert all(c.kwargs["BLOCK_J"] >= 16 for c in configs)  # tl.dot's K dimension
    # no narrowing at large k (no halo; the taps are a loop): both tiles at k = 7
    assert launch.shipped(configs, 256, 7) == configs
    assert launch.shipped(configs, 16, 3) == configs[:1]  # no 64-channel block for NH = 16


# ---------------------------------------------------------------------- #
# dot path == naive, forward and gradients
# ---------------------------------------------------------------------- #
# (group, lifting, k, stride, bias, c_in, c_out, size, batch): p4/p4m, lifting/group,
# k 1/3/5, stride 1/2, odd and even map sizes, partial pixel, channel and (c, g) blocks
CASES = [
    ("p4", True, 3, 1, True, 3, 5, 7, 1),
    ("p4m", True, 5, 2, False, 2, 3, 9, 3),
    ("p4", False, 1, 1, True, 5, 3, 6, 3),
    ("p4", False, 3, 2, True, 3, 5, 9, 1),
    ("p4m", False, 3, 1, True, 3, 3, 7, 3),
    ("p4m", False, 5, 1, False, 2, 2, 5, 1),
    ("p4m", False, 1, 2, True, 2, 3, 7, 1),
]
SLOW = {("p4m", True, 5, 2, False, 2, 3, 9, 3)}  # 4 s in the interpreter


def _case(c):
    group, lifting, k, stride, bias, c_in, c_out, size, batch = c
    name = f"{group}-{'lift' if lifting else 'group'}-k{k}-s{stride}-c{c_in}x{c_out}"
    marks = [pytest.mark.slow] if c in SLOW else []
    return pytest.param(c, id=f"{name}-{size}px-b{batch}", marks=marks)


@pytest.mark.parametrize("case", [_case(c) for c in CASES])
def test_matches_naive_float64(case, dot, monkeypatch, launch):
    group, lifting, k, stride, bias, c_in, c_out, size, batch = case
    # 16-wide channel blocks: several NH and (c, g) blocks, partial ones included
    monkeypatch.setitem(launch.INTERPRETER_META, "BLOCK_NH", 16)
    fused, naive = _pair(group, lifting, k, stride=stride, bias=bias, c_in=c_in, c_out=c_out)
    x = random_input(fused, batch=batch, size=size)
    assert_same_forward_and_gradients(fused, naive, x, TOL64)
    assert dot, "the dot path did not run"


def test_padding_zero_and_no_channel_block_multiple(dot):
    fused, naive = _pair("p4", False, 3, padding=0, c_in=1, c_out=2)  # C_in·G_in = 4 < 16
    x = random_input(fused, batch=2, size=8)
    close_scaled(fused(x), naive(x), **TOL64)
    assert dot


def test_float32_ieee_within_tolerance(dot):
    fused, naive = _pair("p4", False, 3, c_in=5, c_out=3, dtype=torch.float32)
    x = random_input(fused, batch=2, size=8, dtype=torch.float32)
    assert_same_forward_and_gradients(fused, naive, x, dict(rtol=1e-5, atol=1e-5))
    assert dot


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("lifting", [False, True], ids=["group", "lift"])
def test_half_precision_takes_the_dot_path_and_rounds_once_per_operand(
    dtype, lifting, monkeypatch, launch
):
    """bf16/fp16 take the dot path by the rule (no override). F̃ = T_h(K)·w̃ is rounded
    to the input dtype in registers, as the naive path's F̃ is, then fp32 accumulation
    and one rounding at the store: the output is within half an ulp (of the largest
    value) of an fp32 conv with the rounded F̃ and the same inputs.

    bf16: Triton 3.9's interpreter rounds fp32 → bf16 toward zero (the GPU, to nearest:
    checked on a 1,024-value cast), so there each F̃ term may be off by one ulp
    (≤ 2⁻⁷ relative) and the stored output by one ulp: the bound is elementwise,
    ``2⁻⁷·(|ref| + Σ|F̃|·|x|)``."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv(launch.G_FORWARD_ENV, raising=False)
    calls = []
    real = launch._forward_dot
    monkeypatch.setattr(launch, "_forward_dot", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    c_in = 16 if lifting else 4  # C_in·G_in = 16: the rule's threshold
    fused, _ = _pair("p4", lifting, 3, c_in=c_in, c_out=3, bias=False, dtype=torch.float32)
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(p.to(dtype).float())  # the reference sees exactly the rounded values
    f32 = fused.expand_filter().detach()  # [C_out, G_out, C_in, G_in, k, k]
    f_rounded = f32.reshape(f32.shape[0] * f32.shape[1], -1, 3, 3).to(dtype).float()
    x = random_input(fused, batch=2, size=7, dtype=torch.float32).to(dtype)
    y = fused.to(dtype)(x)
    assert y.dtype == dtype and calls
    ref = F.conv2d(x.float().reshape(2, -1, 7, 7), f_rounded, padding=1).reshape(y.shape)
    err = (y.float() - ref).abs()
    if dtype == torch.float16:
        bound = 1.05 * HALF_ULP[dtype] * ref.abs().max().item()  # 5 %: fp32 summation order
        assert err.max().item() <= bound, f"{err.max().item():.3g} > {bound:.3g}"
    else:
        flat = x.float().reshape(2, -1, 7, 7).abs()
        terms = F.conv2d(flat, f_rounded.abs(), padding=1).reshape(y.shape)
        bound = 1.05 * 2.0**-7 * (ref.abs() + terms) + 1e-6
        assert (err <= bound).all(), f"{(err - bound).max().item():.3g} over the bound"
        assert err.max().item() < 0.05 * ref.abs().max().item()  # and not near it: a bug is O(1)


# ---------------------------------------------------------------------- #
# exact equivariance on the dot path
# ---------------------------------------------------------------------- #
def _elements():
    for g in GROUPS:
        for u in range(get_group(g).order):
            yield pytest.param(g, u, id=f"{g}-{get_group(g).element_name(u)}")


@pytest.mark.parametrize("lifting", [True, False], ids=["lift", "group"])
@pytest.mark.parametrize(("group", "u"), list(_elements()))
def test_equivariant_for_every_element(group, u, lifting, dot):
    layer, _ = _pair(group, lifting, 3, c_in=2, c_out=2)
    grp = get_group(group)
    x = random_input(layer, batch=1, size=7)
    torch.testing.assert_close(layer(grp.act(x, u)), grp.act(layer(x), u), **TOL64)
    assert dot


def test_equivariant_stride2_centred_grid(dot):
    layer, _ = _pair("p4m", False, 5, stride=2, padding=2, c_in=1, c_out=2)
    grp = get_group("p4m")
    x = random_input(layer, batch=1, size=9)  # (9 + 4 - 5) % 2 == 0: centred grid
    y = layer(x)
    for u in (1, 5):  # a rotation and a mirror
        torch.testing.assert_close(layer(grp.act(x, u)), grp.act(y, u), **TOL64)
    assert dot


# ---------------------------------------------------------------------- #
# MAC accounting follows the path
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("forced", ["dot", "staged"])
def test_macs_follow_the_path(forced, monkeypatch, launch):
    """The dot path executes the full GConv's MACs (a dense conv's count); the staged one
    the g count. ``counting.layer_macs`` (the sweep's formula column) and the fvcore
    handle (its measured column) agree on both."""
    pytest.importorskip("fvcore")
    from sepgconv import counting
    from sepgconv.fused import FVCORE_HANDLES, tiling

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setenv(launch.G_FORWARD_ENV, forced)
    layer = GConv2d(3, 2, 3, group="p4", variant="g", impl="fused", stride=2, padding=1)
    x = random_input(layer, batch=2, size=9, dtype=torch.float32)
    shape = layer.layer_shape(9, 9, 2)
    want = counting.dense_macs(shape) if forced == "dot" else tiling.fused_macs(shape, "g")
    assert counting.dense_macs(shape) != tiling.fused_macs(shape, "g")
    assert counting.layer_macs(layer, 9, 9, 2) == want
    count = counting.measure_macs(layer, x, op_handles=FVCORE_HANDLES)
    assert count.unsupported == {} and count.total == want


def test_macs_for_follows_the_rule(monkeypatch, launch):
    from sepgconv import counting, get_implementation
    from sepgconv.fused import tiling

    monkeypatch.delenv(launch.G_FORWARD_ENV, raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    cls = get_implementation("g", "fused")
    layer = GConv2d(8, 4, 3, group="p4", variant="g", impl="naive", padding=1)
    shape = layer.layer_shape(16, 16, 2)  # C_in·G_in = 32
    dense, staged = counting.dense_macs(shape), tiling.fused_macs(shape, "g")
    assert cls.macs_for(shape, torch.bfloat16, torch.device("cpu")) == dense
    assert cls.macs_for(shape, torch.float32, torch.device("cuda")) == dense  # TF32
    assert cls.macs_for(shape, torch.float32, torch.device("cpu")) == staged
    assert cls.macs(shape) == staged  # shape alone: the staged kernel's
    gc = get_implementation("gc", "fused")
    assert gc.macs_for(shape, torch.bfloat16, "cuda") == tiling.fused_macs(shape, "gc")
