import os

import _alone
import pytest
import torch

import sepgconv

# bench run / bench models / pytest bench/ look at the machine first and refuse a busy
# one (bench.measure.gate). The tests run them on a shared machine, beside other xdist
# workers: they measure anyway (the runs are marked), as --force does; the gate itself
# is tested with made-up readings (tests/test_gate.py). Inherited by subprocesses.
os.environ["SEPGCONV_BENCH_FORCE"] = "1"
# Under pytest-xdist (tox: -n 2) a worker's environment says so, and a child
# `pytest bench/ --benchmark-only` that inherits it takes itself for a worker
# (pytest-benchmark then refuses --benchmark-only): the children start clean.
for _name in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
    os.environ.pop(_name, None)

GROUPS = ["p4", "p4m"]
ALL_IMPLS = sepgconv.implementations()  # every registered (variant, impl)
# those that run on this machine's CPU (an implementation that needs a GPU or an
# optional package is tested in its own module, and skipped there when absent)
IMPLS = sepgconv.available_implementations("cpu")
# impl="auto" times its candidates on the first call per key: keep that short in tests
sepgconv.autotune.set_budget(0.02, min_rounds=2, max_rounds=4)


def impl_id(vi):
    return f"{vi[0]}-{vi[1]}"


@pytest.fixture(autouse=True)
def _alone_when_timing(request):
    """A test marked ``timing`` runs with no other test beside it (tests/_alone.py)."""
    with _alone.held(request.node.get_closest_marker("timing") is not None):
        yield


@pytest.fixture(autouse=True)
def _deterministic_seed():
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """One intra-op thread: fast and steady timings on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_input(layer, batch=2, size=9, dtype=torch.float64, generator=None):
    """A random input of the right layout for ``layer`` (never zeros)."""
    if layer.lifting:
        shape = (batch, layer.in_channels, size, size)
    else:
        shape = (batch, layer.in_channels, layer.g_in, size, size)
    return torch.randn(shape, dtype=dtype, generator=generator)


def randomize_(module):
    """Give every parameter (bias included) random values, so nothing is zero."""
    with torch.no_grad():
        for p in module.parameters():
            p.normal_()
    return module


#: The fast subset (tox -e fast: -m "not slow") thins the two big equivalence grids:
#: their impl="auto" cases (auto runs naive or rearranged, which the same grids test)
#: and their k = 5 cases run in the whole suite only (docs/testing.md).
_THINNED = {"test_equivariance.py", "test_memory_format.py"}


#: fast-subset trims by test id: a paper model exported from its fused (interpreted)
#: implementation, ~13 s each; the naive and rearranged exports stay fast
_SLOW_IDS = ("test_every_paper_model_exports_to_the_same_function[g-p4cnn-fused]",
             "test_every_paper_model_exports_to_the_same_function[gc-p4cnn-fused]")  # fmt: skip


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.name in _SLOW_IDS:
            item.add_marker(pytest.mark.slow)
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.path.name not in _THINNED or not params:
            continue
        impl = params.get("impl") or (params.get("vi") or (None, None))[1]
        if impl == "auto" or params.get("k") == 5:
            item.add_marker(pytest.mark.slow)


def close_scaled(actual, expected, rtol, atol, msg=None):
    """``assert_close`` with ``atol`` relative to the largest |expected| (sums of random
    terms reach ~1e2), for the fused kernels' comparisons with naive."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol * scale, msg=msg or None)


def assert_same_forward_and_gradients(layer, reference, x, tol):
    """``layer`` and ``reference`` (same parameters) agree on the output, the input's
    gradient and every parameter's gradient, within ``tol`` (``close_scaled``'s)."""
    x1 = x.detach().clone().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    y1, y2 = layer(x1), reference(x2)
    close_scaled(y1, y2, **tol)
    grad_out = torch.randn_like(y1)
    (y1 * grad_out).sum().backward()
    (y2 * grad_out).sum().backward()
    close_scaled(x1.grad, x2.grad, **tol, msg="grad of the input")
    named = zip(layer.named_parameters(), reference.named_parameters(), strict=True)
    for (name, p1), (_, p2) in named:
        close_scaled(p1.grad, p2.grad, **tol, msg=f"grad of {name}")
