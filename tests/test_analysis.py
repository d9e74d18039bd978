"""Redundancy (PC1 ratio) and g/gc decomposition of GConv filter banks."""

import pytest
import torch

import sepgconv
from sepgconv import __main__ as cli
from sepgconv import analysis, models

GROUPS = ["p4", "p4m"]


def rank1_bank(n=5, c=3, g=4, k=3):
    """F[n, c, g] = K[n, c] · w[n, c, g]: exactly rank 1 along the group axis."""
    return torch.randn(n, c, 1, k, k, dtype=torch.float64) * torch.randn(
        n, c, g, 1, 1, dtype=torch.float64
    )


def test_pc1_ratio_is_one_on_rank1_filters():
    ratios = analysis.pc1_ratios(rank1_bank())
    assert ratios.shape == (15,)
    torch.testing.assert_close(ratios, torch.ones_like(ratios), rtol=0, atol=1e-12)


def test_pc1_ratio_is_below_one_on_random_filters():
    ratios = analysis.pc1_ratios(torch.randn(6, 4, 4, 3, 3))
    assert (ratios < 1 - 1e-4).all() and (ratios >= 1 / 4 - 1e-12).all()


def test_pc1_ratio_definition_centres_over_the_pixels():
    # copies [v1, v1, v2, v2] with v1 ⟂ v2 (both centred, equal norm) plus per-copy
    # constants: covariance eigenvalues (2, 2, 0, 0)·|v|² → PC1 explains one half
    v1 = torch.tensor([1.0, -1.0, 0, 0], dtype=torch.float64)
    v2 = torch.tensor([0, 0, 1.0, -1.0], dtype=torch.float64)
    copies = torch.stack([v1 + 3, v1 - 1, v2 + 7, v2]).reshape(1, 1, 4, 2, 2)
    assert analysis.pc1_ratios(copies).item() == pytest.approx(0.5, abs=1e-12)
    # the uncentred variant sees the constants
    assert analysis.pc1_ratios(copies, center=False).item() > 0.9


def test_pc1_ratio_of_constant_kernels_is_nan_and_skipped():
    bank = torch.ones(2, 1, 4, 3, 3)
    assert torch.isnan(analysis.pc1_ratios(bank)).all()


def test_redundancy_per_layer_skips_lifting_layers():
    reds = analysis.redundancy(models.build("g-p4cnn", seed=0))
    assert [r.name for r in reds] == [f"features.layer{i}.conv" for i in range(2, 8)]
    assert all(r.mean == pytest.approx(1.0, abs=1e-9) for r in reds)
    reds = analysis.redundancy(models.build("p4cnn", seed=0))
    assert all(0.25 < r.mean < 0.9 for r in reds)


