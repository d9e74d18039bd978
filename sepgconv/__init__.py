"""sepgconv: p4/p4m group-equivariant convolutions — full, g- and gc-separable.

Public API::

    GConv2d(in_channels, out_channels, kernel_size, *, group="p4"|"p4m",
            lifting=False, variant="full"|"g"|"gc",
            impl="naive"|"rearranged"|"auto"|..., stride=1, padding=0, bias=True,
            memory_format="contiguous"|"channels_last")

plus the groups (:data:`p4`, :data:`p4m`), the registry of implementations,
:func:`to_memory_format` (a map in a layer's memory format),
:func:`export_modules` (a copy made of plain ``torch.nn`` modules, for
deployment and ONNX; see ``docs/deploy.md``), the building
blocks for the paper's networks, :mod:`sepgconv.counting` and
:mod:`sepgconv.autotune` (the cache behind ``impl="auto"``).
"""

from sepgconv import auto as _auto  # noqa: F401  (registers impl="auto" for every variant)
from sepgconv import autotune
from sepgconv import fused as _fused  # noqa: F401  (registers the fused implementations)
from sepgconv import impls as _impls  # noqa: F401  (registers the implementations)
from sepgconv.blocks import GroupBatchNorm, GroupMaxPool2d, GroupPool
from sepgconv.errors import InputError, UnavailableError, UnknownChoiceError
from sepgconv.export import export_modules
from sepgconv.gconv import GConv2d
from sepgconv.groups import GROUPS, Group, get_group, p4, p4m
from sepgconv.layout import is_memory_format, to_memory_format
from sepgconv.registry import available as available_implementations
from sepgconv.registry import get as get_implementation
from sepgconv.registry import implementations, impls_of, variants

__version__ = "0.1.0"

__all__ = [
    "GConv2d",
    "autotune",
    "export_modules",
    "available_implementations",
    "InputError",
    "UnavailableError",
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
    "is_memory_format",
    "p4",
    "p4m",
    "to_memory_format",
    "variants",
]
