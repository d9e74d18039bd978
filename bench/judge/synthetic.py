"""Synthetic runs with known truth, for validating the regression check.

A run is shaped like the quick profile (:func:`grid`: 84 shapes per pass ×
two passes × six implementations = 1,008 benchmarks), and its samples follow
:class:`Noise`, a model of what a shared CPU does to interleaved timing:

* every benchmark has a true median (:func:`world`; the implementations'
  speeds relative to each other vary by shape, fixed by the world's seed, so
  BASE and NEW share them);
* per run, the whole machine is faster or slower (``drift``) and each
  benchmark's median moves by its own small shift (``tau``: the run-to-run
  variation that no within-run sample shows);
* per interleaving round, a load factor common to all implementations of the
  shape (``round_sigma``), which paired ratios cancel;
* per sample, lognormal noise (``sigma``) plus rare one-sided spikes
  (``spike_prob``, exponential with mean ``spike_scale``); optionally a second,
  slower mode (``bimodal_shift``) that takes a share of each benchmark's
  samples, fixed per benchmark between 0 and ``bimodal`` (two code paths, or
  two placements of threads);
* sample counts as :func:`bench.measure.timing.time_interleaved` gives them:
  ``0.25 s / max(t, 5 ms)`` clamped to [5, 30], spread evenly over the rounds.

``factors`` multiplies chosen benchmarks' latencies in one run: an injected
regression.
"""

from __future__ import annotations

import itertools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .runs import Bench, Run, params_key
from .stats import summarize

IMPLS = (("full", "naive"), ("g", "naive"), ("g", "rearranged"), ("gc", "naive"),
         ("gc", "rearranged"), ("dense", "torch"))  # fmt: skip
# (k, h) pairs per (group, layer, channels): 7 -> 2 * 2 * 3 * 7 = 84 shapes per pass
K_H = ((1, 16), (3, 16), (3, 32), (5, 16), (5, 32), (7, 16), (3, 64))


@dataclass(frozen=True)
class Noise:
    """The noise model of :func:`synthetic_run` (log units; see the module doc)."""

    sigma: float = 0.03
    round_sigma: float = 0.05
    spike_prob: float = 0.03
    spike_scale: float = 0.3
    tau: float = 0.015
    drift: float = 0.05
    bimodal: float = 0.0  # largest share of a benchmark's samples in a second, slower mode
    bimodal_shift: float = 0.3  # log distance of that mode


def grid(passes=("fwd", "fwdbwd"), impls=IMPLS, channels=(8, 16, 32), k_h=K_H) -> list[dict]:
    """Benchmark params shaped like the quick profile.

    Args:
        passes: the passes.
        impls: ``(variant, impl)`` pairs.
        channels: channel counts (c_in = c_out).
        k_h: ``(k, h)`` pairs.

    Returns:
        One params dict per benchmark.
    """
    out = []
    for group, layer, c, (k, h), pass_, (variant, impl) in itertools.product(
        ("p4", "p4m"), ("lifting", "group"), channels, k_h, passes, impls
    ):
        out.append(dict(group=group, layer=layer, variant=variant, impl=impl, c_in=c, c_out=c,
                        k=k, h=h, w=h, batch=1, **{"pass": pass_}, dtype="float32",
                        device="cpu"))  # fmt: skip
    return out


def world(params: list[dict], seed: int = 0) -> dict:
    """True median latency (seconds) of each benchmark: ``{params_key: seconds}``.

    Args:
        params: the benchmarks.
        seed: the world's seed (shared by the runs that compare).

    Returns:
        The true medians.
    """
    rng = np.random.default_rng(seed)
    speed = {}  # (shape, impl) -> relative speed, random per shape
    out = {}
    for p in params:
        g = 4 if p["group"] == "p4" else 8
        size = p["c_in"] * p["c_out"] * g * g * p["k"] ** 2 * p["h"] * p["w"]
        shape = params_key({k: v for k, v in p.items() if k not in ("variant", "impl")})
        rel = speed.setdefault((shape, p["variant"], p["impl"]), float(rng.lognormal(0.0, 0.4)))
        bwd = 2.5 if p["pass"] == "fwdbwd" else 1.0
        out[params_key(p)] = (2e-5 + size * 4e-12) * bwd * rel
    return out


