"""The Energy interface: a scalar network E(x, σ) defining p(x) ∝ exp(−E(x, σ)).

σ is a noise level in variance-exploding coordinates (a noisy sample is x + σ·z);
``sigma=None`` is the clean, data-level energy. The score is s(x, σ) = −∇ₓE(x, σ).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ebmflow.config import Configurable
from ebmflow.errors import ConfigError, EnergyUnavailableError

if TYPE_CHECKING:
    from ebmflow.compose import Scaled, Sum

Sigma = float | Tensor | None

#: accepted values of ``Energy.event_space`` and of ``Sampler.event_spaces``' entries.
EVENT_SPACES = ("continuous", "binary", "categorical")


def broadcast_sigma(sigma: Sigma, x: Tensor) -> Tensor | None:
    """σ as a ``(B,)`` tensor on ``x``'s device and dtype (``None`` stays ``None``).

    Accepts a Python number, a 0-d tensor or a ``(B,)`` tensor.
    """
    if sigma is None:
        return None
    sigma = torch.as_tensor(sigma, device=x.device, dtype=x.dtype)
    if sigma.ndim == 0:
        return sigma.expand(x.shape[0])
    if sigma.shape != (x.shape[0],):
        raise ConfigError(
            f"sigma has shape {tuple(sigma.shape)}; expected a scalar or ({x.shape[0]},) "
            f"for a batch of {x.shape[0]}"
        )
    return sigma


class Energy(nn.Module, Configurable):
    """Base class of every energy: ``forward(x, sigma=None) -> (B,)``.

    Subclasses implement :meth:`forward`; :meth:`score` and :meth:`energy_and_score` come
    from autograd, or are overridden where a closed form exists. A score-only model (a
    diffusion ε-network, say) sets ``has_energy = False`` and implements :meth:`score`.

    Attributes:
        event_shape: shape of one sample, or ``None`` when any shape is accepted. Checked
            when energies are composed and when a sampler starts.
        noise_conditional: whether the energy depends on σ. Composition requires all parts
            to agree.
        has_energy: ``False`` for score-only models.
        event_space: what values an event takes, one of :data:`EVENT_SPACES`:
            ``"continuous"`` (real vectors, the default), ``"binary"`` (every number 0 or
            1) or ``"categorical"`` (one-hot vectors along the last axis of the event).
            Samplers declare the spaces they propose in (``Sampler.event_spaces``) and
            refuse other energies when a run starts; composition requires all parts to
            agree.
    """

    has_energy: bool = True
    noise_conditional: bool = False
    event_shape: tuple[int, ...] | None = None
    event_space: str = "continuous"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """``forward``, with its output checked to be one value per sample, ``(B,)``.

        A ``RuntimeError`` raised because ``x`` and the energy's parameters or buffers have
        different devices or dtypes becomes a :class:`~ebmflow.ConfigError` naming both
        (no cast is made: ``x.to(...)`` or ``energy.to(...)`` is the caller's choice).
        """
        x = args[0] if args else kwargs.get("x")
        try:
            out = super().__call__(*args, **kwargs)
        except RuntimeError as exc:
            mismatch = _placement_mismatch(self, x)
            if mismatch is None:
                raise
            raise ConfigError(mismatch) from exc
        if (
            isinstance(out, Tensor)
            and isinstance(x, Tensor)
            and x.ndim >= 1
            and out.shape != x.shape[:1]
        ):
            raise ConfigError(
                f"{type(self).__name__}.forward returned shape {tuple(out.shape)}; an "
                f"energy must return one value per sample, shape ({x.shape[0]},)"
            )
        return out

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        raise EnergyUnavailableError(
            f"{type(self).__name__} is score-only (has_energy = False) and has no energy value. "
            "To get one, use an energy parameterisation (E = ½‖f(x,σ)‖² or E = ‖x − f(x,σ)‖², "
            "trained with multiscale-dsm) or estimate energy differences by integrating the "
            "score along a path (ebmflow-diffusers' line-integral correction)."
        )

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        """Energy ``(B,)`` and score ``−∇ₓE`` (like ``x``) from one forward and one backward.

        With ``create_graph=False`` (sampling) both are detached from the graph and
        parameter gradients are neither computed nor accumulated. With ``create_graph=True``
        (training by score matching) both stay differentiable in the parameters.
        Score-only models return ``(None, score)``.
        """
        if not self.has_energy:
            score = self.score(x, sigma)
            return None, score if create_graph else score.detach()
        with torch.enable_grad():
            inp = x if create_graph and x.requires_grad else x.detach().requires_grad_(True)
            energy = self(inp, sigma)  # __call__ checks the shape, (B,)
            # seeding the backward pass with −1 per sample yields the score −∇ₓE itself:
            # no sum, no negation and no seed of ones to build
            (score,) = torch.autograd.grad(
                energy, inp, score_seed(energy), create_graph=create_graph
            )
        if create_graph:
            return energy, score
        return energy.detach(), score

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        """The score ``−∇ₓE(x, σ)``, detached (for a differentiable one use
        ``energy_and_score(..., create_graph=True)``)."""
        return self.energy_and_score(x, sigma)[1]

    # -- composition: new Energies, see ebmflow.compose --------------------------------

    def __add__(self, other: Energy) -> Sum:
        from ebmflow.compose import Sum

        return Sum([self, other])

    def __radd__(self, other: int) -> Energy:
        if isinstance(other, int) and other == 0:  # so that sum([e1, e2, ...]) works
            return self
        return NotImplemented

    def __sub__(self, other: Energy) -> Sum:
        from ebmflow.compose import Scaled, Sum

        return Sum([self, Scaled(other, -1.0)])

    def __mul__(self, c: float) -> Scaled:
        from ebmflow.compose import Scaled

        return Scaled(self, c)

    __rmul__ = __mul__

    def __truediv__(self, temperature: float) -> Scaled:
        from ebmflow.compose import Scaled

        if not isinstance(temperature, (int, float)) or temperature <= 0:
            raise ConfigError(f"temperature must be a positive number, got {temperature!r}")
        return Scaled(self, 1.0 / temperature)

    def __neg__(self) -> Scaled:
        from ebmflow.compose import Scaled

        return Scaled(self, -1.0)


def _placement_mismatch(energy: Energy, x: Any) -> str | None:
    """A message if ``x`` and the first parameter or buffer of ``energy`` that disagrees
    with it differ in device or floating dtype, else ``None``."""
    if not isinstance(x, Tensor):
        return None
    for tensor in itertools.chain(energy.parameters(), energy.buffers()):
        if tensor.device != x.device or (
            tensor.is_floating_point() and x.is_floating_point() and tensor.dtype != x.dtype
        ):
            return (
                f"{type(energy).__name__}: x is {x.dtype} on {x.device} but the energy's "
                f"weights are {tensor.dtype} on {tensor.device}; move one to the other with "
                f".to() (x.to(...) or energy.to(...)); ebmflow does not cast silently"
            )
    return None


class ScoreModel(Energy):
    """Base class of score-only models: implement ``score(x, sigma)``; ``has_energy = False``."""

    has_energy = False

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must implement score(x, sigma)")


def check_event_shapes(energies: Sequence[Energy], what: str) -> tuple[int, ...] | None:
    """The common ``event_shape`` of ``energies`` (``None`` if none declares one); raise if
    two disagree or if they disagree on noise conditioning."""
    shapes = {tuple(e.event_shape) for e in energies if e.event_shape is not None}
    if len(shapes) > 1:
        listed = ", ".join(f"{type(e).__name__}{e.event_shape}" for e in energies)
        raise ConfigError(f"cannot build {what} of energies with different event shapes: {listed}")
    conditional = {e.noise_conditional for e in energies}
    if len(conditional) > 1:
        listed = ", ".join(
            f"{type(e).__name__} (noise_conditional={e.noise_conditional})" for e in energies
        )
        raise ConfigError(
            f"cannot build {what} of noise-conditional and clean energies: {listed}; "
            "all parts must take the same noise level"
        )
    spaces = {e.event_space for e in energies}
    if len(spaces) > 1:
        listed = ", ".join(f"{type(e).__name__} ({e.event_space!r})" for e in energies)
        raise ConfigError(
            f"cannot build {what} of energies over different event spaces: {listed}; "
            "all parts must be continuous, or all binary, or all categorical"
        )
    return shapes.pop() if shapes else None


_MINUS_ONES: dict[tuple, Tensor] = {}


def score_seed(like: Tensor) -> Tensor:
    """The backward seed whose gradient of the energies ``like`` (B,) is the score: a tensor
    of −1, ``torch.autograd.grad(energy, x, score_seed(energy))`` = −∇ₓΣE. Kept per shape,
    dtype and device (a few hundred bytes each) and never written to."""
    key = (like.shape, like.dtype, like.device)
    seed = _MINUS_ONES.get(key)
    if seed is None:
        if len(_MINUS_ONES) >= 64:  # many batch sizes: start over rather than grow
            _MINUS_ONES.clear()
        seed = _MINUS_ONES[key] = torch.full(like.shape, -1.0, dtype=like.dtype, device=like.device)
    return seed
