"""CIFAR-10 ResNet44 and p4m-ResNet44 (full, g, gc) of Table 2.

Layout (He et al.'s CIFAR ResNet, depth 6·7 + 2 = 44), input ``3×32×32``::

    stem     3×3 conv, 3 → w1, pad 1          → BN → ReLU            32×32
    stage 1  7 basic blocks, w1                                       32×32
    stage 2  7 basic blocks, w2, the first with stride 2             16×16
    stage 3  7 basic blocks, w3, the first with stride 2              8× 8
    head     global average pool over space → flatten → linear → 10

Basic block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`` with
3×3 convs (pad 1; the stride on ``conv1``). The shortcut is the identity, or
— where the width or the resolution changes (first block of stages 2 and 3)
— a strided 1×1 projection conv followed by BN.

For p4m: the stem is a full lifting GConv; every 3×3 conv of the blocks is a
full, g or gc GConv (the model's variant); the 1×1 projection shortcuts are
full GConvs in every variant; batch norm is :class:`GroupBatchNorm`; the
head averages over space only and the linear layer reads all ``C·G``
features (``w3·8 → 10``).

No conv has a bias; every batch norm is affine; the linear layer has a
bias. This is the layout whose totals are the paper's exactly:

============  =============  ==========  ===========
model         widths         ours        paper
============  =============  ==========  ===========
ResNet44      [32, 64, 128]  2,636,458   2.64M
p4m           [11, 23, 45]   2,621,829   2,621,829
g-p4m         [19, 38, 76]   1,782,381   1,782,381
gc-p4m        [28, 56, 112]  1,884,270   1,884,270
============  =============  ==========  ===========

.. note ::
    Stride 2 on a 32×32 map with k=3, pad 1 does not centre the output grid
    on the input grid ((32 + 2 − 3) is odd), so the p4m nets are equivariant
    only up to that sampling shift after each downsampling — as in the
    paper's setting. Totals do not depend on where the stride sits.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from sepgconv.blocks import GroupBatchNorm
from sepgconv.gconv import GConv2d
from sepgconv.groups import get_group
from sepgconv.models import PaperModel

BLOCKS_PER_STAGE = 7
WIDTHS = {
    None: (32, 64, 128),
    "full": (11, 23, 45),
    "g": (19, 38, 76),
    "gc": (28, 56, 112),
}


class _Ops:
    """Makes the convs and norms of one network (plain or p4m, one variant)."""

    def __init__(self, group: str | None, variant: str, impl: str):
        self.group, self.variant, self.impl = group, variant, impl

    def conv(self, c_in, c_out, k, stride=1, padding=0, *, lifting=False, full=False):
        if self.group is None:
            return nn.Conv2d(c_in, c_out, k, stride, padding, bias=False)
        variant = "full" if (lifting or full) else self.variant
        return GConv2d(
            c_in,
            c_out,
            k,
            group=self.group,
            lifting=lifting,
            variant=variant,
            impl="naive" if variant == "full" else self.impl,
            stride=stride,
            padding=padding,
            bias=False,
        )

    def bn(self, c):
        return nn.BatchNorm2d(c) if self.group is None else GroupBatchNorm(c)


class BasicBlock(nn.Module):
    """Two 3×3 convs with BN and ReLU plus a shortcut (identity or 1×1 projection)."""

    def __init__(self, c_in: int, c_out: int, stride: int, ops: _Ops):
        super().__init__()
        self.conv1 = ops.conv(c_in, c_out, 3, stride, 1)
        self.bn1 = ops.bn(c_out)
        self.conv2 = ops.conv(c_out, c_out, 3, 1, 1)
        self.bn2 = ops.bn(c_out)
        self.relu = nn.ReLU()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                OrderedDict(conv=ops.conv(c_in, c_out, 1, stride, full=True), bn=ops.bn(c_out))
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


class ResNet44(PaperModel):
    """ResNet44 for 32×32 images, plain or p4m (full, g or gc).

    Args:
        widths: channels of the three stages (defaults: the paper's widths
            for the group and variant, :data:`WIDTHS`).
        group: ``None`` (plain ResNet44) or ``"p4m"`` (or ``"p4"``).
        variant: GConv variant of the blocks' 3×3 convs.
        impl: ``"naive"`` or ``"rearranged"`` for the g/gc convs.
        blocks_per_stage: 7 for ResNet44 (depth ``6·n + 2``).
        num_classes: outputs of the linear layer.

    Modules: ``stem`` (``conv``, ``bn``, ``relu``), ``stage1`` … ``stage3``
    (``Sequential`` of :class:`BasicBlock`) and ``classifier``.

    Example:
        >>> import torch
        >>> net = ResNet44(group="p4m", variant="gc", blocks_per_stage=1)
        >>> net(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """

    input_shape = (3, 32, 32)

    def __init__(
        self,
        widths: tuple[int, int, int] | None = None,
        *,
        group: str | None = None,
        variant: str = "full",
        impl: str = "naive",
        blocks_per_stage: int = BLOCKS_PER_STAGE,
        num_classes: int = 10,
    ):
        super().__init__()
        if variant not in ("full", "g", "gc"):
            raise ValueError(f"unknown variant {variant!r}; valid choices: ['full', 'g', 'gc']")
        if group is None and variant != "full":
            raise ValueError("a plain ResNet44 has no GConv layers: variant must be 'full'")
        if widths is None:
            widths = WIDTHS[None if group is None else variant]
        self.group, self.variant, self.widths = group, variant, tuple(widths)
        ops = _Ops(group, variant, impl)
        w1 = widths[0]
        self.stem = nn.Sequential(
            OrderedDict(
                conv=ops.conv(self.input_shape[0], w1, 3, 1, 1, lifting=group is not None),
                bn=ops.bn(w1),
                relu=nn.ReLU(),
            )
        )
        c_in = w1
        for s, c_out in enumerate(widths, start=1):
            blocks = []
            for b in range(blocks_per_stage):
                stride = 2 if (s > 1 and b == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, ops))
                c_in = c_out
            self.add_module(f"stage{s}", nn.Sequential(*blocks))
        g = 1 if group is None else get_group(group).order
        self.classifier = nn.Linear(c_in * g, num_classes)

    def config(self) -> dict:
        """Constructor arguments that rebuild this architecture (``ResNet44(**config)``)."""
        return dict(
            widths=list(self.widths),
            group=self.group,
            variant=self.variant,
            blocks_per_stage=len(self.stage1),
            num_classes=self.classifier.out_features,
        )

    def forward(self, x):
        """``x``: ``[B, 3, 32, 32]`` → logits ``[B, num_classes]``."""
        y = self.stage3(self.stage2(self.stage1(self.stem(x))))
        y = y.mean(dim=(-2, -1))  # global average pool over space: [B, C(, G)]
        return self.classifier(y.flatten(1))

    def extra_repr(self) -> str:
        return f"group={self.group!r}, variant={self.variant!r}, widths={list(self.widths)}"


def resnet44(widths=None, impl: str = "naive", **kwargs) -> ResNet44:
    """Plain ResNet44, widths [32, 64, 128] (Table 2: 2.64M parameters)."""
    return ResNet44(widths, group=None, **kwargs)


def p4m_resnet44(variant: str = "full", widths=None, impl: str = "naive", **kwargs) -> ResNet44:
    """p4m-ResNet44 (Table 2): full [11, 23, 45] → 2,621,829 parameters,
    g [19, 38, 76] → 1,782,381, gc [28, 56, 112] → 1,884,270."""
    return ResNet44(widths, group="p4m", variant=variant, impl=impl, **kwargs)


__all__ = ["BLOCKS_PER_STAGE", "WIDTHS", "BasicBlock", "ResNet44", "p4m_resnet44", "resnet44"]
