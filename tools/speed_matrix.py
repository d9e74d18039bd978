#!/usr/bin/env python3
"""gc, g and full side by side in every precision and layout: the GPU step of issues #23/#24.

For each shape it times, interleaved in one process with the suite's own timing
(:func:`bench.measure.timing.time_interleaved`: CUDA events on a GPU, a monotonic
clock on the CPU), after checking each subject against the definition
(:func:`bench.sweep.subjects.check`; a subject that fails is reported, not timed):

* ``full/naive`` (the reference of every ratio) and ``dense`` (``nn.Conv2d``
  holding F̃: what full can at best be);
* ``gc/rearranged`` by each route of :func:`sepgconv.impls.gc_route` (``conv``,
  ``gemm``) and by the route the rule picks (``rule``), and ``gc/fused``;
* ``g/naive``, ``g/rearranged`` and ``g/fused``;

and, on CUDA, ``+graph`` twins of full/naive, dense and gc/rearranged (the rule's
route): the same step captured once in a CUDA graph (``torch.cuda.graph`` for
inference, ``torch.cuda.make_graphed_callables`` for a training step) and
replayed, which removes the host's per-op cost (the first H200 run's traces:
gc/rearranged's training step kept the GPU busy 954 µs of a 2,051 µs span —
host-bound — where full's kept it busy 1,837 of 2,038);

in three precisions: ``tf32`` (float32 with PyTorch's defaults for cuDNN and
``torch.backends.cuda.matmul.allow_tf32=True``), ``fp32`` (strict: TF32 off for
both), ``bf16``; in both memory formats; forward (inference) and forward+backward
(a training step). Per row: median latency, its IQR, ``host_ms`` (the median
time the host takes to *issue* one call, without waiting for the GPU: close to
the latency means the call is host-bound), the speed-up over full/naive
and over the dense conv of the same precision, format and pass, and the MAC cut
the speed-up is measured against (§3.4).

Output: ``OUT/speed_matrix.csv`` and ``OUT/speed_matrix.md`` (a table per
precision, and the machine: GPU or CPU model, driver, torch, Triton, cuDNN).
Precision flags are restored afterwards. Never time under ``TRITON_INTERPRET``:
fused rows are left out there.

Usage::

    python tools/speed_matrix.py --out /tmp/sm                       # CUDA defaults
    python tools/speed_matrix.py --device cpu --shapes p4:8:8:2 --budget 0.02 --out /tmp/sm
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from bench.measure import env, timing  # noqa: E402
from bench.pipeline import rows  # noqa: E402
from bench.sweep import subjects  # noqa: E402
from bench.sweep.shapes import Impl, Shape  # noqa: E402
from bench.sweep.subject import random_input  # noqa: E402
from sepgconv import counting, impls  # noqa: E402

PRECISIONS = {"tf32": ("float32", True), "fp32": ("float32", False), "bf16": ("bfloat16", None)}
#: (label, variant, impl, forced gc route or None)
SUBJECTS = [
    ("full/naive", "full", "naive", None),
    ("dense", "dense", "torch", None),
    ("gc/rearranged:conv", "gc", "rearranged", "conv"),
    ("gc/rearranged:gemm", "gc", "rearranged", "gemm"),
    ("gc/rearranged:rule", "gc", "rearranged", None),
    ("gc/fused", "gc", "fused", None),
    ("g/naive", "g", "naive", None),
    ("g/rearranged", "g", "rearranged", None),
    ("g/fused", "g", "fused", None),
]
#: the subjects that get a CUDA-graph twin
GRAPHED = ("full/naive", "dense", "gc/rearranged:rule")
FIELDS = [
    "group", "c", "h", "batch", "k", "precision", "dtype", "memory_format", "subject", "pass",
    "status", "median_ms", "iqr_ms", "n_samples", "host_ms", "speedup_vs_full", "speedup_vs_dense",
    "mac_cut", "efficiency",
]  # fmt: skip


@contextlib.contextmanager
def precision(tf32: bool | None):
    """TF32 on/off for cuDNN convolutions and cuBLAS matmuls (None: left alone)."""
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    if tf32 is not None:
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextlib.contextmanager
def forced_route(route: str | None):
    before = impls.GC_ROUTE
    impls.GC_ROUTE = route
    try:
        yield
    finally:
        impls.GC_ROUTE = before


def routed(step, route):
    """``step`` with gc/rearranged's route forced during each call (a no-op for None)."""
    if route is None:
        return step

    def call():
        with forced_route(route):
            return step()

    call.release = getattr(step, "release", None)
    return call


