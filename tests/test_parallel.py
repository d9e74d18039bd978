"""Multi-device training: nn.DataParallel replicas and DistributedDataParallel.

DataParallel needs several GPUs; what it does to a module is reproduced here on
the CPU: :func:`replicate_like_data_parallel` follows
``torch.nn.parallel.replicate`` step by step (``_replicate_for_data_parallel()``
on every module, then each parameter's copy set as a plain tensor attribute,
each buffer's copy put in ``_buffers``), with differentiable copies in place of
the broadcast. DistributedDataParallel runs for real: two CPU processes on gloo.
"""

from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest
import torch
from conftest import ALL_IMPLS, IMPLS, impl_id, random_input, randomize_
from torch import nn

import sepgconv
from sepgconv import GConv2d
from sepgconv.fused import _runtime

TOL = dict(rtol=1e-10, atol=1e-10)  # float64


def replicate_like_data_parallel(module: nn.Module) -> nn.Module:
    """One replica of ``module`` as ``torch.nn.parallel.replicate`` makes it, on the CPU."""
    modules = list(module.modules())
    copies = {m: m._replicate_for_data_parallel() for m in modules}
    for m in modules:
        replica = copies[m]
        for name, child in m._modules.items():
            replica._modules[name] = None if child is None else copies[child]
        for name, param in m._parameters.items():
            if param is None:
                replica._parameters[name] = None
            else:  # Broadcast's output: a differentiable copy, not a Parameter
                setattr(replica, name, param.clone())
        for name, buf in m._buffers.items():
            replica._buffers[name] = None if buf is None else buf.clone()
    return copies[module]


def _cases():
    """Every registered implementation; fused runs interpreted here (tiny shapes)."""
    for vi in ALL_IMPLS:
        marks = ()
        if vi not in IMPLS and vi[1] == "fused":
            marks = pytest.mark.skipif(not _runtime.triton_installed(), reason="needs Triton")
        elif vi not in IMPLS:
            continue
        yield pytest.param(vi, id=impl_id(vi), marks=marks)


@pytest.fixture
def runnable(monkeypatch, request):
    vi = request.node.callspec.params["vi"]
    if vi[1] == "fused":
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    return vi


def _layer(vi, lifting=False, **kw):
    layer = GConv2d(
        2, 3, 3, variant=vi[0], impl=vi[1], lifting=lifting, padding=1, dtype=torch.float64, **kw
    )
    randomize_(layer)
    return layer


@pytest.mark.parametrize("vi", list(_cases()))
def test_a_data_parallel_replica_computes_the_layer_and_its_gradients(vi, runnable):
    layer = _layer(vi)
    x = random_input(layer, batch=2, size=6)
    y = layer(x)
    (y * y).sum().backward()
    expected = {n: p.grad.clone() for n, p in layer.named_parameters()}
    layer.zero_grad()

    replica = replicate_like_data_parallel(layer)
    assert not replica._parameters or set(replica._parameters.values()) == {None}
    assert (replica.device, replica.dtype) == (layer.device, layer.dtype)
    y_rep = replica(x)
    torch.testing.assert_close(y_rep, y, **TOL)
    (y_rep * y_rep).sum().backward()  # through the copies to the original's parameters
    for name, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, expected[name], **TOL, msg=name)


@pytest.mark.parametrize("vi", list(_cases()))
def test_a_replica_in_eval_mode_uses_its_own_parameters(vi, runnable):
    """The eval cache of derived weights is keyed by the replica's tensors, not the
    original's (a replica on another device must not reuse weights built there)."""
    layer = _layer(vi).eval()
    x = random_input(layer, batch=1, size=6)
    with torch.no_grad():
        y = layer(x)  # fills the original's cache
        replica = replicate_like_data_parallel(layer)
        for name in replica._replica_params:
            t = replica.__dict__.get(name)
            if t is not None:
                t.mul_(2.0)  # the replica's copies differ from the original's parameters
        y2 = replica(x)
    bias = layer.bias.view(1, -1, 1, 1, 1)  # one per output channel, shared over G
    # both factors doubled for the separable variants (K·w), the filter for full
    scale = 2.0 if vi[0] == "full" else 4.0
    torch.testing.assert_close(y2, scale * (y - bias) + 2 * bias, **TOL)


