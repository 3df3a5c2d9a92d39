"""Whole-step compilation: a sampler's entire transition as one ``torch.compile`` graph.

``compile=`` on :meth:`Sampler.run <ebmflow.Sampler.run>` compiles the energy and its score;
the sampler's update, noise and Metropolis test stay eager, so on a GPU, where a step of a
small energy is bound by kernel launches, the step still costs a dozen small launches.
:func:`compile_step` compiles everything a step computes — the move, the energy and score at
the new point, the Metropolis test and the selection of the accepted rows — as one graph,
which ``mode="reduce-overhead"`` replays as one CUDA graph.

**The noise is drawn outside the graph and passed in.** Each step draws its standard normal
(and, for MALA, its uniforms) from the caller's ``torch.Generator`` with the same calls, in
the same order, as the eager sampler, then calls the graph. So a compiled run consumes the
generator exactly as an eager run does, and the pure step functions
(:func:`langevin_move`, :func:`mala_move`) run eagerly reproduce ``Sampler.step``
bit-for-bit; compiled, they agree with it up to float rounding. Random ops traced into the
graph would instead draw from torch's own Philox streams, which a ``torch.Generator`` does
not drive: the same seed would give other samples than the eager sampler, and the
generator-per-call contract of every ebmflow sampler would not hold. The price is one or
two random-number kernels per step outside the CUDA graph.

The divergence checks (a non-finite energy or Metropolis ratio raises
:class:`~ebmflow.SamplerDivergedError`) run after the graph, as in the eager samplers.
Supported: ``langevin`` (with ``clip`` and ``noise_scale``) and ``mala``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ebmflow.energy import Energy, Sigma
from ebmflow.errors import ComponentArgumentError
from ebmflow.samplers.base import (
    COMPILE_MODES,
    Sampler,
    SamplerState,
    check_cuda_graphs,
    check_finite,
    gaussian_like,
    per_row,
    resolve_compile_mode,
    trace_autograd,
)
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA
from ebmflow.samplers.metropolis import checked_log_alpha, energy_value, row_dot, select


def langevin_move(
    energy: Energy,
    x: Tensor,
    score: Tensor,
    noise: Tensor,
    sigma: Tensor | None,
    step_size: float,
    noise_scale: float,
    clip: tuple[float, float] | None = None,
) -> tuple[Tensor, Tensor | None, Tensor]:
    """One ULA transition given its noise: x' = x + η s + noise_scale · noise (clamped into
    ``clip``), and the energy and score at x'. Returns ``(x', E(x'), s(x'))``."""
    x_new = torch.add(x, score, alpha=step_size).add_(noise, alpha=noise_scale)
    if clip is not None:
        x_new = x_new.clamp_(*clip)
    e, s = energy.energy_and_score(x_new, sigma)
    return x_new, e, s


def mala_move(
    energy: Energy,
    x: Tensor,
    e: Tensor,
    s: Tensor,
    xi: Tensor,
    u: Tensor,
    sigma: Tensor | None,
    step_size: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """One MALA transition given its normal draw ``xi`` (like x) and uniforms ``u`` (B,).

    Returns ``(x', E(x'), s(x'), acceptance probability, log α, proposed energies)``; the
    last two are for the divergence check, which needs Python control flow and runs after.
    A proposal of energy +∞ (zero density) is rejected, as the eager test does."""
    eta = step_size
    x_prop = torch.add(x, s, alpha=eta).add_(xi, alpha=math.sqrt(2.0 * eta))
    e_prop_or_none, s_prop = energy.energy_and_score(x_prop, sigma)
    e_prop = energy_value("mala", e_prop_or_none)
    a = math.sqrt(eta / 2.0)
    v = s + s_prop
    log_ratio = row_dot(v, torch.add(xi, v, alpha=a / 2))
    log_alpha = torch.sub(e, e_prop).add_(log_ratio, alpha=-a)
    usable = torch.where(e_prop == math.inf, -math.inf, log_alpha)
    prob = usable.clamp(max=0.0).exp_()
    accept = u < prob
    mask = per_row(accept, x.shape[1:])
    return (
        select(mask, x_prop, x),
        torch.where(accept, e_prop, e),
        select(mask, s_prop, s),
        prob,
        log_alpha,
        e_prop,
    )


_MOVES: dict[type, Callable[..., Any]] = {Langevin: langevin_move, MALA: mala_move}
_COMPILED: dict[tuple[str, str], Callable[..., Any]] = {}


def _compiled(kind: type, mode: str) -> Callable[..., Any]:
    key = (kind.__name__, mode)
    fn = _COMPILED.get(key)
    if fn is None:
        fn = _COMPILED[key] = torch.compile(_MOVES[kind], mode=mode)
    return fn


class CompiledStep(Sampler):
    """``sampler`` whose every :meth:`step` runs as one compiled graph (see the module
    docstring). Made by :func:`compile_step`; ``init``, the warm-up and the diagnostics are
    the wrapped sampler's. ``mode=None`` runs the same step functions eagerly (the reference
    the compiled graph is checked against)."""

    def __init__(self, sampler: Langevin | MALA, mode: str | None = "default") -> None:
        self.sampler = sampler
        self.mode = mode
        self.needs_energy = sampler.needs_energy
        self._kind = type(sampler)
        self._cuda_graphs = mode is not None and COMPILE_MODES[mode]
        self._move = _MOVES[self._kind] if mode is None else None

    @property
    def name(self) -> str:
        return self.sampler.name

    def _function(self) -> Callable[..., Any]:
        if self._move is None:
            self._move = _compiled(self._kind, self.mode or "default")
        return self._move

    def init(self, energy: Energy, x: Tensor, sigma: Sigma = None) -> SamplerState:
        if self.mode is not None:
            check_cuda_graphs(self.name, self.mode, x.device)
        return self.sampler.init(energy, x, sigma)

    def adapt(self, state: SamplerState) -> SamplerState:
        return self.sampler.adapt(state)

    def diagnostics(self, state: SamplerState) -> dict[str, Any]:
        return self.sampler.diagnostics(state)

    def _call(self, *args: Any) -> tuple[Any, ...]:
        if self.mode is None:
            return self._function()(*args)
        if self._cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()
        with trace_autograd():
            out = self._function()(*args)
        if self._cuda_graphs:  # the next replay overwrites the graph's outputs
            out = tuple(None if t is None else t.clone() for t in out)
        return out

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        sampler = self.sampler
        if isinstance(sampler, MALA):
            e = energy_value(self.name, state.energy)
            xi = gaussian_like(state.x, generator)
            u = torch.rand(e.shape, generator=generator, device=e.device, dtype=e.dtype)
            x, e_new, s, prob, log_alpha, e_prop = self._call(
                energy, state.x, e, state.score, xi, u, state.sigma, sampler.step_size
            )
            checked_log_alpha(self.name, state.step, log_alpha, e_prop)
            return SamplerState(x, e_new, s, state.sigma, state.step + 1, prob)
        noise = gaussian_like(state.x, generator)
        x, e_new, s = self._call(
            energy,
            state.x,
            state.score,
            noise,
            state.sigma,
            sampler.step_size,
            sampler.noise_scale,
            sampler.clip,
        )
        check_finite(self.name, state.step, e_new, x)
        return SamplerState(x, e_new, s, state.sigma, state.step + 1)


def compile_step(sampler: Sampler, mode: bool | str | None = True) -> CompiledStep:
    """``sampler`` with each whole step compiled as one graph: a :class:`CompiledStep`,
    itself a sampler (``run``, ``step``, ``init`` as usual).

    ``sampler``: a ``langevin`` or ``mala`` instance. ``mode``: ``True`` (= ``"default"``)
    or a torch.compile mode; ``"reduce-overhead"`` replays the step as a CUDA graph (CUDA
    tensors, fixed shapes); ``None`` or ``False`` runs the same step functions eagerly. The
    noise comes from the generator given to ``step``/``run``, drawn outside the graph exactly
    as the eager sampler draws it.
    """
    if type(sampler) not in _MOVES:
        raise ComponentArgumentError(
            f"compile_step: supported samplers are langevin and mala (ebmflow.Langevin, "
            f"ebmflow.MALA); got {type(sampler).__name__}"
        )
    resolved = None if mode is None else resolve_compile_mode("compile_step", mode)
    return CompiledStep(sampler, resolved)  # type: ignore[arg-type]
