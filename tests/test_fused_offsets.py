"""Channel × plane offsets of the fused kernels are int64 (a tensor past 2³¹ elements).

A real input past 2³¹ elements is too big for CI, so two cheap checks: (1) the
kernels' source computes every plane size in int64 and multiplies no channel index
by an int32 plane, and (2) under the interpreter (which wraps int32 like the GPU)
the idiom the kernels use gives the int64 offset where the int32 one overflows.
"""

import inspect
import re

import pytest
import torch

triton = pytest.importorskip("triton")
tl = pytest.importorskip("triton.language")

from sepgconv.fused import common, kernels_bwd, kernels_fwd  # noqa: E402


def _sources():
    return {m.__name__: inspect.getsource(m) for m in (kernels_fwd, kernels_bwd, common)}


def test_every_plane_size_is_int64():
    for name, src in _sources().items():
        planes = re.findall(r"^\s*(out_plane|plane) = (.+)$", src, flags=re.M)
        assert planes or name.endswith("common"), name  # the helpers take planes as arguments
        for var, expr in planes:
            assert expr.startswith(("H.to(tl.int64) * W", "H_OUT.to(tl.int64) * W_OUT")), (
                name, var, expr,
            )  # fmt: skip
        # no plane product written out in int32 inside an offset
        assert not re.search(r"\(H \* W\)|\(H_OUT \* W_OUT\)", src), name


def _offsets(out_ptr, H, W, J):
    plane32 = H * W
    plane = H.to(tl.int64) * W  # the kernels' idiom
    tl.store(out_ptr + tl.arange(0, 1), J * plane32 + tl.arange(0, 1))
    tl.store(out_ptr + 1 + tl.arange(0, 1), J * plane + tl.arange(0, 1))


def test_the_idiom_passes_2_31_where_int32_wraps(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    kernel = triton.jit(_offsets)  # decorated here: interpreted
    out = torch.zeros(2, dtype=torch.int64)
    kernel[(1,)](out, 46341, 46341, 3)  # channel 3 of a 46341² plane: 6.4e9
    assert out[1].item() == 3 * 46341 * 46341
    assert out[0].item() != 3 * 46341 * 46341  # what an int32 plane would have given
