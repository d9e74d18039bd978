"""Memory formats of group feature maps, and the flat-index filter expansion.

Memory formats
--------------
A layer computes in one of two memory formats (``GConv2d(memory_format=...)``):

* ``"contiguous"`` — a group map ``[B, C, G, H, W]`` stored in that order
  (NCHW once ``C·G`` is folded);
* ``"channels_last"`` — the same logical tensor stored as ``B, H, W, (C, G)``:
  channel ``c``, group element ``g`` at offset ``c·G + g`` of each pixel.

With this convention the fold ``[B, C, G, H, W] → [B, C·G, H, W]`` that every
layer applies to its input is a *view* in both formats (channels_last folds to
PyTorch's NHWC ``torch.channels_last``), and a layer's ``[B, C·G, H', W']``
output views back as ``[B, C, G, H', W']`` without a copy, so a chain of
layers in one format never copies activations. (``torch.channels_last_3d`` is
*not* this layout: it would store ``B, G, H, W, C``.) A lifting input
``[B, C, H, W]`` uses ``torch.channels_last`` itself.

Filter expansion
----------------
``F̃[n, h, c, g, p] = F[n, c, h⁻¹g, T_h⁻¹(p)]`` (p a pixel of the k×k grid) is,
for each output channel ``n``, a gather from the ``C·G_in·k²`` filter entries
of ``n``. :func:`expansion_index` builds one flat index that writes F̃ directly
in the memory order the convolution wants (``(h, c, g, p)`` for contiguous
weights, ``(h, p, c, g)`` for channels_last ones), so the expansion is a single
``index_select`` with no permuting copy.

Its backward is a gather and a sum, not a scatter: each of the ``C·G_in·k²``
entries of ``F[n]`` appears exactly once in every output group element's block
of F̃ (block ``h`` is a permutation of ``F[n]``), so

    dF[n, j] = Σ_h dF̃[n, h·L + inv_h[j]]      (L = C·G_in·k², inv_h: block h's inverse)

is one ``index_select`` of dF̃ by the inverse index followed by a sum over
the ``G_out`` blocks. ``index_select``'s own backward would be an
``index_add`` with ``G_out`` writers per entry (atomics on a GPU); the gather
is deterministic and needs no atomics. See :func:`inverse_expansion_index`.
"""

from __future__ import annotations

import torch

from sepgconv.errors import UnknownChoiceError

#: the memory formats every implementation supports
FORMATS = ("contiguous", "channels_last")

_TORCH = {"contiguous": torch.contiguous_format, "channels_last": torch.channels_last}


def check_memory_format(name, choices=FORMATS) -> str:
    """Return ``name`` if it is one of ``choices``.

    Raises:
        UnknownChoiceError: naming the bad value and the valid choices.
    """
    if not isinstance(name, str) or name not in choices:
        raise UnknownChoiceError(f"unknown memory_format {name!r}; valid choices: {list(choices)}")
    return name


def torch_format(name: str) -> torch.memory_format:
    """The ``torch.memory_format`` of a 4-D tensor (folded map, weight) in format ``name``."""
    return _TORCH[name]


def to_memory_format(x: torch.Tensor, memory_format: str) -> torch.Tensor:
    """``x`` stored in ``memory_format`` (``x`` itself when it already is).

    Args:
        x: an image batch ``[B, C, H, W]`` or a group map ``[B, C, G, H, W]``.
        memory_format: ``"contiguous"`` or ``"channels_last"`` (for a 5-D map:
            stored ``B, H, W, C, G``, see the module docstring).

    Returns:
        A tensor equal to ``x``; a copy only when ``x`` was in another layout.

    Example:
        >>> x = to_memory_format(torch.randn(2, 3, 4, 8, 8), "channels_last")
        >>> x.reshape(2, 12, 8, 8).is_contiguous(memory_format=torch.channels_last)
        True
    """
    check_memory_format(memory_format)
    if x.dim() == 4:
        return x.contiguous(memory_format=_TORCH[memory_format])
    if x.dim() != 5:
        raise ValueError(f"expected a 4-D or 5-D tensor, got shape {tuple(x.shape)}")
    if is_memory_format(x, memory_format):
        return x
    if memory_format == "contiguous":
        return x.contiguous()
    # [B, C, G, H, W] -> [B, H, W, C, G] made dense, then the logical order back
    return x.permute(0, 3, 4, 1, 2).contiguous().permute(0, 3, 4, 1, 2)


def is_memory_format(x: torch.Tensor, memory_format: str) -> bool:
    """Whether ``x`` (4-D or 5-D) is stored in ``memory_format`` (see :func:`to_memory_format`)."""
    if x.dim() == 5 and memory_format == "channels_last":
        return x.permute(0, 3, 4, 1, 2).is_contiguous()
    return x.is_contiguous(memory_format=_TORCH[memory_format])


def format_of(x: torch.Tensor) -> str:
    """``"contiguous"``, ``"channels_last"`` or ``"strided"`` (any other layout)."""
    for name in FORMATS:  # a tensor that is both (e.g. H = W = 1) counts as contiguous
        if is_memory_format(x, name):
            return name
    return "strided"


