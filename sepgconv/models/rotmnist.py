"""Rotated-MNIST networks of Table 1: Z2CNN, c-Z2CNN, P4CNN, g-P4CNN, gc-P4CNN.

All five share one layout (Cohen & Welling's Z2CNN/P4CNN; DESIGN §7), for a
``1×28×28`` input and no padding::

    layer1  k=3  28 → 26      conv → BN → ReLU
    layer2  k=3  26 → 24      conv → BN → ReLU
    pool    2×2  24 → 12      max pool
    layer3…layer6  k=3  12 → 10 → 8 → 6 → 4
    layer7  k=4   4 → 1
    [p4: max over the group axis]  → flatten → linear w → 10

Every conv has a bias and every batch norm is affine: with those (and the
linear's bias) the parameter totals are the paper's exactly, e.g. P4CNN
w=10: ``90 + 5·3600 + 6400`` weights ``+ 7·(10 + 20)`` biases and BN
``+ 110`` linear ``= 24,810``.

* ``z2``: plain ``nn.Conv2d`` layers, ``nn.BatchNorm2d``.
* ``c-z2`` (c-Z2CNN): layer 1 a plain k×k conv; layers 2–7 a 1×1 conv
  followed by a depthwise k×k conv (both with bias), then one BN.
* ``p4``: layer 1 a full lifting :class:`~sepgconv.GConv2d` (never
  decomposed); layers 2–7 full, g or gc GConvs; :class:`GroupBatchNorm`
  (statistics and affine parameters per channel, shared over the group
  axis); the 2×2 pool acts on every group plane alike.

.. note ::
    The P4 nets are exactly invariant to 90° rotations of the input: every
    conv is valid (no padding) on a square map with the rotation centre on
    the grid, the 2×2 pool tiles the 24×24 map exactly, and layer 7 (k=4 on
    4×4) sees the whole map. The tests check it.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from sepgconv.blocks import GroupBatchNorm, GroupMaxPool2d, GroupPool
from sepgconv.gconv import GConv2d
from sepgconv.models import PaperModel

#: kernel size of layers 1..7
KERNELS = (3, 3, 3, 3, 3, 3, 4)
#: the 2×2 max-pool follows this layer (1-based)
POOL_AFTER = 2
ARCHS = ("z2", "c-z2", "p4")


class RotMNISTNet(PaperModel):
    """The seven-layer Rotated-MNIST net of Table 1.

    Args:
        width: channels ``w`` of every layer.
        arch: ``"z2"`` (Z2CNN), ``"c-z2"`` (c-Z2CNN) or ``"p4"`` (P4CNN family).
        variant: for ``"p4"``, the GConv variant of layers 2–7:
            ``"full"``, ``"g"`` or ``"gc"``.
        impl: ``"naive"`` or ``"rearranged"`` for the g/gc layers.
        num_classes: outputs of the final linear layer.

    Modules: ``features`` (``layer1``, ``layer2``, ``pool``, ``layer3`` …
    ``layer7``; each layer a ``Sequential(conv, bn, relu)``), ``group_pool``
    (identity for the plain nets) and ``classifier``.

    Example:
        >>> import torch
        >>> net = RotMNISTNet(10, arch="p4", variant="g")
        >>> net(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """

    input_shape = (1, 28, 28)

    def __init__(
        self,
        width: int,
        *,
        arch: str = "p4",
        variant: str = "full",
        impl: str = "naive",
        num_classes: int = 10,
    ):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown arch {arch!r}; valid choices: {list(ARCHS)}")
        if arch != "p4" and variant != "full":
            raise ValueError(f"arch {arch!r} has no GConv layers: variant must be 'full'")
        self.arch, self.variant, self.width = arch, variant, width
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in = self.input_shape[0]
        for i, k in enumerate(KERNELS, start=1):
            layers[f"layer{i}"] = nn.Sequential(
                OrderedDict(conv=self._conv(i, c_in, k, impl), bn=self._bn(), relu=nn.ReLU())
            )
            if i == POOL_AFTER:
                layers["pool"] = GroupMaxPool2d(2) if arch == "p4" else nn.MaxPool2d(2)
            c_in = width
        self.features = nn.Sequential(layers)
        self.group_pool = GroupPool("max") if arch == "p4" else nn.Identity()
        self.classifier = nn.Linear(width, num_classes)

    def _conv(self, i: int, c_in: int, k: int, impl: str) -> nn.Module:
        w = self.width
        if self.arch == "p4":
            lifting = i == 1
            variant = "full" if lifting else self.variant
            impl = "naive" if variant == "full" else impl  # full GConvs are dense only
            return GConv2d(c_in, w, k, group="p4", lifting=lifting, variant=variant, impl=impl)
        if self.arch == "c-z2" and i > 1:
            return nn.Sequential(
                OrderedDict(
                    pointwise=nn.Conv2d(c_in, w, 1),
                    depthwise=nn.Conv2d(w, w, k, groups=w),
                )
            )
        return nn.Conv2d(c_in, w, k)

    def _bn(self) -> nn.Module:
        return GroupBatchNorm(self.width) if self.arch == "p4" else nn.BatchNorm2d(self.width)

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (``RotMNISTNet(**config)``)."""
        return dict(
            width=self.width,
            arch=self.arch,
            variant=self.variant,
            num_classes=self.classifier.out_features,
        )

    def forward(self, x):
        """``x``: ``[B, 1, 28, 28]`` → logits ``[B, num_classes]``."""
        y = self.group_pool(self.features(x))  # [B, w, 1, 1]
        return self.classifier(y.flatten(1))

    def extra_repr(self) -> str:
        return f"arch={self.arch!r}, variant={self.variant!r}, width={self.width}"


def z2cnn(width: int = 20, impl: str = "naive", **kwargs) -> RotMNISTNet:
    """Z2CNN (Table 1: w = 20, 25.21k parameters). ``impl`` is accepted and unused."""
    return RotMNISTNet(width, arch="z2", **kwargs)


def c_z2cnn(width: int = 57, impl: str = "naive", **kwargs) -> RotMNISTNet:
    """c-Z2CNN: depthwise-separable Z2CNN (Table 1: w = 57, 25.60k parameters)."""
    return RotMNISTNet(width, arch="c-z2", **kwargs)


def p4cnn(width: int = 10, impl: str = "naive", **kwargs) -> RotMNISTNet:
    """P4CNN (Table 1: w = 10, 24.81k parameters)."""
    return RotMNISTNet(width, arch="p4", variant="full", **kwargs)


def g_p4cnn(width: int = 10, impl: str = "naive", **kwargs) -> RotMNISTNet:
    """g-P4CNN (Table 1: w = 10 → 8.91k, w = 17 → 25.26k parameters)."""
    return RotMNISTNet(width, arch="p4", variant="g", impl=impl, **kwargs)


def gc_p4cnn(width: int = 10, impl: str = "naive", **kwargs) -> RotMNISTNet:
    """gc-P4CNN (Table 1: w = 10 → 3.42k, w = 30 → 24.64k parameters)."""
    return RotMNISTNet(width, arch="p4", variant="gc", impl=impl, **kwargs)
