"""The bench/ house: rooms by role, imports one way, no circles, files that fit in a head,
and a packaging that installs what the checkout runs."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
#: the rooms from the bottom up: a module may import its own room or a lower one
RANKS = {
    "measure": 0,
    "sweep": 1,
    "store": 2,
    "judge": 3,
    "report": 4,
    "pipeline": 4,
    "ab": 4.5,  # bench ab: its workers use pipeline, its verdict judge
    "commands": 5,
}
TOP = 9  # cli.py, __main__.py, conftest.py, test_sweep.py, _alias/
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def bench_imports(path: Path) -> set[str]:
    """The bench modules ``path`` imports (relative imports resolved; names that are
    submodules count as imports of the submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "bench":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(
                    sub if (ROOT / Path(*sub.split("."))).exists() or _is_module(sub) else target
                )
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "bench"}
    return out


def _is_module(dotted: str) -> bool:
    return (ROOT / Path(*dotted.split("."))).with_suffix(".py").is_file()


def graph() -> dict[str, set[str]]:
    return {module_name(p): bench_imports(p) for p in BENCH.rglob("*.py")}


def rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return TOP  # the bench package itself (its docstring only)
    return RANKS.get(parts[1], TOP)


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_every_room_is_known():
    rooms = {p.name for p in BENCH.iterdir() if (p / "__init__.py").is_file()}
    assert rooms - {"_alias"} == set(RANKS)


def test_imports_point_down_the_rooms():
    bad = [
        f"{a} -> {b}"
        for a, targets in graph().items()
        for b in targets
        if rank(b) > rank(a) or (rank(b) == rank(a) != TOP and a.split(".")[1] != b.split(".")[1])
    ]
    assert not bad, "imports that point up or sideways:\n" + "\n".join(sorted(bad))


def test_no_import_circles():
    assert find_cycle(graph()) is None


def test_the_checks_catch_a_circle_and_an_upward_import():
    g = graph()
    g["bench.measure.timing"] = g["bench.measure.timing"] | {"bench.store.record"}
    assert find_cycle(g) is not None  # record imports timing: a circle
    assert rank("bench.store.record") > rank("bench.measure.timing")


@pytest.mark.parametrize(
    "path", sorted(BENCH.rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT))
)
def test_modules_fit_in_a_head(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines: split it by role"


def test_compare_does_not_import_torch():
    code = "import sys, bench.commands.compare, bench.judge.render; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


def test_pyproject_lists_every_package():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    found = {module_name(p.parent) for p in ROOT.glob("sepgconv/**/__init__.py")}
    found |= {
        module_name(p.parent).replace("bench", "sepgconv_bench", 1)
        for p in BENCH.rglob("__init__.py")
        if "_alias" not in p.parts
    }
    assert listed == found | {"bench"}
    assert cfg["package-dir"] == {"sepgconv_bench": "bench", "bench": "bench/_alias"}


@pytest.mark.slow
def test_the_wheel_runs_python_m_bench_outside_a_checkout(tmp_path):
    pytest.importorskip("setuptools")
    wheels = tmp_path / "wheels"
    # built from a copy: setuptools writes build/ and *.egg-info beside the sources,
    # which must not appear in the checkout while other tests (xdist workers) read it
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "sepgconv", "bench"):
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(wheels), str(src)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = wheels.glob("*.whl")
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert {t for t in tops if not t.endswith(".dist-info")} == {
        "sepgconv",
        "sepgconv_bench",
        "bench",
    }
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}
    for argv in (["-m", "bench", "compare", "--help"], ["-m", "sepgconv_bench", "--help"]):
        res = subprocess.run(
            [sys.executable, *argv], cwd=elsewhere, env=env, capture_output=True, text=True
        )
        assert res.returncode == 0, res.stderr[-2000:]
        assert "usage: python -m bench" in res.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import bench, sepgconv_bench; print(bench.__file__)"],
        cwd=elsewhere, env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert str(site) in where.stdout and "_alias" not in where.stdout
