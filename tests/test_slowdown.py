"""The test-only slowdown hook (SEPGCONV_TEST_SLOWDOWN): inert when unset, and when
set every call of the named implementation costs its factor: whole units by
repeated forwards (counted calls), the fraction by a busy loop on the call's own
forward time (a fake clock, no timing)."""

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


class _FakeClock:
    """A clock that advances ``tick`` per read and ``forward_s`` per counted forward."""

    def __init__(self, tick=1e-4, forward_s=1.0):
        self.now, self.tick, self.forward_s = 0.0, tick, forward_s

    def __call__(self):
        self.now += self.tick
        return self.now


def _clocked(layer, clock) -> list:
    calls = _counted(layer)
    inner = layer._forward

    def forward_taking_time(x):
        clock.now += clock.forward_s
        return inner(x)

    layer._forward = forward_taking_time
    return calls


@pytest.mark.parametrize(("factor", "repeats"), [(1.1, 0), (1.25, 0), (1.5, 0), (2.0, 1), (2.5, 1)])
def test_every_call_of_a_slowed_implementation_costs_the_factor(monkeypatch, factor, repeats):
    # per call, not on average: a sample of one call must see the factor (a hook
    # that repeated the forward every fourth call at 1.25 was lumpy and under-read)
    clock = _FakeClock()
    monkeypatch.setattr(_slowdown, "_clock", clock)
    monkeypatch.setattr(_slowdown, "FACTORS", {("gc", "rearranged"): factor})
    monkeypatch.setattr(_slowdown, "ACTIVE", True)
    torch.manual_seed(0)
    slowed = sepgconv.GConv2d(4, 4, 3, variant="gc", impl="rearranged", padding=1)
    other = sepgconv.GConv2d(4, 4, 3, variant="gc", impl="naive", padding=1)
    other.load_state_dict(slowed.state_dict())
    x = torch.randn(1, 4, 4, 8, 8)
    n_slow, n_other = _clocked(slowed, clock), _clocked(other, clock)
    for i in range(6):
        t0 = clock.now
        y = slowed(x)
        assert clock.now - t0 == pytest.approx(factor, abs=0.01), i
        assert len(n_slow) == (i + 1) * (1 + repeats)
    for _ in range(3):
        t0 = clock.now
        other(x)
        assert clock.now - t0 == pytest.approx(1.0, abs=0.01)
    assert len(n_other) == 3
    monkeypatch.setattr(_slowdown, "ACTIVE", False)
    torch.testing.assert_close(y, slowed(x))  # the result is the forward's own


def test_the_busy_loop_waits_for_the_clock():
    start = _slowdown._clock()
    _slowdown._busy_until(start + 0.005)
    assert _slowdown._clock() - start >= 0.005


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