def as_format(x4: torch.Tensor, memory_format: str) -> torch.Tensor:
    """A 4-D tensor in ``memory_format``: no-op (no copy) when it already is."""
    return x4.contiguous(memory_format=_TORCH[memory_format])


# ---------------------------------------------------------------------- #
# filter expansion
# ---------------------------------------------------------------------- #
def expansion_index(
    expand_index: torch.Tensor, c_in: int, g_in: int, k: int, memory_format: str
) -> torch.Tensor:
    """The flat gather index that writes F̃ of one output channel in conv order.

    Args:
        expand_index: ``[G_out, G_in·k²]``: ``expand_index[h, g·k² + p]`` is the
            position in ``F[n, c]`` (flattened ``[G_in·k²]``) of ``F̃[n, h, c, g, p]``.
        c_in, g_in, k: input channels, input group size, kernel size.
        memory_format: the order F̃ is written in: ``"contiguous"`` gives
            ``(h, c, g, p)``, ``"channels_last"`` gives ``(h, p, c, g)``.

    Returns:
        ``[G_out·C_in·G_in·k²]`` indices into ``F[n]`` flattened as ``(c, g, p)``.
    """
    g_out, m = expand_index.shape
    k2 = k * k
    offset = torch.arange(c_in, device=expand_index.device) * m  # start of F[n, c]
    if memory_format == "contiguous":
        index = offset[None, :, None] + expand_index[:, None, :]  # [h, c, (g, p)]
    else:
        per_h = expand_index.view(g_out, g_in, k2).transpose(1, 2)  # [h, p, g]
        index = offset[None, None, :, None] + per_h[:, :, None, :]  # [h, p, c, g]
    return index.reshape(-1).clone()


def inverse_expansion_index(index: torch.Tensor, g_out: int) -> torch.Tensor:
    """The gather index of the expansion's backward.

    Args:
        index: an :func:`expansion_index` ``[G_out·L]`` (``L = C_in·G_in·k²``):
            each block ``index[h·L:(h+1)·L]`` is a permutation of ``0..L-1``.
        g_out: output group size.

    Returns:
        ``inv [G_out·L]`` with ``inv[h·L + index[h·L + i]] = h·L + i``: for each
        block ``h`` and entry ``j`` of ``F[n]``, where ``j`` sits in block ``h``
        of F̃. ``dF̃.index_select(1, inv).view(N, G_out, L).sum(1)`` is ``dF``.
    """
    total = index.numel()
    m = total // g_out
    positions = torch.arange(total, device=index.device)
    block = positions - positions % m  # h·L
    inv = torch.empty_like(index)
    return inv.scatter_(0, index + block, positions)  # unique targets: deterministic


class _Expand(torch.autograd.Function):
    """``f2.index_select(1, index)`` whose backward gathers and sums (no index_add)."""

    # (the ctx-in-forward form: measured ~20 µs less per call on the CPU than a
    # separate setup_context)
    @staticmethod
    def forward(ctx, f2, index, inverse, g_out):
        ctx.save_for_backward(index if inverse is None else inverse)
        ctx.have_inverse = inverse is not None
        ctx.g_out = g_out
        return f2.index_select(1, index)

    @staticmethod
    def backward(ctx, grad):
        (saved,) = ctx.saved_tensors
        inv = saved if ctx.have_inverse else inverse_expansion_index(saved, ctx.g_out)
        n = grad.shape[0]
        # differentiable ops only: the double backward works too
        return grad.index_select(1, inv).view(n, ctx.g_out, -1).sum(1), None, None, None


def expand(
    f: torch.Tensor,
    index: torch.Tensor,
    g_out: int,
    memory_format: str,
    inverse: torch.Tensor | None = None,
) -> torch.Tensor:
    """F̃ from F by one ``index_select`` with an :func:`expansion_index`; its
    backward is one gather and a sum over the output group (module doc).

    Args:
        f: the filter bank ``F [C_out, C_in, G_in, k, k]``.
        index: ``expansion_index(..., memory_format)`` of this layer.
        g_out: output group size.
        memory_format: the order ``index`` writes (see :func:`expansion_index`).
        inverse: ``inverse_expansion_index(index, g_out)`` if the caller keeps
            it; else the backward computes it (one small scatter of indices).

    Returns:
        ``[C_out, G_out, C_in, G_in, k, k]``, a view of one new tensor; folded
        to ``[C_out·G_out, C_in·G_in, k, k]`` it is a view that is contiguous
        (or channels_last) as asked.
    """
    n, c, gi, k, _ = f.shape
    f2 = f.reshape(n, c * gi * k * k)
    if f2.requires_grad and torch.is_grad_enabled():
        e = _Expand.apply(f2, index, inverse, g_out)  # [N, L] in the asked order
    else:
        e = f2.index_select(1, index)
    if memory_format == "contiguous":
        return e.view(n, g_out, c, gi, k, k)
    return e.view(n, g_out, k, k, c, gi).permute(0, 1, 4, 5, 2, 3)
