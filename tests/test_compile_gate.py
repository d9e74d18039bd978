"""`python -m sepgconv.fused.compile_check` is a gate: a shipped config that spills fails it.

Compiles for sm_90 with Triton's own ptxas (no GPU). One compile takes seconds on a
CPU, so the quick tests compile one or two configurations; the full gate (every
shipped configuration at k = 1, 3, 5, 7, fp32 and fp16) is marked slow.
"""

import pytest

pytest.importorskip("triton")
triton = pytest.importorskip("triton")

from sepgconv.fused import compile_check, launch  # noqa: E402


def test_gate_logic_on_recorded_rows(monkeypatch):
    row = dict(dtype="fp32", k=7, kernel="g_wgrad", config="NH=16 w4 s1", regs=255,
               stack_bytes=64, smem_bytes=0, known=None)  # fmt: skip
    ok = dict(row, stack_bytes=0, flags=[])
    assert compile_check.failures([ok]) == []
    spill = dict(row, flags=["spills"])
    assert compile_check.failures([ok, spill]) == [spill]
    known = dict(spill, known="listed")
    assert compile_check.failures([known]) == []


def test_a_spilling_config_fails_and_a_shipped_one_passes():
    spilling = triton.Config({"BLOCK_NH": 64, "BLOCK_CG": 64}, num_warps=4, num_stages=1)
    rows = compile_check.check(["gc_dx"], [3], ["fp32"], configs={"gc_dx": [spilling]})
    assert rows[0]["stack_bytes"] > 0 and compile_check.failures(rows) == rows  # 2.2 KB local
    shipped = launch._KERNELS["g_dx"][1][:1]
    rows = compile_check.check(["g_dx"], [3], ["fp32"], configs={"g_dx": shipped})
    assert compile_check.failures(rows) == [], rows


def test_known_exceptions_name_their_reason():
    for key, why in compile_check.KNOWN_SPILLS.items():
        label, k, *dtype = key
        assert label.split("[")[0] in launch._KERNELS and k in (1, 3, 5, 7) and len(why) > 20
        assert dtype in ([], ["fp16"], ["bf16"], ["fp32"])


def test_shipped_configs_are_few():
    # every config is a compile on the GPU (0.7-2.6 s each on the H200 run)
    assert sum(len(cfgs) for _, cfgs, _ in launch._KERNELS.values()) <= 14


@pytest.mark.slow
def test_full_gate_passes():
    assert compile_check.main([]) == 0


def test_a_new_resolution_or_batch_is_no_new_autotune_and_no_respecialisation():
    # compiled kernel set (decorating compiles nothing): sizes are runtime arguments,
    # not value-specialised, and the autotune key holds no pure size (H, W, B, splits)
    kernels = launch._kernel_set(False)
    for name, (_raw, configs, _) in launch._KERNELS.items():
        tuner = kernels[name]
        assert not {"H", "W", "B", "SPLITS", "H_OUT", "W_OUT"} & set(tuner.keys), name
        assert {"H", "W", "NH"} <= set(tuner.fn.do_not_specialize), name
        assert len(configs) == 2, name
    if hasattr(kernels["fwd"], "cache_results"):
        assert kernels["fwd"].cache_results  # the tuned choice persists across runs


def test_the_autotuner_tries_only_what_the_gate_checked():
    import torch

    fwd, dx = launch._KERNELS["fwd"][1], launch._KERNELS["gc_dx"][1]
    x32, x16 = torch.empty(1), torch.empty(1, dtype=torch.float16)

    def blocks(cfgs, **kw):
        return [c.kwargs["BLOCK_NH"] for c in cfgs]

    assert blocks(launch._prune_nh(fwd, {"NH": 64, "x_ptr": x32}, IS_GC=True, K=3)) == [16, 32]
    assert blocks(launch._prune_nh(fwd, {"NH": 64, "x_ptr": x16}, IS_GC=True, K=3)) == [16]
    assert blocks(launch._prune_nh(fwd, {"NH": 64, "x_ptr": x16}, IS_GC=False, K=3)) == [16, 32]
    assert blocks(launch._prune_nh(dx, {"NH": 64}, K=launch.NARROW_FROM_K)) == [16]
    assert blocks(launch._prune_nh(dx, {"NH": 8}, K=3)) == [16]  # no block wider than NH
