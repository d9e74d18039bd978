"""impl="auto": choice per key, the hot path, bounded timing, the cache (memory, file
under threads and processes, export/load, trust), compile and export."""

import copy
import json
import multiprocessing
import pickle
import subprocess
import sys
import threading
import time

import pytest
import torch
from conftest import random_input, randomize_

import sepgconv
from sepgconv import GConv2d, autotune
from sepgconv.registry import _REGISTRY, register

VARIANTS = ["full", "g", "gc"]


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    """Each test starts with an empty in-memory cache, no cache file and a small budget."""
    monkeypatch.setitem(autotune._settings, "file", None)
    for name, value in autotune.budget().items():  # restored after the test
        monkeypatch.setitem(autotune._settings, name, value)
    monkeypatch.setitem(autotune._settings, "budget_s", 0.01)
    autotune.clear()
    yield
    autotune.clear()


@pytest.fixture
def no_timing(monkeypatch):
    """Fail the test if anything is timed; the calls are counted in the list it returns."""
    calls = []

    def refuse(runners, device, **kw):
        calls.append(sorted(runners))
        raise AssertionError(f"timed {sorted(runners)}")

    monkeypatch.setattr(autotune, "time_candidates", refuse)
    return calls


def _auto(variant="gc", **kw):
    kw = dict(group="p4", padding=1) | kw
    return randomize_(GConv2d(3, 4, 3, variant=variant, impl="auto", **kw))


def _entry(layer, x, impl, fmt="contiguous", pass_="infer"):
    device, software, key = autotune.make_key(layer, x, pass_)
    return {"device": device, "software": software, "key": key, "impl": impl,
            "memory_format": fmt}  # fmt: skip


def _instant(runners, device, **kw):
    """A stand-in for time_candidates: every candidate 1 s, the first listed wins."""
    return autotune.Timing({k: 1.0 + i for i, k in enumerate(runners)}, 1, {}, next(iter(runners)))


class FakeClock:
    """A clock the fake runners advance: timing without sleeping, exact and repeatable."""

    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _preload(*entries):
    autotune.load({"format": autotune.FILE_FORMAT, "entries": list(entries)})


# ---------------------------------------------------------------------- #
# the layer
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("variant", VARIANTS)
def test_auto_has_the_variants_parameters_and_no_submodules(variant):
    auto = _auto(variant)
    naive = GConv2d(**(auto.config() | {"impl": "naive"}))
    assert {k: v.shape for k, v in auto.state_dict().items()} == {
        k: v.shape for k, v in naive.state_dict().items()
    }
    x = random_input(auto, dtype=torch.float32)
    auto(x), auto(x.requires_grad_())  # both passes: delegates exist now
    assert [name for name, _ in auto.named_modules()] == [""]
    assert set(auto.state_dict()) == set(naive.state_dict())
    naive.load_state_dict(auto.state_dict())
    torch.testing.assert_close(auto(x), naive(x))


@pytest.mark.parametrize("variant", ["g", "gc"])
def test_auto_times_the_available_implementations_and_keeps_the_fastest(variant):
    auto = _auto(variant, memory_format="auto")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        auto(x)
    choice = auto.choice(x)
    impls = [i for v, i in sepgconv.available_implementations("cpu") if v == variant]
    expected = {f"{i}/{f}" for i in impls if i != "auto" for f in ("contiguous", "channels_last")}
    assert set(choice.timings_ms) == expected and choice.source == "timed"
    assert choice.tuning_s > 0 and choice.failed == {}
    # every candidate but the one kept was either compared for the rounds or is
    # listed as abandoned, with the reason: nothing is dropped silently
    if choice.abandoned == {}:
        assert choice.rounds >= autotune.budget()["min_rounds"]
    assert f"{choice.impl}/{choice.memory_format}" not in choice.abandoned
    assert set(choice.abandoned) <= expected and all(choice.abandoned.values())
    assert auto.chosen_impl(x) == choice.impl
    assert sepgconv.is_memory_format(auto(x), choice.memory_format)


