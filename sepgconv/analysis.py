"""Filter redundancy along the group axis (§3.2, Fig. 2) and g/gc decomposition.

Redundancy (the paper's PCA, made precise)
    A group layer's filter bank ``F [C_out, C_in, G_in, k, k]`` is reshaped
    to ``[C_out·C_in, G_in, k²]``. Each set ``F_n`` (one ``(output, input)``
    channel pair) is a data matrix with ``G_in`` *features* (the filter's
    group copies) and ``k²`` *samples* (the pixels). PCA: centre every
    feature over its ``k²`` samples, form the ``G_in × G_in`` covariance and
    take its eigenvalues ``λ_1 ≥ … ≥ λ_G``; the PC1 ratio is
    ``λ_1 / Σ λ_i`` (the 1/(k²−1) normalisation cancels). Computed as the
    squared singular values of the centred ``k² × G_in`` matrix, in float64.
    It is 1 when the copies are multiples of one kernel (plus constants),
    i.e. the set is exactly g-separable, and at least ``1/G_in`` always. A
    set whose centred copies are all zero (constant kernels) has no variance:
    its ratio is NaN and is left out of the statistics. Lifting layers
    (``G_in = 1``) and 1×1 layers (one sample) are skipped.

Decomposition (least squares)
    g: for each ``(n, c)``, the best rank-1 approximation (Eckart–Young, by
    SVD) of the ``[G_in, k²]`` matrix ``F[n, c]``: ``σ·u·vᵀ`` gives
    ``pointwise[n, c] = √σ·u`` and ``kernel[n, c] = √σ·v``. gc: for each
    ``n``, the best rank-1 approximation of the ``[C_in·G_in, k²]`` matrix.
    The balanced split (both factors scaled by √σ) is the one of all
    ``(a·K, w/a)`` with the least ``‖K‖² + ‖w‖²``, so weight decay does not
    pull a fine-tuned layer off it; signs make the largest-magnitude
    pointwise entry positive. Each fit is the least-squares optimum of its
    family, and since every gc filter is also g-separable, the g fit's error
    never exceeds the gc fit's. Both are exact on a layer that already is g-
    (resp. gc-) separable.

Checkpoints: see :func:`save_checkpoint` / :func:`load_model`.
"""

from __future__ import annotations

import copy
import dataclasses
import os

import torch
from torch import nn

from sepgconv import models
from sepgconv.gconv import GConv2d

# ---------------------------------------------------------------------- #
# redundancy
# ---------------------------------------------------------------------- #


def pc1_ratios(filter_bank: torch.Tensor, center: bool = True) -> torch.Tensor:
    """PC1 explained-variance ratio of every set ``F_n`` (module docstring).

    Args:
        filter_bank: ``F`` as ``[C_out, C_in, G_in, k, k]``.
        center: centre each group copy over its pixels (PCA); ``False`` gives
            the uncentred ratio ``σ_1² / Σ σ_i²`` of the raw matrix.

    Returns:
        ``[C_out·C_in]`` float64 ratios (NaN for a set without variance).
    """
    n, c, g, k, _ = filter_bank.shape
    x = filter_bank.detach().to(torch.float64).reshape(n * c, g, k * k).transpose(1, 2)
    if center:
        x = x - x.mean(dim=1, keepdim=True)  # [N·C, k² samples, G features]
    power = torch.linalg.svdvals(x) ** 2  # eigenvalues of the covariance, up to 1/(k²−1)
    total = power.sum(-1)
    ratio = power[:, 0] / total
    return torch.where(total > 0, ratio, torch.full_like(ratio, float("nan")))


@dataclasses.dataclass
class LayerRedundancy:
    """PC1 ratios of one layer and their summary."""

    name: str
    shape: tuple[int, ...]  # F: (C_out, C_in, G_in, k, k)
    ratios: torch.Tensor  # [C_out·C_in], NaN where undefined

    def _valid(self) -> torch.Tensor:
        return self.ratios[~torch.isnan(self.ratios)]

    @property
    def mean(self) -> float:
        return float(self._valid().mean())

    @property
    def std(self) -> float:
        return float(self._valid().std()) if self._valid().numel() > 1 else 0.0

    def quantile(self, q: float) -> float:
        valid = self._valid()  # empty when every filter set had no variance
        return float(torch.quantile(valid, q)) if valid.numel() else float("nan")


