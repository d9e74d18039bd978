"""The fused kernels' tap loops: X̃ staged per program, taps as plain shifted loads.

The forward stages the X̃ halo tile of each item in its program's scratch slot (a
persistent grid bounds the slots) and reads the k² taps back as shifted loads; the
weight-gradient kernels read dY shifted over the halo instead of gathering it. These
tests cover what the older cases in ``test_fused.py`` do not reach: partial tiles at
the right and bottom edges with several tiles per map, odd and non-square maps,
stride 2 with k = 1, 3, 5, any number of persistent programs (fewer, as many as, and
more than the items), the bound on the scratch, and, compiled for sm_90 without a
GPU, that the forward has no shuffles (no gather) and keeps its staging barriers.
Kernels run in Triton's interpreter (CPU, float64): correctness only, never timed.
"""

import inspect
import re

import pytest
import torch
from conftest import randomize_

from sepgconv import GConv2d
from sepgconv.fused import _runtime, tiling

pytestmark = pytest.mark.skipif(not _runtime.triton_installed(), reason="impl='fused' needs Triton")
VARIANTS = ["g", "gc"]
TOL64 = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture
def small_blocks(monkeypatch):
    """Interpreter on; 16-channel blocks, 2 persistent programs, a 3-way reduction split."""
    from sepgconv.fused import launch

    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(launch, "INTERPRETER_META", {"BLOCK_NH": 16, "BLOCK_K": 16, "BLOCK_CG": 16})
    monkeypatch.setattr(launch, "INTERPRETER_PROGRAMS", 2)
    monkeypatch.setattr(launch, "INTERPRETER_SPLITS", 3)
    return launch


def _pair(variant, k, stride, padding, c_in=2, c_out=5, group="p4", lifting=False):
    fused = GConv2d(c_in, c_out, k, group=group, lifting=lifting, variant=variant,
                    impl="fused", stride=stride, padding=padding, dtype=torch.float64)  # fmt: skip
    randomize_(fused)
    naive = GConv2d(**(fused.config() | {"impl": "naive"}), dtype=torch.float64)
    naive.load_state_dict(fused.state_dict())
    return fused, naive


def _input(layer, batch, h, w):
    g = () if layer.lifting else (layer.g_in,)
    return torch.randn(batch, layer.in_channels, *g, h, w, dtype=torch.float64)


def _close(a, b, what):
    scale = max(1.0, b.abs().max().item())
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10 * scale, msg=what)


def _same_forward_and_gradients(fused, naive, x):
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    y1, y2 = fused(x1), naive(x2)
    _close(y1, y2, "y")
    dy = torch.randn_like(y1)
    (y1 * dy).sum().backward()
    (y2 * dy).sum().backward()
    _close(x1.grad, x2.grad, "dx")
    for (name, p1), (_, p2) in zip(fused.named_parameters(), naive.named_parameters(), strict=True):
        _close(p1.grad, p2.grad, f"grad of {name}")


# (k, stride, padding, H, W): several tiles with a partial last tile in each direction
EDGE_CASES = [
    (1, 1, 0, 10, 13),
    (1, 2, 0, 9, 13),
    (3, 1, 1, 13, 10),
    (3, 2, 1, 11, 19),
    pytest.param(5, 1, 2, 10, 13, marks=pytest.mark.slow),  # 3-7 s each
    pytest.param(5, 2, 2, 11, 15, marks=pytest.mark.slow),
    (3, 1, 0, 15, 12),  # 'valid' padding
]


@pytest.mark.parametrize(("k", "stride", "padding", "h", "w"), EDGE_CASES,
                         ids=lambda v: str(v))  # fmt: skip
@pytest.mark.parametrize("variant", VARIANTS)
def test_partial_tiles_odd_maps_and_strides(variant, k, stride, padding, h, w, small_blocks):
    fused, naive = _pair(variant, k, stride, padding)
    shape = fused.layer_shape(h, w, 2)
    pl = tiling.plan_for(shape, variant)
    assert pl.tiles_h > 1 or pl.tiles_w > 1, pl
    assert pl.h_out % pl.th or pl.w_out % pl.tw, f"no partial tile: {pl}"
    assert fused.out_channels * fused.g_out > 16  # two channel blocks, the second partial
    _same_forward_and_gradients(fused, naive, _input(fused, 2, h, w))


@pytest.mark.slow
@pytest.mark.parametrize("variant", VARIANTS)
def test_lifting_layer_k5_stride2(variant, small_blocks):
    fused, naive = _pair(variant, 5, 2, 2, c_in=3, c_out=3, group="p4m", lifting=True)
    _same_forward_and_gradients(fused, naive, _input(fused, 1, 15, 13))


