"""impl="fused" (Triton kernels), checked in Triton's interpreter on the CPU.

The kernel tests switch the interpreter on themselves (``TRITON_INTERPRET=1``
through monkeypatch; the kernels are decorated per mode at call time), so they
run whether or not the variable is set for the whole session, and skip with
the reason when Triton is not installed. Shapes are tiny: interpreted Triton
is a correctness tool, never timed.

Tolerances: float64 runs (the interpreter computes in numpy float64) agree
with naive to 1e-10 like every other implementation; float32 to 1e-5 relative
to the largest value (summation order differs); float16 inputs (fp32 accumulation) to 1e-2 against
the float32 reference of the same rounded values.
"""

import os
import subprocess
import sys

import pytest
import torch
from conftest import (
    GROUPS,
    assert_same_forward_and_gradients,
    random_input,
    randomize_,
)

import sepgconv
from sepgconv import GConv2d, counting, get_group
from sepgconv.counting import LayerShape
from sepgconv.fused import _runtime, tiling

HAS_TRITON = _runtime.triton_installed()
needs_triton = pytest.mark.skipif(
    not HAS_TRITON, reason="impl='fused' needs Triton (pip install 'sepgconv[fused]')"
)
VARIANTS = ["g", "gc"]
TOL64 = dict(rtol=1e-10, atol=1e-10)


@pytest.fixture
def interpreter(monkeypatch):
    """Run the Triton kernels in the interpreter (CPU tensors)."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


@pytest.fixture
def no_interpreter(monkeypatch):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


@pytest.fixture
def buildable(monkeypatch):
    """A process where fused layers can be built (the interpreter on, Triton taken as
    installed): for the tests of parameters and counts, which never run a kernel."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.setattr(_runtime, "triton_installed", lambda: True)


def _pair(variant, group="p4", lifting=False, k=3, *, stride=1, padding=1, bias=True,
          c_in=2, c_out=3, dtype=torch.float64):  # fmt: skip
    """A fused layer with random parameters and a naive one loaded from its state_dict."""
    fused = GConv2d(
        c_in, c_out, k, group=group, lifting=lifting, variant=variant, impl="fused",
        stride=stride, padding=padding, bias=bias, dtype=dtype,
    )  # fmt: skip
    randomize_(fused)
    naive = GConv2d(**(fused.config() | {"impl": "naive"}), dtype=dtype)
    naive.load_state_dict(fused.state_dict())  # the same state_dict, unchanged
    return fused, naive


# ---------------------------------------------------------------------- #
# registration and parameters (no Triton needed)
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("variant", VARIANTS)
def test_registered_for_g_and_gc(variant, buildable):
    assert (variant, "fused") in sepgconv.implementations()
    assert "fused" in sepgconv.impls_of(variant)
    layer = GConv2d(2, 3, 3, variant=variant, impl="fused")
    assert type(layer) is sepgconv.get_implementation(variant, "fused")
    assert (layer.variant, layer.impl) == (variant, "fused")


def test_no_fused_full_gconv():
    assert ("full", "fused") not in sepgconv.implementations()


@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("variant", VARIANTS)
def test_state_dict_keys_and_shapes_match_naive(variant, group, lifting, buildable):
    fused = GConv2d(3, 4, 5, group=group, lifting=lifting, variant=variant, impl="fused")
    naive = GConv2d(**(fused.config() | {"impl": "naive"}))
    assert {k: v.shape for k, v in fused.state_dict().items()} == {
        k: v.shape for k, v in naive.state_dict().items()
    }
    naive.load_state_dict(fused.state_dict())  # strict: no missing or unexpected keys


_USE_WITHOUT_KERNELS = """
import sys
import sepgconv
for variant in ("g", "gc"):
    try:  # refused at construction where no device here can run it (no CUDA, no interpreter)
        layer = sepgconv.GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1)
    except sepgconv.UnavailableError:
        layer = sepgconv.GConv2d(2, 3, 3, variant=variant, impl="naive", padding=1)
    shape = layer.layer_shape(8, 8)
    cls = sepgconv.get_implementation(variant, "fused")
    cls.unavailable_reason("cpu"), cls.unavailable_reason("cuda")
    cls.macs(shape), cls.intermediate_elements(shape)
sepgconv.available_implementations("cpu")
assert "triton" not in sys.modules, "importing or asking sepgconv loaded triton"
"""


