"""impl="auto": choice per key, the cache (memory, file, export/load), compile and export."""

import copy
import json
import pickle
import subprocess
import sys

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

    def refuse(runners, device):
        calls.append(sorted(runners))
        raise AssertionError(f"timed {sorted(runners)}")

    monkeypatch.setattr(autotune, "time_candidates", refuse)
    return calls


def _auto(variant="gc", **kw):
    kw = dict(group="p4", padding=1) | kw
    return randomize_(GConv2d(3, 4, 3, variant=variant, impl="auto", **kw))


def _entry(layer, x, impl, fmt="contiguous", pass_="infer"):
    device, version, key = autotune.make_key(layer, x, pass_)
    return {"device": device, "torch": version, "key": key, "impl": impl, "memory_format": fmt}


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
    assert set(choice.timings_ms) == expected
    best = min(choice.timings_ms, key=choice.timings_ms.get)
    assert f"{choice.impl}/{choice.memory_format}" == best and choice.source == "timed"
    assert choice.rounds >= autotune.budget()["min_rounds"] and choice.tuning_s > 0
    assert choice.failed == {}
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
    ["dtype", "pass", "shape", "input format", "threads"],
)
def test_the_key_tells_apart(change, monkeypatch):
    # an entry for one key must not serve a call that differs in any keyed property
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    _preload(_entry(auto, x, "rearranged"))
    with torch.no_grad():
        assert auto.chosen_impl(x) == "rearranged"
    timed = []
    monkeypatch.setattr(
        autotune, "time_candidates", lambda r, d: (timed.append(1), ({k: 1.0 for k in r}, 1))[1]
    )
    grad = False
    if change == "dtype":
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
    device, version, key = autotune.make_key(auto, x, autotune.pass_of(auto, x))
    assert device == autotune.device_name("cpu") and version == torch.__version__
    for part in ("g|p4m|lifting", "cin=3", "cout=4", "k=3", "x=2x3x9x9", "float64", "train"):
        assert part in key


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
    autotune.set_budget(0.0, min_rounds=1, max_rounds=1)
    assert autotune.budget() == {"budget_s": 0.0, "min_rounds": 1, "max_rounds": 1}
    auto = _auto("gc")
    x = random_input(auto, dtype=torch.float32)
    with torch.no_grad():
        assert auto.choice(x).rounds == 1
    with pytest.raises(ValueError, match="bad budget"):
        autotune.set_budget(1.0, min_rounds=3, max_rounds=2)


def test_export_save_load_round_trip(tmp_path, no_timing, monkeypatch):
    monkeypatch.setattr(autotune, "time_candidates", lambda r, d: ({k: 1.0 for k in r}, 1))
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
    monkeypatch.setattr(autotune, "time_candidates", no_timing_fn := lambda r, d: 1 / 0)
    fresh = _auto("g")
    fresh.load_state_dict(auto.state_dict())
    with torch.no_grad():
        assert fresh.chosen_impl(x) == chosen  # from the loaded cache: no timing
    assert no_timing_fn
    with pytest.raises(ValueError, match="not a sepgconv-autotune/1 cache"):
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
