"""``bench.measure.allocator``: a run fixes glibc's malloc thresholds, so a large block
is served the same way whatever the process freed before (not a timing test: what
malloc does with a 64 MiB block is read from glibc's own ``mallinfo2``)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from bench.measure import allocator

ROOT = Path(__file__).resolve().parents[1]
_PROBE = """
import ctypes, json, sys
from bench.measure import allocator
libc = ctypes.CDLL("libc.so.6")
names = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
         "fordblks", "keepcost")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in names]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
info = allocator.steady(sys.argv[1])
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
mapped = libc.mallinfo2().hblks - before
libc.free(ctypes.c_void_p(block))
print(json.dumps({"info": info, "mapped": mapped, "state": allocator.state()}))
"""

glibc = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc" or platform.libc_ver()[1] < "2.33",
    reason="needs glibc >= 2.33 (mallinfo2)",
)


def _probe(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUN"))}
    clean.pop("LD_PRELOAD", None)
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True, text=True,
        env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@glibc
def test_a_steady_run_serves_a_large_block_from_the_heap():
    out = _probe("steady")
    assert out["info"]["mode"] == "steady" and out["state"] == out["info"]
    assert out["info"]["mmap_threshold"] == allocator.MMAP_THRESHOLD
    assert out["mapped"] == 0


@glibc
def test_the_system_allocator_maps_it_and_is_recorded_as_such():
    out = _probe("system")
    assert out["info"]["mode"] == "system"
    assert out["mapped"] == 1  # glibc's default: above 128 KiB (up to 32 MiB) -> mmap


@glibc
def test_a_user_choice_in_the_environment_is_left_alone():
    out = _probe("steady", MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert out["info"] == {**out["info"], "mode": "environment",
                           "variables": ["MALLOC_MMAP_THRESHOLD_"]}  # fmt: skip
    assert out["mapped"] == 1  # the user's 1 MiB threshold holds


def test_an_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="malloc mode"):
        allocator.steady("fast")