def _separable_as_full(group, variant, lifting=False):
    sep = sepgconv.GConv2d(
        3, 4, 3, group=group, variant=variant, lifting=lifting, dtype=torch.float64
    )
    with torch.no_grad():
        sep.bias.normal_()
    full = sepgconv.GConv2d(3, 4, 3, group=group, lifting=lifting, dtype=torch.float64)
    with torch.no_grad():
        full.weight.copy_(sep.filter())
        full.bias.copy_(sep.bias)
    return sep, full


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("variant", ["g", "gc"])
def test_decomposition_is_exact_on_separable_layers(group, variant):
    sep, full = _separable_as_full(group, variant)
    new, err = analysis.decompose_layer(full, variant, impl="rearranged")
    assert err < 1e-12
    assert new.variant == variant and new.impl == "rearranged"
    torch.testing.assert_close(new.filter(), full.filter(), rtol=0, atol=1e-12)
    torch.testing.assert_close(new.bias, full.bias, rtol=0, atol=0)
    x = torch.randn(2, 3, sep.g_in, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(new(x), full(x), rtol=1e-10, atol=1e-10)


def test_gc_layers_are_also_exactly_g_separable():
    _, full = _separable_as_full("p4", "gc")
    assert analysis.decompose_layer(full, "g")[1] < 1e-12


@pytest.mark.parametrize("group", GROUPS)
def test_g_fit_never_worse_than_gc_fit_on_random_layers(group):
    for seed in range(3):
        torch.manual_seed(seed)
        layer = sepgconv.GConv2d(5, 6, 3, group=group, dtype=torch.float64)
        g_err = analysis.fit(layer.filter(), "g").rel_error
        gc_err = analysis.fit(layer.filter(), "gc").rel_error
        assert 0 < g_err <= gc_err + 1e-12 < 1


@pytest.mark.parametrize("variant", ["g", "gc"])
def test_fit_is_a_least_squares_optimum(variant):
    f = torch.randn(4, 3, 4, 3, 3, dtype=torch.float64)
    best = analysis.fit(f, variant)

    def error(kernel, pointwise):
        if variant == "g":
            approx = kernel[:, :, None] * pointwise[..., None, None]
        else:
            approx = kernel[:, None, None] * pointwise[..., None, None]
        return float((f - approx).norm() / f.norm())

    assert error(best.kernel, best.pointwise) == pytest.approx(best.rel_error, abs=1e-12)
    for _ in range(5):
        dk = 1e-3 * torch.randn_like(best.kernel)
        dw = 1e-3 * torch.randn_like(best.pointwise)
        assert error(best.kernel + dk, best.pointwise + dw) >= best.rel_error - 1e-12


def test_decompose_model_gives_the_separable_architecture():
    p4 = models.build("p4cnn", seed=0)
    new, errors = analysis.decompose_model(p4, "g")
    assert list(errors) == [f"features.layer{i}.conv" for i in range(2, 8)]
    assert all(0 < e < 1 for e in errors.values())
    assert models.count_params(new) == 8_910  # = g-P4CNN w=10
    target = models.build("g-p4cnn")
    assert {k: v.shape for k, v in new.state_dict().items()} == {
        k: v.shape for k, v in target.state_dict().items()
    }
    assert new.config() == target.config()
    assert models.gconv_layers(new)[0][1].variant == "full"  # lifting untouched
    assert p4.variant == "full"  # the original is not modified


def test_checkpoint_round_trip(tmp_path):
    model, _ = analysis.decompose_model(models.build("p4cnn", seed=0), "gc")
    path = tmp_path / "gc.pt"
    analysis.save_checkpoint(path, model)
    loaded = analysis.load_model(path)
    assert type(loaded) is type(model) and loaded.config() == model.config()
    x = model.example_input(2)
    model.eval(), loaded.eval()
    torch.testing.assert_close(loaded(x), model(x))


def test_load_bare_state_dict_and_refuse_pickles(tmp_path):
    model = models.build("gc-p4cnn-w30", seed=3)
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    loaded = analysis.load_model(tmp_path / "sd.pt")
    assert loaded.config() == model.config()
    torch.save(model, tmp_path / "whole.pt")
    with pytest.raises(ValueError, match="trust_pickle"):
        analysis.load_model(tmp_path / "whole.pt")
    assert isinstance(analysis.load_model(tmp_path / "whole.pt", trust_pickle=True), type(model))
    with pytest.raises(FileNotFoundError):
        analysis.load_model(tmp_path / "missing.pt")


def test_cli_analyze_with_compare_plot_and_decompose(tmp_path, capsys):
    plot, saved = tmp_path / "fig2.png", tmp_path / "g.pt"
    argv = ["analyze", "p4cnn", "--compare", "g-p4cnn", "--plot", str(plot)]
    assert cli.main(argv + ["--decompose", "g", "--save", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "== p4cnn ==" in out and "== g-p4cnn ==" in out and "layer7" in out
    assert plot.stat().st_size > 0 and saved.exists()
    assert cli.main(["analyze", str(saved)]) == 0
    assert "PC1 mean 1.0000" in capsys.readouterr().out
    assert cli.main(["analyze", "no-such-model"]) == 2