def analyzed_layers(model: nn.Module) -> list[tuple[str, GConv2d]]:
    """The group layers the analysis looks at: not lifting, ``k > 1``."""
    return [
        (name, layer)
        for name, layer in models.gconv_layers(model)
        if not layer.lifting and layer.kernel_size > 1
    ]


def redundancy(model: nn.Module, center: bool = True) -> list[LayerRedundancy]:
    """:class:`LayerRedundancy` for every analysed group layer of ``model``."""
    out = []
    for name, layer in analyzed_layers(model):
        f = layer.filter()
        out.append(LayerRedundancy(name, tuple(f.shape), pc1_ratios(f, center)))
    return out


# ---------------------------------------------------------------------- #
# decomposition
# ---------------------------------------------------------------------- #
@dataclasses.dataclass
class Fit:
    """Least-squares g or gc parameters for one filter bank."""

    variant: str
    kernel: torch.Tensor  # g: [C_out, C_in, k, k]; gc: [C_out, k, k]
    pointwise: torch.Tensor  # [C_out, C_in, G_in]
    rel_error: float  # ‖F − F̂‖ / ‖F‖ (Frobenius, whole layer)


def _rank1(m: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced best rank-1 factors of matrices ``[..., a, b]``: ``[..., a]`` and ``[..., b]``."""
    u, s, vh = torch.linalg.svd(m, full_matrices=False)
    u, v, scale = u[..., :, 0], vh[..., 0, :], s[..., 0].sqrt()
    # sign: the largest-magnitude entry of u positive (a deterministic choice)
    pick = u.abs().argmax(dim=-1, keepdim=True)
    sign = torch.sign(torch.gather(u, -1, pick))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return u * sign * scale[..., None], v * sign * scale[..., None]


def fit(filter_bank: torch.Tensor, variant: str) -> Fit:
    """Closest g or gc parameters to a filter bank ``F [C_out, C_in, G_in, k, k]``.

    Computed in float64; returned in the filter's dtype.
    """
    n, c, g, k, _ = filter_bank.shape
    f = filter_bank.detach().to(torch.float64)
    if variant == "g":
        w, kern = _rank1(f.reshape(n, c, g, k * k))  # [N, C, G], [N, C, k²]
        approx = w[..., None] * kern[:, :, None, :]
        kernel = kern.reshape(n, c, k, k)
        pointwise = w
    elif variant == "gc":
        w, kern = _rank1(f.reshape(n, c * g, k * k))  # [N, C·G], [N, k²]
        approx = w[..., None] * kern[:, None, :]
        kernel = kern.reshape(n, k, k)
        pointwise = w.reshape(n, c, g)
    else:
        raise ValueError(f"can decompose into 'g' or 'gc', not {variant!r}")
    norm = f.norm()
    err = (f.reshape(approx.shape) - approx).norm() / norm if norm > 0 else torch.tensor(0.0)
    dtype = filter_bank.dtype
    return Fit(variant, kernel.to(dtype), pointwise.to(dtype), float(err))


def decompose_layer(layer: GConv2d, variant: str, impl: str = "naive") -> tuple[GConv2d, float]:
    """A g or gc :class:`GConv2d` fitted to ``layer`` (bias copied) and its relative error.

    ``layer`` may be of any variant (its :meth:`GConv2d.filter` is fitted);
    the new layer has the same shape, group, stride, padding and bias setting.
    """
    result = fit(layer.filter(), variant)
    cfg = layer.config() | {"variant": variant, "impl": impl}
    new = GConv2d(**cfg, device=layer.device, dtype=layer.dtype)
    with torch.no_grad():
        new.kernel.copy_(result.kernel)
        new.pointwise.copy_(result.pointwise)
        if layer.bias is not None:
            new.bias.copy_(layer.bias)
    new.train(layer.training)
    return new, result.rel_error


def decompose_model(
    model: nn.Module, variant: str, impl: str = "naive"
) -> tuple[nn.Module, dict[str, float]]:
    """A copy of ``model`` with every analysed group layer replaced by its g/gc fit.

    Lifting layers and 1×1 layers (the ResNet shortcuts) stay as they are,
    as in the paper's separable models. A paper model's ``variant`` attribute
    is updated, so ``config()`` and checkpoints describe the new architecture.

    Returns:
        ``(new_model, {layer name: relative error})``.
    """
    new = copy.deepcopy(model)
    errors = {}
    for name, layer in analyzed_layers(new):
        parent_name, _, child = name.rpartition(".")
        parent = new.get_submodule(parent_name) if parent_name else new
        replacement, errors[name] = decompose_layer(layer, variant, impl)
        setattr(parent, child, replacement)
    if isinstance(new, models.PaperModel) and errors:
        new.variant = variant
    return new, errors


def decomposition_errors(model: nn.Module) -> dict[str, dict[str, float]]:
    """``{layer: {"g": err, "gc": err}}`` for every analysed group layer."""
    return {
        name: {v: fit(layer.filter(), v).rel_error for v in ("g", "gc")}
        for name, layer in analyzed_layers(model)
    }


# ---------------------------------------------------------------------- #
# checkpoints
# ---------------------------------------------------------------------- #
CHECKPOINT_FORMAT = "sepgconv.checkpoint/1"


def save_checkpoint(path: str | os.PathLike, model: models.PaperModel) -> None:
    """Save a paper model as a checkpoint :func:`load_model` reads.

    Format (a ``torch.save``'d dict of plain data and tensors, readable with
    ``weights_only=True``)::

        {"format": "sepgconv.checkpoint/1",
         "name": "p4cnn",              # registry name, or None
         "class": "RotMNISTNet",       # a key of sepgconv.models.CLASSES
         "config": {...},              # model.config(): rebuilds the architecture
         "state_dict": {...}}          # the same for naive and rearranged
    """
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "name": getattr(model, "paper_name", None),
            "class": type(model).__name__,
            "config": model.config(),
            "state_dict": model.state_dict(),
        },
        path,
    )


def load_model(spec: str | os.PathLike, *, seed: int = 0, trust_pickle: bool = False) -> nn.Module:
    """A model from a registry name (random init, seeded) or a checkpoint file.

    Files accepted: a :func:`save_checkpoint` dict; a bare ``state_dict`` of
    a registry model (matched by its parameter names and shapes); or, with
    ``trust_pickle=True`` only, a whole pickled module (``torch.save(model)``
    — unpickling runs code, so only for files you trust).
    """
    spec = os.fspath(spec)
    if spec in models.MODELS:
        return models.build(spec, seed=seed)
    if not os.path.exists(spec):
        raise FileNotFoundError(
            f"{spec!r} is neither a paper model ({', '.join(models.names())}) nor a file"
        )
    try:
        obj = torch.load(spec, map_location="cpu", weights_only=True)
    except Exception as exc:  # an unpickling error: not plain data
        if not trust_pickle:
            raise ValueError(
                f"{spec}: not a sepgconv checkpoint or state_dict ({type(exc).__name__}); "
                f"if it is a whole pickled model you trust, pass trust_pickle=True "
                f"(CLI: --trust-pickle)"
            ) from exc
        obj = torch.load(spec, map_location="cpu", weights_only=False)
    if isinstance(obj, nn.Module):
        return obj
    if isinstance(obj, dict) and obj.get("format") == CHECKPOINT_FORMAT:
        model = models.CLASSES[obj["class"]](**obj["config"])
        model.load_state_dict(obj["state_dict"])
        if obj.get("name"):
            model.paper_name = obj["name"]
        return model
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _match_state_dict(obj, spec)
    raise ValueError(f"{spec}: unrecognised checkpoint contents ({type(obj).__name__})")


def _match_state_dict(state: dict, where: str) -> nn.Module:
    want = {k: tuple(v.shape) for k, v in state.items()}
    for name in models.names():
        model = models.build(name, seed=0)
        have = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if have == want:
            model.load_state_dict(state)
            return model
    raise ValueError(f"{where}: a state_dict that matches none of the paper models")


# ---------------------------------------------------------------------- #
# report and plot
# ---------------------------------------------------------------------- #
def short_name(name: str) -> str:
    """``features.layer2.conv`` → ``layer2``; ``stage1.0.conv1`` stays."""
    return name.removeprefix("features.").removesuffix(".conv")


def format_report(model: nn.Module, label: str = "") -> str:
    """A per-layer text table: filter shape, PC1 ratio statistics, g and gc fit errors."""
    reds = redundancy(model)
    errs = decomposition_errors(model)
    head = (
        f"{'layer':<18} {'F shape':<16} {'sets':>5} {'PC1 mean':>8} {'std':>6} "
        f"{'q25':>6} {'median':>6} {'q75':>6} {'g err':>7} {'gc err':>7}"
    )
    lines = ([f"== {label} =="] if label else []) + [head, "-" * len(head)]
    for r in reds:
        shape = "x".join(str(s) for s in r.shape)
        lines.append(
            f"{short_name(r.name):<18} {shape:<16} {r.ratios.numel():>5} {r.mean:>8.4f} "
            f"{r.std:>6.3f} {r.quantile(0.25):>6.3f} {r.quantile(0.5):>6.3f} "
            f"{r.quantile(0.75):>6.3f} {errs[r.name]['g']:>7.4f} {errs[r.name]['gc']:>7.4f}"
        )
    if reds:
        overall = torch.cat([r._valid() for r in reds])
        lines.append(
            f"all layers: PC1 mean {float(overall.mean()):.4f} over {overall.numel()} sets"
        )
    else:
        lines.append("no group layers to analyse (lifting and 1x1 layers are skipped)")
    return "\n".join(lines) + "\n"


def plot_redundancy(results: dict[str, list[LayerRedundancy]], path: str | os.PathLike) -> None:
    """Fig. 2-style bars: mean PC1 ratio per layer, one bar per model (e.g. before/after).

    Whiskers span the interquartile range of the per-set ratios. Layers are
    matched by position; the x labels come from the first model.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = ["tab:blue", "tab:red", "tab:green", "tab:orange"]
    labels = list(results)
    n_layers = max((len(v) for v in results.values()), default=0)
    width = 0.8 / max(len(labels), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.45 * n_layers * len(labels) + 1.5), 3.2))
    for i, label in enumerate(labels):
        reds = results[label]
        xs = [j + (i - (len(labels) - 1) / 2) * width for j in range(len(reds))]
        means = [r.mean for r in reds]
        # IQR whiskers around the mean (clamped: the mean can sit outside the IQR)
        lo = [max(0.0, r.mean - r.quantile(0.25)) for r in reds]
        hi = [max(0.0, r.quantile(0.75) - r.mean) for r in reds]
        ax.bar(xs, means, width, color=colours[i % len(colours)], label=label)
        ax.errorbar(xs, means, yerr=[lo, hi], fmt="none", ecolor="black", lw=0.8, capsize=2)
    first = results[labels[0]] if labels else []
    ax.set_xticks(range(len(first)), [short_name(r.name) for r in first], rotation=60)
    ax.set_ylim(0, 1)
    ax.set_ylabel("variance explained by PC1")
    ax.set_title("Variance explained by PC1 along the group axis", fontsize="medium")
    if len(labels) > 1:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)


__all__ = [
    "CHECKPOINT_FORMAT",
    "Fit",
    "LayerRedundancy",
    "analyzed_layers",
    "decompose_layer",
    "decompose_model",
    "decomposition_errors",
    "fit",
    "format_report",
    "load_model",
    "pc1_ratios",
    "plot_redundancy",
    "redundancy",
    "save_checkpoint",
    "short_name",
]
