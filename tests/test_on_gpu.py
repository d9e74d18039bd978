"""Checks that need a CUDA GPU; skipped without one (CI never has one).

``tools/gpu-run.sh`` runs them on a lent GPU before its sweep. What the CPU tests
cannot show:

* cuDNN's and cuBLAS's paths and the compiled Triton kernels (``impl="fused"``,
  checked only in Triton's interpreter on the CPU) agree with naive on the GPU,
  forward and backward, in float32 (TF32 off) and float16, and stay equivariant
  up to float32 rounding;
* CUDA-event timing measures the GPU's work, not the launch;
* the CUDA allocator's peak above what was allocated before is the call's
  working memory; NVML answers; ``env.json`` names the GPU and its clocks;
* a quiet run is not disturbed by its own boost clock, and a second process
  running matmuls on the GPU is caught (``-k contention``: run these alone, with
  no other process on the GPU, as ``tools/gpu-run.sh`` does);
* the precompiled Triton kernels land in Triton's disk cache.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch
from conftest import GROUPS, impl_id, random_input, randomize_

import sepgconv
from bench.measure import contention, env, gpu_probe, memory, timing
from sepgconv import GConv2d, get_group

CUDA = torch.cuda.is_available()
pytestmark = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
IMPLS = sepgconv.available_implementations("cuda") if CUDA else []
REL32 = 1e-4  # float32 (TF32 off): summation order differs between implementations
REL16 = 1e-2  # float16 inputs and weights against float32 on the same rounded values


@pytest.fixture(autouse=True)
def exact_float32(monkeypatch):
    """TF32 off (it rounds float32 convolutions to 10 mantissa bits); compiled Triton."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def _pair(group, lifting, vi, dtype=torch.float32):
    variant, impl = vi
    layer = GConv2d(5, 6, 3, group=group, lifting=lifting, variant=variant, impl=impl,
                    padding=1, device="cuda", dtype=dtype)  # fmt: skip
    randomize_(layer)
    naive = GConv2d(**(layer.config() | {"impl": "naive"}), device="cuda", dtype=dtype)
    naive.load_state_dict(layer.state_dict())
    return layer, naive


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
@pytest.mark.parametrize("group", GROUPS)
def test_forward_backward_and_equivariance_on_the_gpu(group, lifting, vi):
    layer, naive = _pair(group, lifting, vi)
    x = random_input(layer, batch=2, size=12, dtype=torch.float32).cuda().requires_grad_()
    x_ref = x.detach().clone().requires_grad_()
    y, y_ref = layer(x), naive(x_ref)
    assert _rel(y, y_ref) < REL32
    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    assert _rel(x.grad, x_ref.grad) < REL32
    ref_grads = dict(naive.named_parameters())
    for name, p in layer.named_parameters():
        assert _rel(p.grad, ref_grads[name].grad) < REL32, name
    grp = get_group(group)
    with torch.no_grad():
        for u in range(grp.order):
            assert _rel(layer(grp.act(x, u)), grp.act(layer(x), u)) < REL32, u


@pytest.mark.parametrize("vi", IMPLS, ids=impl_id)
@pytest.mark.parametrize("group", GROUPS)
def test_float16_agrees_with_float32_on_the_same_rounded_values(group, vi):
    layer, _ = _pair(group, False, vi, dtype=torch.float16)
    ref = GConv2d(**(layer.config() | {"impl": "naive"}), device="cuda", dtype=torch.float32)
    ref.load_state_dict({k: v.float() for k, v in layer.state_dict().items()})
    x = random_input(layer, batch=2, size=12, dtype=torch.float32).cuda().half()
    with torch.no_grad():
        assert _rel(layer(x), ref(x.float())) < REL16


FUSED = [vi for vi in IMPLS if vi[1] == "fused"]
#: TF32 keeps 10 mantissa bits of each tl.dot input: relative error ~2⁻¹¹ per product,
#: a few times that on a sum of CG = 32 random-signed terms, against the largest value
REL_TF32 = 5e-3


def _same_values(layer, dtype):
    """A float64 copy of ``layer`` (impl naive) holding exactly its (rounded) values."""
    ref = GConv2d(**(layer.config() | {"impl": "naive"}), device="cuda", dtype=dtype)
    ref.load_state_dict({k: v.to(dtype) for k, v in layer.state_dict().items()})
    return ref


@pytest.mark.skipif(not any(vi == ("gc", "fused") for vi in FUSED), reason="no fused gc")
def test_fused_tf32_dot_path_has_its_own_tolerance():
    # gc with C_in·G_in = 32 >= 16: the 1×1 runs on tl.dot, in TF32 when cuDNN may use it
    layer = GConv2d(8, 6, 3, group="p4", variant="gc", impl="fused", padding=1, device="cuda")
    randomize_(layer)
    ref = _same_values(layer, torch.float64)
    x = random_input(layer, batch=2, size=16, dtype=torch.float32).cuda()
    with torch.no_grad():
        y_ref = ref(x.double())
        exact = _rel(layer(x), y_ref)  # the fixture turned TF32 off: IEEE fp32 dot
        torch.backends.cudnn.allow_tf32 = True
        tf32 = _rel(layer(x), y_ref)
    assert exact < 1e-5
    assert tf32 < REL_TF32
    assert tf32 > exact  # the TF32 path really ran (it rounds the dot's inputs)