@pytest.mark.parametrize("interpret", ["", "1"])
def test_sepgconv_and_the_fused_package_do_not_import_triton(interpret):
    """Triton is loaded when a fused kernel first runs, never by import or questions
    about availability and counts (``find_spec`` looks, it does not import)."""
    env = dict(os.environ, TRITON_INTERPRET=interpret)
    subprocess.run([sys.executable, "-c", _USE_WITHOUT_KERNELS], check=True, env=env)


def test_sepgconv_imports_and_refuses_clearly_without_triton():
    code = """
import sys
sys.modules["triton"] = None  # as if triton were not installed
import sepgconv, torch
assert ("gc", "fused") in sepgconv.implementations()
assert ("gc", "fused") not in sepgconv.available_implementations("cuda")
assert "not installed" in sepgconv.get_implementation("gc", "fused").unavailable_reason("cuda")
sepgconv.GConv2d(2, 2, 3, variant="gc", impl="fused", padding=1)  # refused: uncaught
"""
    env = dict(os.environ, TRITON_INTERPRET="1")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 1
    last = run.stderr.strip().splitlines()[-1]
    assert last == (
        "sepgconv.errors.UnavailableError: impl='fused' needs Triton, which is not installed "
        "(pip install 'sepgconv[fused]' or pip install triton)"
    ), run.stderr
    # raised by the constructor: no custom-op or kernel-launch frames in the traceback
    for frame in ("torch/_ops", "torch/_library", "sepgconv/fused/"):
        assert frame not in run.stderr, run.stderr


# ---------------------------------------------------------------------- #
# availability
# ---------------------------------------------------------------------- #
@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_unavailable_on_cpu_without_the_interpreter(variant, no_interpreter):
    cls = sepgconv.get_implementation(variant, "fused")
    reason = cls.unavailable_reason("cpu")
    assert reason is not None and "TRITON_INTERPRET=1" in reason
    assert cls.unavailable_reason("cuda") is None
    assert cls.unavailable_reason(torch.device("cuda", 0)) is None
    assert (variant, "fused") not in sepgconv.available_implementations("cpu")
    assert (variant, "fused") in sepgconv.available_implementations("cuda")
    if torch.cuda.is_available():  # built on the CPU to be moved to CUDA: refused at the call
        layer = GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1)
        with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
            layer(random_input(layer, dtype=torch.float32))
    else:  # no device here runs it: refused at construction, with the same reason
        with pytest.raises(sepgconv.UnavailableError) as refused:
            GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1)
        assert str(refused.value) == reason


@needs_triton
@pytest.mark.parametrize("value", ["1", "true", "On", "yes"])
def test_available_on_cpu_with_the_interpreter(monkeypatch, value):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    for variant in VARIANTS:
        cls = sepgconv.get_implementation(variant, "fused")
        assert cls.unavailable_reason("cpu") is None
        assert (variant, "fused") in sepgconv.available_implementations("cpu")


@pytest.mark.parametrize("value", ["0", "", "false", "2"])
def test_interpreter_switch_follows_tritons_spelling(monkeypatch, value):
    monkeypatch.setenv("TRITON_INTERPRET", value)
    assert not _runtime.interpret_enabled()


def test_other_devices_are_unavailable(monkeypatch, interpreter):
    monkeypatch.setattr(_runtime, "triton_installed", lambda: True)
    cls = sepgconv.get_implementation("gc", "fused")
    assert "not on 'meta'" in cls.unavailable_reason("meta")


