#!/usr/bin/env python3
"""Two CPU measurements behind ``docs/auto.md`` (run under the timing lock).

``overhead``: the per-call cost of ``impl="auto"`` over calling the
implementation it chose directly (a layer of that implementation sharing the
parameters), on a small layer (gc, C = 8, p4, k = 3, 8×8, ~0.1 ms per call),
in inference (eval, no_grad) and in a training forward. Interleaved: each round
times ``--calls`` calls of one then of the other; the medians over rounds are
compared.

``fullbwd``: forward + backward of the full GConv (naive: F̃ built each call)
against a plain ``nn.Conv2d`` holding the same F̃ (the bench's ``dense/torch``),
both on an input that wants its gradient, interleaved the same way.

Usage::

    flock /tmp/sepgconv-timing.lock python tools/auto_costs.py overhead
    flock /tmp/sepgconv-timing.lock python tools/auto_costs.py fullbwd
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import sepgconv
from sepgconv import autotune


def _interleaved(fns: dict, rounds: int, calls: int) -> dict[str, float]:
    """Median seconds per call of each function, timed in alternating blocks."""
    for fn in fns.values():  # warm-up
        for _ in range(calls):
            fn()
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - t0) / calls)
    return {name: statistics.median(s) for name, s in samples.items()}


def overhead(args) -> None:
    torch.manual_seed(0)
    c, size = 8, 8
    auto = sepgconv.GConv2d(c, c, 3, group="p4", variant="gc", impl="auto", padding=1)
    x = torch.randn(args.batch, c, 4, size, size)
    for mode in ("infer", "train"):
        auto.train(mode == "train")
        grad = torch.enable_grad() if mode == "train" else torch.no_grad()
        with grad:
            choice = auto.choice(x)
            direct = auto.to_impl(choice.impl, memory_format=choice.memory_format)
            direct.train(mode == "train")
            fns = {"auto": lambda: auto(x), "direct": lambda d=direct: d(x)}
            t = _interleaved(fns, args.rounds, args.calls)
        extra = t["auto"] - t["direct"]
        print(
            f"{mode}: chose {choice.impl}/{choice.memory_format}; "
            f"direct {t['direct'] * 1e6:.1f} us, auto {t['auto'] * 1e6:.1f} us per call: "
            f"{extra * 1e6:+.1f} us "
            f"({100 * extra / t['direct']:+.1f} %)"
        )


def fullbwd(args) -> None:
    shapes = [("p4", 32, 16, 8), ("p4m", 16, 16, 8)]
    for group, c, size, batch in shapes:
        torch.manual_seed(0)
        full = sepgconv.GConv2d(c, c, 3, group=group, variant="full", padding=1)
        go = full.g_out
        conv = nn.Conv2d(c * go, c * go, 3, padding=1)
        with torch.no_grad():
            conv.weight.copy_(full.expand_filter().reshape_as(conv.weight))
            conv.bias.copy_(full.bias.repeat_interleave(go))
        x5 = torch.randn(batch, c, go, size, size).requires_grad_()
        x4 = x5.detach().reshape(batch, c * go, size, size).requires_grad_()
        g5 = torch.randn(batch, c, go, size, size)
        g4 = g5.reshape(batch, c * go, size, size)

        def step_full(full=full, x5=x5, g5=g5):
            full(x5).backward(g5)

        def step_dense(conv=conv, x4=x4, g4=g4):
            conv(x4).backward(g4)

        t = _interleaved({"full": step_full, "dense": step_dense}, args.rounds, args.calls)
        print(
            f"{group} C={c} k=3 {size}x{size} batch {batch}, fwd+bwd: full/naive "
            f"{t['full'] * 1e3:.3f} ms, dense/torch {t['dense'] * 1e3:.3f} ms: full is "
            f"{t['dense'] / t['full']:.2f}x of conv2d's speed"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["overhead", "fullbwd"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--calls", type=int, default=None)
    ap.add_argument("--batch", type=int, default=2, help="overhead: batch size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    autotune.set_budget(0.05)
    print(f"{autotune.device_name('cpu')}, torch {torch.__version__}, {args.threads} thread(s)")
    if args.what == "overhead":
        args.rounds, args.calls = args.rounds or 40, args.calls or 200
        overhead(args)
    else:
        args.rounds, args.calls = args.rounds or 20, args.calls or 5
        fullbwd(args)


if __name__ == "__main__":
    main()