@pytest.mark.parametrize("programs", [1, 5, None], ids=["1", "5", "default"])
@pytest.mark.parametrize("vi", FUSED, ids=impl_id)
def test_fused_staged_taps_on_many_tiles_and_few_programs(vi, programs, monkeypatch):
    """Compiled, the forward's persistent programs loop over many items and reuse their
    X̃ scratch slot (the barriers around the staging keep the slot's reads and writes
    apart): partial tiles, stride 2, k = 3 and 5, against naive in exact float32."""
    from sepgconv.fused import launch

    if programs is not None:
        monkeypatch.setattr(launch, "forward_programs", lambda interpret, device: programs)
    for k, stride, size in ((3, 1, 37), (5, 2, 29)):
        layer = GConv2d(5, 6, k, group="p4", variant=vi[0], impl="fused", stride=stride,
                        padding=k // 2, device="cuda")  # fmt: skip
        randomize_(layer)
        naive = GConv2d(**(layer.config() | {"impl": "naive"}), device="cuda")
        naive.load_state_dict(layer.state_dict())
        x = random_input(layer, batch=3, size=size, dtype=torch.float32).cuda()
        with torch.no_grad():
            assert _rel(layer(x), naive(x)) < REL32, (k, stride, programs)


@pytest.mark.parametrize("vi", FUSED, ids=impl_id)
def test_fused_bfloat16_against_float32_on_the_same_rounded_values(vi, monkeypatch):
    # fp32 accumulation, one rounding to bf16 at the store: half a bf16 ulp (2⁻⁸) of the
    # largest value, forward and dX (an fp16/bf16 accumulator would exceed it). The staged
    # g forward: the tl.dot one also rounds F̃ to bf16 (test_fused_g_dot_path_compiled)
    monkeypatch.setenv("SEPGCONV_FUSED_G_FORWARD", "staged")
    layer, _ = _pair("p4", False, vi, dtype=torch.bfloat16)
    ref = _same_values(layer, torch.float32)
    x = random_input(layer, batch=2, size=12, dtype=torch.float32).cuda().bfloat16()
    x.requires_grad_()
    x_ref = x.detach().float().requires_grad_()
    y, y_ref = layer(x), ref(x_ref)
    assert y.dtype == torch.bfloat16
    assert _rel(y, y_ref) <= 1.05 * 2.0**-8
    g = torch.randn_like(y_ref).bfloat16()
    y.backward(g)
    y_ref.backward(g.float())
    assert _rel(x.grad, x_ref.grad) <= 1.05 * 2.0**-8


@pytest.mark.skipif(("g", "fused") not in FUSED, reason="no fused g")
@pytest.mark.parametrize("lifting", [True, False], ids=["lifting", "group"])
def test_fused_g_dot_path_compiled(lifting, monkeypatch):
    """The tl.dot g forward compiled (sepgconv.fused.kernels_dot): taken by the rule in
    TF32 and bf16, not in strict fp32; against naive in fp32 (forced, IEEE), TF32 and
    bf16 (half a bf16 ulp of an fp32 conv with F̃ rounded to bf16, as the kernel does);
    partial pixel and channel blocks, stride 2, k = 5."""
    import torch.nn.functional as F

    from sepgconv.fused import launch

    calls = []
    real = launch._forward_dot
    monkeypatch.setattr(launch, "_forward_dot", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    for k, stride, size in ((3, 1, 37), (5, 2, 29)):
        c_in = 20 if lifting else 7  # C_in·G_in ≥ 16: bf16 takes the dot path by the rule
        layer = GConv2d(c_in, 5, k, group="p4m", lifting=lifting, variant="g", impl="fused",
                        stride=stride, padding=k // 2, device="cuda", bias=False)  # fmt: skip
        randomize_(layer)
        naive = GConv2d(**(layer.config() | {"impl": "naive"}), device="cuda")
        naive.load_state_dict(layer.state_dict())
        x = random_input(layer, batch=3, size=size, dtype=torch.float32).cuda()
        with torch.no_grad():
            y_ref = naive.double()(x.double())
            layer(x)
            assert not calls  # strict fp32 (the fixture): the staged kernel
            monkeypatch.setenv("SEPGCONV_FUSED_G_FORWARD", "dot")
            assert _rel(layer(x), y_ref) < REL32, (k, stride)
            monkeypatch.delenv("SEPGCONV_FUSED_G_FORWARD")
            torch.backends.cudnn.allow_tf32 = True
            assert _rel(layer(x), y_ref) < REL_TF32, (k, stride)
            torch.backends.cudnn.allow_tf32 = False
            assert len(calls) == 2
            # bf16: the rounded parameters and input, F̃ rounded once, fp32 sums
            layer16 = layer.bfloat16()
            f = layer.float().expand_filter()
            f = f.reshape(f.shape[0] * f.shape[1], -1, k, k).bfloat16().float()
            x16 = x.bfloat16()
            ref = F.conv2d(x16.float().flatten(1, -3), f, stride=stride, padding=k // 2)
            y16 = layer16.bfloat16()(x16)
            assert len(calls) == 3 and y16.dtype == torch.bfloat16
            assert _rel(y16, ref.reshape(y16.shape)) <= 1.05 * 2.0**-8, (k, stride)
            calls.clear()


def test_cuda_events_time_the_gpus_work_not_the_launch():
    a = torch.randn(4096, 4096, device="cuda")  # ~140 GFLOP per product: milliseconds
    steps = {"one": lambda: a @ a, "three": lambda: a @ a @ a @ a}
    out = timing.time_interleaved(steps, "cuda", timing.Timing(budget_s=0.1, max_samples=20))
    one, three = out["one"], out["three"]
    assert one.iterations == three.iterations == 1 and one.n >= 5
    wall = sorted(timing._call_s(steps["one"], torch.device("cuda")) for _ in range(5))[2]
    assert 0.5 * wall <= one.median_s <= 1.1 * wall  # a launch alone is microseconds
    assert 2.0 <= three.median_s / one.median_s <= 4.0  # three products, one event pair


def test_the_allocator_peak_is_the_calls_working_memory():
    x = torch.randn(1024, 1024, device="cuda")  # 4 MiB, allocated before the call

    def step():
        return (x * 2) + 1  # a 4 MiB temporary alive while the 4 MiB result is made

    step()
    mem = memory.peak_memory(step, "cuda")
    assert 8 * 2**20 <= mem.peak_mem_bytes <= 8 * 2**20 + 2**16  # not 4 (result only), not 12
    assert mem.mem_reserved_bytes >= mem.peak_mem_bytes
    if env._nvml() is not None:
        assert mem.nvml_used_bytes > mem.peak_mem_bytes


def test_env_names_the_gpu_and_nvml_its_clocks():
    e = env.collect("cuda", roofline_ceilings=False)
    assert e["device"] == "cuda" and e["device_name"] == torch.cuda.get_device_name(0)
    assert e["gpu_memory_bytes"] > 0 and e["cuda"]
    if e["nvml"]:
        assert e["driver"]
        state = env.gpu_state("cuda")
        assert state["sm_clock_mhz"] > 0 and "throttle_reasons" in state


def test_contention_a_quiet_gpu_run_is_not_disturbed_by_its_own_boost():
    # the first H200 run was flagged for "GPU SM clock moved 345 -> 1980 MHz"
    watch = contention.RunWatch("cuda", torch.get_num_threads(), settle_s=0.2)
    assert watch.gpu_start.get("loaded") and watch.gpu_start["sm_clock_mhz"] > 0
    windows = []
    for _ in range(3):
        start = contention.read_counters()
        a = torch.randn(2048, 2048, device="cuda")
        for _ in range(20):
            a @ a
        torch.cuda.synchronize()
        windows.append(contention.close_window(start, 1, "cuda"))
    verdict = watch.verdict([bool(w.reasons()) for w in windows], None)
    gpu_only = [r for r in verdict["reasons"] if "GPU" in r or "gpu" in r]
    assert gpu_only == [], verdict["reasons"]


def test_contention_a_second_process_running_matmuls_on_the_gpu_is_caught():
    env.warm_gpu("cuda")
    gpu_probe.probe("cuda").set_reference()
    start = contention.read_counters()
    assert contention.close_window(start, 1, "cuda").reasons() == []
    code = (
        "import sys, time, torch\n"
        "a = torch.randn(8192, 8192, device='cuda'); a @ a; torch.cuda.synchronize()\n"
        "print('busy', flush=True)\n"
        "t = time.time()\n"
        "while time.time() - t < 20:\n"
        "    a @ a; torch.cuda.synchronize()\n"
    )
    neighbour = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert neighbour.stdout.readline().strip() == "busy"
        time.sleep(0.5)
        windows = []
        for _ in range(3):
            start = contention.read_counters()
            torch.cuda.synchronize()
            windows.append(contention.close_window(start, 1, "cuda"))
    finally:
        neighbour.kill()
        neighbour.wait()
    assert all(w.reasons() for w in windows), [w.as_dict() for w in windows]


@pytest.mark.skipif("fused" not in {i for _, i in IMPLS}, reason="needs Triton")
def test_precompiled_kernels_land_in_tritons_disk_cache(tmp_path, monkeypatch):
    from bench.pipeline import precompile
    from bench.sweep import profiles, shapes

    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))  # the workers inherit it
    shape = shapes.Shape("p4", "group", 8, 8, 3, 16, 16, 2, "float32", "cuda")
    cases = [profiles.Case(shape, shapes.Impl(v, "fused"), p)
             for v in ("g", "gc") for p in ("fwd", "fwdbwd")]  # fmt: skip
    record = precompile.precompile(cases, workers=4, timeout_s=240)
    assert record["signatures"] == len(precompile.signatures(cases)) > 0
    assert record["failed"] == {}, record
    assert any(p.suffix == ".cubin" for p in tmp_path.rglob("*")), "nothing compiled"
