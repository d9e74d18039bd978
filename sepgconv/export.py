"""Export a model to plain ``torch.nn`` modules: no sepgconv class left, same function.

:func:`export_modules` returns a deep copy of a model in which

* every :class:`~sepgconv.GConv2d` (any variant, any implementation, lifting
  or not) is an ``nn.Sequential`` of stock modules::

      fold    nn.Flatten(1, 2)        [B, C_in, G_in, H, W] -> [B, C_in·G_in, H, W]
                                      (absent for a lifting layer: its input is an image)
      ...     the convolution(s), on channels ordered (c, g), g fastest
      unfold  nn.Unflatten(1, (C_out, G_out))
                                      [B, C_out·G_out, H', W'] -> [B, C_out, G_out, H', W']

  and the convolution in the middle is, by the layer's *variant*:

  - full (and every ``g``/``gc`` layer exported ``"dense"``): ``conv``, one
    ``nn.Conv2d(C_in·G_in, C_out·G_out, k)`` holding F̃ (``layer.expand_filter()``
    folded to ``[C_out·G_out, C_in·G_in, k, k]``) and the bias repeated over
    the group axis; stride and padding as the layer's;
  - gc (``"separable"``, the default; Eqs. 14–15): ``pointwise``, a 1×1
    ``nn.Conv2d(C_in·G_in, C_out·G_out)`` holding w̃, then ``depthwise``, a
    k×k ``nn.Conv2d`` with ``C_out·G_out`` groups holding T_h(K) and the bias;
  - g (``"dense"``, the default: measured fastest on the CPU, see
    ``docs/deploy.md``; ``"separable"`` gives Eqs. 8–9): ``pointwise``, a 1×1
    conv with ``C_in`` groups, ``shuffle``, an ``nn.ChannelShuffle(C_in)``
    (channels ``(c, n, h)`` -> ``(n, h, c)``), and ``spatial``, a k×k conv
    with ``C_out·G_out`` groups;

* the blocks become their stock equivalents on the same ``[B, C, G, H, W]``
  layout: :class:`~sepgconv.GroupBatchNorm` -> ``nn.BatchNorm3d`` (state
  copied: running statistics, ``num_batches_tracked``, affine parameters),
  :class:`~sepgconv.GroupMaxPool2d` -> ``nn.MaxPool3d((1, k, k), (1, s, s),
  (0, p, p))``, :class:`~sepgconv.GroupPool` -> ``nn.AdaptiveMaxPool3d((1,
  None, None))`` (or ``AdaptiveAvgPool3d``) then ``nn.Flatten(2, 3)``;

* a container defined by sepgconv (the paper's models, their residual
  blocks) is traced with ``torch.fx`` into a ``GraphModule`` whose
  submodules keep their qualified names (``stage1.0.conv1.conv``), so the
  residual additions and the heads become plain graph operations.

The tensor layout between modules stays the native ``[B, C, G, H, W]``:
folding the group axis into the channels happens inside each exported
convolution and is a view (contiguous input), so it costs nothing, and batch
norm keeps one statistic per channel over ``(B, G, H, W)`` in training mode as
well (a ``BatchNorm2d`` over ``C·G`` folded channels would not).

Parameters are detached copies (changing the export does not change the
source) with the source's ``requires_grad``; every module keeps its
``training`` flag, dtype and device. Layers in ``channels_last`` are exported
in the default (contiguous) layout: convert the exported model with
``.to(memory_format=torch.channels_last)`` if wanted. Training an exported
model updates F̃ freely: equivariance is then no longer built in.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
from torch import fx, nn
from torch.nn.modules.utils import _pair

from sepgconv.blocks import GroupBatchNorm, GroupMaxPool2d, GroupPool
from sepgconv.gconv import GConv2d

#: the exported forms of a g / gc layer
FORMS = ("dense", "separable")


def _parameter(value: torch.Tensor, requires_grad: bool) -> nn.Parameter:
    return nn.Parameter(value.detach().clone(memory_format=torch.contiguous_format), requires_grad)


def _conv2d(weight, bias, *, stride=1, padding=0, groups=1, requires_grad=True) -> nn.Conv2d:
    """A stock ``nn.Conv2d`` holding copies of ``weight`` (and ``bias``)."""
    out_ch, in_per_group, k, _ = weight.shape
    conv = nn.Conv2d(
        in_per_group * groups,
        out_ch,
        k,
        stride=stride,
        padding=padding,
        groups=groups,
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    conv.weight = _parameter(weight, requires_grad)
    if bias is not None:
        conv.bias = _parameter(bias, requires_grad)
    return conv


def _form(layer: GConv2d, g_form: str, gc_form: str) -> str:
    return {"g": g_form, "gc": gc_form}.get(layer.variant, "dense")


def export_gconv(layer: GConv2d, *, g_form: str = "dense", gc_form: str = "separable"):
    """One :class:`GConv2d` as an ``nn.Sequential`` of stock modules (see the module doc).

    Args:
        layer: any registered implementation, lifting or not.
        g_form, gc_form: ``"dense"`` (one conv with F̃) or ``"separable"``
            (pointwise then grouped/depthwise conv) for g and gc layers.

    Returns:
        ``nn.Sequential`` taking ``[B, C_in, G_in, H, W]`` (an image
        ``[B, C_in, H, W]`` when lifting) and returning ``[B, C_out, G_out, H', W']``.
    """
    for name, value in (("g_form", g_form), ("gc_form", gc_form)):
        if value not in FORMS:
            raise ValueError(f"unknown {name} {value!r}; valid choices: {list(FORMS)}")
    n, c, k = layer.out_channels, layer.in_channels, layer.kernel_size
    go, gi = layer.g_out, layer.g_in
    grad = any(p.requires_grad for p in layer.parameters())
    form = _form(layer, g_form, gc_form)
    geometry = dict(stride=layer.stride, padding=layer.padding, requires_grad=grad)
    mods: OrderedDict[str, nn.Module] = OrderedDict()
    if not layer.lifting:
        mods["fold"] = nn.Flatten(1, 2)
    with torch.no_grad():
        bias = None if layer.bias is None else layer.bias.repeat_interleave(go)
        if form == "dense":
            f = layer.expand_filter().reshape(n * go, c * gi, k, k)
            mods["conv"] = _conv2d(f, bias, **geometry)
        else:
            # index tables from the group (Cayley table): w̃[n, h, c, g] = w[n, c, h⁻¹g],
            # and T_h of a k×k kernel as a gather of its flattened pixels
            perm_in = layer.group.filter_perm(gi).reshape(-1).to(layer.pointwise.device)
            spatial = layer.group.spatial_perm(k).reshape(-1).to(layer.kernel.device)
            w_t = layer.pointwise.index_select(2, perm_in).view(n, c, go, gi)
            if layer.variant == "gc":
                pointwise = w_t.permute(0, 2, 1, 3).reshape(n * go, c * gi, 1, 1)
                depthwise = layer.kernel.reshape(n, k * k).index_select(1, spatial)
                mods["pointwise"] = _conv2d(pointwise, None, requires_grad=grad)
                mods["depthwise"] = _conv2d(
                    depthwise.reshape(n * go, 1, k, k), bias, groups=n * go, **geometry
                )
            else:  # g: pointwise per input channel, output channels (c, n, h)
                pointwise = w_t.permute(1, 0, 2, 3).reshape(c * n * go, gi, 1, 1)
                k_t = layer.kernel.reshape(n, c, k * k).index_select(2, spatial)
                k_t = k_t.view(n, c, go, k, k).permute(0, 2, 1, 3, 4).reshape(n * go, c, k, k)
                mods["pointwise"] = _conv2d(pointwise, None, groups=c, requires_grad=grad)
                mods["shuffle"] = nn.ChannelShuffle(c)  # (c, n, h) -> (n, h, c)
                mods["spatial"] = _conv2d(k_t, bias, groups=n * go, **geometry)
    mods["unfold"] = nn.Unflatten(1, (n, go))
    out = nn.Sequential(mods)
    return out.train(layer.training)


def _export_block(module: nn.Module) -> nn.Module | None:
    """The stock equivalent of a sepgconv block, or None for anything else."""
    if isinstance(module, GroupBatchNorm):
        p = next(iter(module.parameters()), None)
        ref = p if p is not None else module.running_mean
        bn = nn.BatchNorm3d(
            module.num_features,
            eps=module.eps,
            momentum=module.momentum,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            device=None if ref is None else ref.device,
            dtype=None if ref is None else ref.dtype,
        )
        bn.load_state_dict(module.state_dict())
        for name, param in module.named_parameters(recurse=False):
            getattr(bn, name).requires_grad_(param.requires_grad)
        return bn.train(module.training)
    if isinstance(module, GroupMaxPool2d):
        k, s, p = (_pair(v) for v in (module.kernel_size, module.stride, module.padding))
        pool = nn.MaxPool3d((1, *k), (1, *s), (0, *p))
        return pool.train(module.training)
    if isinstance(module, GroupPool):
        adaptive = nn.AdaptiveMaxPool3d if module.reduce == "max" else nn.AdaptiveAvgPool3d
        pool = nn.Sequential(OrderedDict(pool=adaptive((1, None, None)), squeeze=nn.Flatten(2, 3)))
        return pool.train(module.training)
    return None


def _is_sepgconv(module: nn.Module) -> bool:
    return type(module).__module__.startswith("sepgconv")


def _replace(parent: nn.Module, name: str, new: nn.Module) -> None:
    if isinstance(parent, (nn.Sequential, nn.ModuleList)) and name.isdigit():
        parent[int(name)] = new
    else:
        setattr(parent, name, new)


def _map_children(module: nn.Module, fn) -> nn.Module:
    """Replace, bottom-up, every submodule ``m`` of ``module`` for which ``fn(m)`` is not None;
    returns ``module`` itself or its replacement."""
    for name, child in list(module.named_children()):
        _replace(module, name, _map_children(child, fn))
    new = fn(module)
    return module if new is None else new


def _leaf(module: nn.Module, g_form: str, gc_form: str) -> nn.Module | None:
    if isinstance(module, GConv2d):
        return export_gconv(module, g_form=g_form, gc_form=gc_form)
    return _export_block(module)


def _trace_containers(module: nn.Module) -> nn.Module:
    """Every outermost sepgconv container (a model, a residual block) in ``module``
    traced to a ``GraphModule`` (its sepgconv children are inlined by the trace)."""
    if not _is_sepgconv(module):
        for name, child in list(module.named_children()):
            _replace(module, name, _trace_containers(child))
        return module
    try:
        traced = fx.symbolic_trace(module)
    except Exception as err:  # noqa: BLE001 - say which module, keep the cause
        raise TypeError(
            f"export_modules: cannot trace {type(module).__name__} with torch.fx "
            f"to plain modules: {err}"
        ) from err
    # each module keeps its own mode (a trace's train() would set one for all)
    modes = {name: m.training for name, m in module.named_modules()}
    for name, m in traced.named_modules():
        m.training = modes.get(name, module.training)
    return traced


def export_modules(
    model: nn.Module, *, g_form: str = "dense", gc_form: str = "separable"
) -> nn.Module:
    """A copy of ``model`` made of plain ``torch.nn`` modules that computes the same function.

    Every :class:`GConv2d` becomes stock convolutions (see :func:`export_gconv`),
    every sepgconv block its stock equivalent, and every container defined by
    sepgconv (e.g. :class:`sepgconv.models.ResNet44`) a ``torch.fx.GraphModule``;
    modules of other origin are deep-copied unchanged. Feature maps between
    modules keep the native layout ``[B, C, G, H, W]`` (module doc).

    Args:
        model: a module (a single layer, a paper model, or your own network).
        g_form: ``"dense"`` (default: one conv with F̃, the fastest exact plain
            form measured on the CPU) or ``"separable"`` (Eqs. 8–9).
        gc_form: ``"separable"`` (default: 1×1 conv then depthwise, Eqs.
            14–15) or ``"dense"``.

    Returns:
        The exported copy, in the source's train/eval mode, dtype and device;
        ``not any(type(m).__module__.startswith("sepgconv") for m in
        exported.modules())`` holds unless one of your own classes lives in a
        ``sepgconv`` package.

    Example:
        >>> import torch, sepgconv
        >>> from sepgconv import models
        >>> net = models.build("gc-p4cnn", seed=0).eval()
        >>> plain = sepgconv.export_modules(net)
        >>> x = torch.randn(2, 1, 28, 28)
        >>> torch.allclose(plain(x), net(x), atol=1e-5)
        True
    """
    for name, value in (("g_form", g_form), ("gc_form", gc_form)):
        if value not in FORMS:
            raise ValueError(f"unknown {name} {value!r}; valid choices: {list(FORMS)}")
    exported = copy.deepcopy(model)
    exported = _map_children(exported, lambda m: _leaf(m, g_form, gc_form))
    return _trace_containers(exported)


def to_onnx(
    model: nn.Module,
    example_input: torch.Tensor,
    path=None,
    *,
    plain: bool = True,
    dynamo: bool = True,
    **kwargs,
) -> bytes:
    """Serialise ``model`` (in eval mode) to ONNX; returns the file's bytes.

    Args:
        model: any module; left unchanged (a copy is exported).
        example_input: one input batch (its shape is fixed in the graph unless
            ``kwargs`` pass ``dynamic_shapes``/``dynamic_axes`` on).
        path: also write the bytes there.
        plain: export :func:`export_modules` (default), the only way for a
            model with ``impl="fused"`` layers (a Triton custom op has no ONNX
            form); ``False`` exports the native model, whose graph then builds
            F̃ from the parameters at run time.
        dynamo: ``torch.onnx.export(..., dynamo=True)`` (torch's default
            exporter since 2.9; needs ``onnxscript``), or the legacy
            TorchScript exporter (deprecated in torch, faster to run).
        **kwargs: passed on to :func:`torch.onnx.export`.
    """
    import io

    module = export_modules(model) if plain else copy.deepcopy(model)
    module.eval()
    if dynamo:
        program = torch.onnx.export(
            module, (example_input,), dynamo=True, optimize=True, verbose=False, **kwargs
        )
        data = program.model_proto.SerializeToString()
    else:
        buffer = io.BytesIO()
        torch.onnx.export(module, (example_input,), buffer, dynamo=False, **kwargs)
        data = buffer.getvalue()
    if path is not None:
        with open(path, "wb") as f:
            f.write(data)
    return data


__all__ = ["FORMS", "export_gconv", "export_modules", "to_onnx"]
