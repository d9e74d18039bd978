"""ONNX: an exported model (and a native one, where it exports) runs in ONNX
Runtime with the same outputs. Skipped without onnx, onnxscript and onnxruntime
(the optional extra ``sepgconv[deploy]``)."""

import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn

import sepgconv
from sepgconv import GConv2d, models
from sepgconv.export import to_onnx

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _fused_layers_can_be_built(monkeypatch):
    """``impl="fused"`` is refused at construction where nothing can run it (no CUDA,
    no interpreter); the export only reads its parameters (compared with its naive
    twin), so the interpreter's permission is enough here."""
    monkeypatch.setenv("TRITON_INTERPRET", "1")


def run_ort(data: bytes, x: torch.Tensor):
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: x.numpy()})[0])


def every_form():
    """One small net with every exported form: a lifting full layer, g dense and
    separable, gc separable and dense, batch norm, both poolings."""
    torch.manual_seed(0)
    net = nn.Sequential(
        OrderedDict(
            lift=GConv2d(2, 3, 3, group="p4m", lifting=True, padding=1),
            bn=sepgconv.GroupBatchNorm(3),
            g=GConv2d(3, 4, 3, group="p4m", variant="g", impl="rearranged", padding=1),
            pool=sepgconv.GroupMaxPool2d(2),
            gc=GConv2d(4, 3, 3, group="p4m", variant="gc", impl="rearranged", stride=2),
            gpool=sepgconv.GroupPool("max"),
        )
    )
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
        net.bn.running_mean.normal_()
        net.bn.running_var.uniform_(0.5, 2.0)
    return net.eval()


@pytest.mark.parametrize("forms", [("dense", "separable"), ("separable", "dense")])
def test_every_exported_form_runs_in_onnxruntime(forms):
    net = every_form()
    plain = sepgconv.export_modules(net, g_form=forms[0], gc_form=forms[1]).eval()
    x = torch.randn(2, 2, 12, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = to_onnx(plain, x, plain=False)
    with torch.no_grad():
        torch.testing.assert_close(run_ort(data, x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("plain", [True, False], ids=["exported", "native"])
def test_gc_p4cnn_in_onnxruntime(plain, tmp_path):
    net = models.build("gc-p4cnn", "rearranged", seed=0).eval()
    x = net.example_input(2)
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = to_onnx(net, x, path, plain=plain)
    assert path.read_bytes() == data
    with torch.no_grad():
        torch.testing.assert_close(run_ort(data, x), net(x), rtol=1e-4, atol=1e-5)
    # and on the rotated input: the P4 net's invariance survives the runtime
    xr = torch.rot90(x, 1, dims=(-2, -1))
    torch.testing.assert_close(run_ort(data, xr), run_ort(data, x), rtol=1e-4, atol=1e-5)


def test_fused_model_exports_through_export_modules():
    # a fused (Triton) layer has no ONNX form: to_onnx exports its plain copy
    layer = GConv2d(3, 4, 3, group="p4", variant="gc", impl="fused", padding=1)
    x = torch.randn(1, 3, 4, 8, 8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = to_onnx(layer, x, dynamo=False)
    with torch.no_grad():
        torch.testing.assert_close(
            run_ort(data, x), layer.to_impl("naive")(x), rtol=1e-4, atol=1e-5
        )


def test_p4m_resnet_depth8_in_onnxruntime():
    net = models.build("gc-p4m-resnet44", seed=0, widths=(3, 4, 5), blocks_per_stage=1).eval()
    x = net.example_input(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data = to_onnx(net, x)
    with torch.no_grad():
        for xi in (x, torch.rot90(x, 1, dims=(-2, -1))):
            torch.testing.assert_close(run_ort(data, xi), net(xi), rtol=1e-4, atol=1e-4)
