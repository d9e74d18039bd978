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
    flock /tmp/sepgconv-timing.lock python tools/auto_costs.py expand  # F̃ alone

``expand``: the changed part alone, F̃'s forward + backward with index_select's
own backward (an index_add) vs layout.expand's gather + sum over h.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

import sepgconv
from sepgconv import autotune


def _interleaved(fns: dict, rounds: int, calls: int, stat=statistics.median) -> dict[str, float]:
    """Seconds per call of each function (``stat`` over the blocks: the median by
    default), timed in blocks of ``calls`` calls, in an order rotated per round."""
    for fn in fns.values():  # warm-up
        for _ in range(calls):
            fn()
    samples = {name: [] for name in fns}
    names = list(fns)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            fn = fns[name]
            t0 = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - t0) / calls)
    return {name: (statistics.median(s), min(s)) if stat == "both" else stat(s)
            for name, s in samples.items()}  # fmt: skip


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
            fns = {
                "auto": lambda: auto(x),
                "direct": lambda d=direct: d(x),  # the chosen layer: check + compute
                "bare": lambda d=direct: d._forward(x),  # its computation alone
            }
            both = _interleaved(fns, args.rounds, args.calls, stat="both")
        print(f"{mode}: chose {choice.impl}/{choice.memory_format}")
        for i, stat in enumerate(("median", "min")):  # the min: the least disturbed block
            t = {name: v[i] for name, v in both.items()}
            print(
                f"  {stat:6s} per call: bare {t['bare'] * 1e6:.1f} us, direct "
                f"{t['direct'] * 1e6:.1f} us, auto {t['auto'] * 1e6:.1f} us; auto - direct "
                f"{(t['auto'] - t['direct']) * 1e6:+.1f} us "
                f"({100 * (t['auto'] / t['direct'] - 1):+.1f} %), auto - bare "
                f"{(t['auto'] - t['bare']) * 1e6:+.1f} us "
                f"({100 * (t['auto'] / t['bare'] - 1):+.1f} %)"
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


def expand(args) -> None:
    """The changed part alone: F̃'s forward + backward, index_select's own backward
    (index_add) vs the gather + sum over h (layout.expand)."""
    from sepgconv import layout

    for group, c in (("p4", 32), ("p4m", 16), ("p4", 64)):
        full = sepgconv.GConv2d(c, c, 3, group=group, variant="full", padding=1)
        f = full.weight.detach().clone().requires_grad_()
        index, go = full._expansion, full.g_out
        inv = layout.inverse_expansion_index(index, go)
        n = f.shape[0]
        g = torch.randn(n, index.numel())

        def old(f=f, index=index, g=g):
            f.grad = None
            f.reshape(f.shape[0], -1).index_select(1, index).backward(g)

        def new(f=f, index=index, go=go, inv=inv, g=g):
            f.grad = None
            layout.expand(f, index, go, "contiguous", inv).reshape(f.shape[0], -1).backward(g)

        t = _interleaved({"index_add": old, "gather": new}, args.rounds, args.calls)
        print(
            f"{group} C={c} k=3: F~ fwd+bwd, index_add {t['index_add'] * 1e6:.1f} us, "
            f"gather+sum {t['gather'] * 1e6:.1f} us ({t['index_add'] / t['gather']:.2f}x)"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["overhead", "fullbwd", "expand"])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--calls", type=int, default=None)
    ap.add_argument("--batch", type=int, default=2, help="overhead: batch size")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    autotune.set_budget(0.05)
    print(f"{autotune.device_name('cpu')}, torch {torch.__version__}, {args.threads} thread(s)")
    if args.what == "overhead":
        args.rounds, args.calls = args.rounds or 60, args.calls or 100
        overhead(args)
    elif args.what == "expand":
        args.rounds, args.calls = args.rounds or 30, args.calls or 20
        expand(args)
    else:
        args.rounds, args.calls = args.rounds or 20, args.calls or 5
        fullbwd(args)


if __name__ == "__main__":
    main()
