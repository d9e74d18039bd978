"""memory_format="contiguous"|"channels_last": layout, equality, equivariance, no copies."""

import pytest
import torch
from conftest import GROUPS, IMPLS, impl_id, random_input, randomize_
from torch.profiler import ProfilerActivity, profile

import sepgconv
from sepgconv import GConv2d, get_group, is_memory_format, registry, to_memory_format

FORMATS = ["contiguous", "channels_last"]
TOL = dict(rtol=1e-10, atol=1e-10)


def _layer(vi, group="p4", lifting=False, fmt="contiguous", k=3, stride=1, seed=0, **kw):
    torch.manual_seed(seed)
    layer = GConv2d(
        3, 4, k, group=group, lifting=lifting, variant=vi[0], impl=vi[1], stride=stride,
        padding=k // 2, memory_format=fmt, dtype=torch.float64, **kw,
    )  # fmt: skip
    return randomize_(layer)


# ---------------------------------------------------------------------- #
# the layout convention
# ---------------------------------------------------------------------- #
def test_channels_last_group_map_is_stored_b_h_w_c_g():
    x = torch.randn(2, 3, 4, 5, 6)
    y = to_memory_format(x, "channels_last")
    torch.testing.assert_close(y, x, rtol=0, atol=0)
    assert y.stride() == (5 * 6 * 12, 4, 1, 6 * 12, 12)  # B, C, G, H, W strides
    folded = y.reshape(2, 12, 5, 6)
    assert folded.data_ptr() == y.data_ptr() and folded._base is not None  # a view
    assert folded.is_contiguous(memory_format=torch.channels_last)
    unfolded = folded.view(2, 3, 4, 5, 6)  # and back, without a copy
    assert is_memory_format(unfolded, "channels_last") and unfolded.data_ptr() == y.data_ptr()
    assert to_memory_format(y, "channels_last") is y  # already there: no copy
    assert to_memory_format(y, "contiguous").is_contiguous()
    img = to_memory_format(torch.randn(2, 3, 5, 5), "channels_last")
    assert img.is_contiguous(memory_format=torch.channels_last)


def test_bad_memory_format_names_the_choices():
    for bad in ("nhwc", None, "channels_last_3d"):
        with pytest.raises(sepgconv.UnknownChoiceError, match=r"valid choices: \['contiguous',"):
            GConv2d(2, 3, 3, memory_format=bad)
    with pytest.raises(ValueError, match="unknown memory_format 'auto'"):
        GConv2d(2, 3, 3, variant="gc", impl="rearranged", memory_format="auto")
    with pytest.raises(ValueError, match="memory_format"):
        to_memory_format(torch.randn(1, 2, 3, 3), "nhwc")


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_format_is_part_of_the_configuration(vi):
    layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1], memory_format="channels_last")
    assert layer.config()["memory_format"] == "channels_last"
    assert "memory_format=channels_last" in repr(layer)
    assert GConv2d(**layer.config()).memory_format == "channels_last"
    other = layer.to_impl("naive")
    assert other.memory_format == "channels_last"
    assert layer.to_impl("naive", memory_format="contiguous").memory_format == "contiguous"


# ---------------------------------------------------------------------- #
# the same numbers in both formats, forward and backward
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("stride", [1, 2])
def test_outputs_and_gradients_equal_across_formats(vi, lifting, stride):
    ref = _layer(vi, "p4m", lifting, "contiguous", stride=stride)
    cl = GConv2d(**(ref.config() | {"memory_format": "channels_last"}), dtype=torch.float64)
    cl.load_state_dict(ref.state_dict())
    x = random_input(ref, size=9)
    for x_cl in (x, to_memory_format(x, "channels_last")):  # converted once / already NHWC
        x1 = x.clone().requires_grad_()
        x2 = x_cl.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        y1, y2 = ref(x1), cl(x2)
        assert is_memory_format(y1, "contiguous") and is_memory_format(y2, "channels_last")
        torch.testing.assert_close(y2, y1, **TOL)
        g = torch.randn_like(y1)
        (y1 * g).sum().backward()
        (y2 * g).sum().backward()
        torch.testing.assert_close(x2.grad, x1.grad, **TOL)
        for (name, p1), (_, p2) in zip(ref.named_parameters(), cl.named_parameters(), strict=True):
            torch.testing.assert_close(p2.grad, p1.grad, **TOL, msg=name)
            p1.grad = p2.grad = None


def _element_cases():
    for g in GROUPS:
        for u in range(1, get_group(g).order):
            yield pytest.param(g, u, id=f"{g}-{get_group(g).element_name(u)}")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize(("group", "u"), list(_element_cases()))
def test_equivariant_in_both_formats(group, u, lifting, vi, fmt):
    layer = _layer(vi, group, lifting, fmt, seed=u)
    grp = get_group(group)
    x = to_memory_format(random_input(layer, size=7), fmt)
    y = layer(x)
    assert is_memory_format(y, fmt)
    torch.testing.assert_close(layer(to_memory_format(grp.act(x, u), fmt)), grp.act(y, u), **TOL)


