"""Tables 1 and 2 of the paper, measured from the code.

Per row: trainable parameters and per-sample MACs of the model as built by
:mod:`sepgconv.models`, next to the paper's values and the relative
difference (``ours / paper − 1``).

MAC conventions (one multiply-accumulate counts once; per sample):

* ``macs`` — the paper's convention, computed from the model's actual layers
  and the output shapes seen in a forward pass (forward hooks):
  a GConv counts the §3.4 formula of its variant at its *output* resolution
  (:func:`sepgconv.counting.macs_section34` with ``H'×W'``); a plain conv
  counts ``C_out·(C_in/groups)·k²·H'·W'`` (so c-Z2CNN's 1×1 conv counts at
  its own output grid, the layer's input grid); a linear layer counts
  ``in·out``. Batch norm, ReLU, pooling and bias additions count zero.
  This reproduces every MAC value of Table 1 (c-Z2CNN within 0.5 %).
* ``macs_fvcore`` — what fvcore's FlopCountAnalysis measures on the model
  with its separable layers switched to ``rearranged`` (convolutions and the
  linear layer; the ``aten::batch_norm`` handle set to ``None``; pools and
  ReLU are not counted by fvcore). A rearranged g/gc layer runs its pointwise
  step on the layer's *input* grid, which valid padding makes larger than the
  output grid, so ``macs_fvcore ≥ macs`` for the g/gc models (equal for the
  models without separable layers, up to nothing). See :data:`MACS_NOTE`.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import io

import torch
from torch import nn

from sepgconv import models
from sepgconv.counting import layer_macs, macs_section34, measure_macs
from sepgconv.gconv import GConv2d

MACS_NOTE = (
    "macs: the paper's convention - GConv layers by the Section 3.4 formula at the layer's "
    "output resolution, plain convs and the linear layer as executed, BN/ReLU/pooling not "
    "counted. macs_fvcore: fvcore on the model with its g/gc layers rearranged (convs + linear, "
    "batch norm ignored); a rearranged layer runs its pointwise step on the input grid, which "
    "valid padding (Table 1) and stride 2 (Table 2) make larger than the output grid, so it "
    "exceeds the paper's count for the g/gc models."
)


@dataclasses.dataclass
class LayerMacs:
    """One counted layer: qualified name, kind, input/output shapes (no batch), MACs per sample."""

    name: str
    kind: str  # "gconv-full" | "gconv-g" | "gconv-gc" | "conv" | "linear"
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    macs: int


def _layer_macs(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, executed: bool
) -> tuple[str, int] | None:
    if isinstance(module, GConv2d):
        if executed:  # what the implementation runs (rearranged: pointwise on the input grid)
            return f"gconv-{module.variant}", layer_macs(module, *x.shape[-2:])
        h, w = y.shape[-2:]
        n = macs_section34(
            module.variant,
            module.in_channels,
            module.out_channels,
            module.g_in,
            module.g_out,
            module.kernel_size,
            h,
            w,
        )
        return f"gconv-{module.variant}", n
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        per_pixel = module.out_channels * (module.in_channels // module.groups) * kh * kw
        return "conv", per_pixel * y.shape[-2] * y.shape[-1]
    if isinstance(module, nn.Linear):
        rows = y.numel() // (y.shape[0] * module.out_features)
        return "linear", rows * module.in_features * module.out_features
    return None


def paper_macs(
    model: nn.Module, x: torch.Tensor | None = None, *, executed: bool = False
) -> tuple[int, list[LayerMacs]]:
    """Per-sample MACs of ``model`` by the paper's convention (module docstring).

    Args:
        model: a model of :mod:`sepgconv.models` (or any module built from
            ``GConv2d``, ``nn.Conv2d`` and ``nn.Linear``).
        x: one input batch; default a random sample of ``model.input_shape``.
        executed: count each GConv by what its implementation executes
            (:func:`sepgconv.counting.layer_macs`: naive g/gc run the dense
            conv, rearranged ones the pointwise step on the input grid)
            instead of the §3.4 formula at the output grid.

    Returns:
        ``(total, layers)``: the total and one :class:`LayerMacs` per call.
    """
    if x is None:
        x = model.example_input(1)
    found: list[LayerMacs] = []
    names = {m: n for n, m in model.named_modules()}

    def hook(module, inputs, y):
        counted = _layer_macs(module, inputs[0], y, executed)
        if counted is not None:
            kind, n = counted
            shapes = tuple(inputs[0].shape[1:]), tuple(y.shape[1:])
            found.append(LayerMacs(names[module], kind, *shapes, n))

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (GConv2d, nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return sum(layer.macs for layer in found), found


def fvcore_macs(model: nn.Module, x: torch.Tensor | None = None) -> int:
    """fvcore's MAC count per sample of ``model`` with its g/gc layers rearranged.

    The model is copied (the original is untouched); batch norm is not counted.
    """
    rearranged = models.set_impl(copy.deepcopy(model), "rearranged")
    if x is None:
        x = rearranged.example_input(1)
    count = measure_macs(rearranged, x, op_handles={"aten::batch_norm": None})
    return count.total // x.shape[0]


COLUMNS = [
    "model",
    "name",
    "width",
    "params",
    "paper_params",
    "params_rel_diff",
    "params_match",
    "macs",
    "paper_macs",
    "macs_rel_diff",
    "macs_fvcore",
]


@dataclasses.dataclass
class Row:
    """One table row: measured values next to the paper's."""

    model: str  # the paper's label
    name: str  # registry key
    width: str
    params: int
    paper_params: int
    params_rel_diff: float
    params_match: bool  # equal to the paper's value at the paper's rounding
    macs: int | None
    paper_macs: int | None
    macs_rel_diff: float | None
    macs_fvcore: int | None


