"""``python -m sepgconv.fused.compile_check`` (GPU readiness without a GPU) stays in step
with the kernels: it passes exactly each kernel's compile-time arguments."""

from __future__ import annotations

import inspect

import pytest

pytest.importorskip("triton")
import triton.language as tl  # noqa: E402

from sepgconv.fused import compile_check, launch  # noqa: E402


def _constexpr_params(raw) -> set[str]:
    params = inspect.signature(raw).parameters.values()
    return {p.name for p in params if "constexpr" in str(p.annotation)}


@pytest.mark.parametrize("name", list(launch._KERNELS))
@pytest.mark.parametrize("gc", [False, True], ids=["g", "gc"])
def test_compile_check_passes_every_constexpr_of_each_kernel(name, gc):
    raw, configs, _ = launch._KERNELS[name]
    wanted = _constexpr_params(raw)
    assert wanted, f"{name}: no tl.constexpr parameters found"
    for acc in (tl.float32, tl.float64):
        given = compile_check._constexprs(name, gc, 3, 8, 4, 16, acc)
        for config in configs:
            assert set(given) | set(config.kwargs) == wanted, (name, config.kwargs)
            assert not set(given) & set(config.kwargs)  # the autotuner's own, never fixed here


def test_its_options_parse():
    with pytest.raises(SystemExit) as done:
        compile_check.main(["--help"])
    assert done.value.code == 0