def test_a_cached_entry_is_used_without_timing(no_timing):
    auto = _auto("gc", memory_format="auto")
    x = random_input(auto, dtype=torch.float32)
    _preload(_entry(auto, x, "rearranged", "channels_last"))
    with torch.no_grad():
        y = auto(x)
        assert auto.choice(x).impl == "rearranged"
        assert auto.choice(x).source == "cache"
    assert sepgconv.is_memory_format(y, "channels_last")
    assert no_timing == []
    torch.testing.assert_close(y, auto.to_impl("naive")(x))


@pytest.mark.parametrize(
    "change",
    ["dtype", "pass", "shape", "input format", "threads", "eval mode", "input requires_grad",
     "matmul tf32", "cudnn tf32", "cudnn benchmark", "cudnn deterministic", "versions"],
)  # fmt: skip
def test_the_key_tells_apart(change, monkeypatch, request):
    # an entry for one key must not serve a call that differs in any keyed property,
    # neither from the cache nor from the layer's hot path (the call is made twice first)
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    _preload(_entry(auto, x, "rearranged"))
    with torch.no_grad():
        auto(x), auto(x)
        assert auto.chosen_impl(x) == "rearranged"
    timed = []
    monkeypatch.setattr(
        autotune, "time_candidates", lambda r, d, **kw: (timed.append(1), _instant(r, d))[1]
    )
    flags = {
        "matmul tf32": (torch.backends.cuda.matmul, "allow_tf32"),
        "cudnn tf32": (torch.backends.cudnn, "allow_tf32"),
        "cudnn benchmark": (torch.backends.cudnn, "benchmark"),
        "cudnn deterministic": (torch.backends.cudnn, "deterministic"),
    }
    grad = False
    if change in flags:
        owner, name = flags[change]  # (monkeypatch cannot restore these properties)
        before = getattr(owner, name)
        request.addfinalizer(lambda: setattr(owner, name, before))
        setattr(owner, name, not before)
    elif change == "eval mode":
        auto.eval()
    elif change == "input requires_grad":
        x = x.detach().requires_grad_()  # under no_grad: still the inference pass
    elif change == "versions":
        monkeypatch.setattr(autotune, "software", lambda: "torch=0|triton=none|sepgconv=0")
        auto = _auto("gc")  # versions do not change within a process: a fresh layer
    elif change == "dtype":
        auto, x = auto.double(), x.double()
    elif change == "pass":
        grad = True
    elif change == "shape":
        x = random_input(auto, batch=3, dtype=torch.float32)
    elif change == "input format":
        x = sepgconv.to_memory_format(x, "channels_last")
    else:
        monkeypatch.setattr(torch, "get_num_threads", lambda: 7)
        auto = _auto("gc")
    with torch.set_grad_enabled(grad):
        auto(x)
    assert timed == [1]


def test_the_key_names_device_torch_and_layer():
    auto = _auto("g", group="p4m", lifting=True)
    x = random_input(auto, dtype=torch.float64).requires_grad_()
    device, software, key = autotune.make_key(auto, x, autotune.pass_of(auto, x))
    assert device == autotune.device_name("cpu")
    assert software.startswith(f"torch={torch.__version__}|triton=")
    assert software.endswith(f"|sepgconv={sepgconv.__version__}")
    for part in ("g|p4m|lifting", "cin=3", "cout=4", "k=3", "x=2x3x9x9", "float64", "train",
                 "xgrad=1", "training", "tf32_matmul=", "cudnn_deterministic="):  # fmt: skip
        assert part in key


def test_reading_the_versions_does_not_import_triton():
    code = (
        "import sys, sepgconv\n"
        "print(sepgconv.autotune.software())\n"
        "print('triton' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    software, imported = out.stdout.split()
    assert "|triton=" in software and imported == "False"


def test_choosing_draws_no_random_numbers_and_touches_no_grad():
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32).requires_grad_()
    state = torch.get_rng_state()
    auto.choice(x)  # a train-pass timing: forward + backward of every candidate
    assert torch.equal(torch.get_rng_state(), state)
    assert x.grad is None and all(p.grad is None for p in auto.parameters())


