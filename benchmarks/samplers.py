"""Sampler benchmarks: per-step time of ebmflow's samplers against hand-written loops.

The hand-written loops are what a careful user writes with plain PyTorch: detach, require
grad, forward, ``torch.autograd.grad``, update. Both sides use the same network and the
same generator seed, so they do identical arithmetic.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import ebmflow
from benchmarks.harness import Case
from ebmflow.samplers.hmc import HMC
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA


def mlp_2_128_128_1(seed: int = 0) -> nn.Sequential:
    gen_state = torch.random.fork_rng()
    with gen_state:
        torch.manual_seed(seed)  # inside fork_rng: the caller's RNG state is restored
        return nn.Sequential(
            nn.Linear(2, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 1)
        )


class NetEnergy(ebmflow.Energy):
    """E(x) = net(x), the user's network wrapped as an ebmflow Energy (no closed forms)."""

    def __init__(self, net: nn.Module, n_noop: int = 0) -> None:
        super().__init__()
        self.net = net
        self.noop = nn.ModuleList(nn.Identity() for _ in range(n_noop))

    def forward(self, x, sigma=None):
        return self.net(x).squeeze(-1)


class GMMAutograd(nn.Module):
    """8 unit-weight isotropic Gaussians on a circle of radius 4, std 0.5; E = −log p."""

    def __init__(self) -> None:
        super().__init__()
        angles = torch.arange(8) * (2 * math.pi / 8)
        self.register_buffer("means", 4.0 * torch.stack([angles.cos(), angles.sin()], 1))
        self.std = 0.5

    def forward(self, x):
        d2 = ((x[:, None, :] - self.means[None]) ** 2).sum(-1)
        log_n = -0.5 * d2 / self.std**2 - math.log(2 * math.pi * self.std**2)
        return -(torch.logsumexp(log_n, dim=1) - math.log(8))


def hand_ula(f, x, eta, n_steps, gen):
    noise = math.sqrt(2 * eta)
    for _ in range(n_steps):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(f(x).sum(), x)
        x = x - eta * g + noise * torch.randn(x.shape, generator=gen)
    return x.detach()


def hand_hmc(f, x, eps, n_leapfrog, n_steps, gen):
    def energy_grad(z):
        z = z.detach().requires_grad_(True)
        e = f(z)
        (g,) = torch.autograd.grad(e.sum(), z)
        return e.detach(), g

    e, g = energy_grad(x)
    for _ in range(n_steps):
        p0 = torch.randn(x.shape, generator=gen)
        p = p0 - 0.5 * eps * g
        y = x
        for i in range(n_leapfrog):
            y = y + eps * p
            e_new, g_new = energy_grad(y)
            p = p - (eps if i < n_leapfrog - 1 else 0.5 * eps) * g_new
        log_alpha = e + 0.5 * (p0**2).sum(1) - e_new - 0.5 * (p**2).sum(1)
        accept = torch.rand(x.shape[0], generator=gen).log() < log_alpha
        x = torch.where(accept[:, None], y, x)
        e = torch.where(accept, e_new, e)
        g = torch.where(accept[:, None], g_new, g)
    return x


def cases(quick: bool = False) -> list[Case]:
    steps = 20 if quick else 200
    chains_mlp, chains_gmm = 1024, 4096
    gen_x = torch.Generator().manual_seed(0)
    x_mlp = torch.randn(chains_mlp, 2, generator=gen_x)
    x_gmm = 4 * torch.randn(chains_gmm, 2, generator=gen_x)
    net = mlp_2_128_128_1()
    energy = NetEnergy(net)
    energy_noop = NetEnergy(net, n_noop=1000)
    f_mlp = lambda x: net(x).squeeze(-1)  # noqa: E731
    gmm = GMMAutograd()

    class GMMEnergy(ebmflow.Energy):
        def forward(self, x, sigma=None):
            return gmm(x)

    gmm_energy = GMMEnergy()
    eta = 0.01

    def seeded():
        return torch.Generator().manual_seed(1)

    out = [
        Case("langevin, MLP 2-128-128-1, 1024 chains", "samplers",
             lambda: Langevin(eta).run(energy, x_mlp, steps, generator=seeded()),
             lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
             steps, target=1.05, note="vs hand-written ULA"),
        Case("mala, MLP 2-128-128-1, 1024 chains", "samplers",
             lambda: MALA(eta).run(energy, x_mlp, steps, generator=seeded()),
             lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
             steps, target=1.15, note="vs hand-written ULA"),
        Case("langevin, MLP + 1000 no-op submodules", "samplers",
             lambda: Langevin(eta).run(energy_noop, x_mlp, steps, generator=seeded()),
             lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
             steps, target=1.05, note="vs hand-written ULA on the plain MLP"),
        Case("hmc (L=5), MLP 2-128-128-1, 1024 chains", "samplers",
             lambda: HMC(0.05, n_leapfrog=5).run(energy, x_mlp, steps // 5, generator=seeded()),
             lambda: hand_hmc(f_mlp, x_mlp, 0.05, 5, steps // 5, seeded()),
             steps // 5, target=1.05, note="vs hand-written HMC"),
        Case("langevin, 8-mode GMM, 4096 chains", "samplers",
             lambda: Langevin(eta).run(gmm_energy, x_gmm, steps, generator=seeded()),
             lambda: hand_ula(gmm, x_gmm, eta, steps, seeded()),
             steps, target=1.05, note="vs hand-written ULA"),
        Case("mala, 8-mode GMM, 4096 chains", "samplers",
             lambda: MALA(eta).run(gmm_energy, x_gmm, steps, generator=seeded()),
             lambda: hand_ula(gmm, x_gmm, eta, steps, seeded()),
             steps, target=1.15, note="vs hand-written ULA"),
    ]
    return out
