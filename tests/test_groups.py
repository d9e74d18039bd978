import itertools

import pytest
import torch

from sepgconv.groups import GROUPS, get_group, p4, p4m

ALL = list(GROUPS.values())


@pytest.mark.parametrize("group", ALL, ids=lambda g: g.name)
class TestAxioms:
    def test_order(self, group):
        assert group.order == {"p4": 4, "p4m": 8}[group.name]

    def test_closure_and_latin_square(self, group):
        n = group.order
        for row in group.cayley:
            assert sorted(row) == list(range(n))
        for col in zip(*group.cayley, strict=True):
            assert sorted(col) == list(range(n))

    def test_identity(self, group):
        e = group.identity
        assert e == 0 and group.element_name(e) == "e"
        for a in range(group.order):
            assert group.compose(e, a) == a == group.compose(a, e)

    def test_inverse(self, group):
        for a in range(group.order):
            assert group.compose(a, group.inverse[a]) == group.identity
            assert group.compose(group.inverse[a], a) == group.identity

    def test_associativity(self, group):
        for a, b, c in itertools.product(range(group.order), repeat=3):
            assert group.compose(group.compose(a, b), c) == group.compose(a, group.compose(b, c))

    def test_documented_order(self, group):
        # index 4j + i is m^j r^i: r generates the first four, m·r^i follows.
        r = 1
        power = group.identity
        for i in range(4):
            assert power == i
            power = group.compose(power, r)
        assert power == group.identity  # r^4 = e
        if group.mirrors:
            m = 4
            assert group.compose(m, m) == group.identity
            for i in range(4):
                assert group.compose(m, i) == 4 + i
            # m r m = r^-1
            assert group.compose(group.compose(m, r), m) == group.inverse[r]

    def test_image_action_is_a_homomorphism(self, group):
        x = torch.randn(2, 3, 5, 5)
        for a, b in itertools.product(range(group.order), repeat=2):
            lhs = group.transform(group.transform(x, b), a)
            assert torch.equal(lhs, group.transform(x, group.compose(a, b)))

    def test_group_map_action_is_a_homomorphism(self, group):
        x = torch.randn(2, 3, group.order, 5, 5)
        for a, b in itertools.product(range(group.order), repeat=2):
            lhs = group.act(group.act(x, b), a)
            assert torch.equal(lhs, group.act(x, group.compose(a, b)))

    def test_elements_act_distinctly(self, group):
        x = torch.randn(1, 1, 5, 5)
        images = [group.transform(x, g) for g in range(group.order)]
        for a, b in itertools.combinations(range(group.order), 2):
            assert not torch.equal(images[a], images[b])

    @pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
    def test_spatial_perm_matches_transform(self, group, k):
        kernel = torch.randn(3, k, k)
        idx = group.spatial_perm(k)
        for h in range(group.order):
            via_perm = kernel.reshape(3, -1)[:, idx[h]].reshape(3, k, k)
            assert torch.equal(via_perm, group.transform(kernel, h))


def test_rotation_is_counter_clockwise():
    # T_r moves the top-right corner to the top-left on screen (rot90 convention).
    x = torch.zeros(3, 3)
    x[0, 2] = 1
    assert p4.transform(x, 1)[0, 0] == 1


def test_mirror_is_left_right():
    x = torch.arange(9.0).view(3, 3)
    assert torch.equal(p4m.transform(x, 4), x.flip(-1))


def test_get_group_errors_list_choices():
    assert get_group("p4") is p4
    with pytest.raises(ValueError, match=r"unknown group 'p6'.*\['p4', 'p4m'\]"):
        get_group("p6")


def test_group_map_action_checks_shape():
    with pytest.raises(ValueError, match="group feature map"):
        p4.act_on_group_map(torch.randn(1, 2, 8, 3, 3), 1)


def test_pickle_roundtrip_is_the_singleton():
    import pickle

    assert pickle.loads(pickle.dumps(p4m)) is p4m
