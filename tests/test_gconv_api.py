"""Construction, validation errors, state_dict interchange, caching and init."""

import copy
import pickle
import re

import pytest
import torch
import torch.nn.functional as F
from conftest import GROUPS, IMPLS, impl_id, random_input, randomize_

import sepgconv
from sepgconv import GConv2d
from sepgconv.registry import _REGISTRY, register


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_factory_returns_registered_subclass(vi):
    layer = GConv2d(2, 3, 3, variant=vi[0], impl=vi[1])
    assert isinstance(layer, GConv2d)
    assert type(layer) is sepgconv.get_implementation(*vi)
    assert (layer.variant, layer.impl) == vi


def test_registry_lists_the_paper_implementations():
    assert set(IMPLS) >= {
        ("full", "naive"),
        ("g", "naive"),
        ("g", "rearranged"),
        ("gc", "naive"),
        ("gc", "rearranged"),
    }


def test_registry_refuses_duplicates():
    cls = sepgconv.get_implementation("g", "naive")
    with pytest.raises(ValueError, match="already registered"):
        register(cls)


def test_registering_a_class_makes_it_reachable(monkeypatch):
    monkeypatch.setattr(sepgconv.registry, "_REGISTRY", dict(_REGISTRY))

    @register
    class Copy(sepgconv.get_implementation("gc", "rearranged")):
        impl = "copy"

    assert ("gc", "copy") in sepgconv.implementations()
    assert type(GConv2d(2, 2, 3, variant="gc", impl="copy")) is Copy


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(group="p6"), r"unknown group 'p6'; valid choices: \['p4', 'p4m'\]"),
        (dict(variant="h"), r"unknown variant 'h'; valid choices: \['full', 'g', 'gc'\]"),
        (
            dict(variant="g", impl="fast"),
            r"unknown implementation 'fast'.*\['naive', 'rearranged', ",
        ),
        (
            dict(variant="full", impl="rearranged"),
            r"unknown implementation 'rearranged'.*\['naive', 'auto'",
        ),
        (dict(kernel_size=0), "kernel_size"),
        (dict(kernel_size=(3, 5)), "must be square"),
        (dict(kernel_size=4, padding="same"), "even kernel_size 4"),
        (dict(padding=-1), "padding"),
        (dict(padding="full"), "padding"),
        (dict(stride=0), "stride"),
        (dict(in_channels=0), "in_channels"),
        (dict(out_channels=2.5), "out_channels"),
    ],
)
def test_bad_construction_names_the_problem(kwargs, message):
    args = dict(in_channels=2, out_channels=3, kernel_size=3) | kwargs
    with pytest.raises(ValueError, match=message):
        GConv2d(**args)


def test_subclass_refuses_conflicting_variant():
    cls = sepgconv.get_implementation("g", "naive")
    with pytest.raises(ValueError, match="implements variant='g'"):
        cls(2, 3, 3, variant="gc")


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("group", GROUPS)
def test_bad_input_names_the_problem(vi, group):
    g = sepgconv.get_group(group).order
    lift = GConv2d(3, 4, 3, group=group, lifting=True, variant=vi[0], impl=vi[1])
    conv = GConv2d(3, 4, 3, group=group, variant=vi[0], impl=vi[1])
    cases = [
        (lift, torch.randn(2, 3, g, 8, 8), ValueError, "4-D input.*lifting=False"),
        (lift, torch.randn(3, 8, 8), ValueError, "4-D input"),
        (lift, torch.randn(2, 5, 8, 8), ValueError, "expected 3 input channels.*got 5"),
        (conv, torch.randn(2, 3, 8, 8), ValueError, "5-D input.*lifting=True"),
        (conv, torch.randn(2, 2, g, 8, 8), ValueError, "expected 3 input channels.*got 2"),
        (
            conv,
            torch.randn(2, 3, g + 1, 8, 8),
            ValueError,
            f"group axis of size {g} on axis 2.*got {g + 1}",
        ),
        (
            conv,
            torch.randn(2, 3, g, 8, 8, dtype=torch.float64),
            TypeError,
            "dtype torch.float64 differs from the weights' dtype torch.float32",
        ),
        (conv, torch.randn(2, 3, g, 2, 2), ValueError, "smaller than kernel size 3"),
        (conv, [1, 2, 3], TypeError, "expected a torch.Tensor"),
    ]
    for layer, x, exc, message in cases:
        with pytest.raises(exc, match=message):
            layer(x)


def test_device_mismatch_is_named():
    conv = GConv2d(3, 4, 3).to("meta")
    with pytest.raises(ValueError, match="input is on cpu but the weights are on meta"):
        conv(torch.randn(1, 3, 4, 5, 5))


