"""The Bernoulli restricted Boltzmann machine, as an energy over its visible units.

A joint energy over visible v ∈ {0, 1}^V and hidden h ∈ {0, 1}^H,

    E(v, h) = −bᵀv − cᵀh − vᵀWh,

summed over h gives the free energy the model exposes (``event_space = "binary"``):

    F(v) = −bᵀv − Σ_j softplus(c_j + (vᵀW)_j),      p(v) ∝ exp(−F(v)).

Both conditionals factorise: p(h_j = 1 | v) = σ(c_j + (vᵀW)_j) and
p(v_i = 1 | h) = σ(b_i + (Wh)_i), which :meth:`BernoulliRBM.block_gibbs` uses (the
``block-gibbs`` sampler runs it); any other discrete sampler works on F.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

import ebmflow
from ebmflow_discrete.spaces import check_states


class BernoulliRBM(ebmflow.Energy):
    """Bernoulli–Bernoulli RBM; ``forward`` is the free energy F(v) (module docstring).

    Args:
        n_visible: V, the event is (V,).
        n_hidden: H.
        weight_std: standard deviation of the initial weights W ~ N(0, weight_std²)
            (drawn from a generator seeded with ``seed``; biases start at zero).
        seed: seeds the initial weights.
        weight: instead, the (V, H) weights; ``visible_bias`` (V,) and ``hidden_bias``
            (H,) likewise (zero when not given).
    """

    event_space = "binary"

    def __init__(
        self,
        n_visible: int = 12,
        n_hidden: int = 8,
        weight_std: float = 0.1,
        seed: int = 0,
        weight: Sequence[Sequence[float]] | Tensor | None = None,
        visible_bias: Sequence[float] | Tensor | None = None,
        hidden_bias: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        owner = "rbm"
        if weight is None:
            v = ebmflow.check_positive_int(owner, "n_visible", n_visible)
            h = ebmflow.check_positive_int(owner, "n_hidden", n_hidden)
            std = ebmflow.check_positive(owner, "weight_std", weight_std, allow_zero=True)
            gen = torch.Generator().manual_seed(int(seed))
            w = torch.randn(v, h, generator=gen) * std
        else:
            w = torch.as_tensor(weight, dtype=torch.float32).clone()
            if w.ndim != 2:
                raise ebmflow.ConfigError(
                    f"{owner}: weight must be a (n_visible, n_hidden) matrix, got shape "
                    f"{tuple(w.shape)}"
                )
            v, h = w.shape
        b = torch.zeros(v) if visible_bias is None else torch.as_tensor(visible_bias).float()
        c = torch.zeros(h) if hidden_bias is None else torch.as_tensor(hidden_bias).float()
        if b.shape != (v,) or c.shape != (h,):
            raise ebmflow.ConfigError(
                f"{owner}: visible_bias must have shape ({v},) and hidden_bias ({h},), got "
                f"{tuple(b.shape)} and {tuple(c.shape)}"
            )
        self.weight = nn.Parameter(w)
        self.visible_bias = nn.Parameter(b.clone())
        self.hidden_bias = nn.Parameter(c.clone())
        self.event_shape = (v,)

    def forward(self, x: Tensor, sigma: ebmflow.Sigma = None) -> Tensor:
        check_states("rbm", "binary", x)
        return -(x @ self.visible_bias) - F.softplus(x @ self.weight + self.hidden_bias).sum(1)

    def hidden_probs(self, v: Tensor) -> Tensor:
        """p(h = 1 | v), (B, H)."""
        return torch.sigmoid(v @ self.weight + self.hidden_bias)

    def visible_probs(self, h: Tensor) -> Tensor:
        """p(v = 1 | h), (B, V)."""
        return torch.sigmoid(h @ self.weight.T + self.visible_bias)

    @torch.no_grad()
    def block_gibbs(
        self, v: Tensor, generator: torch.Generator | None = None, cache: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """One block Gibbs sweep h ~ p(h | v), then v′ ~ p(v | h).

        Returns ``(v′, F(v′), cache′)``: the cache is v′W + c, the hidden units' input,
        which F(v′) needs and the next sweep's p(h | v′) reuses; pass it back as ``cache``
        (``None`` computes it from ``v``). One sweep costs the two matrix products of the
        conditionals, as a sweep that does not report energies does.
        """
        pre = v @ self.weight + self.hidden_bias if cache is None else cache
        ph = torch.sigmoid(pre)
        h = torch.rand(ph.shape, generator=generator, device=v.device, dtype=v.dtype) < ph
        pv = self.visible_probs(h.to(v.dtype))
        u = torch.rand(pv.shape, generator=generator, device=v.device, dtype=v.dtype)
        v_new = (u < pv).to(v.dtype)
        pre_new = v_new @ self.weight + self.hidden_bias
        free_energy = -(v_new @ self.visible_bias) - F.softplus(pre_new).sum(1)
        return v_new, free_energy, pre_new
