"""sepgconv: p4/p4m group-equivariant convolutions — full, g- and gc-separable.

Public API::

    GConv2d(in_channels, out_channels, kernel_size, *, group="p4"|"p4m",
            lifting=False, variant="full"|"g"|"gc", impl="naive"|"rearranged",
            stride=1, padding=0, bias=True)

plus the groups (:data:`p4`, :data:`p4m`), the registry of implementations,
the building blocks for the paper's networks and :mod:`sepgconv.counting`.
"""

from sepgconv import impls as _impls  # noqa: F401  (registers the implementations)
from sepgconv.blocks import GroupBatchNorm, GroupMaxPool2d, GroupPool
from sepgconv.errors import InputError, UnknownChoiceError
from sepgconv.gconv import GConv2d
from sepgconv.groups import GROUPS, Group, get_group, p4, p4m
from sepgconv.registry import available as available_implementations
from sepgconv.registry import get as get_implementation
from sepgconv.registry import implementations, impls_of, variants

__version__ = "0.1.0"

__all__ = [
    "GConv2d",
    "available_implementations",
    "InputError",
    "UnknownChoiceError",
    "Group",
    "GROUPS",
    "GroupBatchNorm",
    "GroupMaxPool2d",
    "GroupPool",
    "get_group",
    "get_implementation",
    "implementations",
    "impls_of",
    "p4",
    "p4m",
    "variants",
]