@pytest.mark.parametrize("variant", VARIANTS)
def test_without_triton_the_reason_and_the_error_name_it(monkeypatch, interpreter, variant):
    monkeypatch.setattr(_runtime, "triton_installed", lambda: False)
    cls = sepgconv.get_implementation(variant, "fused")
    for device in ("cpu", "cuda"):
        assert "Triton, which is not installed" in cls.unavailable_reason(device)
    assert (variant, "fused") not in sepgconv.available_implementations("cpu")
    for device in ("cpu", "cuda", None):  # no device runs it: refused before any allocation
        with pytest.raises(sepgconv.UnavailableError) as refused:
            GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1, device=device)
        assert isinstance(refused.value, RuntimeError)
        assert str(refused.value) == _runtime.unavailable_reason("cpu")


@pytest.mark.parametrize("variant", VARIANTS)
def test_refused_at_construction_only_where_no_device_runs_it(monkeypatch, variant):
    """Built on the CPU of a CUDA machine (to be moved there) is legitimate; on a CPU-only
    machine without the interpreter it is refused with unavailable_reason's line."""
    monkeypatch.setattr(_runtime, "triton_installed", lambda: True)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cpu", None, torch.device("cpu")):
        with pytest.raises(sepgconv.UnavailableError) as refused:
            GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1, device=device)
        assert str(refused.value) == _runtime.unavailable_reason("cpu")
        assert "\n" not in str(refused.value)
    with pytest.raises(sepgconv.UnavailableError, match="not on 'meta'"):
        GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1, device="meta")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    layer = GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1)  # CPU, for .cuda() later
    assert layer.device.type == "cpu" and layer.impl == "fused"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert GConv2d(2, 3, 3, variant=variant, impl="fused", padding=1).impl == "fused"


# ---------------------------------------------------------------------- #
# fused == naive on one state_dict: forward and every gradient
# ---------------------------------------------------------------------- #
# (group, lifting, k, stride, padding, bias, c_in, c_out, size): together they
# cover p4/p4m, lifting/group, stride 1/2/3, k in {1..7}, 'same' and 0 padding.
CASES = [
    ("p4", True, 1, 1, 0, True, 3, 2, 5),
    ("p4m", True, 3, 1, 1, True, 2, 3, 7),
    ("p4", True, 5, 2, 2, False, 1, 2, 9),
    ("p4m", True, 7, 1, 3, True, 1, 1, 7),
    ("p4", False, 3, 1, 1, True, 2, 3, 7),
    ("p4m", False, 3, 2, 0, True, 2, 2, 9),
    ("p4", False, 1, 2, 0, False, 3, 2, 6),
    ("p4m", False, 5, 1, 2, True, 1, 2, 6),
    ("p4", False, 7, 2, 3, True, 1, 2, 9),
    ("p4", False, 2, 3, 1, True, 2, 2, 8),  # even k, stride > k: the halo skips rows
]


def _case_id(c):
    group, lifting, k, stride, padding, bias, *_ = c
    kind = "lift" if lifting else "group"
    return f"{group}-{kind}-k{k}-s{stride}-p{padding}-{'bias' if bias else 'nobias'}"


