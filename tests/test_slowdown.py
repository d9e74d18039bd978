"""The test-only slowdown hook (SEPGCONV_TEST_SLOWDOWN): inert when unset, and when
set it repeats the named implementation's forward by its factor (counted calls, no
timing)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import sepgconv
from sepgconv import _slowdown


def test_parse_reads_entries_and_refuses_nonsense():
    assert _slowdown.parse(None) == {}
    assert _slowdown.parse(" gc/rearranged=1.25, g/naive=2 ") == {
        ("gc", "rearranged"): 1.25,
        ("g", "naive"): 2.0,
    }
    for bad in ("gc/rearranged", "gc=1.5", "gc/rearranged=0.5", "gc/rearranged=x"):
        with pytest.raises(ValueError, match="SEPGCONV_TEST_SLOWDOWN"):
            _slowdown.parse(bad)


def test_the_hook_is_off_unless_the_variable_is_set():
    env = {k: v for k, v in os.environ.items() if k != _slowdown.ENV}
    code = "from sepgconv import _slowdown as s; print(s.ACTIVE, s.FACTORS)"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert off.stdout.split() == ["False", "{}"]
    on = subprocess.run(
        [sys.executable, "-c", code], env={**env, _slowdown.ENV: "gc/rearranged=1.5"},
        capture_output=True, text=True,
    )  # fmt: skip
    assert on.stdout.startswith("True {('gc', 'rearranged'): 1.5}")


def _counted(layer) -> list:
    calls = []
    inner = layer._forward

    def counting(x):
        calls.append(1)
        return inner(x)

    layer._forward = counting
    return calls


@pytest.mark.parametrize(("factor", "calls_per_4"), [(1.25, 5), (1.5, 6), (2.0, 8)])
def test_a_slowed_implementation_repeats_its_forward_by_the_factor(
    monkeypatch, factor, calls_per_4
):
    monkeypatch.setattr(_slowdown, "FACTORS", {("gc", "rearranged"): factor})
    monkeypatch.setattr(_slowdown, "ACTIVE", True)
    torch.manual_seed(0)
    slowed = sepgconv.GConv2d(4, 4, 3, variant="gc", impl="rearranged", padding=1)
    other = sepgconv.GConv2d(4, 4, 3, variant="gc", impl="naive", padding=1)
    other.load_state_dict(slowed.state_dict())
    x = torch.randn(1, 4, 4, 8, 8)
    n_slow, n_other = _counted(slowed), _counted(other)
    for _ in range(4):
        y = slowed(x)
    for _ in range(4):
        other(x)
    assert len(n_slow) == calls_per_4 and len(n_other) == 4
    monkeypatch.setattr(_slowdown, "ACTIVE", False)
    torch.testing.assert_close(y, slowed(x))  # the result is the forward's own


def test_a_slowed_training_step_keeps_its_gradients(monkeypatch):
    torch.manual_seed(0)
    layer = sepgconv.GConv2d(4, 4, 3, variant="gc", impl="rearranged", padding=1)
    x = torch.randn(1, 4, 4, 8, 8)
    layer(x).square().sum().backward()
    plain = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    monkeypatch.setattr(_slowdown, "FACTORS", {("gc", "rearranged"): 2.0})
    monkeypatch.setattr(_slowdown, "ACTIVE", True)
    layer(x).square().sum().backward()
    for a, b in zip(plain, [p.grad for p in layer.parameters()], strict=True):
        torch.testing.assert_close(a, b)
