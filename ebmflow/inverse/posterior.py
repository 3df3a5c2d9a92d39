"""The posterior of an inverse problem as an energy: E(x | y, σ) = E_prior(x, σ) + E_lik(x | y, σ).

For a clean prior (``noise_conditional=False``) the likelihood is evaluated at σ = 0, its
exact form, and exp(−E) ∝ p(x) p(y | x) is the exact posterior. For a noise-conditional
prior (a network trained by multiscale DSM, a converted diffusion model) both parts take the
same σ: the prior's σ-smoothed energy plus the likelihood annealed to v(σ) (see
:mod:`ebmflow.inverse.measurement`), so annealed samplers walk down a family of posteriors
that ends, at σ → 0, in the exact one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from torch import Tensor, nn

from ebmflow.energy import Energy, Sigma
from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.registry import current_host


class Posterior(Energy):
    """E(x, σ) = E_prior(x, σ) + E_lik(x, σ); s = s_prior + s_lik (each part's own closed
    form or autograd pass). Score-only priors give a score-only posterior.

    Attributes:
        prior, likelihood: the two parts (``prior`` and ``likelihood`` also name them in a
            checkpoint's config).
    """

    def __init__(self, prior: Energy, likelihood: Energy) -> None:
        super().__init__()
        for what, part in (("prior", prior), ("likelihood", likelihood)):
            if not isinstance(part, Energy):
                raise ComponentArgumentError(
                    f"posterior: the {what} must be an ebmflow.Energy, got {type(part).__name__}"
                )
        shapes = (prior.event_shape, likelihood.event_shape)
        if None not in shapes and tuple(shapes[0] or ()) != tuple(shapes[1] or ()):
            raise ConfigError(
                f"posterior: the likelihood {type(likelihood).__name__} measures x of shape "
                f"{tuple(likelihood.event_shape or ())}, but the prior {type(prior).__name__} "
                f"has event shape {tuple(prior.event_shape or ())}"
            )
        self.parts = nn.ModuleList([prior, likelihood])
        self.event_shape = prior.event_shape or likelihood.event_shape
        self.noise_conditional = prior.noise_conditional
        self.has_energy = prior.has_energy and likelihood.has_energy

    @property
    def prior(self) -> Energy:
        return cast(Energy, self.parts[0])

    @property
    def likelihood(self) -> Energy:
        return cast(Energy, self.parts[1])

    def _likelihood_sigma(self, sigma: Sigma) -> Sigma:
        return sigma if self.noise_conditional else None

    def forward(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        if not self.has_energy:
            super().forward(x, sigma)
        return self.prior(x, sigma) + self.likelihood(x, self._likelihood_sigma(sigma))

    def energy_and_score(
        self, x: Tensor, sigma: Sigma = None, *, create_graph: bool = False
    ) -> tuple[Tensor | None, Tensor]:
        e_p, s_p = self.prior.energy_and_score(x, sigma, create_graph=create_graph)
        e_l, s_l = self.likelihood.energy_and_score(
            x, self._likelihood_sigma(sigma), create_graph=create_graph
        )
        energy = None if e_p is None or e_l is None else e_p + e_l
        return energy, s_p + s_l

    def score(self, x: Tensor, sigma: Sigma = None) -> Tensor:
        return self.energy_and_score(x, sigma)[1]


def posterior(prior: Energy, likelihood: Energy | Mapping[str, Any]) -> Posterior:
    """The posterior energy of ``prior`` observed through ``likelihood``.

    ``likelihood`` is an energy (``ebmflow.create("energy", "gaussian-measurement", ...)``)
    or its config dict, built with the prior's event shape unless the dict gives one::

        post = ebmflow.posterior(prior, {"name": "gaussian-measurement", "observation": y,
                                         "noise_std": 0.1, "operator": "identity"})
    """
    if isinstance(likelihood, Mapping):
        config = dict(likelihood)
        if "event_shape" not in config and getattr(prior, "event_shape", None) is not None:
            config["event_shape"] = list(prior.event_shape)  # type: ignore[arg-type]
        likelihood = current_host().create("energy", config)
    return Posterior(prior, cast(Energy, likelihood))