@needs_triton
@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("variant", VARIANTS)
def test_matches_naive_forward_and_gradients(variant, case, interpreter):
    group, lifting, k, stride, padding, bias, c_in, c_out, size = case
    fused, naive = _pair(
        variant, group, lifting, k, stride=stride, padding=padding, bias=bias,
        c_in=c_in, c_out=c_out,
    )  # fmt: skip
    x = random_input(fused, batch=2, size=size)
    assert_same_forward_and_gradients(fused, naive, x, TOL64)


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_multi_block_grids_and_split_reductions(monkeypatch, variant, interpreter):
    # small blocks: several channel blocks, several (c, g) chunks, a 3-way split of
    # the weight-gradient reduction, and several spatial tiles
    from sepgconv.fused import launch

    monkeypatch.setattr(launch, "INTERPRETER_META", {"BLOCK_NH": 16, "BLOCK_K": 16, "BLOCK_CG": 16})
    monkeypatch.setattr(launch, "INTERPRETER_SPLITS", 3)
    fused, naive = _pair(variant, "p4m", False, 3, padding=1, c_in=3, c_out=3)
    shape = fused.layer_shape(15, 15)
    assert tiling.plan_for(shape, variant).tiles > 1
    # NH = C_out·G_out and C_in·G_in span two 16-wide blocks each
    assert fused.out_channels * fused.g_out > launch.INTERPRETER_META["BLOCK_NH"]
    assert fused.in_channels * fused.g_in > launch.INTERPRETER_META["BLOCK_CG"]
    x = random_input(fused, batch=2, size=15)
    assert_same_forward_and_gradients(fused, naive, x, TOL64)


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_float32_within_tolerance(variant, interpreter):
    fused, naive = _pair(variant, "p4", False, 3, padding=1, c_in=3, c_out=2, dtype=torch.float32)
    x = random_input(fused, batch=2, size=8, dtype=torch.float32)
    assert_same_forward_and_gradients(fused, naive, x, dict(rtol=1e-5, atol=1e-5))


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_float16_accumulates_in_float32(variant, interpreter):
    fused, naive = _pair(variant, "p4", False, 3, padding=1, c_in=2, c_out=2, dtype=torch.float32)
    with torch.no_grad():  # values exactly representable in float16
        for p in fused.parameters():
            p.copy_(p.half().float())
    naive.load_state_dict(fused.state_dict())
    x = random_input(fused, batch=1, size=6, dtype=torch.float16)
    y = fused.half()(x)
    assert y.dtype == torch.float16
    torch.testing.assert_close(y.float(), naive(x.float()), rtol=1e-2, atol=1e-2)


#: one rounding to float16: half an ulp, relative to the largest value (round to nearest)
HALF_ULP16 = 2.0**-11


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_float16_forward_and_backward_against_float32_on_the_same_values(
    variant, interpreter, monkeypatch
):
    """fp16 in, fp32 accumulation, one rounding at the store: every output of the kernels
    (y, dX, dw̃, dT_h(K)) is within half an fp16 ulp of the largest value of an fp32
    computation on the same (fp16-rounded) values. An fp16 accumulator breaks this: over the
    72 terms of each output here it errs by 2-4 half-ulps (measured). The staged g forward
    (the tl.dot one rounds F̃ to fp16 too, as naive does: tests/test_fused_dot.py)."""
    from sepgconv.fused import launch

    monkeypatch.setenv(launch.G_FORWARD_ENV, "staged")

    fused, _ = _pair(variant, "p4", False, 3, padding=1, c_in=8, c_out=4, dtype=torch.float32)
    with torch.no_grad():
        for p in fused.parameters():
            p.copy_(p.half().float())  # the reference sees exactly the fp16 values
    ref = GConv2d(**(fused.config() | {"impl": "naive"}), dtype=torch.float32)
    ref.load_state_dict(fused.state_dict())
    fused = fused.half()
    x16 = random_input(fused, batch=2, size=8, dtype=torch.float16).requires_grad_()
    x32 = x16.detach().float().requires_grad_()
    y16, y32 = fused(x16), ref(x32)
    assert y16.dtype == torch.float16
    g16 = torch.randn_like(y32).half()
    (y16 * g16).sum().backward()
    (y32 * g16.float()).sum().backward()

    def within(actual, expected, what):
        bound = 1.05 * HALF_ULP16 * expected.abs().max().item()  # 5 %: fp32 summation order
        err = (actual.float() - expected).abs().max().item()
        assert err <= bound, f"{what}: {err:.3g} > {bound:.3g}"

    within(y16, y32, "y")
    within(x16.grad, x32.grad, "dx")
    # the weight-gradient kernels, straight from the launcher (the layer's index_select
    # backward would add fp16 roundings of its own)
    wt, kt = (w.detach() for w in fused._build_weights())
    kw = dict(gc=variant == "gc", k=3, stride=1, padding=1, g_in=4, need_x=False, need_w=True)
    dy = torch.randn(2, 16, 8, 8).half()
    x = x16.detach().view(2, 32, 8, 8)
    _, dwt16, dkt16 = launch.backward(dy, x, wt, kt, **kw)
    _, dwt32, dkt32 = launch.backward(dy.float(), x.float(), wt.float(), kt.float(), **kw)
    within(dwt16, dwt32, "dw̃")
    within(dkt16, dkt32, "dT_h(K)")


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_channels_last_and_strided_inputs(variant, interpreter):
    fused, naive = _pair(variant, "p4", True, 3, padding=1, c_in=3, c_out=2)
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64).to(memory_format=torch.channels_last)
    torch.testing.assert_close(fused(x), naive(x), **TOL64)
    wide = torch.randn(2, 3, 8, 16, dtype=torch.float64)[..., ::2]  # non-contiguous view
    torch.testing.assert_close(fused(wide), naive(wide), **TOL64)


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_only_the_requested_gradients(variant, interpreter):
    fused, naive = _pair(variant, "p4", False, 3, padding=1)
    x = random_input(fused, batch=1, size=5).requires_grad_()
    fused.requires_grad_(False)
    fused(x).sum().backward()
    naive.requires_grad_(False)
    x2 = x.detach().clone().requires_grad_()
    naive(x2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad, **TOL64)
    fused.requires_grad_(True)
    fused(x.detach()).sum().backward()  # weight gradients only
    assert all(p.grad is not None for p in fused.parameters())