def test_a_failing_candidate_is_skipped(monkeypatch):
    monkeypatch.setattr(sepgconv.registry, "_REGISTRY", dict(_REGISTRY))

    @register
    class Broken(sepgconv.get_implementation("gc", "rearranged")):
        impl = "broken"

        def _conv(self, x, weights, bias):
            raise RuntimeError("no kernel for this shape")

    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        auto(x)
    assert "broken/contiguous" not in auto.choice(x).timings_ms
    assert "no kernel for this shape" in auto.choice(x).failed["broken/contiguous"]
    assert auto.chosen_impl(x) in ("naive", "rearranged")


def test_training_through_auto_updates_the_shared_parameters():
    # float64: train and eval may choose different implementations (by timing), whose
    # float32 sums differ by rounding; the property tested is that they share weights
    auto = _auto("g").double()
    x = random_input(auto, dtype=torch.float64)
    opt = torch.optim.SGD(auto.parameters(), lr=0.1)
    before = auto(x).detach()
    auto(x).square().sum().backward()
    opt.step()
    after = auto(x).detach()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after, auto.to_impl("naive")(x))
    auto.eval()
    with torch.no_grad():  # the eval cache follows the step too
        torch.testing.assert_close(auto(x), after)


def test_copies_pickles_dtype_moves_and_to_impl():
    auto = _auto("gc").eval()
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        y = auto(x)
        for clone in (copy.deepcopy(auto), pickle.loads(pickle.dumps(auto))):
            assert type(clone) is type(auto) and clone._delegates == {}
            torch.testing.assert_close(clone(x), y)
        torch.testing.assert_close(auto.double()(x.double()), y.double(), rtol=1e-4, atol=1e-4)
    assert auto.to_impl("naive").memory_format == "contiguous"
    assert _auto("gc", memory_format="auto").to_impl("naive").memory_format == "contiguous"


# ---------------------------------------------------------------------- #
# the cache: budget, file, export, load
# ---------------------------------------------------------------------- #
def test_budget_bounds_the_rounds():
    autotune.set_budget(0.0, min_rounds=1, max_rounds=1, limit_s=5.0)
    assert autotune.budget() == {"budget_s": 0.0, "min_rounds": 1, "max_rounds": 1,
                                 "limit_s": 5.0}  # fmt: skip
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        assert auto.choice(x).rounds <= 1  # 0: one candidate was abandoned at once
    with pytest.raises(ValueError, match="bad budget"):
        autotune.set_budget(1.0, min_rounds=3, max_rounds=2)
    with pytest.raises(ValueError, match="bad budget"):
        autotune.set_budget(1.0, limit_s=0)


