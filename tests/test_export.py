"""Export to plain torch.nn modules: same function, same equivariance, same state,
no sepgconv module left (DESIGN §6; issue 26)."""

import pytest
import torch
from conftest import ALL_IMPLS, GROUPS, impl_id, random_input, randomize_
from torch import nn

import sepgconv
from sepgconv import GConv2d, get_group, models
from sepgconv.export import export_gconv

TOL64 = dict(rtol=1e-10, atol=1e-10)
FORMS = ["dense", "separable"]


@pytest.fixture(autouse=True)
def _fused_layers_can_be_built(monkeypatch):
    """``impl="fused"`` is refused at construction where nothing can run it (no CUDA,
    no interpreter); the export only reads its parameters (compared with its naive
    twin), so the interpreter's permission is enough here."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def sepgconv_modules(module):
    return [type(m).__name__ for m in module.modules() if m.__module__.startswith("sepgconv")]


def _layer(group, lifting, vi, k=3, *, stride=1, padding="same", seed=0, **kw):
    gen = torch.Generator().manual_seed(seed)
    c_in, c_out = (int(v) for v in torch.randint(2, 5, (2,), generator=gen))
    torch.manual_seed(seed)
    layer = GConv2d(
        c_in,
        c_out,
        k,
        group=group,
        lifting=lifting,
        variant=vi[0],
        impl=vi[1],
        stride=stride,
        padding=padding,
        dtype=torch.float64,
        **kw,
    )
    return randomize_(layer)


def _reference(layer):
    """The layer itself where it runs on this CPU, else its naive twin (same parameters)."""
    if layer.unavailable_reason("cpu") is None:
        return layer
    return layer.to_impl("naive")


# ---------------------------------------------------------------------- #
# layers: every implementation, lifting or not, both forms
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("vi", ALL_IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
def test_exported_layer_equals_the_layer(group, lifting, vi, form):
    layer = _layer(group, lifting, vi, k=3, stride=2, padding=1).eval()
    plain = export_gconv(layer, g_form=form, gc_form=form)
    assert not sepgconv_modules(plain)
    x = random_input(layer, size=9)
    torch.testing.assert_close(plain(x), _reference(layer)(x), **TOL64)


@pytest.mark.parametrize("vi", ALL_IMPLS, ids=impl_id)
def test_exported_form_by_variant(vi):
    layer = _layer("p4m", False, vi)
    names = [n for n, _ in export_modules_default(layer).named_children()]
    expected = {
        "full": ["fold", "conv", "unfold"],
        "g": ["fold", "conv", "unfold"],  # dense: the fastest exact plain form (docs/deploy.md)
        "gc": ["fold", "pointwise", "depthwise", "unfold"],
    }[vi[0]]
    assert names == expected
    lifting = export_gconv(_layer("p4", True, vi))
    assert "fold" not in dict(lifting.named_children())  # an image needs no fold


def export_modules_default(layer):
    return sepgconv.export_modules(layer)


def test_gc_separable_is_pointwise_then_depthwise():
    layer = _layer("p4m", False, ("gc", "rearranged"), k=5, padding=2)
    plain = export_gconv(layer)
    n, c, g = layer.out_channels, layer.in_channels, layer.g_out
    assert plain.pointwise.weight.shape == (n * g, c * g, 1, 1)
    assert plain.depthwise.weight.shape == (n * g, 1, 5, 5) and plain.depthwise.groups == n * g
    assert plain.pointwise.bias is None and plain.depthwise.bias is not None


def test_dense_conv_holds_the_expanded_filter_and_repeated_bias():
    layer = _layer("p4m", False, ("full", "naive"))
    conv = export_gconv(layer).conv
    n, c, g, k = layer.out_channels, layer.in_channels, layer.g_out, layer.kernel_size
    torch.testing.assert_close(
        conv.weight, layer.expand_filter().reshape(n * g, c * g, k, k), rtol=0, atol=0
    )
    torch.testing.assert_close(conv.bias, layer.bias.repeat_interleave(g), rtol=0, atol=0)
    assert (conv.stride, conv.padding) == ((1, 1), (1, 1))


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("variant", ["full", "g", "gc"])
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
def test_exported_layer_is_equivariant_per_element(group, lifting, variant, form):
    impl = "naive" if variant == "full" else "rearranged"
    for k, stride in ((3, 1), (1, 1), (5, 2)):  # (9 + 2p - k) % 2 == 0: centred strided grid
        layer = _layer(group, lifting, (variant, impl), k=k, stride=stride, seed=k)
        plain = export_gconv(layer, g_form=form, gc_form=form)
        grp = get_group(group)
        x = random_input(layer, size=9)
        for u in range(grp.order):
            torch.testing.assert_close(
                plain(grp.act(x, u)), grp.act(plain(x), u), **TOL64, msg=grp.element_name(u)
            )


def test_channels_last_layer_exports_in_the_default_layout():
    layer = _layer("p4", False, ("g", "naive"), memory_format="channels_last")
    plain = export_gconv(layer)
    assert plain.conv.weight.is_contiguous()
    x = random_input(layer)
    torch.testing.assert_close(plain(x), layer(x), **TOL64)


def test_auto_layers_export_by_their_variant():
    for variant in ("full", "g", "gc"):
        layer = _layer("p4", False, (variant, "auto"))
        ref = export_gconv(layer.to_impl("naive"))
        plain = export_gconv(layer)
        assert [n for n, _ in plain.named_children()] == [n for n, _ in ref.named_children()]


def test_unknown_form_is_refused():
    layer = _layer("p4", False, ("g", "naive"))
    with pytest.raises(ValueError, match="g_form"):
        sepgconv.export_modules(layer, g_form="fast")


# ---------------------------------------------------------------------- #
# parameters and state
# ---------------------------------------------------------------------- #
def test_parameters_are_detached_copies_and_the_source_is_untouched():
    net = models.build("gc-p4cnn", "rearranged", seed=0)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    plain = sepgconv.export_modules(net)
    assert len(models.gconv_layers(net)) == 7  # the source keeps its layers
    src = {p.data_ptr() for p in net.parameters()} | {b.data_ptr() for b in net.buffers()}
    assert not any(p.data_ptr() in src for p in plain.parameters())
    assert not any(b.data_ptr() in src for b in plain.buffers())
    assert all(p.requires_grad and p.grad_fn is None for p in plain.parameters())
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(1.0)
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


def test_frozen_parameters_stay_frozen():
    layer = _layer("p4", False, ("gc", "naive")).requires_grad_(False)
    assert not any(p.requires_grad for p in export_gconv(layer).parameters())


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("name", ["p4cnn", "g-p4cnn", "gc-p4cnn", "gc-p4m-resnet44"])
def test_batch_norm_state_and_mode_preserved(name, train):
    kw = dict(widths=(2, 3, 4), blocks_per_stage=1) if "resnet" in name else {}
    net = models.build(name, seed=0, dtype=torch.float64, **kw)
    x = net.example_input(4).to(torch.float64)
    net.train()
    with torch.no_grad():
        for _ in range(2):  # non-trivial running statistics
            net(torch.randn_like(x))
    net.train(train)
    plain = sepgconv.export_modules(net)
    assert plain.training == train
    assert all(m.training == train for m in plain.modules())
    bns = [m for m in plain.modules() if isinstance(m, nn.BatchNorm3d)]
    src = [m for m in net.modules() if isinstance(m, sepgconv.GroupBatchNorm)]
    assert len(bns) == len(src) > 0
    for a, b in zip(bns, src, strict=True):
        for key, value in b.state_dict().items():
            torch.testing.assert_close(a.state_dict()[key], value, rtol=0, atol=0)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), net(x), **TOL64)
    for a, b in zip(bns, src, strict=True):  # train mode: the statistics moved alike
        torch.testing.assert_close(a.running_var, b.running_var, **TOL64)
        assert int(a.num_batches_tracked) == int(b.num_batches_tracked)


def test_mixed_modes_are_kept_module_by_module():
    net = models.build("gc-p4cnn", seed=0).eval()
    net.features.layer3.bn.train()  # e.g. batch norm adapting at test time
    plain = sepgconv.export_modules(net)
    modes = {name: m.training for name, m in net.named_modules()}
    assert plain.features.layer3.bn.training and not plain.features.layer2.bn.training
    for name, m in plain.named_modules():
        if name in modes and isinstance(m, (nn.BatchNorm3d, nn.Linear)):
            assert m.training == modes[name], name


def test_own_containers_are_kept_and_group_pool_mean():
    class Head(nn.Module):  # a user's module: not sepgconv, kept as it is
        def __init__(self):
            super().__init__()
            self.conv = GConv2d(1, 3, 3, group="p4m", lifting=True, variant="full")
            self.bn = sepgconv.GroupBatchNorm(3)
            self.pool = sepgconv.GroupPool("mean")
            self.maxpool = sepgconv.GroupMaxPool2d(2)

        def forward(self, x):
            return self.pool(self.maxpool(self.bn(self.conv(x))))

    net = Head().double()
    net.maxpool = sepgconv.GroupMaxPool2d((2, 3), stride=(2, 1), padding=(0, 1))
    net.eval()
    plain = sepgconv.export_modules(net)
    assert type(plain) is Head and not sepgconv_modules(plain)
    assert not any(m.training for m in plain.modules())  # not traced: each module's own flag
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(plain(x), net(x), **TOL64)


# ---------------------------------------------------------------------- #
# the paper's models (Tables 1 and 2)
# ---------------------------------------------------------------------- #
#: Table 2 rows checked at full size (32×32, batch 1) here; p4m and gc-p4m are at full size
#: in the rotation test below; every Table 2 row and implementation also at depth 8
FULL_SIZE = {"resnet44", "g-p4m-resnet44"}


def _model_cases():
    # naive and rearranged for every row; auto and fused (every implementation is
    # exported layer by layer above) on the g and gc nets of Table 1
    for name in models.names():
        impls = models.available_impls(_probe(name))
        if name not in ("g-p4cnn", "gc-p4cnn"):
            impls = [i for i in impls if i in ("naive", "rearranged")]
        for impl in impls:
            suffix = "-depth8" if name in models.names(table=2) else ""
            yield pytest.param(name, impl, False, id=f"{name}-{impl}{suffix}")
            if name in FULL_SIZE and impl == "naive":
                yield pytest.param(name, impl, True, id=f"{name}-{impl}")


def _probe(name):
    kw = dict(widths=(2, 3, 4), blocks_per_stage=1) if "resnet" in name else {}
    return models.build(name, **kw)


def _close32(a, b):
    # float32: tolerance relative to the output's scale (deep nets reach |y| ~ 1e3)
    scale = b.abs().max().item()
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * max(scale, 1.0))


@pytest.mark.parametrize(("name", "impl", "full_size"), list(_model_cases()))
def test_every_paper_model_exports_to_the_same_function(name, impl, full_size):
    small = name in models.names(table=2) and not full_size
    kw = dict(widths=(3, 4, 5), blocks_per_stage=1) if small else {}
    net = models.build(name, impl, seed=0, **kw).eval()
    plain = sepgconv.export_modules(net)
    assert not sepgconv_modules(plain)
    runs_here = all(m.unavailable_reason("cpu") is None for _, m in models.gconv_layers(net))
    ref = net if runs_here else models.build(name, "naive", seed=0, **kw).eval()  # same params
    x = net.example_input(1 if name in models.names(table=2) else 2)
    with torch.no_grad():
        _close32(plain(x), ref(x))


@pytest.mark.parametrize(
    ("name", "impl"), [("p4m-resnet44", "naive"), ("gc-p4m-resnet44", "rearranged")]
)
def test_resnet_export_equals_native_on_an_input_and_its_rotation(name, impl):
    net = models.build(name, impl, seed=1).eval()
    plain = sepgconv.export_modules(net)
    assert not sepgconv_modules(plain)
    x = net.example_input(1)
    with torch.no_grad():
        for xi in (x, torch.rot90(x, 1, dims=(-2, -1))):
            _close32(plain(xi), net(xi))


@pytest.mark.parametrize("name", ["p4cnn", "g-p4cnn", "gc-p4cnn"])
def test_exported_p4_nets_stay_rotation_invariant(name):
    net = models.build(name, seed=0, dtype=torch.float64).eval()
    plain = sepgconv.export_modules(net)
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        y = plain(x)
        for u in range(1, 4):
            torch.testing.assert_close(plain(torch.rot90(x, u, dims=(-2, -1))), y, **TOL64)
