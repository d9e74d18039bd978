"""The parent of ``python -m bench ab``: both sides timed in alternating rounds, then judged.

Per shape, both workers build, check, count and warm up the same rows
(``prepare``). Each row gets one block size (calls per sample, from the faster
side's warm-up estimate, so both sides time the same number of calls per
sample) and one number of samples, spread over the rounds as ``bench run``
spreads them (:func:`bench.measure.timing.time_interleaved`'s plan; ``--rounds``
overrides it: every row in every round), except the reference and the anchor,
which get the densest row's count: every ratio has as many pairs as its sparser
side. Round ``r`` asks one worker to time
every row due in ``r`` back to back (a rotated order), then the other; the side
that goes first alternates between rounds. So within a side every round pairs a
row with its reference (the paired in-run ratio of :mod:`bench.judge.pairing`),
and base's round ``r`` and head's round ``r`` are seconds apart: whatever load
the machine had then, both sides had it.

Only one worker computes at a time (the parent waits for each reply), so the
two do not contend with each other; each runs with the run's thread count
(CPU: :data:`bench.store.results.CPU_THREADS`).

The two sides become two pytest-benchmark documents (rounds kept), judged by
:func:`bench.judge.compare.compare_runs` with BASE = base and NEW = head:
paired ratios, the between-run spread, Holm over benchmarks and over
implementations, per-implementation verdicts, the deterministic rule, and the
failures for what head lacks (an implementation, or reference rows).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..judge.runs import InputError

HARNESS = Path(__file__).resolve().parents[2]  # the invoking checkout (holds bench/)
WORKER = Path(__file__).resolve().parent / "worker.py"
ROLES = ("base", "head")


class WorkerDied(Exception):
    """A side's worker ended (crashed) or answered with an error."""

    def __init__(self, role: str, what: str):
        super().__init__(f"{role} worker: {what}")
        self.role = role


