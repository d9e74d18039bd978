"""Compiling the sweep's Triton kernels before it (bench.pipeline.precompile) and the
launcher's compile-only mode it relies on; the GPU half is in tests/test_on_gpu.py."""

from __future__ import annotations

import pytest

from bench.pipeline import precompile
from bench.sweep import cost, profiles

launch = pytest.importorskip("sepgconv.fused.launch", reason="needs Triton")


def test_one_task_per_kernel_and_compile_constants_heaviest_first():
    cases = profiles.get_profile("full").cases("cuda", profiles.implementations(False))
    sigs = precompile.signatures(cases)
    fused = [c for c in cases if c.impl.impl == "fused"]
    wanted = set()
    for c in fused:
        wanted.update(cost._fused_keys(c.shape, c.impl.variant, c.pass_)[0])
    assert set(sigs) == wanted  # every kernel a fused row needs, each once
    ks = [shape.k for shape, *_ in sigs.values()]
    assert ks == sorted(ks, reverse=True)  # the long poles (large k) start first
    for key, (_shape, variant, pass_, kernel) in sigs.items():
        assert kernel == key[0] and kernel in cost.fused_kernels(_shape, variant, pass_)


def test_nothing_to_precompile_off_cuda_or_without_fused_rows():
    cpu = profiles.get_profile("smoke").cases("cpu", profiles.implementations(False))
    assert "CUDA only" in precompile.precompile(cpu)["skipped"]
    plain = [c for c in cpu if c.impl.impl != "fused"]
    assert precompile.precompile(plain) == {
        "signatures": 0, "workers": 0, "wall_s": 0.0, "failed": {}
    }  # fmt: skip


class _Kernel:
    def __init__(self):
        self.calls = []

    def warmup(self, *args, grid, **kwargs):
        self.calls.append((args, grid, kwargs))

    def __getitem__(self, grid):  # a launch: must not happen in compile-only mode
        raise AssertionError("launched")


def test_compile_only_compiles_the_wanted_kernels_and_launches_nothing(monkeypatch):
    fwd, dx = _Kernel(), _Kernel()
    monkeypatch.setattr(launch, "_kernel_set", lambda interpret: {"fwd": fwd, "g_dx": dx})
    monkeypatch.setattr(launch, "interpret_enabled", lambda: False)
    with launch.compile_only(("g_dx",)):
        kernels, _ = launch._kernels()
        kernels["fwd"][(1,)](1, 2, K=3)  # not wanted: neither compiled nor launched
        kernels["g_dx"][(4,)](5, K=3)
    assert fwd.calls == [] and dx.calls == [((5,), (4,), {"K": 3})]
    with launch.compile_only():
        launch._kernels()[0]["fwd"][(1,)](7)
    assert fwd.calls == [((7,), (1,), {})]
    assert launch._kernels()[0]["fwd"] is fwd  # outside: the kernels themselves
