"""``python -m bench ab``: the interleaving of the two sides (with stand-in workers, no
timing), the sides (git refs and trees), and the exit codes for what follows from the
code alone: a changed deterministic metric, an implementation head cannot run, a head
that cannot import, unusable input."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.ab import session, sides, worker
from bench.measure.timing import Timing
from bench.sweep.shapes import REFERENCE

ROOT = Path(__file__).resolve().parents[1]


class FakeWorker:
    """Answers ``round`` with fixed times and logs who was asked what, in order."""

    def __init__(self, role: str, log: list, fail: str | None = None):
        self.role, self.log, self.fail = role, log, fail

    def call(self, op, **kw):
        assert op == "round"
        self.log.append((self.role, [k for k, _ in kw["plan"]]))
        times = {k: 1e-3 for k, _ in kw["plan"] if k != self.fail}
        errors = {self.fail: "boom"} if self.fail in dict(kw["plan"]) else {}
        return {"times": times, "errors": errors}


def _prep(keys, est=1e-3):
    return {k: {"status": "ok", "estimate_s": est} for k in keys}


KEYS = [f"{v}/contiguous/0/fwd" for v in ("full/naive", "gc/rearranged", "dense/torch")]
TIMING = Timing(budget_s=0.01, block_s=0.001, min_samples=5, max_samples=8, warmup_s=0.0)


def _rows():
    return {r: {k: session.Row({}, {}) for k in KEYS} for r in session.ROLES}


def test_rounds_alternate_sides_and_ask_both_for_the_same_rows():
    log: list = []
    workers = {r: FakeWorker(r, log) for r in session.ROLES}
    rows = _rows()
    prep = {r: _prep(KEYS) for r in session.ROLES}
    session._time_pass(workers, prep, rows, "fwd", TIMING, False, 6, REFERENCE)
    assert len(log) == 12  # 6 rounds, both sides each
    for r in range(6):
        first, second = log[2 * r], log[2 * r + 1]
        assert [first[0], second[0]] == (["base", "head"] if r % 2 == 0 else ["head", "base"])
        assert first[1] == second[1]  # the same rows, in the same order
        assert first[1] == KEYS[r % 3 :] + KEYS[: r % 3]  # rotated per round
    for role in session.ROLES:
        for k in KEYS:
            assert rows[role][k].rounds == list(range(6))
            assert rows[role][k].iterations == 1  # block 1 ms / estimate 1 ms


def test_both_sides_time_the_same_calls_per_sample():
    # base warms up at 0.1 ms, head at 0.5 ms: both sides use the faster one's block
    log: list = []
    workers = {r: FakeWorker(r, log) for r in session.ROLES}
    prep = {"base": _prep(KEYS, 1e-4), "head": _prep(KEYS, 5e-4)}
    rows = _rows()
    session._time_pass(workers, prep, rows, "fwd", TIMING, False, 2, REFERENCE)
    assert {rows[r][k].iterations for r in session.ROLES for k in KEYS} == {10}


def test_a_row_that_fails_at_head_mid_run_loses_its_head_samples():
    log: list = []
    workers = {"base": FakeWorker("base", log), "head": FakeWorker("head", log, fail=KEYS[1])}
    rows = _rows()
    session._time_pass(workers, {r: _prep(KEYS) for r in session.ROLES}, rows, "fwd", TIMING,
                       False, 4, REFERENCE)  # fmt: skip
    assert rows["head"][KEYS[1]].status == "error" and rows["head"][KEYS[1]].data == []
    assert len(rows["base"][KEYS[1]].data) == 4
    # after the failure head is not asked for that row again
    head_calls = [keys for role, keys in log if role == "head"]
    assert all(KEYS[1] not in keys for keys in head_calls[1:])


def test_the_reference_and_anchor_get_the_densest_rows_sample_count():
    """A ratio has as many pairs as its sparser side: a slow reference (and the anchor
    its own ratio divides by) is timed as often as the fastest row of its shape."""
    timing = Timing(budget_s=0.1, block_s=0.005, min_samples=5, max_samples=20, warmup_s=0.0)
    names = ("full/naive", "dense/torch", "gc/rearranged", "g/rearranged")
    ref, anchor, fast, slow = (f"{v}/contiguous/0/fwd" for v in names)
    est = {ref: 0.030, anchor: 0.029, fast: 0.002, slow: 0.150}
    iters, plan = session._plan(est, timing, False, ref, None, anchor)
    assert plan[fast] == 16  # 0.1 s // (3 calls x 2 ms)
    assert plan[ref] == plan[anchor] == 16  # were 5 (min_samples: 0.1 s // 30 ms = 3)
    assert plan[slow] == 5  # the others keep time_interleaved's plan
    assert iters[fast] == 3 and iters[ref] == 1  # blocks unchanged
    assert session._plan(est, timing, False, ref, 7, anchor)[1] == dict.fromkeys(est, 7)


def test_a_rows_first_round_of_a_pass_calls_it_once_untimed(monkeypatch):
    """prepare warms both passes before any round, so a pass's rows are cold again
    when it is timed: the worker calls a row once, untimed, in its first round of a
    pass (and not after), and that call's time is in no sample."""
    clock = {"ns": 0}
    calls: list = []

    def step():
        calls.append(1)
        clock["ns"] += 10**9 if len(calls) == 1 else 10**3  # cold: 1 s, then 1 us

    monkeypatch.setattr(worker.time, "perf_counter_ns", lambda: clock["ns"])
    w = worker.Worker()
    w.steps = {"k": step}
    assert w.round([["k", 4]], **{"pass": "fwd"})["times"]["k"] == pytest.approx(1e-6)
    assert len(calls) == 5
    w.round([["k", 4]], **{"pass": "fwd"})
    assert len(calls) == 9  # warm: the block alone
    w.round([["k", 4]], **{"pass": "fwdbwd"})
    assert len(calls) == 14  # another pass ran since: once more
    w.release()
    w.steps = {"k": step}
    w.round([["k", 4]], **{"pass": "fwdbwd"})
    assert len(calls) == 19  # a new shape (prepare releases): once more