@needs_triton
@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("variant", VARIANTS)
def test_gradcheck(variant, lifting, interpreter):
    fused, _ = _pair(variant, "p4", lifting, 3, padding=1, c_in=2, c_out=2)
    x = random_input(fused, batch=1, size=4).requires_grad_()
    names = [n for n, _ in fused.named_parameters()]

    def fn(inp, *params):
        return torch.func.functional_call(fused, dict(zip(names, params, strict=True)), (inp,))

    params = tuple(fused.parameters())
    assert torch.autograd.gradcheck(fn, (x, *params), eps=1e-6, atol=1e-7, fast_mode=True)


# ---------------------------------------------------------------------- #
# exact equivariance, every group element
# ---------------------------------------------------------------------- #
def _elements():
    for g in GROUPS:
        for u in range(get_group(g).order):
            yield pytest.param(g, u, id=f"{g}-{get_group(g).element_name(u)}")


@needs_triton
@pytest.mark.parametrize("lifting", [True, False], ids=["lift", "group"])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(("group", "u"), list(_elements()))
def test_equivariant_for_every_element(group, u, variant, lifting, interpreter):
    layer, _ = _pair(variant, group, lifting, 3, padding=1, c_in=2, c_out=2)
    grp = get_group(group)
    x = random_input(layer, batch=1, size=7)
    torch.testing.assert_close(layer(grp.act(x, u)), grp.act(layer(x), u), **TOL64)


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_equivariant_stride2_centred_grid(variant, interpreter):
    layer, _ = _pair(variant, "p4m", False, 5, stride=2, padding=2, c_in=1, c_out=2)
    grp = get_group("p4m")
    x = random_input(layer, batch=1, size=9)  # (9 + 4 - 5) % 2 == 0: centred grid
    y = layer(x)
    for u in (1, 5):  # a rotation and a mirror
        torch.testing.assert_close(layer(grp.act(x, u)), grp.act(y, u), **TOL64)


# ---------------------------------------------------------------------- #
# integration: eval cache, torch.compile
# ---------------------------------------------------------------------- #
@needs_triton
def test_eval_cache_and_to_impl(interpreter):
    layer, naive = _pair("gc", "p4", False, 3, padding=1)
    layer.eval()
    x = random_input(layer, batch=1, size=5)
    with torch.no_grad():
        y = layer(x)
        assert layer._cache is not None
        torch.testing.assert_close(layer(x), y, **TOL64)
        torch.testing.assert_close(layer.to_impl("rearranged")(x), y, **TOL64)


@needs_triton
def test_torch_compile_traces_one_graph(interpreter):
    layer, naive = _pair("g", "p4", True, 3, padding=1)
    x = random_input(layer, batch=1, size=5)
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), naive(x), **TOL64)


