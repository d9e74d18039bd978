"""The paper's models (Tables 1 and 2) and one registry of them.

* Rotated MNIST (Table 1, :mod:`sepgconv.models.rotmnist`): Z2CNN, c-Z2CNN,
  P4CNN and the g-/gc-P4CNN of any width.
* CIFAR-10 (Table 2, :mod:`sepgconv.models.resnet`): ResNet44 and the
  p4m-ResNet44 in its full, g and gc variants.

Every model with separable layers computes them ``naive`` or ``rearranged``;
one switch converts a built model in place (:func:`set_impl`, also the
method ``model.set_impl``) and leaves its ``state_dict`` unchanged. Full
GConv layers (the lifting layers, P4CNN, the 1×1 shortcuts) have only the
dense ``naive`` implementation and are left as they are.

Example:
    >>> import torch
    >>> from sepgconv import models
    >>> net = models.build("gc-p4cnn", seed=0)           # Table 1, w = 10
    >>> models.count_params(net)
    3420
    >>> net.set_impl("rearranged")(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import torch
from torch import nn

from sepgconv.gconv import GConv2d
from sepgconv.registry import impls_of, variants


# ---------------------------------------------------------------------- #
# implementation switch (defined before the model modules import it)
# ---------------------------------------------------------------------- #
def gconv_layers(model: nn.Module) -> list[tuple[str, GConv2d]]:
    """Every :class:`GConv2d` in ``model`` as ``(qualified name, layer)``, in order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, GConv2d)]


def available_impls(model: nn.Module) -> list[str]:
    """The implementations :func:`set_impl` can switch ``model`` to.

    ``["naive"]`` for a model without separable layers (plain CNNs, P4CNN);
    ``["naive", "rearranged"]`` for the g and gc models.
    """
    impls: dict[str, None] = {"naive": None}
    for _, layer in gconv_layers(model):
        impls.update(dict.fromkeys(impls_of(layer.variant)))
    return list(impls)


def _check_impl(impl: str) -> None:
    known = list(dict.fromkeys(i for v in variants() for i in impls_of(v)))
    if impl not in known:
        raise ValueError(f"unknown implementation {impl!r}; valid choices: {known}")


def set_impl(model: nn.Module, impl: str) -> nn.Module:
    """Switch every g/gc layer of ``model`` to ``impl``, in place; returns ``model``.

    Layers whose variant has no such implementation (full GConvs: lifting
    layers, 1×1 shortcuts, P4CNN) keep their dense one, so the call is a no-op
    on a model without separable layers. The ``state_dict`` and the Parameter
    objects are unchanged (:meth:`GConv2d.to_impl`), so an optimiser keeps working.

    Raises:
        ValueError: ``impl`` is not a registered implementation name.
    """
    _check_impl(impl)
    for name, layer in gconv_layers(model):
        if impl in impls_of(layer.variant) and layer.impl != impl:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, layer.to_impl(impl))
    return model


class PaperModel(nn.Module):
    """Base of the paper's models: the implementation switch and a few facts.

    Attributes:
        input_shape: ``(C, H, W)`` of one input sample.
    """

    input_shape: tuple[int, int, int]

    def set_impl(self, impl: str) -> PaperModel:
        """Switch the separable layers to ``impl`` in place (see :func:`set_impl`)."""
        return set_impl(self, impl)

    @property
    def impl(self) -> str:
        """``"rearranged"`` if any layer runs rearranged, else ``"naive"``."""
        impls = {layer.impl for _, layer in gconv_layers(self)}
        return "rearranged" if "rearranged" in impls else "naive"

    def config(self) -> dict:
        """Constructor arguments (without ``impl``) that rebuild the architecture."""
        raise NotImplementedError

    def example_input(self, batch: int = 1, generator=None) -> torch.Tensor:
        """A random input batch of the right shape, dtype and device."""
        p = next(self.parameters())
        x = torch.randn(batch, *self.input_shape, generator=generator, dtype=p.dtype)
        return x.to(p.device)


from sepgconv.models.resnet import ResNet44, p4m_resnet44, resnet44  # noqa: E402
from sepgconv.models.rotmnist import (  # noqa: E402
    RotMNISTNet,
    c_z2cnn,
    g_p4cnn,
    gc_p4cnn,
    p4cnn,
    z2cnn,
)


