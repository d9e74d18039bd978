"""Short labels of benchmarks in reports: only the params that vary across the runs."""

from __future__ import annotations

from .runs import Bench, _canon

# params shown first, in this order, in benchmark labels
PARAM_ORDER = (
    "group", "layer", "variant", "impl", "c_in", "c_out", "k", "h", "w", "batch",
    "pass", "dtype", "device",
)  # fmt: skip


def label_maker(benches: list):
    """A label function for ``benches`` and the params common to all of them.

    Args:
        benches: every benchmark of both runs.

    Returns:
        ``(label, common)``: ``label(bench) -> str`` shows the params that vary
        (or the fullname without params); ``common`` maps the others to their value.
    """
    with_params = [b.params for b in benches if b.params]
    keys = {k for p in with_params for k in p}
    common = {}
    for k in keys:
        vals = {_canon(p.get(k, "<unset>")) for p in with_params}
        if len(vals) == 1 and len(with_params) > 1:
            common[k] = with_params[0][k]
    order = [k for k in PARAM_ORDER if k in keys] + sorted(keys - set(PARAM_ORDER))

    def label(b: Bench) -> str:
        if not b.params:
            return b.fullname or b.name
        shown = [k for k in order if k in b.params and k not in common] or list(b.params)
        text = " ".join(f"{k}={b.params[k]}" for k in shown)
        extra = dict(b.key).get("__fullname__")
        return f"{text} ({extra})" if extra else text

    return label, {k: common[k] for k in order if k in common}
