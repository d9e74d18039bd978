"""The optional e2cnn peer (skipped when e2cnn is not installed)."""

from __future__ import annotations

import pytest
import torch

import sepgconv
from bench.sweep import peers, subject
from bench.sweep.shapes import Shape

e2cnn = pytest.importorskip("e2cnn")


def test_listed_as_a_full_implementation():
    assert peers.implementations() == [("full", "e2cnn")]


@pytest.mark.parametrize("group", ["p4", "p4m"])
def test_element_map_is_a_group_isomorphism(group):
    """φ is a bijection that carries e2cnn's own group law to sepgconv's Cayley table:
    φ(a·b) = φ(a)·φ(b) for every pair, composed by e2cnn on one side and by
    sepgconv on the other (a permutation alone could scramble the products)."""
    phi = peers.element_map(group)
    grp = sepgconv.get_group(group)
    elements = list(peers._gspace(group).fibergroup.elements)
    fiber = peers._gspace(group).fibergroup
    assert sorted(phi) == list(range(grp.order)) and len(elements) == grp.order
    assert phi[_index(fiber, elements, fiber.identity)] == grp.identity
    for a, ea in enumerate(elements):
        for b, eb in enumerate(elements):
            ab = _index(fiber, elements, fiber.combine(ea, eb))
            assert phi[ab] == grp.compose(phi[a], phi[b]), (ea, eb)


def _index(fiber, elements, e) -> int:
    (i,) = [i for i, x in enumerate(elements) if fiber.equal(x, e)]
    return i


def _build_or_skip(shape):
    try:
        return peers.build(shape, "full", "e2cnn")
    except RuntimeError as e:
        if "numpy" in str(e):
            pytest.skip(str(e))
        raise


@pytest.mark.parametrize("group", ["p4", "p4m"])
@pytest.mark.parametrize("layer", ["group", "lifting"])
def test_equivariant_under_sepgconv_action(group, layer):
    shape = Shape(group, layer, 2, 3, 3, 9, 9, 1)
    subj = _build_or_skip(shape)
    x = subject.random_input(shape)
    assert peers.check_equivariance(subj, x, shape) is None
    # a wrong channel order (swap r and r², not an automorphism) breaks it: the check can fail
    if layer == "group":
        good = subj.to_input
        order = list(range(sepgconv.get_group(group).order))
        order[1], order[2] = 2, 1
        subj.to_input = lambda t: good(t[:, :, order])
        assert peers.check_equivariance(subj, x, shape) is not None


def test_macs_counted_like_a_dense_conv():
    from bench.measure import macs

    shape = Shape("p4", "group", 2, 3, 3, 8, 8, 2)
    subj = _build_or_skip(shape)
    macs, _ = macs.count_macs(subj.module, subj.to_input(subject.random_input(shape)))
    assert macs == subj.macs_formula
    assert subj.module(subj.to_input(subject.random_input(shape))).dtype == torch.float32