@pytest.mark.parametrize("vi", [vi for vi in IMPLS if vi[1] == "auto"], ids=impl_id)
def test_auto_replicas_delegate_with_their_own_parameters(vi):
    layer = _layer(vi)
    x = random_input(layer, batch=2, size=6)
    layer(x)  # the original has a delegate now
    replica = replicate_like_data_parallel(layer)
    assert replica._delegates == {} and layer._delegates
    replica(x).sum().backward()
    (delegate,) = replica._delegates.values()
    for name in replica._replica_params:
        assert delegate.__dict__.get(name) is replica.__dict__.get(name)
    assert all(p.grad is not None for p in layer.parameters())


def test_a_replicated_network_matches_the_network():
    """A small p4 net (lifting, group layers of every variant, batch norm, pooling)."""
    net = nn.Sequential(
        GConv2d(1, 4, 3, lifting=True, padding=1),
        sepgconv.GroupBatchNorm(4),
        nn.ReLU(),
        GConv2d(4, 4, 3, variant="g", impl="rearranged", padding=1),
        GConv2d(4, 4, 3, variant="gc", impl="auto", padding=1),
        sepgconv.GroupPool("max"),
    ).double()
    x = torch.randn(2, 1, 7, 7, dtype=torch.float64)
    y = net(x)
    y.sum().backward()
    expected = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    replica = replicate_like_data_parallel(net)
    torch.testing.assert_close(replica(x), y, **TOL)
    replica(x).sum().backward()
    for p, g in zip(net.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, **TOL)


# ---------------------------------------------------------------------- #
# DistributedDataParallel: two CPU processes on gloo
# ---------------------------------------------------------------------- #
DDP_TIMEOUT_S = 120  # the whole spawn; a hung rendezvous or collective fails the test
WORLD = 2


def _batch(vi):
    torch.manual_seed(1)
    layer = _layer(vi)
    x = random_input(layer, batch=2 * WORLD, size=6)
    return layer, x


def _loss(y):
    return (y * y).mean()


def _ddp_worker(rank, port, out_dir, impls):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    sepgconv.autotune.set_budget(0.02, min_rounds=2, max_rounds=4)
    store = dist.TCPStore("127.0.0.1", port, is_master=False, timeout=timedelta(seconds=60))
    dist.init_process_group("gloo", store=store, rank=rank, world_size=WORLD)
    try:
        results = {}
        for vi in impls:
            layer, x = _batch(vi)
            model = DDP(layer)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            part = x.chunk(WORLD)[rank]
            _loss(model(part)).backward()  # DDP averages the ranks' gradients
            grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
            opt.step()
            results[impl_id(vi)] = {
                "grads": grads,
                "params": {n: p.detach().clone() for n, p in layer.named_parameters()},
            }
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_distributed_data_parallel_gradients_equal_one_process(tmp_path):
    """Each rank takes half the batch; after DDP's all-reduce every rank holds the
    gradient (and, after one SGD step, the parameters) of the whole batch in one
    process. auto chooses per rank: any choice computes the same function."""
    import torch.distributed as dist
    import torch.multiprocessing as mp

    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    impls = list(IMPLS)  # every implementation the CPU runs, auto included
    # the store's server lives here, on a port the OS picks (no collisions under xdist)
    store = dist.TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    ctx = mp.spawn(_ddp_worker, args=(store.port, str(tmp_path), impls), nprocs=WORLD, join=False)
    deadline = time.monotonic() + DDP_TIMEOUT_S
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail(f"DDP workers still running after {DDP_TIMEOUT_S} s")
    finally:
        for proc in ctx.processes:
            if proc.is_alive():
                proc.kill()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for vi in impls:
        layer, x = _batch(vi)  # the same seeded layer and batch, in one process
        opt = torch.optim.SGD(layer.parameters(), lr=0.1)
        # the mean of the ranks' mean losses: the mean over the whole batch
        _loss(layer(x)).backward()
        opt.step()
        for got in ranks:
            got = got[impl_id(vi)]
            for name, p in layer.named_parameters():
                torch.testing.assert_close(got["grads"][name], p.grad, **TOL, msg=name)
                torch.testing.assert_close(got["params"][name], p.detach(), **TOL, msg=name)