class SideWorker:
    """One side's worker process and its request/reply pipe."""

    def __init__(self, role: str, tree: Path, env: dict, harness: Path = HARNESS):
        self.role = role
        self.proc = subprocess.Popen(
            [sys.executable, "-u", str(WORKER), str(tree), str(harness)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=str(tree),
        )  # fmt: skip
        first = self._read("starting")
        if "error" in first:  # head: broken code (exit 1); base: unusable (exit 2)
            self.close()
            raise WorkerDied(role, f"cannot import its sepgconv from {tree}: {first['error']}")

    def _read(self, what: str) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            rc = self.proc.wait(timeout=30)
            raise WorkerDied(self.role, f"ended with exit code {rc} while {what}")
        return json.loads(line)

    def call(self, op: str, **kw) -> dict:
        try:
            self.proc.stdin.write(json.dumps({"op": op, **kw}) + "\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise WorkerDied(self.role, f"gone before {op}") from None
        reply = self._read(op)
        if "error" in reply:
            raise WorkerDied(self.role, f"{op} failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (BrokenPipeError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
                self.proc.wait()


@dataclass
class Options:
    profile: str | None = None
    device: str | None = None
    max_shapes: int | None = None
    impls: list[str] | None = None
    rounds: int | None = None
    time_limit_s: float | None = None
    threads: int | None = None
    base_env: dict = field(default_factory=dict)
    head_env: dict = field(default_factory=dict)


@dataclass
class Row:
    params: dict
    extra: dict
    status: str = "ok"
    reason: str = ""
    data: list = field(default_factory=list)
    rounds: list = field(default_factory=list)
    iterations: int = 1


@dataclass
class AbRun:
    """Both sides' rows (``rows[role][row]``) and how the run went."""

    rows: dict
    info: dict


def label(params: dict) -> str:
    p = params
    fmt = " cl" if p.get("memory_format") == "channels_last" else ""
    return (
        f"{p['variant']}/{p['impl']}{fmt} {p['pass']} {p['group']}-{p['layer']} "
        f"c{p['c_in']}x{p['c_out']} k{p['k']} h{p['h']} b{p['batch']} {p['dtype']}"
    )


def _env(extra: dict) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def _wanted_impls(hellos: dict, wanted: list[str] | None):
    from ..sweep.shapes import DENSE, REFERENCE, Impl

    names: list[str] = []
    for role in ROLES:
        for v, i in hellos[role]["impls"]:
            if f"{v}/{i}" not in names:
                names.append(f"{v}/{i}")
    if wanted:
        unknown = [w for w in wanted if w not in names]
        if unknown:
            raise InputError(f"--impl {unknown}: neither side has it; known: {', '.join(names)}")
        keep = set(wanted) | {REFERENCE.name, DENSE.name}  # the ratios need them
        names = [n for n in names if n in keep]
    return [Impl(*n.split("/", 1)) for n in names]


def _plan(est: dict, timing, cuda: bool, reference_key: str | None, rounds: int | None,
          anchor_key: str | None = None):  # fmt: skip
    """``(calls per sample, samples)`` per row, as time_interleaved plans them, except that
    the reference and the anchor get as many samples as the densest row."""
    from ..measure.timing import SLOW_FACTOR, SLOW_FLOOR_S, SLOW_SAMPLES

    iters, plan = {}, {}
    for k, t in est.items():
        iters[k] = 1 if cuda else max(1, math.ceil(timing.block_s / t))
        n = timing.budget_s // (t * iters[k])
        plan[k] = int(min(max(n, timing.min_samples), timing.max_samples))
    ref_t = est.get(reference_key)
    for k, t in est.items():
        slow = ref_t is not None and k != reference_key and t >= SLOW_FACTOR * ref_t
        if slow and plan[k] > SLOW_SAMPLES and plan[k] * t > SLOW_FLOOR_S:
            plan[k] = SLOW_SAMPLES
    # Every ratio of the shape divides by the reference (and the reference's own by
    # the anchor), and a ratio has as many pairs as its sparser side: a slow reference
    # on min_samples gave a fast row's ratio 5 pairs, untrimmed (10 % of 5 is 0), so
    # one spike of the reference moved it by up to ~14 % (a 2x spike: log 2 / 5).
    # Both get the densest row's count (measured: docs/ab.md).
    if reference_key in plan:
        densest = max(plan.values())
        for k in (reference_key, anchor_key):
            if k in plan:
                plan[k] = max(plan[k], densest)
    if rounds:
        plan = dict.fromkeys(plan, int(rounds))
    return iters, plan


def run_ab(sides: dict, opts: Options, log=print) -> AbRun:
    """Time both sides (``{"base": Side, "head": Side}``) in alternating rounds.

    Raises:
        InputError: unusable input (a side that cannot import, an unknown --impl).
        WorkerDied: a worker crashed; ``.role`` says which.
    """
    from ..pipeline.run import resolve, spread_order, spread_out
    from ..store import results
    from ..sweep.shapes import REFERENCE

    start = time.perf_counter()
    try:
        device, prof = resolve(opts.device, opts.profile)
    except ValueError as e:
        raise InputError(str(e)) from None
    threads = opts.threads or (results.CPU_THREADS if device == "cpu" else None)
    envs = {"base": _env(opts.base_env), "head": _env(opts.head_env)}
    workers: dict[str, SideWorker] = {}
    try:
        for role in ROLES:
            workers[role] = SideWorker(role, sides[role].tree, envs[role])
        hellos = {role: workers[role].call("hello", threads=threads) for role in ROLES}
        impls = _wanted_impls(hellos, opts.impls)
        cases = prof.cases(device, impls)
        shapes = prof.shapes(device)
        if opts.max_shapes:
            kept = spread_out(shapes, opts.max_shapes)
            shapes = [s for s in shapes if s in kept]
        shapes = spread_order(shapes)
        timing = prof.timing_for(device)
        cuda = device.startswith("cuda")
        rows: dict = {role: {} for role in ROLES}
        done, stopped = 0, False
        log(
            f"bench ab: profile {prof.name} on {device}, {len(shapes)} shapes, "
            f"{len(impls)} implementations; base {sides['base'].given} "
            f"({hellos['base']['sepgconv']}), head {sides['head'].given} "
            f"({hellos['head']['sepgconv']})"
        )
        for shape in shapes:
            spent = time.perf_counter() - start
            if opts.time_limit_s is not None and done and spent >= opts.time_limit_s:
                stopped = True
                log(f"time limit {opts.time_limit_s:g} s: {done} of {len(shapes)} shapes done")
                break
            mine = [c for c in cases if c.shape == shape]
            ims = list(dict.fromkeys(c.impl for c in mine))
            passes = list(dict.fromkeys(c.pass_ for c in mine))
            prep = {
                role: workers[role].call(
                    "prepare", shape=asdict(shape),
                    impls=[[im.variant, im.impl, im.memory_format, im.compiled] for im in ims],
                    passes=passes,
                )["rows"]
                for role in ROLES
            }  # fmt: skip
            here: dict = {role: {} for role in ROLES}  # this shape's rows, by row key
            for role in ROLES:
                for k, r in prep[role].items():
                    here[role][k] = Row(r["params"], r.get("extra") or {}, r["status"], r["reason"])
                    rows[role][f"{shape.label()}/{k}"] = here[role][k]
            for pass_ in passes:
                _time_pass(workers, prep, here, pass_, timing, cuda, opts.rounds, REFERENCE)
            for role in ROLES:
                workers[role].call("release")
            done += 1
            log(f"  {done}/{len(shapes)} {shape.label()} ({time.perf_counter() - start:.0f} s)")
    finally:
        for w in workers.values():
            w.close()
    info = {
        "profile": prof.name, "device": device, "threads": threads,
        "shapes_todo": len(shapes), "shapes_done": done, "stopped_by_time_limit": stopped,
        "time_limit_s": opts.time_limit_s, "rounds_override": opts.rounds,
        "implementations": [im.name for im in impls],
        "sides": {role: {"given": sides[role].given, "tree": str(sides[role].tree),
                         "commit": sides[role].commit, **hellos[role]} for role in ROLES},
        "env_added": {"base": opts.base_env, "head": opts.head_env},
        "wall_s": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    for role in ROLES:
        info["sides"][role].pop("impls", None)
    return AbRun(rows, info)


def _time_pass(workers, prep, rows, pass_, timing, cuda, rounds_override, reference) -> None:
    from ..sweep.shapes import DENSE  # the anchor of the reference's ratio (bench compare's)
    from .worker import row_key

    keys = [k for k in prep["base"] if k.endswith("/" + pass_)]
    keys += [k for k in prep["head"] if k.endswith("/" + pass_) and k not in keys]
    est = {}
    for k in keys:
        ts = [
            prep[r][k]["estimate_s"] for r in ROLES if k in prep[r] and prep[r][k]["status"] == "ok"
        ]
        if ts:
            est[k] = max(min(ts), 1e-9)
    if not est:
        return
    ref_key, anchor_key = row_key(reference, pass_), row_key(DENSE, pass_)
    iters, plan = _plan(est, timing, cuda, ref_key, rounds_override, anchor_key)
    for role in ROLES:
        for k in est:
            if k in rows[role]:
                rows[role][k].iterations = iters[k]
    n_rounds = max(plan.values())
    spent = dict.fromkeys(est, 0.0)
    order = list(est)
    for r in range(n_rounds):
        due = []
        shift = r % len(order)
        for k in order[shift:] + order[:shift]:
            n = plan[k]
            if (r * n) // n_rounds == ((r + 1) * n) // n_rounds:
                continue  # not its turn: n samples spread over the rounds
            have = min(len(rows[role][k].data) for role in ROLES if k in rows[role]) if all(
                k in rows[role] for role in ROLES) else 0  # fmt: skip
            planned_s = n * est[k] * iters[k]
            if have >= min(timing.min_samples, n) and spent[k] >= 3 * max(timing.budget_s,
                                                                         planned_s):  # fmt: skip
                continue  # a loaded machine: enough time spent on this row
            due.append(k)
        if not due:
            continue
        block: dict = {}  # seconds of this round's block per row (the slower side's)
        for role in ROLES if r % 2 == 0 else ROLES[::-1]:
            mine = [[k, iters[k]] for k in due if k in rows[role] and rows[role][k].status == "ok"]
            if not mine:
                continue
            reply = workers[role].call("round", plan=mine, **{"pass": pass_})
            for k, t in reply["times"].items():
                row = rows[role][k]
                row.data.append(float(t))
                row.rounds.append(r)
                block[k] = max(block.get(k, 0.0), float(t) * iters[k])
            for k, why in reply["errors"].items():
                rows[role][k].status, rows[role][k].reason = "error", why
                rows[role][k].data, rows[role][k].rounds = [], []
        for k, t in block.items():
            spent[k] += t


def documents(ab: AbRun) -> dict:
    """``{role: pytest-benchmark document}`` of the rows that ran (status ok)."""
    from ..measure import env as envmod
    from ..store.benchmark_json import benchmark_entry, commit_info, machine_info

    environment = envmod.collect(ab.info["device"], roofline_ceilings=False)
    environment.update(profile=ab.info["profile"], ab=True, threads=ab.info["threads"])
    out = {}
    for role in ROLES:
        benches = [
            benchmark_entry(row.params, row.data, row.iterations, row.extra, row.rounds)
            for row in ab.rows[role].values()
            if row.status == "ok" and row.data
        ]
        ci = commit_info()
        side = ab.info["sides"][role]
        ci.update(id=side["commit"] or side["given"], ab_side=role, tree=side["tree"])
        out[role] = {
            "machine_info": machine_info(dict(environment, sepgconv_path=side["sepgconv"])),
            "commit_info": ci,
            "benchmarks": benches,
            "datetime": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "version": "ab",
        }
    return out


def row_failures(ab: AbRun) -> dict:
    """``{role: ["label: status: reason", ...]}`` for rows that did not run on a side."""
    return {
        role: [
            f"{label(r.params)}: {r.status}: {r.reason}"
            for r in ab.rows[role].values()
            if r.status not in ("ok", "skipped") or (r.status == "ok" and not r.data)
        ]
        for role in ROLES
    }