@pytest.mark.parametrize("variant", ["full", "g", "gc"])
def test_state_dict_moves_between_impls_unchanged(variant, monkeypatch):
    # every registered impl, also one no device here runs (built, never called)
    monkeypatch.setattr(sepgconv.checks, "runnable", lambda cls, device: None)
    layers = {
        impl: GConv2d(3, 4, 3, variant=variant, impl=impl) for impl in sepgconv.impls_of(variant)
    }
    shapes = {
        impl: {k: v.shape for k, v in layer.state_dict().items()} for impl, layer in layers.items()
    }
    assert len({tuple(sorted(s.items())) for s in shapes.values()}) == 1
    for layer in layers.values():
        assert all(not k.startswith("_") for k in layer.state_dict())


def _dense_reference(layer, x):
    """``layer(x)`` by definition: one dense conv with F̃, plus the bias per output channel."""
    f = layer.expand_filter().detach()
    n, go, c, gi, k, _ = f.shape
    y = F.conv2d(
        x.reshape(x.shape[0], c * gi, *x.shape[-2:]),
        f.reshape(n * go, c * gi, k, k),
        stride=layer.stride,
        padding=layer.padding,
    )
    return y.view(x.shape[0], n, go, *y.shape[-2:]) + layer.bias.detach().view(1, -1, 1, 1, 1)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_to_impl_keeps_outputs(vi, mode):
    # random weights and a random, non-zero bias: a path that drops the bias (or the
    # eval cache's bias) differs from the definition; eval mode runs the cached path
    layer = randomize_(GConv2d(3, 4, 3, variant=vi[0], impl=vi[1], padding=1, dtype=torch.float64))
    assert layer.bias.abs().min() > 0
    x = random_input(layer)
    expected = _dense_reference(layer, x)
    for impl in sepgconv.impls_of(vi[0]):
        if (vi[0], impl) not in IMPLS:  # one this CPU does not run
            continue
        other = getattr(layer.to_impl(impl), mode)()
        assert other.impl == impl
        with torch.no_grad():
            torch.testing.assert_close(other(x), expected, rtol=1e-10, atol=1e-10)
            torch.testing.assert_close(other(x), expected, rtol=1e-10, atol=1e-10)  # cached


def _cache(layer, x):
    """The eval cache that serves ``layer(x)`` under no_grad (impl="auto": the
    inference choice's delegate's; outside no_grad it would ask for the training
    choice, which may be another implementation with no cache)."""
    if layer.impl != "auto":
        return layer._cache
    with torch.no_grad():
        return layer._delegate_for(x)._cache


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
class TestEvalCache:
    def test_state_dict_identical_in_train_and_eval(self, vi):
        layer = randomize_(GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]))
        x = random_input(layer, dtype=torch.float32)
        # copies: state_dict() tensors share storage with the parameters themselves
        before = {k: v.detach().clone() for k, v in layer.state_dict().items()}
        layer.eval()
        with torch.no_grad():
            layer(x)
        after = layer.state_dict()
        assert list(before) == list(after)
        for k in before:
            torch.testing.assert_close(after[k], before[k], rtol=0, atol=0, msg=k)
        assert not any(n.startswith("_cache") for n, _ in layer.named_buffers())

    def test_cache_is_reused_and_invalidated(self, vi):
        layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]).eval()
        x = random_input(layer, dtype=torch.float32)
        with torch.no_grad():
            y0 = layer(x)
            cached = _cache(layer, x)[1]
            layer(x)
            assert _cache(layer, x)[1] is cached  # served from the cache
            # an in-place parameter update (what an optimiser step does) invalidates it
            next(layer.parameters()).mul_(2.0)
            y1 = layer(x)
        assert _cache(layer, x)[1] is not cached
        assert not torch.allclose(y0, y1)
        fresh = GConv2d(**layer.config())
        fresh.load_state_dict(layer.state_dict())
        torch.testing.assert_close(y1, fresh(x))

    def test_load_state_dict_invalidates(self, vi):
        layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]).eval()
        other = GConv2d(**layer.config())
        x = random_input(layer, dtype=torch.float32)
        with torch.no_grad():
            layer(x)
        layer.load_state_dict(other.state_dict())
        with torch.no_grad():
            torch.testing.assert_close(layer(x), other(x))

    def test_train_clears_and_grads_flow_in_eval(self, vi):
        layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]).eval()
        x = random_input(layer, dtype=torch.float32)
        with torch.no_grad():
            layer(x)
            assert _cache(layer, x) is not None
        # eval mode with autograd on: no stale, detached weights
        layer(x).sum().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
        layer.train()
        with torch.no_grad():
            assert _cache(layer, x) is None

    def test_copy_and_pickle(self, vi):
        layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]).eval()
        x = random_input(layer, dtype=torch.float32)
        with torch.no_grad():
            y = layer(x)
            for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
                assert type(clone) is type(layer)
                torch.testing.assert_close(clone(x), y)


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False])
def test_init_keeps_activation_scale(vi, lifting):
    # He init on the expanded filter: a unit-variance input gives output variance ≈ 2.
    torch.manual_seed(1)
    layer = GConv2d(32, 32, 3, lifting=lifting, variant=vi[0], impl=vi[1], padding=1, bias=False)
    x = random_input(layer, batch=8, size=16, dtype=torch.float32)
    var = layer(x)[..., 1:-1, 1:-1].var().item()
    assert 1.2 < var < 3.2, var