def test_export_save_load_round_trip(tmp_path, no_timing, monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", _instant)
    auto = _auto("g")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        chosen = auto.chosen_impl(x)
    data = autotune.export()
    assert data["format"] == autotune.FILE_FORMAT and len(data["entries"]) == 1
    autotune.save(tmp_path / "cache.json")
    autotune.clear()
    assert autotune.entries() == {}
    assert autotune.load(tmp_path / "cache.json") == 1
    timed = []
    monkeypatch.setattr(autotune, "time_candidates", lambda r, d, **kw: timed.append(1))
    fresh = _auto("g")
    fresh.load_state_dict(auto.state_dict())
    with torch.no_grad():
        fresh(x)
        assert fresh.chosen_impl(x) == chosen  # from the loaded cache: no timing
        assert fresh.choice(x).source == "cache"
    assert timed == []
    with pytest.raises(ValueError, match="not a sepgconv-autotune/2 cache"):
        autotune.load({"format": "other", "entries": []})


def test_cache_file_persists_choices(tmp_path):
    path = tmp_path / "auto.json"
    autotune.set_cache_file(path)
    try:
        auto = _auto("gc")
        x = random_input(auto, dtype=torch.float32)
        with torch.no_grad():
            chosen = auto.chosen_impl(x)
        stored = json.loads(path.read_text())["entries"]
        assert [e["impl"] for e in stored] == [chosen]
        autotune.clear()
        autotune.set_cache_file(path)  # read back
        assert [c.impl for c in autotune.entries().values()] == [chosen]
    finally:
        autotune.set_cache_file(None)


def test_cache_file_from_the_environment(tmp_path):
    path = tmp_path / "env.json"
    code = (
        "import torch, sepgconv\n"
        "layer = sepgconv.GConv2d(2, 2, 3, variant='gc', impl='auto', padding=1)\n"
        "with torch.no_grad(): layer(torch.randn(1, 2, 4, 6, 6))\n"
        "print(sepgconv.autotune.cache_file())\n"
    )
    env = {"SEPGCONV_AUTOTUNE_CACHE": str(path), "SEPGCONV_AUTOTUNE_BUDGET": "0.01"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env | _base_env(), capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(path)
    assert len(json.loads(path.read_text())["entries"]) == 1


def _base_env():
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("SEPGCONV_AUTOTUNE")}


# ---------------------------------------------------------------------- #
# torch.compile and torch.export
# ---------------------------------------------------------------------- #
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_compile_fullgraph_once_the_choice_is_cached(mode, no_timing):
    auto = getattr(_auto("gc", memory_format="auto"), mode)()
    x = random_input(auto, dtype=torch.float32)
    _preload(
        _entry(auto, x, "rearranged", "channels_last", "train"),
        _entry(auto, x, "naive", "contiguous", "infer"),
    )
    expected = auto(x)  # eager calls make the choices, one per pass (from the cache here)
    with torch.no_grad():
        expected_infer = auto(x)
    torch._dynamo.reset()
    compiled = torch.compile(auto, backend="eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), expected)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), expected_infer)
    compiled(x).sum().backward()  # gradients flow through the compiled delegate
    assert all(p.grad is not None for p in auto.parameters())


def test_compile_without_fullgraph_chooses_at_a_graph_break():
    auto = _auto("g")
    x = random_input(auto, dtype=torch.float32)
    torch._dynamo.reset()
    y = torch.compile(auto, backend="eager")(x)  # no eager call before: chosen at a break
    torch.testing.assert_close(y, auto.to_impl("naive")(x))
    assert auto.choice(x).source == "timed"
    torch._dynamo.reset()
    with pytest.raises(Exception, match="(?i)disable|graph break|skip"):
        torch.compile(_auto("g", group="p4m"), backend="eager", fullgraph=True)(
            random_input(_auto("g", group="p4m"), dtype=torch.float32)
        )


def test_export_after_an_eager_call():
    auto = _auto("gc", memory_format="auto")
    x = random_input(auto, dtype=torch.float32)
    y = auto(x)
    program = torch.export.export(auto, (x,))
    assert set(program.graph_signature.parameters) == set(auto.state_dict())
    torch.testing.assert_close(program.module()(x), y)
    # a key not chosen yet: export says what to do
    with pytest.raises(RuntimeError, match="call the model once eagerly"):
        torch.export.export(auto, (random_input(auto, batch=3, dtype=torch.float32),))


def test_fvcore_counts_what_auto_runs():
    from sepgconv import counting

    auto = _auto("gc")
    x = random_input(auto, batch=2, size=8, dtype=torch.float32)
    count = counting.measure_macs(auto, x)
    assert count.unsupported == {}
    assert count.total == counting.layer_macs(auto, 8, 8, batch=2)
    with pytest.raises(TypeError, match="counting.layer_macs"):
        type(auto).macs(auto.layer_shape(8, 8))


# ---------------------------------------------------------------------- #
# the hot path: one dict lookup per call once the signature is known
# ---------------------------------------------------------------------- #
def test_a_known_signature_skips_the_check_and_the_key(monkeypatch):
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        expected = auto(x)  # the full path: checked, keyed, timed
    seen = {"check": 0, "key": 0}

    def counting(name, fn):
        def wrapped(*args, **kw):
            seen[name] += 1
            return fn(*args, **kw)

        return wrapped

    monkeypatch.setattr(auto, "_check_input", counting("check", auto._check_input))
    monkeypatch.setattr(autotune, "make_key", counting("key", autotune.make_key))
    with torch.no_grad():
        for _ in range(5):
            torch.testing.assert_close(auto(x), expected)
    assert seen == {"check": 0, "key": 0}
    with torch.no_grad():  # a new signature (another batch) takes the full path once
        auto(random_input(auto, batch=3, dtype=torch.float32))
    assert seen["check"] == 1 and seen["key"] >= 1
    with pytest.raises(sepgconv.InputError):  # a bad input still gets its message
        auto(torch.randn(2, 3, 9, 9))


def test_the_hot_path_follows_the_cache_generation(no_timing):
    # a choice replaced in the cache (load) reaches a layer that already chose
    auto = _auto("gc", memory_format="auto")
    x = random_input(auto, dtype=torch.float32)
    _preload(_entry(auto, x, "rearranged", "channels_last"))
    with torch.no_grad():
        assert sepgconv.is_memory_format(auto(x), "channels_last")
        assert sepgconv.is_memory_format(auto(x), "channels_last")
        _preload(_entry(auto, x, "naive", "contiguous"))
        y = auto(x)
        assert auto.choice(x).impl == "naive"
    assert sepgconv.is_memory_format(y, "contiguous")
    assert not sepgconv.is_memory_format(y, "channels_last")


def test_moving_the_layer_forgets_the_hot_path(monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", _instant)
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        auto(x), auto(x)
        auto.double()
        with pytest.raises(sepgconv.InputError, match="dtype"):
            auto(x)  # float input, float64 weights: refused, not run on a stale entry
        assert auto(x.double()).dtype == torch.float64


# ---------------------------------------------------------------------- #
# bounded timing (fake clock: no sleeping, exact)
# ---------------------------------------------------------------------- #
def _fake_runners(clock, costs):
    calls = dict.fromkeys(costs, 0)

    def make(name):
        def run():
            calls[name] += 1
            clock.t += costs[name]

        return run

    return {name: make(name) for name in costs}, calls


def test_a_far_slower_candidate_is_called_at_most_twice_after_warm_up(monkeypatch):
    autotune.set_budget(10.0, min_rounds=3, max_rounds=10, limit_s=100.0)
    costs = {"fast": 1e-3, "close": 1.3e-3, "slow": 0.1}  # slow: 100x fast
    clock = FakeClock()
    runners, calls = _fake_runners(clock, costs)
    timing = autotune.time_candidates(runners, torch.device("cpu"), clock=clock)
    assert calls["slow"] <= 1 + 2  # the warm-up, then at most two timed calls
    assert "slow" in timing.abandoned and "x the best after 2 calls" in timing.abandoned["slow"]
    assert timing.best == "fast"
    assert timing.medians["fast"] == pytest.approx(1e-3)
    assert timing.medians["slow"] == pytest.approx(0.1)  # its few samples are still reported
    # the winner is the one a full comparison (nothing abandoned) picks
    monkeypatch.setattr(autotune, "DROP_RATIO", float("inf"))
    monkeypatch.setitem(autotune._settings, "min_rounds", 10)
    clock = FakeClock()
    runners, calls = _fake_runners(clock, costs)
    full = autotune.time_candidates(runners, torch.device("cpu"), clock=clock)
    assert calls["slow"] == 1 + 1 + 10 and full.abandoned == {}
    assert full.best == "fast"


def test_one_slow_call_is_not_enough_to_abandon(monkeypatch):
    # a candidate preempted once (its first timed call 20x its others) stays in the field
    autotune.set_budget(10.0, min_rounds=3, max_rounds=6, limit_s=100.0)
    clock = FakeClock()
    seq = iter([1e-3, 20e-3] + [0.9e-3] * 50)  # warm-up, the preempted call, then steady

    def jumpy():
        clock.t += next(seq)

    def steady():
        clock.t += 1e-3

    timing = autotune.time_candidates(
        {"steady": steady, "jumpy": jumpy}, torch.device("cpu"), clock=clock
    )
    assert "jumpy" not in timing.abandoned
    assert timing.best == "jumpy"


def test_an_abandoned_candidate_never_wins():
    # seen on the loaded CPU: the leader's rounds ran under load (20 ms) after a quiet
    # sizing call (1 ms); the abandoned one's two quiet calls (10 ms) have the lower
    # median, but two calls 10x behind do not outvote the rounds
    autotune.set_budget(10.0, min_rounds=3, max_rounds=3, limit_s=100.0)
    clock = FakeClock()
    costs = {  # warm-up, sizing call, then the rounds (under load)
        "fast": iter([1e-3, 1e-3] + [20e-3] * 10),
        "mid": iter([1.5e-3, 1.5e-3] + [21e-3] * 10),
        "slow": iter([10e-3] * 10),
    }

    def runner(name):
        def run():
            clock.t += next(costs[name])

        return run

    timing = autotune.time_candidates(
        {name: runner(name) for name in costs}, torch.device("cpu"), clock=clock
    )
    assert "slow" in timing.abandoned
    assert timing.medians["slow"] < timing.medians["fast"]
    assert timing.best == "fast"


def test_successive_halving_keeps_the_fastest_half(monkeypatch):
    autotune.set_budget(10.0, min_rounds=3, max_rounds=10, limit_s=100.0)
    costs = {"a": 1.0e-3, "b": 1.1e-3, "c": 1.2e-3, "d": 1.25e-3}  # all within 3x
    clock = FakeClock()
    runners, calls = _fake_runners(clock, costs)
    timing = autotune.time_candidates(runners, torch.device("cpu"), clock=clock)
    # 3 rounds of 4, then 3 rounds of 2: c and d leave after round 3, b after round 6
    assert timing.rounds == 6 and calls == {"a": 8, "b": 8, "c": 5, "d": 5}
    assert set(timing.abandoned) == {"b", "c", "d"}
    assert all("halved out" in why for why in timing.abandoned.values())
    assert timing.best == "a"


def test_the_time_limit_caps_a_keys_timing():
    autotune.set_budget(10.0, min_rounds=3, max_rounds=100, limit_s=0.1)
    costs = {"a": 10e-3, "b": 11e-3, "c": 12e-3}
    clock = FakeClock()
    runners, _ = _fake_runners(clock, costs)
    timing = autotune.time_candidates(runners, torch.device("cpu"), clock=clock)
    assert clock.t <= 0.1  # warm-up and all timed calls together
    assert timing.best == "a"
    assert set(timing.abandoned) == {"b", "c"}
    assert all("0.1 s limit" in why for why in timing.abandoned.values())


def test_auto_keeps_the_fastest_implementation(monkeypatch):
    # two made-up gc implementations whose calls cost known (fake) time per format:
    # auto must keep the fastest, and report the far slower one as abandoned
    clock = FakeClock()
    monkeypatch.setattr(autotune, "_clock", clock)
    base = sepgconv.get_implementation("gc", "naive")
    registry = {k: v for k, v in _REGISTRY.items() if k[0] != "gc" or k[1] == "auto"}
    monkeypatch.setattr(sepgconv.registry, "_REGISTRY", registry)
    cost = {("hare", "contiguous"): 1e-3, ("hare", "channels_last"): 1.2e-3,
            ("tortoise", "contiguous"): 1.1e-3, ("tortoise", "channels_last"): 0.5}  # fmt: skip

    def costed(name):
        class Costed(base):
            impl = name

            def _conv(self, x, weights, bias):
                clock.t += cost[(name, self._format)]
                return super()._conv(x, weights, bias)

        Costed.__name__ = Costed.__qualname__ = f"GC{name.title()}"
        return register(Costed)

    costed("tortoise"), costed("hare")
    auto = _auto("gc", memory_format="auto")
    x = random_input(auto, dtype=torch.float32)
    for grad in (False, True):
        with torch.set_grad_enabled(grad):
            choice = auto.choice(x)
        assert (choice.impl, choice.memory_format) == ("hare", "contiguous")
        assert choice.timings_ms["hare/contiguous"] == pytest.approx(1.0)
        assert choice.timings_ms["tortoise/channels_last"] == pytest.approx(500.0)
        assert "tortoise/channels_last" in choice.abandoned


# ---------------------------------------------------------------------- #
# the cache file under threads and processes
# ---------------------------------------------------------------------- #
def test_six_threads_tuning_into_one_file_lose_nothing(tmp_path, monkeypatch):
    path = tmp_path / "auto.json"
    monkeypatch.setattr(autotune, "time_candidates", _instant)
    read = autotune._read

    def slow_read(p):  # widen the read-merge-write window
        time.sleep(0.002)
        return read(p)

    monkeypatch.setattr(autotune, "_read", slow_read)
    autotune.set_cache_file(path)
    try:
        layers = [_auto("gc") for _ in range(6)]
        start, errors = threading.Barrier(6), []

        def tune(i):
            try:
                start.wait()
                with torch.no_grad():
                    for batch in range(1, 6):  # five keys per thread, thirty in all
                        layers[i](random_input(layers[i], batch=batch, size=5 + i,
                                               dtype=torch.float32))  # fmt: skip
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=tune, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        stored = json.loads(path.read_text())["entries"]
        assert len({e["key"] for e in stored}) == len(stored) == 30
        assert not list(tmp_path.glob("*.tmp"))  # no temporary file left behind
    finally:
        autotune.set_cache_file(None)


def test_a_thread_writing_the_file_makes_another_wait(tmp_path, monkeypatch):
    # the first writer holds its read-merge-write open; the second records meanwhile.
    # Unlocked, the first would write its older snapshot last and lose the second's entry
    path = tmp_path / "auto.json"
    autotune.save(path)
    autotune.set_cache_file(path)
    read, reading = autotune._read, threading.Event()

    def holding_read(p):
        data = read(p)
        if threading.current_thread().name == "first":
            reading.set()
            time.sleep(0.3)
        return data

    monkeypatch.setattr(autotune, "_read", holding_read)

    def write(name):
        if name == "second":
            reading.wait(30)
        autotune.record(("dev", "sw", name), autotune.Choice("naive", "contiguous"))

    try:
        threads = [threading.Thread(target=write, args=(n,), name=n) for n in ("first", "second")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        stored = json.loads(path.read_text())["entries"]
        assert sorted(e["key"] for e in stored) == ["first", "second"]
    finally:
        autotune.set_cache_file(None)


def _write_one_entry(path, name, hold_s, ready):
    """A child process: record one entry into ``path``; with ``hold_s``, hold the
    read-merge-write open that long after reading (another writer must wait)."""
    autotune._entries.clear()
    autotune._settings.update(file=None, file_loaded=True)
    if hold_s:
        read = autotune._read

        def holding_read(p):
            data = read(p)
            ready.set()  # the other process writes now
            time.sleep(hold_s)
            return data

        autotune._read = holding_read
    else:
        ready.wait(30)
    autotune._settings["file"] = path
    autotune.record(("dev", "sw", name), autotune.Choice("naive", "contiguous"))


def test_two_processes_writing_distinct_keys_keep_both(tmp_path):
    path = tmp_path / "auto.json"
    autotune.save(path)  # an empty cache file: the first writer reads it, then holds
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    procs = [
        ctx.Process(target=_write_one_entry, args=(str(path), "first", 1.0, ready)),
        ctx.Process(target=_write_one_entry, args=(str(path), "second", 0.0, ready)),
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    stored = json.loads(path.read_text())["entries"]
    assert sorted(e["key"] for e in stored) == ["first", "second"]


# ---------------------------------------------------------------------- #
# trust: choices made on a disturbed machine are not persisted
# ---------------------------------------------------------------------- #
def test_choices_timed_while_untrusted_are_used_not_persisted(tmp_path, monkeypatch):
    timed = []

    def counted(runners, device, **kw):
        timed.append(1)
        return _instant(runners, device)

    monkeypatch.setattr(autotune, "time_candidates", counted)
    path = tmp_path / "auto.json"
    autotune.set_cache_file(path)
    try:
        auto = _auto("gc")
        x = random_input(auto, dtype=torch.float32)
        with autotune.untrusted("foreign_cpu 1.00 > 0.25"), torch.no_grad():
            assert not autotune.trusted()
            auto(x), auto(x)
            assert auto.choice(x).source == "timed-untrusted"
        assert timed == [1]
        assert not path.exists() and autotune.export()["entries"] == []
        with torch.no_grad():
            auto(x)  # trust is back: timed again, then persisted
            assert auto.choice(x).source == "timed"
        assert timed == [1, 1]
        assert len(json.loads(path.read_text())["entries"]) == 1
        autotune.set_trusted(False, "a neighbour")
        with torch.no_grad():
            auto(random_input(auto, batch=3, dtype=torch.float32))
        autotune.set_trusted(True)
        assert len(json.loads(path.read_text())["entries"]) == 1
    finally:
        autotune.set_trusted(True)
        autotune.set_cache_file(None)
