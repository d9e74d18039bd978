"""The README's Python examples run as written, and what their comments claim holds."""

import json
import pathlib
import re

import pytest
import torch

import sepgconv
from sepgconv import autotune, counting

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


@pytest.fixture(scope="module")
def ran() -> list[tuple[str, dict]]:
    """Every README block run in order in one namespace; each block with a snapshot of
    the names after it (later blocks rebind ``y`` and ``layer``)."""
    before = autotune.budget()
    namespace: dict = {}
    out = []
    try:
        for block in _blocks():
            exec(compile(block, str(README), "exec"), namespace)
            out.append((block, dict(namespace)))
    finally:  # the README sets a longer budget: the tests after it keep theirs
        autotune.set_budget(before.pop("budget_s"), **before)
    return out


def _after(ran, marker: str) -> dict:
    """The names after the README block that contains ``marker`` (the claim's anchor)."""
    hits = [ns for block, ns in ran if marker in block]
    assert len(hits) == 1, f"no single README block contains {marker!r}: update this test"
    return hits[0]


def test_readme_python_blocks_run(ran):
    assert ran, "README has no python examples"


def test_library_block_shapes_and_state_dict_claims(ran):
    ns = _after(ran, "g_naive.load_state_dict(g_rearr.state_dict())")
    assert ns["h"].shape == (8, 16, 4, 32, 32)  # "[8, 16, 4, 32, 32]: [B, C, G, H, W]"
    assert ns["gc_rearr"](ns["h"]).shape == (8, 16, 4, 32, 32)
    assert ns["F_tilde"].shape == (16, 4, 16, 4, 3, 3)  # [C_out, G_out, C_in, G_in, k, k]
    m = ns["m"]
    assert (m.group.order, m.lifting, m.variant, m.impl) == (8, True, "g", "rearranged")
    # "a state_dict moves unchanged", and to_impl is "the same thing, one call"
    fast, g_naive = ns["fast"], ns["g_naive"]
    assert fast.impl == "rearranged"
    assert [id(p) for p in fast.parameters()] == [id(p) for p in g_naive.parameters()]
    with torch.no_grad():
        torch.testing.assert_close(fast(ns["h"]), g_naive(ns["h"]))


def test_memory_format_block_output_is_channels_last(ran):
    ns = _after(ran, 'sepgconv.is_memory_format(y, "channels_last") is True')
    assert sepgconv.is_memory_format(ns["h_cl"], "channels_last")
    assert sepgconv.is_memory_format(ns["y"], "channels_last") is True
    with torch.no_grad():
        expected = ns["cl"].to_impl("naive", memory_format="contiguous")(ns["h"])
    torch.testing.assert_close(ns["y"], expected, rtol=1e-4, atol=1e-4)


def test_auto_block_names_its_choice_and_exports_json(ran):
    ns = _after(ran, "choice = auto.choice(h)")
    choice = ns["choice"]
    assert choice.impl in sepgconv.impls_of("gc")
    assert choice.memory_format in ("contiguous", "channels_last")
    json.dumps(ns["cache"])  # "JSON-able"


def test_counting_block_claims(ran):
    ns = _after(ran, "counting.layer_params(layer)  # formula, == counting.measure_params(layer)")
    layer = ns["layer"]
    x = torch.randn(1, 16, 4, 32, 32)
    # "formula, == counting.measure_params(layer)"
    assert counting.layer_params(layer) == counting.measure_params(layer) == 16 * (16 * 4 + 9) + 16
    # "what the implementation executes" ... "fvcore, equal"
    assert counting.measure_macs(layer, x).total == counting.layer_macs(layer, 32, 32)
    # 'same' padding, stride 1: the implementation's count is the paper's table
    section34 = counting.macs_section34("gc", 16, 16, 4, 4, 3, 32, 32)
    assert counting.layer_macs(layer, 32, 32) == section34 == 16 * 4 * 32 * 32 * (16 * 4 + 9)


def _option_strings(parser) -> set[str]:
    """Every option of ``parser`` and of its subcommands' parsers."""
    import argparse

    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


def test_every_bench_option_the_readme_names_exists():
    import argparse

    from bench.cli import SUBCOMMANDS, command_module

    text = README.read_text()
    uses = re.findall(r"python -m bench (\w+)([^\n`#]*)", text)
    assert len(uses) > 20
    checked = 0
    for verb, rest in uses:
        assert verb in SUBCOMMANDS, f"README names an unknown subcommand: bench {verb}"
        parser = argparse.ArgumentParser()
        command_module(verb).configure(parser)
        known = _option_strings(parser)
        for opt in re.findall(r"(--[a-z][a-z0-9-]*)", rest):
            assert opt in known, f"README: `python -m bench {verb} … {opt}` is not an option"
            checked += 1
    assert checked > 20