def _counts(median: float) -> int:
    return int(min(30, max(5, 0.25 // max(median, 0.005))))


def _rounds(n: int, total: int) -> np.ndarray:
    return np.array([r for r in range(total) if (r * n) // total != ((r + 1) * n) // total])


def synthetic_run(
    params: list[dict],
    medians: dict,
    seed: int,
    noise: Noise = Noise(),
    factors: dict | Callable | None = None,
    source: str | None = None,
) -> Run:
    """A run drawn from the model of the module doc.

    Args:
        params: the benchmarks.
        medians: true medians (:func:`world`).
        seed: this run's seed.
        noise: the noise model.
        factors: ``{params_key: multiplier}`` or ``f(params) -> multiplier``.
        source: the run's name (default ``synthetic-<seed>``).

    Returns:
        A :class:`bench.judge.runs.Run` with raw samples and rounds.
    """
    rng = np.random.default_rng(seed)
    machine = float(np.exp(rng.normal(0.0, noise.drift)))
    by_shape: dict[tuple, list[dict]] = {}
    for p in params:
        shape = params_key({k: v for k, v in p.items() if k not in ("variant", "impl")})
        by_shape.setdefault(shape, []).append(p)
    run = Run(source or f"synthetic-{seed}", _machine_info(), {"id": f"{seed:040x}"}, {})
    for members in by_shape.values():
        counts = [_counts(medians[params_key(p)]) for p in members]
        total = max(counts)
        load = rng.normal(0.0, noise.round_sigma, total)
        for p, n in zip(members, counts, strict=True):
            key = params_key(p)
            f = factors(p) if callable(factors) else (factors or {}).get(key, 1.0)
            rounds = _rounds(n, total)
            spikes = rng.exponential(noise.spike_scale, n) * (rng.random(n) < noise.spike_prob)
            if noise.bimodal:
                share = noise.bimodal * (zlib.crc32(repr(key).encode()) % 1000) / 1000.0
                spikes = spikes + noise.bimodal_shift * (rng.random(n) < share)
            logx = (
                np.log(medians[key] * machine * f) + rng.normal(0.0, noise.tau)
                + load[rounds] + rng.normal(0.0, noise.sigma, n) + spikes
            )  # fmt: skip
            x = np.exp(logx)
            run.benches[key] = Bench(key, p, "", "", {}, summarize(x, 0.0), rounds)
    return run


def _machine_info() -> dict:
    env = {"device": "cpu", "device_name": "Synthetic CPU", "cpu_model": "Synthetic CPU",
           "torch": "2.13.0", "threads": 2, "device_slug": "cpu-synthetic-cpu",
           "contention": {"disturbed": False, "reasons": []}}  # fmt: skip
    return {"cpu": {"brand_raw": "Synthetic CPU"}, "sepgconv_env": env}


def run_doc(run: Run) -> dict:
    """A pytest-benchmark document of ``run`` (what ``python -m bench run`` writes, in short).

    Args:
        run: a run with raw samples.

    Returns:
        The JSON-ready document (``stats.data`` and ``stats.data_rounds`` included).
    """
    benches = []
    for b in run.benches.values():
        x = b.summary.values
        q1, med, q3 = (float(v) for v in np.percentile(x, [25, 50, 75]))
        stats = {"min": float(x.min()), "max": float(x.max()), "mean": float(x.mean()),
                 "median": med, "iqr": q3 - q1, "q1": q1, "q3": q3, "rounds": int(x.size),
                 "data": [float(v) for v in x]}  # fmt: skip
        if b.rounds is not None:
            stats["data_rounds"] = [int(r) for r in b.rounds]
        name = "-".join(str(v) for v in b.params.values())
        benches.append({"name": f"test_sweep[{name}]", "fullname": f"bench::test_sweep[{name}]",
                        "params": dict(b.params), "extra_info": dict(b.extra_info),
                        "stats": stats})  # fmt: skip
    return {"machine_info": run.machine_info, "commit_info": run.commit_info,
            "benchmarks": benches, "datetime": "2026-01-01T00:00:00+00:00"}  # fmt: skip