# ---------------------------------------------------------------------- #
# registry of the paper's rows
# ---------------------------------------------------------------------- #
@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One row of Table 1 or 2 and how to build it.

    Paper values are kept as printed (``"25.21k"``, ``"2.64M"``) so the
    rounding the paper used is known; :func:`paper_number` reads them.
    """

    name: str  # registry key
    label: str  # the paper's row label
    table: int  # 1 (Rotated MNIST) or 2 (CIFAR-10)
    factory: Callable[..., PaperModel]
    kwargs: dict
    width: str  # as the table prints it
    paper_params: str
    paper_macs: str | None  # Table 2 has no MAC column
    paper_peak_mem_mb: float  # GPU, forward + backward, batch 2 (DESIGN §7)
    train_batch: int  # the training batch of the paper's experiments


_SPECS = [
    ModelSpec("z2cnn", "Z2CNN", 1, z2cnn, {"width": 20}, "20", "25.21k", "2.98M", 0.84, 128),
    ModelSpec("c-z2cnn", "c-Z2CNN", 1, c_z2cnn, {"width": 57}, "57", "25.60k", "4.14M", 2.60, 128),
    ModelSpec("p4cnn", "P4CNN", 1, p4cnn, {"width": 10}, "10", "24.81k", "11.67M", 2.03, 128),
    ModelSpec("g-p4cnn", "g-P4CNN", 1, g_p4cnn, {"width": 10}, "10", "8.91k", "4.37M", 5.23, 128),
    ModelSpec(
        "gc-p4cnn", "gc-P4CNN", 1, gc_p4cnn, {"width": 10}, "10", "3.42k", "1.80M", 1.88, 128
    ),
    ModelSpec(
        "g-p4cnn-w17", "g-P4CNN", 1, g_p4cnn, {"width": 17}, "17", "25.26k", "12.34M", 13.84, 128
    ),
    ModelSpec(
        "gc-p4cnn-w30", "gc-P4CNN", 1, gc_p4cnn, {"width": 30}, "30", "24.64k", "13.01M", 5.83, 128
    ),
    ModelSpec("resnet44", "ResNet44", 2, resnet44, {}, "[32, 64, 128]", "2.64M", None, 23.19, 128),
    ModelSpec(
        "p4m-resnet44",
        "p4m-ResNet44",
        2,
        p4m_resnet44,
        {"variant": "full"},
        "[11, 23, 45]",
        "2.62M",
        None,
        141.77,
        128,
    ),
    ModelSpec(
        "g-p4m-resnet44",
        "g-p4m-ResNet44",
        2,
        p4m_resnet44,
        {"variant": "g"},
        "[19, 38, 76]",
        "1.78M",
        None,
        1141.31,
        128,
    ),
    ModelSpec(
        "gc-p4m-resnet44",
        "gc-p4m-ResNet44",
        2,
        p4m_resnet44,
        {"variant": "gc"},
        "[28, 56, 112]",
        "1.88M",
        None,
        197.84,
        128,
    ),
]
MODELS: dict[str, ModelSpec] = {s.name: s for s in _SPECS}
#: model classes by name, for rebuilding a model from ``type(model).__name__`` and ``config()``
CLASSES: dict[str, type[PaperModel]] = {c.__name__: c for c in (RotMNISTNet, ResNet44)}


def names(table: int | None = None) -> list[str]:
    """Registry keys in the paper's row order (of one table, or all)."""
    return [s.name for s in _SPECS if table is None or s.table == table]


def get_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered as ``name``.

    Raises:
        KeyError: naming the registry and the valid choices.
    """
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"paper model registry: unknown model {name!r}; valid: {names()}") from None


def build(
    name: str,
    impl: str = "naive",
    *,
    seed: int | None = None,
    dtype: torch.dtype | None = None,
    device=None,
    **overrides,
) -> PaperModel:
    """Build a registered model.

    Args:
        name: a key of :data:`MODELS` (see :func:`names`).
        impl: ``"naive"`` or ``"rearranged"`` for the separable layers.
        seed: seed the parameter initialisation (``torch.manual_seed``) for a
            reproducible model; ``None`` leaves the global RNG alone.
        dtype, device: where to put the parameters.
        **overrides: constructor arguments that replace the registered ones
            (e.g. ``width=12``).
    """
    spec = get_spec(name)
    _check_impl(impl)  # also for models without separable layers, which ignore it
    if seed is not None:
        torch.manual_seed(seed)
    model = spec.factory(**(spec.kwargs | {"impl": impl} | overrides))
    model.paper_name = name
    return model.to(device=device, dtype=dtype)


def count_params(model: nn.Module) -> int:
    """Trainable parameters (what the paper's tables count)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


_SUFFIX = {"": 1, "k": 1_000, "M": 1_000_000}


def paper_number(text: str) -> tuple[int, int]:
    """``"25.21k"`` → ``(25210, 10)``: the value and the unit of its last digit."""
    suffix = text[-1] if text[-1] in "kM" else ""
    digits = text[: len(text) - len(suffix)]
    decimals = len(digits.partition(".")[2])
    scale = _SUFFIX[suffix]
    resolution = scale // 10**decimals
    return round(float(digits) * scale), resolution


__all__ = [
    "CLASSES",
    "MODELS",
    "ModelSpec",
    "PaperModel",
    "ResNet44",
    "RotMNISTNet",
    "available_impls",
    "build",
    "c_z2cnn",
    "count_params",
    "g_p4cnn",
    "gc_p4cnn",
    "gconv_layers",
    "get_spec",
    "names",
    "p4cnn",
    "p4m_resnet44",
    "paper_number",
    "resnet44",
    "set_impl",
    "z2cnn",
]
