"""The fast subset (``tox -e fast``: ``pytest -m "not slow"``) reaches every module.

A test file counts as *fast* when it has a test not marked ``slow`` (and no
module-level ``slow`` mark). What it reaches: the modules it imports, those
they import in turn (anywhere in a module: lazy imports inside functions
count), the modules it runs as ``python -m NAME`` in a subprocess, the
subcommands ``bench.cli`` imports by name and the pytest-benchmark suite
(``bench/conftest.py``, ``bench/test_sweep.py``) of a ``pytest bench/`` it
runs. Every
module of ``sepgconv/`` and ``bench/`` must be reached so, or the quick
subset would leave it unexercised.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
#: installed names of the checkout's folders (pyproject: package-dir)
ALIASES = {"sepgconv_bench": "bench"}
#: what a ``pytest bench/`` subprocess loads
PYTEST_BENCH = {"bench.conftest", "bench.test_sweep"}


def _dynamic() -> dict[str, set[str]]:
    """Imports made by computed name: ``python -m bench SUBCOMMAND``'s modules."""
    from bench import cli

    return {"bench.cli": {f"bench.commands.{m}" for m, _ in cli.SUBCOMMANDS.values()}}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of sepgconv/ and bench/, by dotted name (``bench/_alias`` is the
    installed top-level ``bench``: the same code as ``bench/__init__``/``__main__``)."""
    out = {}
    for top in ("sepgconv", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            if "_alias" not in path.parts:
                out[_module_name(path)] = path
    return out


def _canonical(name: str) -> str:
    head, _, rest = name.partition(".")
    head = ALIASES.get(head, head)
    return f"{head}.{rest}" if rest else head


def _imports(path: Path, name: str) -> set[str]:
    """Dotted names ``path`` imports or runs with ``-m`` (not yet checked to exist)."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            found.add(stem)
            found.update(f"{stem}.{a.name}" for a in node.names)  # a submodule, or a name
        elif isinstance(node, (ast.List, ast.Tuple)):  # [python, "-m", "bench", ...]
            items = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
            for flag, target in zip(items, items[1:], strict=False):
                if flag == "-m" and isinstance(target, str):
                    found.update({target, f"{target}.__main__"})
            if "pytest" in items and "bench/" in items:  # [python, -m, pytest, bench/, ...]
                found.update(PYTEST_BENCH)
    found = {_canonical(n) for n in found if n}
    return found | _dynamic().get(name, set())


def _is_slow(decorators) -> bool:
    return any("mark.slow" in ast.unparse(d) for d in decorators)


def _fast_test_files() -> list[Path]:
    out = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        marked = any(
            isinstance(n, ast.Assign)
            and any(getattr(t, "id", None) == "pytestmark" for t in n.targets)
            and "mark.slow" in ast.unparse(n.value)
            for n in tree.body
        )
        tests = [
            n for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test")
        ]  # fmt: skip
        if not marked and any(not _is_slow(t.decorator_list) for t in tests):
            out.append(path)
    return out


def _reached(modules: dict[str, Path]) -> set[str]:
    todo = [(_module_name(p) if p.parent != TESTS else p.stem, p) for p in _fast_test_files()]
    todo += [("conftest", TESTS / "conftest.py")]
    seen: set[str] = set()
    while todo:
        name, path = todo.pop()
        for target in _imports(path, name):
            parts = target.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a and a.b too
                prefix = ".".join(parts[:i])
                if prefix in modules and prefix not in seen:
                    seen.add(prefix)
                    todo.append((prefix, modules[prefix]))
    return seen


def test_the_fast_subset_reaches_every_module():
    modules = _modules()
    missed = sorted(set(modules) - _reached(modules))
    assert not missed, f"no fast test reaches {missed}: import it in one, or unmark one"


def test_the_reach_is_computed_not_assumed():
    """The walk finds what a file imports (relative imports, lazy ones, ``-m``)."""
    reached = _imports(ROOT / "bench" / "commands" / "run.py", "bench.commands.run")
    assert {"bench.measure.gate", "bench.pipeline.run", "bench.measure.contention"} <= reached
    code = _imports(TESTS / "test_gate.py", "test_gate")
    assert {"bench.cli", "bench.measure.gate"} <= code
    assert TESTS / "test_gate.py" in _fast_test_files()