def _separable_pairs():
    return [pytest.param(v, i, id=f"{v}-{i}") for v, i in IMPLS if i != "naive"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize(("variant", "impl"), _separable_pairs())
def test_naive_and_other_impls_agree_in_both_formats(variant, impl, group, fmt):
    other = _layer((variant, impl), group, False, fmt, k=5)
    naive = GConv2d(**(other.config() | {"impl": "naive"}), dtype=torch.float64)
    naive.load_state_dict(other.state_dict())
    x = to_memory_format(random_input(other, size=8), fmt)
    x1, x2 = x.detach().requires_grad_(), x.detach().clone().requires_grad_()
    y1, y2 = other(x1), naive(x2)
    torch.testing.assert_close(y1, y2, **TOL)
    y1.square().sum().backward()
    y2.square().sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, **TOL)
    for p1, p2 in zip(other.parameters(), naive.parameters(), strict=True):
        torch.testing.assert_close(p1.grad, p2.grad, **TOL)


@pytest.mark.parametrize("vi", [vi for vi in IMPLS if vi[1] != "auto"], ids=impl_id)
def test_cached_weights_are_in_the_layers_format(vi):
    layer = _layer(vi, "p4", False, "channels_last").eval()
    with torch.no_grad():
        layer(random_input(layer, size=7))
    weights, _ = layer._cache[1]
    for w in weights:
        if w.dim() == 4 and w.shape[-1] > 1:
            assert w.is_contiguous(memory_format=torch.channels_last), vi
            if w.shape[1] > 1:  # (a depthwise [O, 1, k, k] weight is both layouts at once)
                assert not w.is_contiguous(), vi  # really NHWC


# ---------------------------------------------------------------------- #
# no activation copies in a chain of layers of one format
# ---------------------------------------------------------------------- #
#: copies a convolution kernel makes inside itself are its backend's algorithm, chosen
#: per CPU, shape and thread count (measured: with one thread some of this chain's
#: convolutions copy their input inside ``aten::_convolution``, with two none do),
#: not the library's layout
_BACKEND_CONVS = {"aten::_convolution", "aten::convolution_backward"}


def _activation_copies(prof) -> list[str]:
    """Copies (``aten::copy_``: what clone, contiguous and reshape-copies run) outside
    filter construction, outside g/rearranged's own X̃ transpose and outside the
    convolution kernels themselves."""
    found = []
    for event in prof.events():
        if event.name != "aten::copy_":
            continue
        parent, labels = event.cpu_parent, []
        while parent is not None:
            labels.append(parent.name)
            parent = parent.cpu_parent
        ours = {"sepgconv.build_weights", "sepgconv.transpose", "sepgconv.blocks"}
        if not ours & set(labels) and not (_BACKEND_CONVS & set(labels)):
            found.append(f"{event.name} under {labels[:3]}")
    return found


def _chain(fmt: str, impls=("naive", "rearranged")):
    torch.manual_seed(0)
    kw = dict(group="p4", padding=1, memory_format=fmt)
    return torch.nn.Sequential(
        GConv2d(3, 8, 3, lifting=True, **kw),
        GConv2d(8, 8, 3, variant="gc", impl=impls[1], **kw),
        GConv2d(8, 8, 3, variant="g", impl=impls[0], **kw),
        GConv2d(8, 4, 3, variant="full", **kw),
    )


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("impls", [("naive", "rearranged"), ("rearranged", "naive")])
def test_a_chain_in_one_format_copies_no_activations(fmt, mode, impls):
    # (g/rearranged's transposes, of X for its batched matmul and of X̃ for its grouped
    # conv, and its blocks written into the output are its algorithm: labelled
    # sepgconv.transpose / sepgconv.blocks, not counted)
    chain = getattr(_chain(fmt, impls), mode)()
    x = to_memory_format(torch.randn(2, 3, 12, 12), fmt)
    h = to_memory_format(torch.randn(2, 8, 4, 12, 12), fmt)  # a group map made by the helper
    with torch.set_grad_enabled(mode == "train"):
        chain(x), chain[1:](h)  # warm-up (eval: fills the weight caches)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            y = chain(x)
            z = chain[1:](h)
    assert is_memory_format(y, fmt) and is_memory_format(z, fmt)
    assert _activation_copies(prof) == []


def test_an_input_in_the_other_format_is_converted_once():
    chain = _chain("channels_last").eval()
    x = torch.randn(2, 3, 12, 12)  # NCHW into an NHWC chain
    with torch.no_grad():
        chain(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            chain(x)
    copies = _activation_copies(prof)
    assert len(copies) == 1 and "sepgconv.convert_input" in copies[0], copies


@pytest.mark.parametrize("fmt", FORMATS)
def test_fwd_bwd_and_compile_in_both_formats(fmt):
    chain = _chain(fmt)
    x = to_memory_format(torch.randn(2, 3, 10, 10), fmt).requires_grad_()
    y = chain(x)
    y.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in chain.parameters())
    torch._dynamo.reset()
    compiled = torch.compile(chain, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), y)


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
def test_counting_in_channels_last(vi, lifting):
    from sepgconv import counting

    layer = GConv2d(3, 4, 3, lifting=lifting, variant=vi[0], impl=vi[1], padding=1,
                    memory_format="channels_last")  # fmt: skip
    x = random_input(layer, size=8, dtype=torch.float32)
    for inp in (x, to_memory_format(x, "channels_last")):
        count = counting.measure_macs(layer, inp)
        assert count.unsupported == {}
        expected = counting.layer_macs(layer, 8, 8, batch=2)
        if vi[1] == "auto":  # auto chooses per input format: count what it ran for this one
            with torch.no_grad():  # (fvcore counts in eval mode: the key tells modes apart)
                ran = registry.get(vi[0], layer.eval().chosen_impl(inp))
            layer.train()
            expected = ran.macs(layer.layer_shape(8, 8, 2))
        assert count.total == expected
