"""Discrete-sampler benchmarks: ebmflow-discrete's samplers against hand-written loops of
the same algorithms, and (optionally) against ebmkit's versions.

Hand-written loops: plain PyTorch, the same arithmetic (same proposals, same Metropolis
test, same random draws from the same seeded generator), calling the same energy object;
so the ratio is the price of the sampler's state, checks and bookkeeping. Energies: an
Ising torus (8×8 for Gibbs, whose sweep is 64 energy calls; 16×16 for the gradient
samplers) and a 784-visible, 256-hidden RBM (MNIST-sized) for block Gibbs; units are steps
(a Gibbs step is a sweep). Each side's run includes starting its chains.

ebmkit (a peer library, when importable): its ``GibbsWithGradients`` and block
``GibbsSampler`` against ebmflow's ``gwg`` and ``block-gibbs`` on the same energy and chain
count: ebmkit's own ``IsingEnergy`` (free boundaries, (B, H, W) lattices) wrapped as an
ebmflow binary energy for both sides, and two RBMs holding the same weights. ebmkit draws
from the global generator, so the two sides' random numbers differ; their arithmetic per
step is what is compared. Skipped with a note when ebmkit is not installed.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor
from torch.nn import functional as F

import ebmflow
from benchmarks.harness import Case, Skip, pick

GIBBS_SIDE, GRAD_SIDE, N_CHAINS = 8, 16, 256


def _gumbel(logits: Tensor, gen: torch.Generator) -> Tensor:
    u = torch.rand(logits.shape, generator=gen, dtype=logits.dtype)
    return -torch.log(-torch.log(u.clamp_(min=torch.finfo(logits.dtype).tiny)))


def _energy_grad(f, x: Tensor) -> tuple[Tensor, Tensor]:
    """E(x) and −∇ₓE, as a user writes them."""
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        e = f(z)
        (g,) = torch.autograd.grad(e.sum(), z)
    return e.detach(), -g


@torch.no_grad()
def hand_gibbs(f, x: Tensor, n_steps: int, gen: torch.Generator) -> Tensor:
    """Random-scan Gibbs: D site updates per step, p(flip) = σ(E − E′)."""
    n, d = x.shape
    x = x.clone()
    rows = torch.arange(n)
    e = f(x)
    for _ in range(n_steps):
        sites = torch.randint(0, d, (d, n), generator=gen)
        for t in range(d):
            current = x[rows, sites[t]]
            proposal = x.clone()
            proposal[rows, sites[t]] = 1.0 - current
            e_new = f(proposal)
            flip = torch.rand(n, generator=gen) < torch.sigmoid(e - e_new)
            x[rows, sites[t]] = torch.where(flip, 1.0 - current, current)
            e = torch.where(flip, e_new, e)
    return x


def hand_gwg(f, x: Tensor, n_steps: int, gen: torch.Generator) -> Tensor:
    rows = torch.arange(x.shape[0])
    e, s = _energy_grad(f, x)
    for _ in range(n_steps):
        logits = (1.0 - 2.0 * x) * s * 0.5
        i = torch.argmax(logits + _gumbel(logits, gen), dim=1)
        proposal = x.clone()
        proposal[rows, i] = 1.0 - proposal[rows, i]
        e_new, s_new = _energy_grad(f, proposal)
        logits_back = (1.0 - 2.0 * proposal) * s_new * 0.5
        log_q = logits[rows, i] - torch.logsumexp(logits, dim=1)
        log_q_back = logits_back[rows, i] - torch.logsumexp(logits_back, dim=1)
        log_alpha = e - e_new + log_q_back - log_q
        accept = torch.rand(e.shape, generator=gen) < log_alpha.clamp(max=0).exp()
        x = torch.where(accept[:, None], proposal, x)
        e = torch.where(accept, e_new, e)
        s = torch.where(accept[:, None], s_new, s)
    return x


def hand_dmala(f, x: Tensor, alpha: float, n_steps: int, gen: torch.Generator) -> Tensor:
    e, s = _energy_grad(f, x)
    for _ in range(n_steps):
        logits = (1.0 - 2.0 * x) * s * 0.5 - 0.5 / alpha
        flip = torch.rand(x.shape, generator=gen) < torch.sigmoid(logits)
        proposal = torch.where(flip, 1.0 - x, x)
        e_new, s_new = _energy_grad(f, proposal)
        logits_back = (1.0 - 2.0 * proposal) * s_new * 0.5 - 0.5 / alpha
        log_fwd = F.logsigmoid(torch.where(flip, logits, -logits)).sum(1)
        log_back = F.logsigmoid(torch.where(flip, logits_back, -logits_back)).sum(1)
        log_alpha = e - e_new + log_back - log_fwd
        accept = torch.rand(e.shape, generator=gen) < log_alpha.clamp(max=0).exp()
        x = torch.where(accept[:, None], proposal, x)
        e = torch.where(accept, e_new, e)
        s = torch.where(accept[:, None], s_new, s)
    return x


@torch.no_grad()
def hand_block_gibbs(w, b, c, v: Tensor, n_steps: int, gen: torch.Generator) -> Tensor:
    """v → h → v′ with the free energy of v′ reported each step, as the sampler does."""
    pre = v @ w + c
    for _ in range(n_steps):
        h = (torch.rand(pre.shape, generator=gen) < torch.sigmoid(pre)).to(v.dtype)
        pv = torch.sigmoid(h @ w.T + b)
        v = (torch.rand(pv.shape, generator=gen) < pv).to(v.dtype)
        pre = v @ w + c
        _free_energy = -(v @ b) - F.softplus(pre).sum(1)
    return v


def _steps(sampler, energy, x0, n_steps):
    def run():
        gen = torch.Generator().manual_seed(1)
        state = sampler.init(energy, x0)
        for _ in range(n_steps):
            state = sampler.step(energy, state, gen)
        return state.x

    return run


def _hand(loop, *args):
    def run():
        return loop(*args, torch.Generator().manual_seed(1))

    return run


def cases(size: str = "full", **_options) -> list:
    from ebmflow_discrete import BernoulliRBM, uniform_states

    gibbs_steps = pick(size, 10, 4, 1)
    grad_steps = pick(size, 100, 30, 2)
    chains = pick(size, N_CHAINS, N_CHAINS, 16)
    gen = torch.Generator().manual_seed(0)
    out: list = []

    small = ebmflow.create("energy", "ising", side=GIBBS_SIDE, coupling=0.3)
    x_small = uniform_states("binary", chains, small.event_shape, gen)
    out.append(
        Case(
            f"gibbs (random scan), Ising {GIBBS_SIDE}×{GIBBS_SIDE} torus, {chains} chains",
            "discrete",
            _steps(ebmflow.create("sampler", "gibbs"), small, x_small, gibbs_steps),
            _hand(hand_gibbs, small, x_small, gibbs_steps),
            gibbs_steps,
            unit="sweep",
            target=1.05,
            note="vs a hand-written loop",
        )
    )
    big = ebmflow.create("energy", "ising", side=GRAD_SIDE, coupling=0.3)
    x_big = uniform_states("binary", chains, big.event_shape, gen)
    label = f"Ising {GRAD_SIDE}×{GRAD_SIDE} torus, {chains} chains"
    out.append(
        Case(
            f"gwg, {label}",
            "discrete",
            _steps(ebmflow.create("sampler", "gwg"), big, x_big, grad_steps),
            _hand(hand_gwg, big, x_big, grad_steps),
            grad_steps,
            target=1.05,
            note="vs a hand-written loop",
        )
    )
    alpha = 0.2
    out.append(
        Case(
            f"dmala, {label}",
            "discrete",
            _steps(ebmflow.create("sampler", "dmala", step_size=alpha), big, x_big, grad_steps),
            _hand(hand_dmala, big, x_big, alpha, grad_steps),
            grad_steps,
            target=1.05,
            note="vs a hand-written loop",
        )
    )
    rbm = BernoulliRBM(n_visible=784, n_hidden=256, weight_std=0.05)
    v0 = uniform_states("binary", chains, rbm.event_shape, gen)
    w, b, c = (t.detach() for t in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    out.append(
        Case(
            f"block-gibbs, RBM 784×256, {chains} chains",
            "discrete",
            _steps(ebmflow.create("sampler", "block-gibbs"), rbm, v0, grad_steps),
            _hand(hand_block_gibbs, w, b, c, v0, grad_steps),
            grad_steps,
            target=1.05,
            note="vs a hand-written loop",
        )
    )
    out.extend(_ebmkit_cases(size, chains, grad_steps, rbm))
    return out


def _ebmkit_cases(size: str, chains: int, n_steps: int, rbm) -> list:
    if importlib.util.find_spec("ebm") is None:
        return [Skip("ebmkit gwg and block Gibbs", "discrete", "ebmkit is not installed")]
    from ebm.nets import RBM as EbmkitRBM
    from ebm.nets import IsingEnergy as EbmkitIsing
    from ebm.samplers import GibbsSampler, GibbsWithGradients

    class Lattice(ebmflow.Energy):
        """ebmkit's Ising lattice as an ebmflow binary energy: one module on both sides."""

        event_space = "binary"

        def __init__(self, net, side: int) -> None:
            super().__init__()
            self.net = net
            self.event_shape = (side, side)

        def forward(self, x, sigma=None):
            return self.net(x)

    lattice = Lattice(EbmkitIsing(coupling=0.3), GRAD_SIDE)
    gen = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 2, (chains, GRAD_SIDE, GRAD_SIDE), generator=gen).float()
    peer_gwg = GibbsWithGradients(steps=n_steps)

    def ebmkit_gwg():
        with torch.random.fork_rng():
            torch.manual_seed(1)
            return peer_gwg.sample(lattice.net, x0)

    peer_rbm = EbmkitRBM(784, 256)
    with torch.no_grad():  # the same model: ebmkit stores W as (hidden, visible)
        peer_rbm.W.copy_(rbm.weight.T)
        peer_rbm.b.copy_(rbm.visible_bias)
        peer_rbm.c.copy_(rbm.hidden_bias)
    v0 = torch.randint(0, 2, (chains, 784), generator=gen).float()
    peer_gibbs = GibbsSampler(steps=n_steps)

    def ebmkit_block_gibbs():
        with torch.random.fork_rng():
            torch.manual_seed(1)
            return peer_gibbs.sample(peer_rbm, v0)

    return [
        Case(
            f"gwg vs ebmkit GibbsWithGradients, Ising {GRAD_SIDE}×{GRAD_SIDE} (ebmkit's), "
            f"{chains} chains",
            "discrete",
            _steps(ebmflow.create("sampler", "gwg"), lattice, x0, n_steps),
            ebmkit_gwg,
            n_steps,
            note="vs ebmkit 0.16 (< 1: ebmflow faster)",
        ),
        Case(
            f"block-gibbs vs ebmkit GibbsSampler, RBM 784×256, {chains} chains",
            "discrete",
            _steps(ebmflow.create("sampler", "block-gibbs"), rbm, v0, n_steps),
            ebmkit_block_gibbs,
            n_steps,
            note="vs ebmkit 0.16 (< 1: ebmflow faster)",
        ),
    ]