# ---------------------------------------------------------------------- #
# counts
# ---------------------------------------------------------------------- #
def _brute_force_halo_pixels(pl):
    # the input pixels each tile's halo covers, counted tile by tile (independent of tiling.py)
    total = 0
    for ty in range(pl.tiles_h):
        for tx in range(pl.tiles_w):
            rows = {
                (ty * pl.th + qy) * pl.stride - pl.padding + dy
                for qy in range(pl.th)
                for dy in range(pl.k)
            }
            cols = {
                (tx * pl.tw + qx) * pl.stride - pl.padding + dx
                for qx in range(pl.tw)
                for dx in range(pl.k)
            }
            total += sum(0 <= r < pl.h_in for r in rows) * sum(0 <= c < pl.w_in for c in cols)
    return total


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    "shape",
    [
        LayerShape(3, 5, 4, 4, 3, 9, 9, 1, 1, 2),
        LayerShape(16, 16, 8, 8, 3, 32, 32, 1, 1, 1),
        LayerShape(2, 3, 1, 8, 7, 20, 17, 2, 3, 1),
        LayerShape(4, 4, 4, 4, 1, 10, 10, 3, 0, 1),
        LayerShape(4, 4, 4, 4, 2, 8, 8, 3, 1, 1),
    ],
)
def test_macs_count_the_halo_recompute(variant, shape):
    pl = tiling.plan_for(shape, variant)
    p = _brute_force_halo_pixels(pl)
    assert pl.halo_pixels_in_image == p
    taps = shape.k**2 * shape.h_out * shape.w_out
    nh = shape.c_out * shape.g_out
    per = (
        shape.c_in * (shape.g_in * p + taps)
        if variant == "g"
        else shape.c_in * shape.g_in * p + taps
    )
    cls = sepgconv.get_implementation(variant, "fused")
    assert cls.macs(shape) == shape.batch * nh * per
    # the fused layer never does more than the full GConv's dense conv at k >= 3
    if shape.k >= 3 and shape.stride == 1:
        assert cls.macs(shape) < counting.dense_macs(shape)
    assert cls.intermediate_elements(shape)["activations"] == 0


def test_one_tile_is_the_section34_count():
    # a 1×1 gc layer over a 16-wide map: halo = tile, so P = H·W and the count is §3.4's
    s = LayerShape(8, 4, 4, 4, 1, 16, 16, 1, 0, 1)
    assert tiling.plan_for(s, "gc").halo_pixels_in_image == 16 * 16
    cls = sepgconv.get_implementation("gc", "fused")
    assert cls.macs(s) == counting.macs_section34("gc", 8, 4, 4, 4, 1, 16, 16)


@pytest.mark.parametrize("variant", VARIANTS)
def test_filter_intermediates_equal_the_rearranged_weights(variant):
    s = LayerShape(3, 5, 4, 4, 3, 9, 9, 1, 1, 2)
    fused = sepgconv.get_implementation(variant, "fused").intermediate_elements(s)
    rearranged = sepgconv.get_implementation(variant, "rearranged").intermediate_elements(s)
    assert fused == {"filter": rearranged["filter"], "activations": 0}


@needs_triton
@pytest.mark.parametrize("variant", VARIANTS)
def test_fvcore_counts_the_traced_op_with_the_handle(variant, interpreter):
    pytest.importorskip("fvcore")
    from sepgconv.fused import FVCORE_HANDLES

    layer = GConv2d(3, 2, 3, group="p4", variant=variant, impl="fused", stride=2, padding=1)
    x = random_input(layer, batch=2, size=9, dtype=torch.float32)
    count = counting.measure_macs(layer, x, op_handles=FVCORE_HANDLES)
    assert count.unsupported == {}
    # independent of tiling.macs_from_sizes: the halo pixels recounted by brute force
    shape = layer.layer_shape(9, 9, 2)
    p = _brute_force_halo_pixels(tiling.plan_for(shape, variant))
    taps = shape.k**2 * shape.h_out * shape.w_out
    per = (
        shape.c_in * (shape.g_in * p + taps)
        if variant == "g"
        else shape.c_in * shape.g_in * p + taps
    )
    assert count.total == shape.batch * shape.c_out * shape.g_out * per
