"""Gibbs sampling over binary and one-hot categorical states, batched over chains.

A site update resamples one site from its conditional given all the others:

- binary: with E′ the energy of the state with that bit flipped,
  p(flip) = exp(−E′) / (exp(−E) + exp(−E′)) = σ(E − E′): one energy evaluation per
  update (E of the current state is cached);
- categorical: the energies of the q states that differ only at that site (one batched
  call, q evaluations), and a draw of softmax(−E_c) by the Gumbel-max trick.

One :meth:`Gibbs.step` is a sweep of D site updates (D = sites of the event): in order
(``scan="systematic"``) or at D sites drawn uniformly and independently for every chain
(``scan="random"``). Works for any discrete energy: it needs energy values only, no
gradient, and keeps ``state.score = None``.
"""

from __future__ import annotations

import torch

import ebmflow
from ebmflow_discrete.discrete_sampler import DiscreteSampler
from ebmflow_discrete.spaces import flat_sites, gumbel_like

#: accepted values of ``scan``.
SCANS = ("random", "systematic")


class Gibbs(DiscreteSampler):
    """Single-site Gibbs sampler (module docstring).

    Args:
        scan: ``"random"`` (each chain updates D uniformly drawn sites per step) or
            ``"systematic"`` (every site once per step, in order).
    """

    component = "gibbs"
    uses_score = False

    def __init__(self, scan: str = "random") -> None:
        if scan not in SCANS:
            raise ebmflow.ConfigError(
                f"gibbs: unknown scan {scan!r}; accepted: {', '.join(map(repr, SCANS))}"
            )
        self.scan = scan

    @torch.no_grad()
    def step(
        self,
        energy: ebmflow.Energy,
        state: ebmflow.SamplerState,
        generator: torch.Generator | None = None,
    ) -> ebmflow.SamplerState:
        x = state.x
        e = state.energy
        if e is None:
            raise ebmflow.ConfigError(f"{self.name}: the state has no energy values")
        space = energy.event_space
        # contiguous whatever x's strides, so that a site's flat position is row·D + site
        flat = flat_sites(space, x).clone(memory_format=torch.contiguous_format)
        n_chains, n_sites = flat.shape[0], flat.shape[1]
        rows = torch.arange(n_chains, device=x.device)
        if self.scan == "random":
            sites = torch.randint(
                0, n_sites, (n_sites, n_chains), generator=generator, device=x.device
            )
        else:
            sites = torch.arange(n_sites, device=x.device)[:, None].expand(n_sites, n_chains)
        if space == "binary":
            # the sites as positions in the flattened (B·D) states, one index tensor per
            # update instead of a (row, site) pair: gathering and scattering by one index
            # is cheaper than advanced indexing by two, and the update touches only its site
            linear = (sites + rows * n_sites).unbind(0)
            values, device, dtype = flat.view(-1), e.device, e.dtype
            for index in linear:
                current = values.index_select(0, index)
                flipped = 1.0 - current
                proposal = flat.clone()
                proposal.view(-1).scatter_(0, index, flipped)
                e_new = energy(proposal.view_as(x))
                u = torch.rand(n_chains, generator=generator, device=device, dtype=dtype)
                flip = u < torch.sigmoid(e - e_new)
                values.scatter_(0, index, torch.where(flip, flipped, current))
                e = torch.where(flip, e_new, e)
        else:
            q = flat.shape[2]
            eye = torch.eye(q, dtype=flat.dtype, device=flat.device)
            for t in range(n_sites):
                candidates = flat.unsqueeze(0).repeat(q, 1, 1, 1)  # (q, B, N, q)
                candidates[:, rows, sites[t], :] = eye[:, None, :]
                e_all = energy(candidates.view(q * n_chains, *x.shape[1:])).view(q, n_chains)
                choice = torch.argmax(gumbel_like(-e_all.T, generator) - e_all.T, dim=1)
                flat = candidates[choice, rows]
                e = e_all[choice, rows]
        new_x = flat.view_as(x)
        ebmflow.check_finite(self.name, state.step + 1, e, new_x)
        return state.replace(x=new_x, energy=e, step=state.step + 1)

    def evaluations_per_step(self, state: ebmflow.SamplerState) -> int:
        """A sweep: one evaluation per site for binary states, q per site for categorical
        ones — the number of entries of an event either way."""
        return state.x[0].numel()
