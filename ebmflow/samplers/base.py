"""The Sampler interface: ``init`` and ``step`` over an explicit state, and ``run``.

In the manner of BlackJAX: the state caches what a step needs again (position, energy,
score), so Metropolis-adjusted samplers spend one energy+gradient evaluation per step;
``step`` reads everything from its arguments and never keeps hidden counters.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ebmflow.config import Configurable
from ebmflow.energy import Energy, Sigma, broadcast_sigma
from ebmflow.errors import SamplerDivergedError
from ebmflow.validation import check_positive_int


@dataclass(frozen=True)
class SamplerState:
    """One batch of chains.

    Attributes:
        x: positions ``(B, *event_shape)``.
        energy: ``E(x, σ)``, shape ``(B,)``; ``None`` for score-only models.
        score: ``−∇ₓE(x, σ)``, like ``x``.
        sigma: the noise level the chains target (``None`` = clean energy).
        step: how many steps produced this state.
        accept_prob: Metropolis acceptance probability of the last step, ``(B,)`` (MH
            samplers only).
        extras: sampler-specific tensors (HMC's adapted step size, PT's ladder, ...).
    """

    x: Tensor
    energy: Tensor | None
    score: Tensor
    sigma: Tensor | None = None
    step: int = 0
    accept_prob: Tensor | None = None
    extras: dict[str, Tensor] = field(default_factory=dict)

    def replace(self, **changes: Any) -> SamplerState:
        return dataclasses.replace(self, **changes)


@dataclass
class SampleResult:
    """What :meth:`Sampler.run` returns.

    Attributes:
        samples: final positions ``(B, *event_shape)``.
        state: the final :class:`SamplerState` (pass it to ``step`` to continue).
        diagnostics: ``energy_trace`` (mean energy after each step, ``(n_steps,)``),
            ``acceptance_rate`` (mean over steps and chains, MH samplers),
            ``acceptance_per_chain`` ``(B,)``, and whatever the sampler adds.
        trajectory: every ``thin``-th position ``(n_steps // thin, B, *event_shape)`` when
            ``run(thin=...)`` asked for it, else ``None`` (memory does not grow with steps).
    """

    samples: Tensor
    state: SamplerState
    diagnostics: dict[str, Any]
    trajectory: Tensor | None = None


def check_finite(owner: str, step: int, energy: Tensor | None, x: Tensor) -> None:
    """Raise :class:`SamplerDivergedError` if any chain's energy (or, for score-only models,
    position) is not finite. The common case costs one reduction."""
    values = energy if energy is not None else x
    if math.isfinite(float(values.sum())):
        return
    finite = torch.isfinite(values)
    if finite.ndim > 1:
        finite = finite.flatten(1).all(dim=1)
    n_bad = int((~finite).sum())
    if n_bad == 0:  # finite values whose sum overflowed
        return
    what = "energy" if energy is not None else "position"
    raise SamplerDivergedError(
        f"{owner} diverged at step {step}: non-finite {what} in {n_bad} of "
        f"{x.shape[0]} chains (try a smaller step size)",
        step=step, n_chains=n_bad,
    )


def gaussian_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, from ``generator`` (never reseeds anything)."""
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class Sampler(Configurable):
    """Base class of MCMC samplers.

    Subclasses implement :meth:`step`; :meth:`init` and :meth:`run` are shared. A sampler
    holds only hyperparameters, so one instance can drive any number of runs.
    """

    #: whether ``step`` needs energy values (MH samplers), not just scores.
    needs_energy: bool = False

    @property
    def name(self) -> str:
        return type(self).__name__

    def init(self, energy: Energy, x: Tensor, sigma: Sigma = None) -> SamplerState:
        """Evaluate energy and score at ``x`` and return the starting state."""
        self._check_compatible(energy, x)
        sigma_t = broadcast_sigma(sigma, x)
        e, s = energy.energy_and_score(x, sigma_t)
        check_finite(self.name, 0, e, x)
        return SamplerState(x=x.detach(), energy=e, score=s, sigma=sigma_t)

    def step(
        self, energy: Energy, state: SamplerState, generator: torch.Generator | None = None
    ) -> SamplerState:
        """One transition; returns the new state."""
        raise NotImplementedError

    def _check_compatible(self, energy: Energy, x: Tensor) -> None:
        if not isinstance(energy, Energy):
            raise TypeError(f"{self.name}: expected an ebmflow.Energy, got {type(energy).__name__}")
        if not isinstance(x, Tensor) or x.ndim < 1:
            raise ValueError(f"{self.name}: x must be a tensor of shape (B, *event_shape)")
        if not torch.is_floating_point(x):
            raise TypeError(f"{self.name}: x must be a floating-point tensor, got {x.dtype}")
        if energy.event_shape is not None and tuple(x.shape[1:]) != tuple(energy.event_shape):
            raise ValueError(
                f"{self.name}: x has event shape {tuple(x.shape[1:])} but "
                f"{type(energy).__name__} expects {tuple(energy.event_shape)} (x is (B, *event))"
            )
        if self.needs_energy and not energy.has_energy:
            raise ValueError(
                f"{self.name} needs energy values for its Metropolis test, but "
                f"{type(energy).__name__} is score-only; use 'langevin' or "
                "'annealed-langevin', or give the model an energy"
            )
        param = next(energy.parameters(), None)
        if param is None:
            param = next(energy.buffers(), None)
        if param is not None and (param.device != x.device or (
            param.is_floating_point() and param.dtype != x.dtype
        )):
            raise ValueError(
                f"{self.name}: x is {x.dtype} on {x.device} but {type(energy).__name__} is "
                f"{param.dtype} on {param.device}; move one with .to()"
            )

    def run(
        self,
        energy: Energy,
        x0: Tensor,
        n_steps: int,
        *,
        sigma: Sigma = None,
        generator: torch.Generator | None = None,
        thin: int | None = None,
        progress: bool = False,
        callback: Callable[[SamplerState], Any] | None = None,
    ) -> SampleResult:
        """Run ``n_steps`` transitions from ``x0``.

        Args:
            sigma: noise level for noise-conditional energies.
            generator: the only source of randomness; the same generator state gives the
                same samples.
            thin: keep every ``thin``-th position in ``SampleResult.trajectory``; by default
                no trajectory is kept.
            progress: show a tqdm progress bar with the energy and acceptance.
            callback: called with the state after every step.
        """
        n_steps = check_positive_int(self.name, "n_steps", n_steps, minimum=0)
        if thin is not None:
            thin = check_positive_int(self.name, "thin", thin)
        state = self.init(energy, x0, sigma)
        return self.continue_run(
            energy, state, n_steps, generator=generator, thin=thin, progress=progress,
            callback=callback,
        )

    def continue_run(
        self,
        energy: Energy,
        state: SamplerState,
        n_steps: int,
        *,
        generator: torch.Generator | None = None,
        thin: int | None = None,
        progress: bool = False,
        callback: Callable[[SamplerState], Any] | None = None,
    ) -> SampleResult:
        """Like :meth:`run`, starting from an existing state."""
        x = state.x
        trace = torch.empty(n_steps, device=x.device, dtype=torch.float32)
        accept_sum = torch.zeros(x.shape[0], device=x.device, dtype=torch.float32)
        kept: list[Tensor] = []
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_steps, desc=self.name, leave=False)
        for i in range(n_steps):
            state = self.step(energy, state, generator)
            if state.energy is not None:
                trace[i] = state.energy.mean()
            else:
                trace[i] = float("nan")
            if state.accept_prob is not None:
                accept_sum += state.accept_prob
            if thin is not None and (i + 1) % thin == 0:
                kept.append(state.x)
            if callback is not None:
                callback(state)
            if bar is not None:
                bar.update(1)
                if (i + 1) % max(1, n_steps // 50) == 0:
                    postfix = {"E": f"{trace[i].item():.3g}"}
                    if state.accept_prob is not None:
                        postfix["acc"] = f"{(accept_sum.mean() / (i + 1)).item():.2f}"
                    bar.set_postfix(postfix)
        if bar is not None:
            bar.close()
        diagnostics: dict[str, Any] = {"energy_trace": trace, "n_steps": n_steps}
        if n_steps and state.accept_prob is not None:
            per_chain = accept_sum / n_steps
            diagnostics["acceptance_per_chain"] = per_chain
            diagnostics["acceptance_rate"] = float(per_chain.mean())
        diagnostics.update(self.diagnostics(state))
        trajectory = torch.stack(kept) if kept else None
        return SampleResult(state.x, state, diagnostics, trajectory)

    def diagnostics(self, state: SamplerState) -> dict[str, Any]:
        """Extra sampler-specific diagnostics at the end of a run (e.g. the step size)."""
        return {}
