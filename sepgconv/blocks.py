"""Building blocks for group feature maps ``[B, C, G, H, W]``.

* :class:`GroupPool` — max or mean over the group axis: invariant, gives
  ``[B, C, H, W]``.
* :class:`GroupMaxPool2d` — spatial max pooling of every group channel:
  equivariant when the pooling windows tile the (square) map symmetrically
  (e.g. ``H`` divisible by the stride, window = stride).
* :class:`GroupBatchNorm` — batch norm whose statistics (and affine
  parameters) are shared across the group axis: one mean/variance per channel
  over ``(B, G, H, W)``, which keeps the layer equivariant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _check_group_map(x: torch.Tensor, where: str) -> None:
    if not isinstance(x, torch.Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{where}: expected a group feature map [B, C, G, H, W], got {shape}")


class GroupPool(nn.Module):
    """Pool over the group axis: ``[B, C, G, H, W]`` → ``[B, C, H, W]``.

    Args:
        reduce: ``"max"`` or ``"mean"``.
    """

    def __init__(self, reduce: str = "max"):
        super().__init__()
        if reduce not in ("max", "mean"):
            raise ValueError(f"unknown reduce {reduce!r}; valid choices: ['max', 'mean']")
        self.reduce = reduce

    def forward(self, x):
        _check_group_map(x, "GroupPool")
        return x.amax(dim=2) if self.reduce == "max" else x.mean(dim=2)

    def extra_repr(self):
        return f"reduce={self.reduce!r}"


class GroupMaxPool2d(nn.Module):
    """Spatial max pooling of a group feature map (each ``(c, g)`` plane alike).

    Args:
        kernel_size, stride, padding: as :func:`torch.nn.functional.max_pool2d`
            (``stride`` defaults to ``kernel_size``).
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0):
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding

    def forward(self, x):
        _check_group_map(x, "GroupMaxPool2d")
        b, c, g, h, w = x.shape
        y = F.max_pool2d(x.reshape(b, c * g, h, w), self.kernel_size, self.stride, self.padding)
        return y.view(b, c, g, y.shape[-2], y.shape[-1])

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class GroupBatchNorm(nn.BatchNorm3d):
    """Batch norm with statistics shared over the group axis.

    A ``BatchNorm3d`` over the channel axis of ``[B, C, G, H, W]``: mean and
    variance per channel are taken over batch, group and space, and the affine
    parameters are per channel, so transforming the input (spatially and along
    G) commutes with the layer.

    Args:
        num_features: channels ``C``; the rest as :class:`torch.nn.BatchNorm3d`.
    """

    def _check_input_dim(self, x):
        _check_group_map(x, "GroupBatchNorm")