@pytest.mark.parametrize("programs", [1, 3, 7, 1000])
@pytest.mark.parametrize("variant", VARIANTS)
def test_any_number_of_persistent_programs(variant, programs, small_blocks, monkeypatch):
    # items = batch 2 × tiles × 2 channel blocks: fewer programs loop, more are clipped
    monkeypatch.setattr(small_blocks, "INTERPRETER_PROGRAMS", programs)
    fused, naive = _pair(variant, 3, 1, 1)
    x = _input(fused, 2, 11, 9)
    with torch.no_grad():
        _close(fused(x), naive(x), f"{programs} programs")


def test_scratch_is_bounded_by_the_grid_not_the_shape(small_blocks, monkeypatch):
    launch = small_blocks
    seen = []
    real = launch.forward_scratch_elements

    def spy(halo_pix, block_nh, programs):
        seen.append((halo_pix, block_nh, programs, real(halo_pix, block_nh, programs)))
        return seen[-1][-1]

    monkeypatch.setattr(launch, "forward_scratch_elements", spy)
    fused, _ = _pair("gc", 3, 1, 1)
    with torch.no_grad():
        for batch, size in ((1, 9), (5, 9), (3, 20)):
            fused(_input(fused, batch, size, size))
    for halo_pix, block, programs, elements in seen:
        assert programs == launch.INTERPRETER_PROGRAMS and block == 16
        assert elements == programs * block * halo_pix <= programs * 16 * tiling.MAX_HALO_PIX
    assert len({s[-1] for s in seen[:2]}) == 1  # the batch does not size the scratch
    # compiled: PROGRAMS_PER_SM slots per SM whatever the shape; ≤ 32 × 128 elements each
    monkeypatch.setattr(launch, "_num_sms", lambda device: 132)
    assert launch.forward_programs(False, "cuda") == launch.PROGRAMS_PER_SM * 132
    monkeypatch.setenv("SEPGCONV_FUSED_PROGRAMS_PER_SM", "8")
    assert launch.forward_programs(False, "cuda") == 8 * 132
    for halo_pix in (16, 32, 64, 128, 256):  # a slot ≤ 32 × 128 elements at every halo
        tried = launch.shipped(launch._KERNELS["fwd"][1], 1 << 16, 3, False, halo_pix)
        assert max(c.kwargs["BLOCK_NH"] for c in tried) * halo_pix <= 32 * 128


def test_no_gather_left_in_the_kernels():
    from sepgconv.fused import common, kernels_bwd, kernels_fwd

    for module in (common, kernels_fwd, kernels_bwd):
        code = re.sub(r'"""[\s\S]*?"""|#.*', "", inspect.getsource(module))
        assert "tl.gather" not in code, module.__name__


def _compiled_forward(gc: bool, k: int = 3):
    """The forward (first shipped config, fp32) compiled for sm_90: its SASS opcode counts
    and the order of its barriers, stores and loads in Triton's GPU IR."""
    import os
    import subprocess
    import tempfile

    import triton
    import triton.language as tl

    from sepgconv.fused import compile_check, launch

    config = launch._KERNELS["fwd"][1][0]
    consts = compile_check._constexprs("fwd", gc, k, 64, 4, 32, tl.float32)
    kernel = compile_check.compile_kernel("fwd", config, consts, "*fp32", 90)
    tool = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/cuobjdump")
    with tempfile.NamedTemporaryFile(suffix=".cubin", delete=False) as f:
        f.write(kernel.asm["cubin"])
    try:
        sass = subprocess.run([tool, "-sass", f.name], capture_output=True, text=True).stdout
    finally:
        os.unlink(f.name)
    counts = {op: len(re.findall(rf"\b{op}\b", sass)) for op in ("SHFL", "STL", "LDL")}
    # tl.debug_barrier is ttg.barrier in Triton 3.9's GPU IR (gpu.barrier in older ones)
    ir = re.sub(r"\bgpu\.barrier\b", "ttg.barrier", kernel.asm["ttgir"])
    order = re.findall(r"ttg\.barrier|tt\.store|tt\.load", ir)
    return counts, order


@pytest.mark.parametrize("variant", VARIANTS)
def test_compiled_forward_has_no_shuffles_and_keeps_its_barriers(variant, monkeypatch):
    """sm_90, no GPU needed: the taps are loads, not warp shuffles (a tl.gather out of a
    register tile compiles to ~HALO_PIX/32 SHFL per value), nothing spills, and the X̃
    store is fenced by the two staging barriers (tl.debug_barrier: ``ttg.barrier`` in the
    GPU IR, before Triton adds its own for shared memory and the work queue's atomic),
    with the shifted tap loads after it."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    counts, order = _compiled_forward(variant == "gc")
    assert counts == {"SHFL": 0, "STL": 0, "LDL": 0}, counts
    assert order.count("ttg.barrier") == 2, order
    first = order.index("ttg.barrier")
    assert order[first : first + 4] == ["ttg.barrier", "tt.store", "ttg.barrier", "tt.load"]
