"""The point groups p4 and p4m (their rotation/mirror parts), as objects.

Every element is stored as a 2×2 integer matrix acting on pixel coordinates
``(row, col)`` measured from the image centre. Composition is the matrix
product, so the Cayley table, the inverses and every permutation used by the
layers are *derived* here rather than typed in.

Element order on the group axis (DESIGN §2):

* p4: ``r^i`` at index ``i`` (``i = 0..3``, rotation by ``i·90°``);
* p4m: ``m^j r^i`` at index ``4j + i`` (``j = 1`` adds the mirror).

.. note ::
    The action on a function is ``(T_g f)(p) = f(g⁻¹ p)``. With ``r`` chosen as
    ``[[0, -1], [1, 0]]`` in ``(row, col)`` coordinates, ``T_r`` is exactly
    ``torch.rot90(x, 1, dims=(-2, -1))`` (counter-clockwise on screen), and with
    ``m = diag(1, -1)``, ``T_m`` is ``torch.flip(x, dims=(-1,))`` (left-right
    mirror). ``T_{m^j r^i} = T_m^j ∘ T_r^i``: rotate first, then mirror.
    The tests check that ``T_a ∘ T_b = T_{ab}`` on images for every pair.
"""

from __future__ import annotations

import functools

import torch

from sepgconv.errors import UnknownChoiceError

_R = ((0, -1), (1, 0))  # rotation by +90° in (row, col) coordinates
_M = ((1, 0), (0, -1))  # mirror col -> -col
_I = ((1, 0), (0, 1))


def _matmul(a, b):
    return tuple(
        tuple(sum(a[i][k] * b[k][j] for k in range(2)) for j in range(2)) for i in range(2)
    )


def _matpow(a, n):
    out = _I
    for _ in range(n):
        out = _matmul(out, a)
    return out


class Group:
    """A finite group of rotations (and mirrors) of the square pixel grid.

    Args:
        name: ``"p4"`` or ``"p4m"``.
        mirrors: whether the group contains the mirror ``m``.

    Attributes:
        order: number of elements ``G``.
        cayley: ``cayley[a][b]`` is the index of ``a·b``.
        inverse: ``inverse[a]`` is the index of ``a⁻¹``.

    Example:
        >>> from sepgconv.groups import p4
        >>> p4.cayley[1][3]  # r · r³ = e
        0
    """

    def __init__(self, name: str, mirrors: bool):
        self.name = name
        self.mirrors = mirrors
        # (j, i) pairs in the documented order: index 4j + i.
        self.elements: list[tuple[int, int]] = [
            (j, i) for j in range(2 if mirrors else 1) for i in range(4)
        ]
        self.matrices = [_matmul(_matpow(_M, j), _matpow(_R, i)) for j, i in self.elements]
        index = {m: n for n, m in enumerate(self.matrices)}
        if len(index) != len(self.matrices):
            raise AssertionError(f"{name}: elements are not distinct")
        self.order = len(self.elements)
        self.cayley: list[list[int]] = [
            [index[_matmul(a, b)] for b in self.matrices] for a in self.matrices
        ]
        self.identity = index[_I]
        self.inverse: list[int] = [row.index(self.identity) for row in self.cayley]

    def __repr__(self) -> str:
        return f"Group({self.name!r}, order={self.order})"

    def __reduce__(self):  # pickle as the module-level singleton
        return (get_group, (self.name,))

    def __len__(self) -> int:
        return self.order

    def compose(self, a: int, b: int) -> int:
        """Index of ``a·b``."""
        return self.cayley[a][b]

    def element_name(self, g: int) -> str:
        j, i = self.elements[g]
        parts = (["m"] if j else []) + ([f"r{i}" if i > 1 else "r"] if i else [])
        return "".join(parts) or "e"

    # ------------------------------------------------------------------ #
    # permutations derived from the Cayley table
    # ------------------------------------------------------------------ #
    @functools.cached_property
    def left_action_perm(self) -> torch.Tensor:
        """``perm[u, g] = index(u⁻¹ g)``: the G axis of ``u·X`` reads ``X[:, perm[u]]``."""
        return torch.tensor(
            [
                [self.cayley[self.inverse[u]][g] for g in range(self.order)]
                for u in range(self.order)
            ]
        )

    def filter_perm(self, in_order: int) -> torch.Tensor:
        """``perm[h, g] = index(h⁻¹ g)`` for the input group axis of a filter.

        ``in_order`` is 1 for a lifting layer (no input group axis: all zeros)
        and ``self.order`` otherwise. Shape ``[G, in_order]``.
        """
        if in_order == 1:
            return torch.zeros(self.order, 1, dtype=torch.long)
        if in_order != self.order:
            raise ValueError(f"{self.name}: input group axis must be 1 or {self.order}")
        return self.left_action_perm

    @functools.lru_cache(maxsize=32)  # noqa: B019 - groups are module-level singletons
    def spatial_perm(self, k: int) -> torch.Tensor:
        """``idx[h]`` (shape ``[G, k·k]``): ``T_h(K).flatten() == K.flatten()[idx[h]]``.

        Derived by transforming ``arange(k·k)`` with the image action, so filters
        and images are transformed by one and the same definition.
        """
        base = torch.arange(k * k).view(k, k)
        return torch.stack([self.transform(base, h).reshape(-1) for h in range(self.order)])

    # ------------------------------------------------------------------ #
    # actions
    # ------------------------------------------------------------------ #
    def transform(self, x: torch.Tensor, g: int) -> torch.Tensor:
        """Spatial transform ``T_g`` of the last two (square) axes of ``x``."""
        j, i = self.elements[g]
        if i:
            x = torch.rot90(x, i, dims=(-2, -1))
        if j:
            x = torch.flip(x, dims=(-1,))
        return x

    def act_on_image(self, x: torch.Tensor, u: int) -> torch.Tensor:
        """``u·x`` for an image batch ``[B, C, H, W]``: the spatial transform."""
        return self.transform(x, u)

    def act_on_group_map(self, x: torch.Tensor, u: int) -> torch.Tensor:
        """``u·X`` for a group feature map ``[B, C, G, H, W]``.

        ``(u·X)[:, :, g] = T_u(X[:, :, u⁻¹g])``: spatial transform plus the
        permutation of the group axis by left multiplication.
        """
        if x.dim() != 5 or x.shape[2] != self.order:
            raise ValueError(
                f"{self.name}: expected a group feature map [B, C, {self.order}, H, W], "
                f"got shape {tuple(x.shape)}"
            )
        return self.transform(x[:, :, self.left_action_perm[u].to(x.device)], u)

    def act(self, x: torch.Tensor, u: int) -> torch.Tensor:
        """``u·x`` on an image batch (4-D) or a group feature map (5-D)."""
        return self.act_on_image(x, u) if x.dim() == 4 else self.act_on_group_map(x, u)


p4 = Group("p4", mirrors=False)
p4m = Group("p4m", mirrors=True)
GROUPS: dict[str, Group] = {"p4": p4, "p4m": p4m}


def get_group(group: str | Group) -> Group:
    """Return the group object for ``"p4"``/``"p4m"`` (or pass a Group through)."""
    if isinstance(group, Group):
        return group
    try:
        return GROUPS[group]
    except (KeyError, TypeError):
        raise UnknownChoiceError(
            f"unknown group {group!r}; valid choices: {sorted(GROUPS)}"
        ) from None
