"""The two sides of an A/B run: a source tree each, holding a ``sepgconv`` package.

A side is given as a **directory** (a checkout, or a ``pip install --target``
folder: anything with ``sepgconv/__init__.py`` directly under it), used as is,
or as a **git ref** of the repository the command runs in, checked out with
``git worktree add --detach`` into a temporary folder that is removed at the
end. Both sides run on the interpreter (and so the torch) of the command
itself: the library is pure Python, so ``PYTHONPATH``-style imports of each
tree need no virtual environment per side, and the two sides cannot differ in
torch, NumPy or the BLAS under them. The measurement harness (``bench``) is the
invoking checkout's for both sides: what is compared is the library, timed by
one and the same code.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..judge.runs import InputError


@dataclass(frozen=True)
class Side:
    """One side: its name as given, the tree to import ``sepgconv`` from, its commit."""

    given: str
    tree: Path
    commit: str | None  # the resolved commit (git refs), else None


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise InputError(f"git {' '.join(args)}: {done.stderr.strip() or 'failed'}")
    return done.stdout.strip()


def has_library(tree: Path) -> bool:
    return (tree / "sepgconv" / "__init__.py").is_file()


@contextlib.contextmanager
def prepared(base: str, head: str, repo: Path):
    """``(base_side, head_side)`` ready to import, cleaned up afterwards.

    Raises:
        InputError: a side that is neither a directory holding ``sepgconv`` nor a
            git ref of ``repo``.
    """
    made: list[Path] = []
    tmp = Path(tempfile.mkdtemp(prefix="sepgconv-ab-"))
    try:
        sides = []
        for role, given in (("base", base), ("head", head)):
            path = Path(given)
            if path.is_dir():
                if not has_library(path):
                    raise InputError(f"{role} {given}: a directory without sepgconv/__init__.py")
                sides.append(Side(given, path.resolve(), None))
                continue
            commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{given}^{{commit}}")
            tree = tmp / role
            _git(repo, "worktree", "add", "--detach", "--force", str(tree), commit)
            made.append(tree)
            if not has_library(tree):
                raise InputError(f"{role} {given} ({commit[:10]}): no sepgconv/ package there")
            sides.append(Side(given, tree, commit))
        yield sides[0], sides[1]
    finally:
        for tree in made:
            subprocess.run(
                ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                capture_output=True, check=False,
            )  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)
        if made:
            subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True,
                           check=False)  # fmt: skip
