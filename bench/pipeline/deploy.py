"""The deployment rows of ``python -m bench models --deploy`` (see :mod:`bench.pipeline.models`).

What would be shipped, made from a frozen eval copy of the naive model:
``export`` (:func:`sepgconv.export_modules`, eager), ``export-compiled`` (the
same under ``torch.compile``) and, on the CPU, ``onnxruntime`` (the ONNX file of
:func:`sepgconv.export.to_onnx` in an ONNX Runtime session). ``docs/deploy.md``.
"""

from __future__ import annotations

import copy
import time

import torch

import sepgconv

#: the deployment rows (``--deploy``), all of the ``fwd`` pass
DEPLOY_IMPLS = ("export", "export-compiled", "onnxruntime")
#: rows whose memory torch's allocator events do not see
NO_TORCH_MEMORY = ("onnxruntime",)


def rel_diff(y: torch.Tensor, ref: torch.Tensor) -> float:
    return float((y - ref).abs().max() / ref.abs().max().clamp_min(1e-30))


class OrtModule(torch.nn.Module):
    """An ONNX Runtime session called like a module (inference only; CPU tensors)."""

    def __init__(self, data: bytes, threads: int):
        super().__init__()
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def forward(self, x):
        return torch.from_numpy(self.session.run(None, {self.input_name: x.numpy()})[0])


def deploy_variants(naive: torch.nn.Module, device: str, log=print, impls=DEPLOY_IMPLS):
    """``({impl: module}, frozen naive copy, facts)`` of the deployment rows.

    The exports are made from a frozen eval copy of ``naive`` (the native rows'
    training steps move its batch-norm statistics later). ``onnxruntime`` only
    on the CPU, and only when onnx/onnxscript/onnxruntime import; a failure is
    logged and kept in the facts (``onnx_error``), and the row left out.
    ``impls``: the subset of :data:`DEPLOY_IMPLS` to make.
    """
    from sepgconv.export import to_onnx

    frozen = copy.deepcopy(naive).eval()
    t0 = time.perf_counter()
    plain = sepgconv.export_modules(frozen).eval()
    info: dict = {"export_s": round(time.perf_counter() - t0, 3), "compile_s": {}}
    info["params_stored"] = sum(p.numel() for p in plain.parameters())
    out = {"export": plain}
    if "export-compiled" in impls:
        out["export-compiled"] = torch.compile(copy.deepcopy(plain))
    if "onnxruntime" in impls and torch.device(device).type == "cpu":
        try:
            x = naive.example_input(2)
            t0 = time.perf_counter()
            batch = torch.export.Dim("batch", min=1, max=1024)
            data = to_onnx(frozen, x, dynamic_shapes=({0: batch},))
            info["onnx_s"] = round(time.perf_counter() - t0, 3)
            info["onnx_bytes"] = len(data)
            out["onnxruntime"] = OrtModule(data, torch.get_num_threads())
        except Exception as e:  # noqa: BLE001 - no runtime here, or the exporter failed
            info["onnx_error"] = f"{type(e).__name__}: {e}".replace("\n", " ")[:300]
            log(f"onnxruntime rows left out: {info['onnx_error']}")
    return {k: v for k, v in out.items() if k in impls}, frozen, info


def first_calls(deployed: dict, x: torch.Tensor, info: dict, batch: int, log=print) -> None:
    """Call each deployed model once on ``x`` (torch.compile compiles for this shape)."""
    for impl, m in deployed.items():
        t0 = time.perf_counter()
        with torch.no_grad():
            m(x)
        if impl == "export-compiled":
            info["compile_s"][str(batch)] = round(time.perf_counter() - t0, 3)
            log(f"export-compiled: first call at batch {batch} (compiling) "
                f"{info['compile_s'][str(batch)]:.1f} s")  # fmt: skip


def check_deployed(deployed: dict, frozen, x: torch.Tensor, tolerance: float) -> dict:
    """``{impl: (max relative difference, status, error)}`` against the frozen naive model."""
    with torch.no_grad():
        ref = frozen(x)
    out = {}
    for impl, m in deployed.items():
        try:
            with torch.no_grad():
                d = rel_diff(m(x).to(ref.device), ref)
        except Exception as e:  # noqa: BLE001
            out[impl] = (None, "error", f"{type(e).__name__}: {e}".replace("\n", " ")[:300])
            continue
        bad = d > tolerance or d != d
        out[impl] = (d, "mismatch" if bad else "ok", f"max rel diff {d:.3g}" if bad else "")
    return out


__all__ = [
    "DEPLOY_IMPLS",
    "NO_TORCH_MEMORY",
    "OrtModule",
    "check_deployed",
    "deploy_variants",
    "first_calls",
]
