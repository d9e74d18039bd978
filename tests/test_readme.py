"""The README's and docs pages' Python examples run as written, what their comments
claim holds, and every ``python -m bench … --option`` they name exists.

The README comes first; each page of ``docs/`` continues from the README's names
(``docs/library.md`` uses its ``h``), in its own namespace.
"""

import json
import pathlib
import re

import pytest
import torch

import sepgconv
from sepgconv import autotune, counting

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def _blocks(page: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


def _run(page: pathlib.Path, namespace: dict) -> list[tuple[str, str, dict]]:
    out = []
    for block in _blocks(page):
        exec(compile(block, str(page), "exec"), namespace)
        out.append((page.relative_to(ROOT).as_posix(), block, dict(namespace)))
    return out


@pytest.fixture(scope="module")
def ran() -> list[tuple[str, str, dict]]:
    """Every README block run in order in one namespace, then each docs page's blocks
    in a copy of it; each block with its page and a snapshot of the names after it
    (later blocks rebind ``y`` and ``layer``)."""
    before = autotune.budget()
    readme: dict = {}
    try:
        out = _run(README, readme)
        after_readme = dict(readme)
        for page in DOCS:
            out += _run(page, dict(after_readme))
    finally:  # the docs set a longer budget: the tests after them keep theirs
        autotune.set_budget(before.pop("budget_s"), **before)
    return out


def _after(ran, page: str, marker: str) -> dict:
    """The names after the block of ``page`` that contains ``marker`` (the claim's anchor)."""
    hits = [ns for where, block, ns in ran if where == page and marker in block]
    assert len(hits) == 1, f"no single {page} block contains {marker!r}: update this test"
    return hits[0]


def test_readme_python_blocks_run(ran):
    assert any(page == "README.md" for page, _, _ in ran), "README has no python examples"


def test_library_block_shapes_and_state_dict_claims(ran):
    ns = _after(ran, "README.md", "g_naive.load_state_dict(g_rearr.state_dict())")
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
    ns = _after(ran, "docs/library.md", 'sepgconv.is_memory_format(y, "channels_last") is True')
    assert sepgconv.is_memory_format(ns["h_cl"], "channels_last")
    assert sepgconv.is_memory_format(ns["y"], "channels_last") is True
    with torch.no_grad():
        expected = ns["cl"].to_impl("naive", memory_format="contiguous")(ns["h"])
    torch.testing.assert_close(ns["y"], expected, rtol=1e-4, atol=1e-4)


def test_auto_block_names_its_choice_and_exports_json(ran):
    ns = _after(ran, "docs/library.md", "choice = auto.choice(h)")
    choice = ns["choice"]
    assert choice.impl in sepgconv.impls_of("gc")
    assert choice.memory_format in ("contiguous", "channels_last")
    json.dumps(ns["cache"])  # "JSON-able"


def test_counting_block_claims(ran):
    marker = "counting.layer_params(layer)  # formula, == counting.measure_params(layer)"
    ns = _after(ran, "docs/library.md", marker)
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


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_bench_option_a_page_names_exists(page):
    import argparse

    from bench.cli import SUBCOMMANDS, command_module

    name = page.relative_to(ROOT).as_posix()
    for verb, rest in re.findall(r"python -m bench (\w+)([^\n`#]*)", page.read_text()):
        assert verb in SUBCOMMANDS, f"{name} names an unknown subcommand: bench {verb}"
        parser = argparse.ArgumentParser()
        command_module(verb).configure(parser)
        known = _option_strings(parser)
        for opt in re.findall(r"(--[a-z][a-z0-9-]*)", rest):
            assert opt in known, f"{name}: `python -m bench {verb} … {opt}` is not an option"


def test_the_option_check_reads_the_pages():
    """The pages name many commands and options between them: the check is not empty,
    and a page that named an option the CLI lacks would fail it."""
    uses = [u for p in PAGES for u in re.findall(r"python -m bench (\w+)([^\n`#]*)", p.read_text())]
    assert len(uses) > 20
    assert sum(len(re.findall(r"--[a-z]", rest)) for _, rest in uses) > 20
    assert (ROOT / "docs" / "method.md") in DOCS


def test_every_link_of_the_readme_and_docs_resolves():
    """Relative links point at files of the checkout; the README's links to the four
    pages other work adds (auto, g-on-gpu, testing, running) are allowed to wait."""
    pending = {"docs/auto.md", "docs/g-on-gpu.md", "docs/testing.md", "docs/running.md"}
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if re.match(r"[a-z]+:", target):
                continue  # a URL
            path = (page.parent / target).resolve()
            rel = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else target
            assert path.exists() or rel in pending, f"{page.name}: broken link {target}"