def test_git_refs_become_temporary_worktrees_that_are_removed():
    with sides.prepared("HEAD", "HEAD~0", ROOT) as (base, head):
        assert base.commit == head.commit and len(base.commit) == 40
        assert sides.has_library(base.tree) and sides.has_library(head.tree)
        assert base.tree != head.tree
        trees = (base.tree, head.tree)
    assert not any(t.exists() for t in trees)
    listed = subprocess.run(["git", "-C", str(ROOT), "worktree", "list"], capture_output=True,
                            text=True).stdout  # fmt: skip
    assert not any(str(t) in listed for t in trees)


def _ab(*args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "bench", "ab", *map(str, args)], cwd=ROOT, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip


SMALL = ("--profile", "smoke", "--max-shapes", "1", "--impl", "gc/rearranged", "--rounds", "5")


def _head_copy(tmp_path: Path, edit=None) -> Path:
    head = tmp_path / "head"
    shutil.copytree(ROOT / "sepgconv", head / "sepgconv",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    if edit:
        path, old, new = edit
        target = head / "sepgconv" / path
        text = target.read_text()
        assert text.count(old) == 1
        target.write_text(text.replace(old, new))
    return head


@pytest.mark.slow  # real worker processes and git worktrees: 6-11 s
def test_unusable_input_is_exit_2():
    bad = _ab("no-such-ref-xyz", "HEAD", *SMALL)
    assert bad.returncode == 2 and "bench ab: error" in bad.stderr
    unknown = _ab(ROOT, ROOT, "--profile", "smoke", "--impl", "zz/none")
    assert unknown.returncode == 2 and "zz/none" in unknown.stderr


@pytest.mark.slow  # real worker processes and git worktrees: 6-11 s
def test_a_changed_mac_count_at_head_is_exit_1(tmp_path):
    head = _head_copy(tmp_path, (
        "counting.py",
        "spatial = s.c_out * s.g_out * s.k**2 * s.h_out * s.w_out",
        "spatial = s.c_out * s.g_out * (s.k**2 + 1) * s.h_out * s.w_out",
    ))  # fmt: skip
    res = _ab(ROOT, head, *SMALL, "--format", "json", "--out", tmp_path / "out")
    assert res.returncode == 1, res.stderr
    import json

    verdict = json.loads(res.stdout)
    changed = {
        (d["params"]["variant"], d["params"]["impl"]) for d in verdict["deterministic_changes"]
    }
    assert changed == {("gc", "rearranged")}
    assert {d["metric"] for d in verdict["deterministic_changes"]} == {"macs_formula"}
    for f in (
        "base/benchmark.json",
        "head/benchmark.json",
        "verdict.json",
        "verdict.md",
        "ab.json",
    ):
        assert (tmp_path / "out" / f).is_file()


@pytest.mark.slow  # real worker processes and git worktrees: 6-11 s
def test_an_implementation_head_cannot_run_is_exit_1_and_named(tmp_path):
    head = _head_copy(tmp_path, (
        "impls.py",
        "return F.conv2d(xt, depthwise, bias, self.stride, self.padding, groups=groups)",
        "raise RuntimeError('planted crash')",
    ))  # fmt: skip
    res = _ab(ROOT, head, *SMALL)
    assert res.returncode == 1, res.stderr
    assert "implementation gc/rearranged fwd float32 cpu is missing from NEW" in res.stdout
    assert "planted crash" in res.stderr
    assert "full/naive" not in "".join(ln for ln in res.stdout.splitlines() if "FAIL:" in ln)


@pytest.mark.slow  # real worker processes and git worktrees: 6-11 s
def test_a_head_that_cannot_import_is_exit_1_a_base_that_cannot_is_exit_2(tmp_path):
    head = _head_copy(
        tmp_path, ("__init__.py", '__version__ = "', 'raise ImportError("x")\n__version__ = "')
    )
    res = _ab(ROOT, head, *SMALL)
    assert res.returncode == 1 and "head worker: cannot import" in res.stderr
    res = _ab(head, ROOT, *SMALL)
    assert res.returncode == 2 and "base worker: cannot import" in res.stderr


@pytest.mark.slow
@pytest.mark.timing  # judged on real timings: alone (a neighbour read it +464 %, p 0.016, noisy)
def test_a_planted_4x_slowdown_at_head_is_caught_and_named():
    res = _ab(ROOT, ROOT, "--profile", "smoke", "--max-shapes", "2", "--impl", "gc/rearranged",
              "--rounds", "10", "--head-env", "SEPGCONV_TEST_SLOWDOWN=gc/rearranged=4")  # fmt: skip
    assert res.returncode == 1, res.stdout + res.stderr
    flagged = [ln for ln in res.stdout.splitlines() if ln.rstrip().endswith(("regression", "ratio"))
               and "regression" in ln]  # fmt: skip
    assert flagged and all("gc" in ln and "rearranged" in ln for ln in flagged)


def test_a_workers_row_keys_tell_every_row_of_a_shape_apart():
    # the parent and both workers name a row by this key: two rows may never share one
    from bench.sweep import profiles

    impls = profiles.implementations(include_peers=False)
    cl = [i.__class__(i.variant, i.impl, "channels_last", False) for i in impls]
    keys = [worker.row_key(im, p) for im in impls + cl for p in ("fwd", "fwdbwd")]
    assert len(set(keys)) == len(keys)
    assert worker.row_key(REFERENCE, "fwd") == "full/naive/contiguous/0/fwd"


def _ab_defaults() -> argparse.Namespace:
    from bench.commands import ab

    parser = argparse.ArgumentParser()
    ab.configure(parser)
    return parser.parse_args(["base", "head"])


def test_the_ab_bar_lets_a_10_percent_slowdown_that_reads_low_be_caught():
    """The nightly must catch a 10 % slowdown (issue #27). Real pairs read it at +8.6 %
    to +20 % (docs/ab.md); one read under the bar is lost whatever its p. Here a
    significant +8.5 % of gc/rearranged, on every shape, in A/B documents with the
    default judgement: flagged, and only it; the same documents at a 10 % bar are not,
    and unchanged code at the default bar is clean."""
    from bench.judge import compare as C
    from bench.judge import runs
    from bench.judge import synthetic as S

    args = _ab_defaults()
    params = S.grid(passes=("fwd",), channels=(8, 16), k_h=S.K_H[:4])
    world = S.world(params, 0)
    quiet = S.Noise(tau=0.01)

    def doc(seed, factor=1.0):
        slow = lambda p: factor if (p["variant"], p["impl"]) == ("gc", "rearranged") else 1.0  # noqa: E731
        return runs.parse_run(S.run_doc(S.synthetic_run(params, world, seed, quiet, slow)), "x")

    def flagged(base, head, threshold):
        r = C.compare_runs(base, head, threshold=threshold, alpha=args.alpha, rules=args.rules)
        return [i.group[:2] for i in r.implementations if i.verdict == "regression"], r

    base, head = doc(1), doc(2, 1.085)
    hit, r = flagged(base, head, args.threshold)
    assert hit == [("gc/rearranged", "fwd")] and r.exit_code == 1
    assert not flagged(base, head, 0.10)[0]  # the old bar: lost, significant as it is
    for seed in range(3):
        assert flagged(doc(10 + 2 * seed), doc(11 + 2 * seed), args.threshold)[1].exit_code == 0
