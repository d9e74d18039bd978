"""One side's long-lived worker of ``python -m bench ab`` (run as a script, not imported).

``python bench/ab/worker.py TREE HARNESS`` imports ``sepgconv`` from ``TREE``
(the side) and the measurement code ``bench`` from ``HARNESS`` (the invoking
checkout), then answers one JSON request per line on stdin with one JSON line
on stdout (anything else the libraries print goes to stderr):

* ``{"op": "hello", "threads": N}`` → the side's ``sepgconv`` path, torch
  version and implementations (``[[variant, impl], ...]``).
* ``{"op": "prepare", "shape": {...}, "impls": [[variant, impl, format, compiled]],
  "passes": [...]}`` → per row (``"variant/impl/format/compiled/pass"``) its
  status (``ok``, ``error``, ``mismatch``, ``skipped``), the reason, the
  deterministic columns (MACs, parameters, ``auto_choice``) and the per-call
  estimate of its warm-up: each row built, checked against the reference,
  counted and warmed up as ``bench run`` does (:mod:`bench.pipeline.driver`).
* ``{"op": "round", "pass": P, "plan": [[row, calls], ...]}`` → one round: each
  row in the given order timed as one block of ``calls`` calls (CPU:
  ``perf_counter_ns``, garbage collector off; CUDA: one call between events);
  ``{"times": {row: seconds per call}, "errors": {row: text}}``. A row's first
  round of a pass is preceded by one untimed call of it (:meth:`Worker.round`).
* ``{"op": "release"}`` drops the shape; ``{"op": "quit"}`` ends the worker.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path


def _imports(tree: str, harness: str) -> None:
    """The side's sepgconv first, then the harness's bench (sepgconv stays the side's:
    it is in sys.modules, and its submodules load from its own __path__)."""
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and str(Path(p).resolve()) != here]
    sys.path.insert(0, tree)
    import sepgconv

    where = Path(sepgconv.__file__).resolve()
    if Path(tree).resolve() not in where.parents:
        raise RuntimeError(f"sepgconv imported from {where}, not from the side's tree {tree}")
    sys.path.insert(0, harness)


def row_key(im, pass_: str) -> str:
    return f"{im.variant}/{im.impl}/{im.memory_format}/{int(im.compiled)}/{pass_}"


class Worker:
    def __init__(self):
        self.steps: dict = {}
        self.device = "cpu"
        self.pass_: str | None = None  # the pass the last round timed
        self.warm: set = set()  # rows called since that pass began

    def hello(self, threads: int | None = None) -> dict:
        import torch

        import sepgconv
        from bench.measure import allocator
        from bench.sweep import profiles

        if threads:
            torch.set_num_threads(int(threads))
        allocator.steady()
        impls = [[im.variant, im.impl] for im in profiles.implementations()]
        return {
            "sepgconv": str(Path(sepgconv.__file__).resolve().parent),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "impls": impls,
            "pid": os.getpid(),
        }

    def prepare(self, shape: dict, impls: list, passes: list) -> dict:
        from bench.measure.timing import _warm_up
        from bench.pipeline import driver
        from bench.pipeline.rows import (
            base_result,
            describe,
            fill_static,
            first_call_s,
            is_auto,
            macs_of,
            note_choice,
            step_for,
        )  # fmt: skip
        from bench.sweep.guard import skip_reason
        from bench.sweep.profiles import get_profile
        from bench.sweep.shapes import Case, Impl, Shape
        from bench.sweep.subject import random_input

        self.release()
        shape = Shape(**shape)
        self.device = shape.device
        timing = get_profile("quick").timing_for(shape.device)  # warm-up rules only
        ims = [Impl(v, i, f, bool(c)) for v, i, f, c in impls]
        skip = {(im, p): skip_reason(Case(shape, im, p)) for im in ims for p in passes}
        out: dict = {}
        x = random_input(shape)
        built, failed, mismatched, _ = driver._build_and_check(shape, ims, passes, skip, x)
        counts = {im: macs_of(s, x, shape, None, im) for im, s in built.items()}
        for p in passes:
            for im in sorted(ims, key=lambda im: im.impl == "auto"):
                r = base_result(shape, im, p)
                subj = built.get(im) or mismatched.get(im)
                if subj is not None:
                    fill_static(r, subj, shape, counts.get(im))
                row = {"params": r.params(), "status": "ok", "reason": "", "estimate_s": None}
                if skip[(im, p)]:
                    row.update(status="skipped", reason=skip[(im, p)])
                elif im in failed:
                    row.update(status=failed[im][0], reason=failed[im][1])
                else:
                    try:
                        step = step_for(subj, x, shape, p)
                        first_call_s(step, shape.device)
                        if is_auto(subj):
                            note_choice(r, subj, x, shape, p)
                        row["estimate_s"] = _warm_up(step, _device(shape.device), timing)
                        self.steps[row_key(im, p)] = step
                    except Exception as e:  # noqa: BLE001 - recorded per row
                        row.update(status="error", reason=describe(e))
                row["extra"] = {
                    k: getattr(r, k, None)
                    for k in (
                        "macs_measured",
                        "macs_formula",
                        "params_measured",
                        "params_formula",
                        "auto_choice",
                    )  # fmt: skip
                }
                out[row_key(im, p)] = row
        return {"rows": out}

    def round(self, plan: list, **req) -> dict:
        """Time one round (see the module doc).

        ``prepare`` warms every row of every pass before the first round, so when
        a pass is timed the other pass's warm-ups ran after its rows did (``bench
        run`` warms each row right before its own pass's rounds). In 33 real A/B
        runs (7 quick shapes, AMD EPYC VM) the first timed sample of the slow
        forward rows (<= 6 samples: the reference and dense rows of the large
        shapes) was over 1.3x the row's later samples in 42 % of them, up to 2.8x
        at the 90th percentile; among five samples, untrimmed (10 % of 5 is 0),
        one 2.8x sample moves the row's mean log by log 2.8 / 5, ~20 %. So a
        row's first round of a pass calls it once, untimed, before its timed block.
        """
        import torch

        from bench.pipeline.rows import describe

        times, errors = {}, {}
        cuda = str(self.device).startswith("cuda")
        if req.get("pass") != self.pass_:
            self.pass_, self.warm = req.get("pass"), set()
        for key, calls in plan:
            step = self.steps.get(key)
            if step is None:
                errors[key] = "not prepared (or failed before)"
                continue
            try:
                if key not in self.warm:
                    step()  # untimed: the row's first call in this pass
                    if cuda:
                        torch.cuda.synchronize()
                    self.warm.add(key)
                if cuda:
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    step()
                    end.record()
                    torch.cuda.synchronize()
                    times[key] = start.elapsed_time(end) * 1e-3
                    continue
                t0 = time.perf_counter_ns()
                for _ in range(int(calls)):
                    step()
                times[key] = (time.perf_counter_ns() - t0) * 1e-9 / int(calls)
            except Exception as e:  # noqa: BLE001 - this row stops; the others go on
                errors[key] = describe(e)
                self.steps.pop(key, None)
        return {"times": times, "errors": errors}

    def release(self, **_) -> dict:
        self.steps.clear()
        self.pass_, self.warm = None, set()
        gc.collect()
        return {}


def _device(name: str):
    import torch

    return torch.device(name)


def main(argv: list[str]) -> int:
    tree, harness = argv[:2]
    reply_to = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr  # the protocol owns the real stdout
    try:
        _imports(tree, harness)
        worker = Worker()
    except Exception as e:  # noqa: BLE001 - said once, then every request fails
        reply_to.write(json.dumps({"error": f"{type(e).__name__}: {e}"}) + "\n")
        return 1
    reply_to.write(json.dumps({"ready": True}) + "\n")
    gc_was = gc.isenabled()
    for line in sys.stdin:
        req = json.loads(line)
        op = req.pop("op")
        if op == "quit":
            break
        try:
            if op == "round":
                gc.disable()
            if op not in ("hello", "prepare", "round", "release"):
                raise ValueError(f"unknown op {op!r}")
            reply = getattr(worker, op)(**req)
        except Exception as e:  # noqa: BLE001 - the parent decides what it means
            reply = {"error": f"{type(e).__name__}: {e}"}
        finally:
            if gc_was:
                gc.enable()
        reply_to.write(json.dumps(reply, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