def host_ms(step, device: str, calls: int = 7) -> float:
    """Median host time to issue one call (the GPU drained before each; CPU: the call)."""
    times = []
    for _ in range(calls):
        timing.synchronize(torch.device(device))
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    timing.synchronize(torch.device(device))
    return sorted(times)[len(times) // 2] * 1e3


def graphed(module, x, pass_: str):
    """``pass_``'s step captured in a CUDA graph and replayed (CUDA only).

    Inference: ``module(x)`` under ``no_grad`` captured with ``torch.cuda.graph``
    after a warm-up on a side stream. Training: ``torch.cuda.make_graphed_callables``
    (forward and backward graphs; parameter gradients reset each call as in
    :func:`bench.measure.timing.make_step`).
    """
    if pass_ == "fwd":
        module.eval()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(3):
                module(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            module(x)
        return graph.replay
    module.train()
    fn = torch.cuda.make_graphed_callables(module, (x,))
    return timing.make_step(fn, x, "fwdbwd")


def parse_shape(text: str) -> tuple[str, int, int, int]:
    """``group:C:H:batch`` -> (group, C, H, batch)."""
    try:
        group, c, h, b = text.split(":")
        return group, int(c), int(h), int(b)
    except ValueError:
        raise argparse.ArgumentTypeError(f"shape {text!r} is not group:C:H:batch") from None


def mac_cut(variant: str, shape: Shape) -> float | None:
    """The variant's §3.4 promise, full's MACs over the variant's (as
    ``bench.store.record.promised_speedup``); None for full and the dense conv."""
    if variant not in ("g", "gc"):
        return None
    s = shape.layer_shape()
    dims = (s.c_in, s.c_out, s.g_in, s.g_out, s.k, s.h_out, s.w_out)
    return counting.macs_section34("full", *dims) / counting.macs_section34(variant, *dims)


def measure_shape(
    shape: Shape, fmt: str, labels: list, passes, t: timing.Timing, log, graphs: bool = True
):
    """Rows of one shape, format and precision (already set)."""
    refs: dict = {}
    x = random_input(shape)
    references = subjects.References(shape, x, refs)
    built, out = {}, []
    for label, variant, impl, route in SUBJECTS:
        if label not in labels:
            continue
        base = {"memory_format": fmt, "subject": label}
        if impl == "fused" and (shape.device != "cuda" or os.environ.get("TRITON_INTERPRET")):
            continue  # never timed on the interpreter
        try:
            with forced_route(route):
                subj = subjects.build(shape, Impl(variant, impl, fmt))
                bad = subjects.check(subj, references) if variant != "dense" else None
        except Exception as e:  # noqa: BLE001 - one subject's failure is a row
            out += [dict(base, **{"pass": p, "status": f"error: {type(e).__name__}: {e}"})
                    for p in passes]  # fmt: skip
            continue
        if bad:
            out += [dict(base, **{"pass": p, "status": f"mismatch: {bad}"}) for p in passes]
            continue
        built[label] = (subj, route, variant)
    for p in passes:
        steps = {
            label: routed(rows.step_for(subj, x, shape, p), route)
            for label, (subj, route, _) in built.items()
        }
        if graphs and shape.device == "cuda":
            for label in GRAPHED:
                if label not in built:
                    continue
                subj, route, variant = built[label]
                try:  # a fresh copy: capture must not share the eager subject's state
                    twin = copy.deepcopy(subj.module)
                    xin = rows.input_for(subj, x, shape, p)
                    with forced_route(route):
                        steps[label + "+graph"] = graphed(twin, xin, p)
                    built[label + "+graph"] = (subj, route, variant)
                except Exception as e:  # noqa: BLE001 - a capture that fails is a row
                    out.append({"memory_format": fmt, "subject": label + "+graph", "pass": p,
                                "status": f"error: {type(e).__name__}: {e}"})  # fmt: skip
        got = timing.time_interleaved(steps, shape.device, t, reference="full/naive")
        for label, res in got.items():
            row = {"memory_format": fmt, "subject": label, "pass": p}
            if isinstance(res, BaseException):
                row["status"] = f"error: {type(res).__name__}: {res}"
            else:
                row.update(status="ok", median_ms=res.median_s * 1e3, iqr_ms=res.iqr_s * 1e3,
                           n_samples=res.n)  # fmt: skip
                cut = mac_cut(built[label][2], shape)
                row["mac_cut"] = cut
                row["host_ms"] = host_ms(steps[label], shape.device)
            out.append(row)
        ok = {r["subject"]: r for r in out if r.get("pass") == p and r.get("status") == "ok"}
        for r in out:
            if r.get("pass") != p or r.get("status") != "ok":
                continue
            for ref, col in (("full/naive", "speedup_vs_full"), ("dense", "speedup_vs_dense")):
                if ref in ok:
                    r[col] = ok[ref]["median_ms"] / r["median_ms"]
            if r.get("mac_cut") and r.get("speedup_vs_full"):
                r["efficiency"] = r["speedup_vs_full"] / r["mac_cut"]
        log(f"  {fmt} {p}: " + ", ".join(
            f"{r['subject']} {r['median_ms']:.3f} ms" for r in out
            if r.get("pass") == p and r.get("status") == "ok"
        ))  # fmt: skip
    return out


def markdown(rows_: list[dict], machine: str) -> str:
    lines = [f"# gc, g and full side by side — {machine}", ""]
    lines.append("Speed-up over full/naive of the same precision, format and pass "
                 "(> 1: faster); in brackets, over the dense conv holding F̃.")  # fmt: skip
    for prec in PRECISIONS:
        sel = [r for r in rows_ if r["precision"] == prec]
        if not sel:
            continue
        lines += ["", f"## {prec}", "",
                  "| shape | format | pass | subject | ms | host ms | × full (× dense) "
                  "| MAC cut | eff. |",
                  "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in sel:
            shape = f"{r['group']} C{r['c']} H{r['h']} B{r['batch']} k{r['k']}"
            if r["status"] != "ok":
                lines.append(f"| {shape} | {r['memory_format']} | {r['pass']} | "
                             f"{r['subject']} | {r['status'][:60]} | | | | |")  # fmt: skip
                continue
            sp, sd = r.get("speedup_vs_full"), r.get("speedup_vs_dense")
            cut, eff = r.get("mac_cut"), r.get("efficiency")
            vs = (f"{sp:.2f}" if sp else "") + (f" ({sd:.2f})" if sd else "")
            lines.append(
                f"| {shape} | {r['memory_format']} | {r['pass']} | {r['subject']} | "
                f"{r['median_ms']:.3f} | {r['host_ms']:.3f} | {vs} | "
                f"{'' if cut is None else f'{cut:.1f}'} | {'' if eff is None else f'{eff:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


def machine_line(device: str) -> str:
    """The device's name, and the versions that decide its kernels."""
    e = env.collect(device, roofline_ceilings=False)
    bits = [e["device_name"], f"torch {torch.__version__}"]
    if device == "cuda":
        bits.append(f"CUDA {torch.version.cuda}, cuDNN {e['cudnn']}, driver {e.get('driver')}")
    else:
        bits.append(f"{torch.get_num_threads()} threads")
    try:
        import triton

        bits.append(f"Triton {triton.__version__}")
    except ImportError:
        pass
    return ", ".join(bits)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--shapes", type=parse_shape, nargs="+",
                    default=[("p4", 64, 32, 32), ("p4", 128, 32, 32), ("p4m", 64, 32, 32)],
                    help="group:C:H:batch (C_in = C_out, k below, padding k//2)")  # fmt: skip
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--precisions", default="tf32,fp32,bf16")
    ap.add_argument("--formats", default="contiguous,channels_last")
    ap.add_argument("--passes", default="fwd,fwdbwd")
    ap.add_argument("--subjects", default=",".join(s[0] for s in SUBJECTS))
    ap.add_argument("--budget", type=float, default=0.1, help="seconds of samples per row")
    ap.add_argument("--no-graphs", action="store_true", help="no CUDA-graph twins")
    ap.add_argument("--time-limit", type=float, default=None,
                    help="start no new shape/precision after this many seconds")  # fmt: skip
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    precs = args.precisions.split(",")
    formats, passes = args.formats.split(","), args.passes.split(",")
    labels = args.subjects.split(",")
    for name, choices in ((precs, PRECISIONS), (labels, [s[0] for s in SUBJECTS]),
                          (formats, ("contiguous", "channels_last")),
                          (passes, ("fwd", "fwdbwd"))):  # fmt: skip
        bad = [n for n in name if n not in choices]
        if bad:
            print(f"error: unknown {bad}; valid choices: {list(choices)}", file=sys.stderr)
            return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t = timing.Timing(budget_s=args.budget, min_samples=5, max_samples=50)
    machine = machine_line(args.device)
    print(machine, flush=True)
    all_rows, t0, stopped = [], time.time(), None
    try:
        for group, c, h, b in args.shapes:
            for prec in precs:
                if args.time_limit and time.time() - t0 > args.time_limit:
                    stopped = f"time limit {args.time_limit:.0f} s reached"
                    break
                dtype, tf32 = PRECISIONS[prec]
                if args.device == "cpu" and prec == "fp32":
                    continue  # no TF32 on the CPU: the same as tf32
                shape = Shape(group, "group", c, c, args.k, h, h, b, dtype=dtype,
                              device=args.device)  # fmt: skip
                print(f"{group} C{c} H{h} B{b} {prec}", flush=True)
                with precision(tf32 if args.device == "cuda" else None):
                    for fmt in formats:
                        for r in measure_shape(
                            shape, fmt, labels, passes, t, print, graphs=not args.no_graphs
                        ):
                            r.update(group=group, c=c, h=h, batch=b, k=args.k, precision=prec,
                                     dtype=dtype)  # fmt: skip
                            all_rows.append(r)
                write(out, all_rows, machine, stopped)  # after each block: a cap loses little
            if stopped:
                break
    except KeyboardInterrupt:  # SIGINT at a cap (tools/gpu-run.sh): keep what was measured
        stopped = "interrupted"
    text = write(out, all_rows, machine, stopped)
    print(text)
    return 0 if all(r.get("status") == "ok" for r in all_rows) else 1


def write(out: Path, all_rows: list[dict], machine: str, stopped: str | None) -> str:
    """``speed_matrix.csv`` and ``speed_matrix.md`` of the rows so far; the markdown."""
    with open(out / "speed_matrix.csv", "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        for r in all_rows:
            w.writerow({k: r.get(k, "") for k in FIELDS})
    text = markdown(all_rows, machine)
    if stopped:
        text += f"\nStopped early: {stopped}.\n"
    (out / "speed_matrix.md").write_text(text)
    return text


if __name__ == "__main__":
    raise SystemExit(main())
