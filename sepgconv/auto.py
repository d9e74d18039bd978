"""``impl="auto"`` layers: ``("full", "auto")``, ``("g", "auto")``, ``("gc", "auto")``.

An auto layer owns its variant's parameters (the same ``state_dict`` as the
variant's other implementations) and computes nothing itself: per key (see
:mod:`sepgconv.autotune`) it picks one of the variant's implementations and
delegates the call to a *delegate*, a layer of that implementation whose
parameter dict **is** the auto layer's (``_parameters`` shared, so
``load_state_dict``, optimiser steps, ``torch.func.functional_call`` and
``torch.export``'s parameter swaps reach it). Delegates live in a plain dict,
not as submodules: they appear in neither ``state_dict`` nor ``modules()``.

The hot path: once a choice is made for an input, the layer remembers its
delegate under a cheap *signature* of the call — ``(x.shape, x.dtype,
x.device, x.stride(), grad mode, x.requires_grad, whether a parameter wants
its gradient, train/eval, threads, TF32/cuDNN flags)``, every input of the
cache key (:func:`sepgconv.autotune.make_key`) other than the layer's own
configuration — and a later call with the same signature is one dict lookup
followed by the delegate's computation: no input check (the signature was
checked when it was first seen), no key string, no format probe. A miss takes
the full path (check, key, cache lookup or timing). The remembered delegates
are forgotten when the cache's generation moves (:func:`autotune.clear`,
:func:`autotune.load`, trust returning) and when the layer moves
(``.to()``, ``.double()``, ...).

Rule under torch.compile / torch.export: the choice is made eagerly, outside
any graph. In an eager call it is looked up in (or timed into) the cache.
Under ``torch.compile`` a layer whose choice for the key is not yet known
makes it in a ``torch.compiler.disable``-d function (a graph break), so
``fullgraph=True`` needs the choice made first: call the model once eagerly
on an input of the same key. ``torch.export`` likewise needs one eager call
before exporting; without it the export raises a RuntimeError saying so.
"""

from __future__ import annotations

import contextlib
import time

import torch

from sepgconv import autotune, layout, registry
from sepgconv.gconv import GConv2d
from sepgconv.impls import _FullParams, _GCParams, _GParams
from sepgconv.registry import register