def measure_row(name: str, *, macs: bool = True, fvcore: bool = True, seed: int = 0) -> Row:
    """Build registry model ``name`` and measure its row.

    ``macs=False`` skips the forward pass (MAC cells empty), ``fvcore=False``
    the fvcore count: both are slow for the p4m ResNets on a CPU.
    """
    spec = models.get_spec(name)
    model = models.build(name, seed=seed)
    params = models.count_params(model)
    paper_params, resolution = models.paper_number(spec.paper_params)
    ours = paper_macs(model)[0] if macs else None
    paper_m = models.paper_number(spec.paper_macs)[0] if spec.paper_macs else None
    return Row(
        model=spec.label,
        name=name,
        width=spec.width,
        params=params,
        paper_params=paper_params,
        params_rel_diff=params / paper_params - 1,
        params_match=2 * abs(params - paper_params) <= resolution,
        macs=ours,
        paper_macs=paper_m,
        macs_rel_diff=None if (paper_m is None or ours is None) else ours / paper_m - 1,
        macs_fvcore=fvcore_macs(model) if (macs and fvcore) else None,
    )


def table(number: int, *, macs: bool = True, fvcore: bool = True) -> list[Row]:
    """All rows of Table ``number`` (1 or 2), in the paper's order."""
    if number not in (1, 2):
        raise ValueError(f"the paper has Tables 1 and 2, not {number!r}")
    return [measure_row(n, macs=macs, fvcore=fvcore) for n in models.names(table=number)]


# ---------------------------------------------------------------------- #
# formatting
# ---------------------------------------------------------------------- #
def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:+.2f}%"


def _num(x: int | None) -> str:
    return "" if x is None else f"{x:,}"


def to_csv(rows: list[Row]) -> str:
    """CSV with :data:`COLUMNS` (empty cells for values the paper does not give)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        d = dataclasses.asdict(r)
        writer.writerow({k: ("" if d[k] is None else d[k]) for k in COLUMNS})
    return out.getvalue()


def to_markdown(rows: list[Row], title: str = "") -> str:
    """A Markdown table with the paper's values beside ours, plus the MAC note."""
    head = [
        "Network",
        "w",
        "Params",
        "Paper",
        "Δ",
        "MACs",
        "Paper",
        "Δ",
        "MACs (fvcore, rearranged)",
    ]
    lines = [f"### {title}", ""] if title else []
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        spec = models.get_spec(r.name)
        cells = [
            r.model,
            r.width,
            _num(r.params),
            spec.paper_params,
            _pct(r.params_rel_diff),
            _num(r.macs),
            spec.paper_macs or "–",
            _pct(r.macs_rel_diff),
            _num(r.macs_fvcore),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Note: {MACS_NOTE}"]
    return "\n".join(lines) + "\n"


TITLES = {
    1: "Table 1: Rotated MNIST (parameters, MACs per sample)",
    2: "Table 2: CIFAR-10 (parameters; the paper gives no MACs)",
}


def render(number: int, fmt: str = "md", *, fvcore: bool = True) -> str:
    """Table ``number`` as ``"md"`` or ``"csv"`` text."""
    rows = table(number, fvcore=fvcore)
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "md":
        return to_markdown(rows, TITLES[number])
    raise ValueError(f"unknown format {fmt!r}; valid choices: ['md', 'csv']")


__all__ = [
    "COLUMNS",
    "LayerMacs",
    "MACS_NOTE",
    "Row",
    "fvcore_macs",
    "measure_row",
    "paper_macs",
    "render",
    "table",
    "to_csv",
    "to_markdown",
]
