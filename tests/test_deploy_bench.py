"""``bench models --deploy``: rows for the exported model and ONNX Runtime next to
the native implementations, and the report's deployed-g/gc-against-full table."""

import importlib.util

import numpy as np
import pandas as pd
import pytest

from bench.pipeline.models import TIMINGS, bench_model
from bench.report import paper_models
from bench.report.markdown import _models_section
from sepgconv import models

HAVE_ORT = all(importlib.util.find_spec(m) for m in ("onnx", "onnxscript", "onnxruntime"))


def test_deploy_rows_next_to_the_native_ones():
    impls = ("export", "onnxruntime") if HAVE_ORT else ("export",)  # compile: too slow here
    facts = {"impls": impls}
    rows = bench_model(
        "gc-p4cnn", "cpu", TIMINGS["quick"], (2,), ("fwd",), memory=True,
        log=lambda *a: None, deploy=facts,
    )  # fmt: skip
    by_impl = {r.impl: r for r in rows}
    assert set(by_impl) >= {"naive", "rearranged", *impls}
    for impl in impls:
        r = by_impl[impl]
        assert r.status == "ok", r.error
        assert r.max_rel_diff_vs_naive < 1e-4 and r.latency_ms_median > 0
        assert r.params_measured == facts["gc-p4cnn"]["params_stored"]
        # stores w̃ and T_h(K): G times the pointwise weights of the native model
        assert r.params_measured > by_impl["naive"].params_measured
        assert r.macs_executed == by_impl["rearranged"].macs_executed  # gc runs separable
    assert by_impl["export"].peak_mem_bytes is not None
    if HAVE_ORT:
        assert by_impl["onnxruntime"].peak_mem_bytes is None
        assert "outside torch" in by_impl["onnxruntime"].error
        assert facts["gc-p4cnn"]["onnx_bytes"] > 0


def test_deploy_rows_only_in_the_forward_pass():
    rows = bench_model(
        "p4cnn", "cpu", TIMINGS["quick"], (2,), ("fwdbwd",), memory=False,
        log=lambda *a: None, deploy={"impls": ("export",)},
    )  # fmt: skip
    assert "naive" in {r.impl for r in rows} and "export" not in {r.impl for r in rows}


def _row(model, impl, lat, params, mem, batch=2):
    return dict(model=model, impl=impl, batch=batch, status="ok", latency_ms_median=lat,
                params_measured=params, peak_mem_mb=mem, table=1, label=model, width="10",
                device="cpu", dtype="float32", **{"pass": "fwd"})  # fmt: skip


def test_deploy_table_against_the_deployed_full_model():
    df = pd.DataFrame(
        [
            _row("p4cnn", "naive", 10.0, 24810, 4.0),
            _row("p4cnn", "export", 8.0, 90000, 4.0),
            _row("gc-p4cnn", "export", 2.0, 9000, 2.0),
            _row("gc-p4cnn-w30", "export", 4.0, 45000, 1.0),
            _row("g-p4cnn", "onnxruntime", 3.0, 30000, np.nan),  # no full onnxruntime row
        ]
    )
    t = paper_models.deploy_table(df)
    assert list(t["model"]) == ["p4cnn", "gc-p4cnn", "gc-p4cnn-w30"]
    gc = t.set_index("model").loc["gc-p4cnn"]
    assert gc["× full latency"] == pytest.approx(0.25)
    assert gc["× full params"] == pytest.approx(0.1)
    assert gc["× full memory"] == pytest.approx(0.5)
    assert paper_models.full_of("gc-p4m-resnet44") == "p4m-resnet44"
    assert paper_models.full_of("g-p4cnn-w17") == "p4cnn"
    assert "### Deployed" in _models_section(df)
    assert "### Deployed" not in _models_section(df[df["impl"] == "naive"])


def test_cli_has_the_deploy_flag():
    import argparse

    from bench.commands import models as cmd

    parser = argparse.ArgumentParser()
    cmd.configure(parser)
    assert parser.parse_args(["--deploy"]).deploy == ["export", "export-compiled", "onnxruntime"]
    assert parser.parse_args(["--deploy", "export,onnxruntime"]).deploy == ["export", "onnxruntime"]
    assert parser.parse_args([]).deploy is None
    assert models.names()  # the registry the flag applies to