class _Auto:
    """Shared by the three auto layers; mixed in before the variant's parameters."""

    impl = "auto"
    memory_formats = (*layout.FORMATS, "auto")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._delegates: dict[tuple[str, str, str], GConv2d] = {}  # (impl, format, device)
        # (cache generation, cache key) -> delegate / Choice
        self._chosen: dict[tuple, GConv2d] = {}
        self._choices: dict[tuple, autotune.Choice] = {}
        # the hot path: call signature -> delegate, valid for one cache generation
        self._fast: dict[tuple, GConv2d] = {}
        self._fast_generation = autotune.generation[0]

    # ------------------------------------------------------------------ #
    # forward: look the delegate up, run it
    # ------------------------------------------------------------------ #
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (torch.compiler.is_compiling() or torch.jit.is_tracing()):
            if self._fast_generation != autotune.generation[0]:
                self._fast.clear()
                self._fast_generation = autotune.generation[0]
            try:
                delegate = self._fast.get(self._signature(x))
            except AttributeError:  # not a tensor: the full path says what is wrong
                delegate = None
            if delegate is not None:
                return delegate._forward(x)
        self._check_input(x)
        return self._delegate_for(x)._forward(x)

    def _signature(self, x: torch.Tensor) -> tuple:
        """Everything the cache key takes from the call (see the module doc), cheaply."""
        grad = torch.is_grad_enabled()
        return (
            x.shape,
            x.dtype,
            x.device,
            x.stride(),
            grad,
            x.requires_grad,
            grad and any(p is not None and p.requires_grad for p in self._parameters.values()),
            self.training,
            torch.get_num_threads(),
            *autotune.flags(),
        )

    def _local_key(self, x: torch.Tensor) -> tuple:
        # what a compiled graph can read (dynamo traces it): the choice made eagerly
        # last for this shape, dtype, device, format, pass and mode
        return (
            autotune.generation[0],
            tuple(x.shape),
            str(x.dtype),
            str(x.device),
            layout.format_of(x),
            autotune.pass_of(self, x),
            x.requires_grad,
            self.training,
        )

    def _delegate_for(self, x: torch.Tensor) -> GConv2d:
        if torch.jit.is_tracing():  # (fvcore, ONNX) choose with the tracer paused
            with _tracer_paused():
                return self._delegate_for(x)
        if torch.compiler.is_compiling():
            delegate = self._chosen.get(self._local_key(x))
            if delegate is not None:
                return delegate
            if torch.compiler.is_dynamo_compiling() and not torch.compiler.is_exporting():
                return _choose_outside_graph(self, x)
            raise RuntimeError(
                f"{type(self).__name__}: impl='auto' has no choice for input "
                f"{tuple(x.shape)} {x.dtype} in this pass yet; call the model once eagerly "
                f"(same shape, dtype, memory format, pass) before torch.export"
            )
        delegate = self._choose(x)  # eager, off the hot path: the full key, the cache
        if self._fast_generation != autotune.generation[0]:
            self._fast.clear()
            self._fast_generation = autotune.generation[0]
        self._fast[self._signature(x)] = delegate
        return delegate

    def _choose(self, x: torch.Tensor) -> GConv2d:
        """Find (or time) the choice for ``x`` eagerly; remember its delegate."""
        pass_ = autotune.pass_of(self, x)
        key = autotune.make_key(self, x, pass_)
        choice = autotune.lookup(key)
        if choice is None or (choice.impl, choice.memory_format) not in self._candidates(x):
            choice = autotune.record(key, self._time(x, pass_))
        delegate = self._delegate(choice.impl, choice.memory_format)
        local = self._local_key(x)
        self._chosen[local] = delegate
        self._choices[local] = choice
        return delegate

    # ------------------------------------------------------------------ #
    # candidates and timing
    # ------------------------------------------------------------------ #
    def _candidates(self, x: torch.Tensor) -> list[tuple[str, str]]:
        formats = layout.FORMATS if self.memory_format == "auto" else (self.memory_format,)
        return [
            (impl, fmt)
            for variant, impl in registry.available(x.device)
            if variant == self.variant
            and impl != self.impl
            # interpreted Triton kernels are a correctness tool: never timed
            and not getattr(registry.get(variant, impl), "is_interpreted", lambda d: False)(
                x.device
            )
            for fmt in formats
            if fmt in registry.get(variant, impl).memory_formats
        ]

    def _time(self, x: torch.Tensor, pass_: str) -> autotune.Choice:
        start = time.perf_counter()
        candidates = self._candidates(x)
        if len(candidates) == 1:  # nothing to choose between (e.g. full GConv in one format)
            return autotune.Choice(*candidates[0], tuning_s=time.perf_counter() - start)
        grad_out = self._grad_out(x) if pass_ == "train" else None
        runners, failed = {}, {}
        for impl, fmt in candidates:
            name = f"{impl}/{fmt}"
            try:
                runners[name] = self._runner(self._delegate(impl, fmt), x, grad_out)
                runners[name]()  # the warm-up call; fails here if it cannot run this input
            except Exception as e:  # noqa: BLE001 - a candidate that fails is not chosen
                runners.pop(name, None)
                failed[name] = f"{type(e).__name__}: {e}"
        if not runners:
            raise RuntimeError(f"{type(self).__name__}: no implementation ran: {failed}")
        timing = autotune.time_candidates(runners, x.device, warmup=False)
        impl, fmt = timing.best.split("/")
        return autotune.Choice(
            impl=impl,
            memory_format=fmt,
            timings_ms={name: t * 1e3 for name, t in timing.medians.items()},
            tuning_s=time.perf_counter() - start,
            rounds=timing.rounds,
            failed=failed,
            abandoned=dict(timing.abandoned),
            source="timed",
        )

    def _grad_out(self, x: torch.Tensor) -> torch.Tensor:
        """A random output gradient of the layer's output shape (no forward needed)."""
        h, w = x.shape[-2:]
        k, s, p = self.kernel_size, self.stride, self.padding
        shape = (x.shape[0], self.out_channels, self.g_out, (h + 2 * p - k) // s + 1,
                 (w + 2 * p - k) // s + 1)  # fmt: skip
        with _own_rng(x.device):
            return torch.randn(shape, device=x.device, dtype=x.dtype)

    def _runner(self, delegate: GConv2d, x: torch.Tensor, grad_out: torch.Tensor | None):
        if grad_out is None:  # the inference pass

            def infer():
                with torch.no_grad():
                    delegate._forward(x)

            return infer
        # train: forward + backward to the parameters (and the input), without
        # touching anyone's .grad (autograd.grad returns them instead)
        x = x.detach().requires_grad_(x.requires_grad)
        params = [p for p in self._own_parameters() if p.requires_grad]
        inputs = params + ([x] if x.requires_grad else [])
        grad_out = layout.to_memory_format(grad_out, delegate._format)  # as its output is

        def train():
            with torch.enable_grad():
                torch.autograd.grad(delegate._forward(x), inputs, grad_out)

        return train

    def _delegate(self, impl: str, fmt: str) -> GConv2d:
        key = (impl, fmt, str(self.device))
        delegate = self._delegates.get(key)
        if delegate is None:
            cfg = self.config() | {"impl": impl, "memory_format": fmt}
            with _own_rng(self.device):  # its throw-away init draws no numbers
                delegate = GConv2d(**cfg, device=self.device, dtype=self.dtype)
            # the same parameter dict: whatever sets this layer's parameters sets its too
            delegate.__dict__["_parameters"] = self._parameters
            names = self.__dict__.get("_replica_params")
            if names is not None:  # a DataParallel replica's: its tensors, as replicate() set them
                delegate.__dict__["_replica_params"] = names
                delegate.__dict__.update({n: self.__dict__[n] for n in names if n in self.__dict__})
            delegate.train(self.training)
            self._delegates[key] = delegate
        return delegate

    # ------------------------------------------------------------------ #
    # what was chosen
    # ------------------------------------------------------------------ #
    def choice(self, x: torch.Tensor) -> autotune.Choice:
        """The :class:`~sepgconv.autotune.Choice` for input ``x`` in the current pass
        (made now — timed or from the cache — if not made yet)."""
        self._check_input(x)
        self._delegate_for(x)
        return self._choices[self._local_key(x)]

    def chosen_impl(self, x: torch.Tensor) -> str:
        """The implementation a call on ``x`` runs (see :meth:`choice`)."""
        return self.choice(x).impl

    def executed_impl(self, h: int, w: int, batch: int = 1) -> type:
        """The class an inference call (eval mode, no_grad: what fvcore counts, see
        :func:`sepgconv.counting.measure_macs`) on a ``batch×…×h×w`` input runs
        (chosen if needed; the key tells train and eval mode apart)."""
        shape = (batch, self.in_channels) + (() if self.lifting else (self.g_in,)) + (h, w)
        with _own_rng(self.device):
            x = torch.randn(shape, device=self.device, dtype=self.dtype)
        if self.memory_format != "auto":
            x = layout.to_memory_format(x, self.memory_format)
        was = self.training
        try:
            if was:
                self.train(False)
            with torch.no_grad():
                return type(self._delegate_for(x))
        finally:
            if was:
                self.train(True)

    # ------------------------------------------------------------------ #
    # module plumbing
    # ------------------------------------------------------------------ #
    def _build_weights(self):  # never called: the delegates build their own
        raise RuntimeError("impl='auto' delegates; it builds no weights itself")

    def train(self, mode: bool = True):
        super().train(mode)
        for delegate in getattr(self, "_delegates", {}).values():
            delegate.train(mode)
        return self

    def clear_cache(self) -> None:
        super().clear_cache()
        for delegate in self._delegates.values():
            delegate.clear_cache()

    def _apply(self, fn, *args, **kwargs):
        # moved or cast (.to, .double, .cuda): the remembered signatures were checked
        # against the old dtype/device, and delegates are per device
        for memo in ("_fast", "_chosen"):
            if memo in self.__dict__:
                self.__dict__[memo].clear()
        return super()._apply(fn, *args, **kwargs)

    def _replicate_for_data_parallel(self):
        # a replica's delegates use its own parameter copies (on its device): none shared
        replica = super()._replicate_for_data_parallel()
        replica._delegates, replica._chosen, replica._choices = {}, {}, {}
        if "_fast" in replica.__dict__:
            replica.__dict__["_fast"] = {}
        return replica

    def __getstate__(self):
        # delegates and choices are rebuilt on demand (copies and pickles stay small and fresh)
        state = super().__getstate__()
        return state | {"_delegates": {}, "_chosen": {}, "_choices": {}, "_fast": {}}

    @staticmethod
    def macs(shape):
        raise TypeError(
            "impl='auto' executes the implementation it chooses per input: count with "
            "sepgconv.counting.layer_macs(layer, h, w, batch) (asks layer.executed_impl)"
        )

    @staticmethod
    def intermediate_elements(shape):
        raise TypeError("impl='auto': use sepgconv.counting.intermediate_bytes(layer, h, w, batch)")


def _own_rng(device: torch.device):
    """Leave the caller's random state as it was (choosing must not shift a seeded run)."""
    return torch.random.fork_rng(devices=[device] if device.type == "cuda" else [])


@contextlib.contextmanager
def _tracer_paused():
    # torch.jit.trace records every op: the choice (shape ints, timing) must stay out of it
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def _choose_outside_graph(layer: _Auto, x: torch.Tensor) -> GConv2d:
    """Time or look up the choice eagerly: a graph break under torch.compile.

    ``torch.compiler.disable`` is applied on first use, not at import: it loads
    torch._dynamo, which imports Triton when installed (``import sepgconv``
    stays light)."""
    global _eager_choose
    if _eager_choose is None:
        _eager_choose = torch.compiler.disable(lambda lay, inp: lay._choose(inp))
    return _eager_choose(layer, x)


_eager_choose = None


@register
class FullGConv2dAuto(_Auto, _FullParams, GConv2d):
    """Full GConv, computed by whichever ``full`` implementation is fastest per key."""

    variant = "full"


@register
class GGConv2dAuto(_Auto, _GParams, GConv2d):
    """g-GConv, computed by whichever ``g`` implementation is fastest per key."""

    variant = "g"


@register
class GCGConv2dAuto(_Auto, _GCParams, GConv2d):
    """gc-GConv, computed by whichever ``gc`` implementation is fastest per key."""

    variant = "gc"