def test_repr_names_the_configuration():
    text = repr(GConv2d(3, 4, 5, group="p4m", variant="gc", impl="rearranged", padding=2))
    assert re.search(r"GCGConv2dRearranged\(3, 4, kernel_size=5, group=p4m, .*variant=gc", text)


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_eval_cache_follows_fused_optimizer_steps(vi):
    layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]).eval()
    x = random_input(layer, dtype=torch.float32)
    with torch.no_grad():
        before = layer(x)
    layer(x).square().sum().backward()
    torch.optim.SGD(layer.parameters(), lr=1.0, fused=True).step()  # no version bump
    with torch.no_grad():
        after = layer(x)
    layer.clear_cache()
    with torch.no_grad():
        torch.testing.assert_close(after, layer(x))
    assert not torch.allclose(before, after)


def test_weights_cached_in_inference_mode_are_not_reused_for_autograd():
    layer = GConv2d(3, 4, 3, variant="gc", impl="rearranged").eval().requires_grad_(False)
    x = random_input(layer, dtype=torch.float32)
    with torch.inference_mode():
        layer(x)
    x.requires_grad_()
    layer(x).sum().backward()  # would fail on inference tensors saved for backward
    assert x.grad is not None


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
def test_to_impl_shares_parameters_and_their_flags(vi):
    layer = GConv2d(3, 4, 3, variant=vi[0], impl=vi[1]).requires_grad_(False)
    for impl in [i for v, i in IMPLS if v == vi[0]]:  # those that can be built here
        other = layer.to_impl(impl)
        assert [id(p) for p in other.parameters()] == [id(p) for p in layer.parameters()]
        assert not any(p.requires_grad for p in other.parameters())


def test_numpy_integers_and_bad_types():
    import numpy as np

    assert GConv2d(np.int64(3), 4, 3).in_channels == 3
    with pytest.raises(ValueError, match="unknown variant"):
        GConv2d(3, 4, 3, variant=["g"])
    with pytest.raises(ValueError, match="unknown implementation ''"):
        GConv2d(3, 4, 3, variant="g", impl="")
    with pytest.raises(TypeError, match=r"convert the input \(e.g. x.to\(torch.float32\)\)"):
        GConv2d(3, 4, 3)(torch.ones(1, 3, 4, 5, 5, dtype=torch.int64))


def test_index_buffers_do_not_alias_the_group_tables():
    a, b = GConv2d(2, 2, 3), GConv2d(2, 2, 3)
    assert a._spatial_perm.data_ptr() != b._spatial_perm.data_ptr()


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_compile_traces_one_graph(vi, lifting, mode):
    # fullgraph=True fails on any graph break (e.g. the eval cache's bookkeeping)
    layer = getattr(GConv2d(3, 4, 3, lifting=lifting, variant=vi[0], impl=vi[1], padding=1), mode)()
    x = random_input(layer, dtype=torch.float32)
    expected = layer(x)  # eager first: impl="auto" makes its choice outside the graph
    torch._dynamo.reset()
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), expected)


def test_error_types_are_the_builtins_callers_reach_for():
    for bad in (dict(group="p6"), dict(variant="h"), dict(variant="g", impl="fast")):
        for exc in (ValueError, KeyError, sepgconv.UnknownChoiceError):
            with pytest.raises(exc, match="valid choices"):
                GConv2d(2, 3, 3, **bad)
    with pytest.raises(KeyError) as info:
        GConv2d(2, 3, 3, variant="h")
    assert str(info.value).startswith("unknown variant 'h'")  # no KeyError quoting
    conv = GConv2d(3, 4, 3)
    for x in (torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 8, 8, dtype=torch.float64)):
        for exc in (ValueError, TypeError, sepgconv.InputError):
            with pytest.raises(exc):
                conv(x)


def test_unavailable_implementations_are_listed_but_not_available(monkeypatch):
    monkeypatch.setattr(sepgconv.registry, "_REGISTRY", dict(_REGISTRY))

    @register
    class NeedsGPU(sepgconv.get_implementation("gc", "rearranged")):
        impl = "needs-gpu"

        @classmethod
        def unavailable_reason(cls, device="cpu"):
            return None if str(device).startswith("cuda") else "needs a GPU"

    assert ("gc", "needs-gpu") in sepgconv.implementations()
    assert ("gc", "needs-gpu") not in sepgconv.available_implementations("cpu")
    assert ("gc", "needs-gpu") in sepgconv.available_implementations("cuda")
    assert set(IMPLS) <= set(sepgconv.available_implementations("cpu"))
    # built only where some device of the process runs it (the CPU, or CUDA to move to)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(sepgconv.UnavailableError, match="^needs a GPU$"):
        GConv2d(4, 4, 3, variant="gc", impl="needs-gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert GConv2d(4, 4, 3, variant="gc", impl="needs-gpu").device.type == "cpu"
