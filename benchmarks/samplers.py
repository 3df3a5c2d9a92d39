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
from benchmarks.harness import Case, pick
from ebmflow.samplers.annealed_langevin import AnnealedLangevin
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
        x = x - eta * g + noise * torch.randn(x.shape, generator=gen, device=x.device)
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


def hand_annealed_ula(net, x, sigmas, steps_per_level, epsilon, gen):
    """Annealed Langevin (Song & Ermon 2019) on E(x, σ) = net([x, log σ]), by hand:
    η_i = ε σ_i² / (2 σ_L²), T steps per level, then the denoising step x + σ_L² s."""
    b = x.shape[0]
    sigma_l = sigmas[-1]

    def grad(z, log_sigma):
        z = z.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(torch.cat([z, log_sigma], 1)).sum(), z)
        return g

    for sigma in sigmas:
        eta = 0.5 * epsilon * (sigma / sigma_l) ** 2
        noise = math.sqrt(2 * eta)
        log_sigma = torch.full((b, 1), math.log(sigma))
        for _ in range(steps_per_level):
            x = x - eta * grad(x, log_sigma) + noise * torch.randn(x.shape, generator=gen)
    return (x - sigma_l**2 * grad(x, torch.full((b, 1), math.log(sigma_l)))).detach()


def cases(size: str = "full", **_options) -> list[Case]:
    steps = pick(size, 50, 20, 2)
    chains_mlp, chains_gmm = pick(size, 1024, 1024, 64), pick(size, 4096, 4096, 64)
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
    levels = pick(size, 5, 5, 2)
    per_level = max(1, steps // levels)
    with torch.random.fork_rng():  # the caller's RNG state is restored
        torch.manual_seed(0)
        ncsn = ebmflow.create("energy", "mlp", dim=2, widths=[128, 128], noise_conditional=True)
    annealed = AnnealedLangevin(
        {"name": "geometric", "sigma_max": 1.0, "sigma_min": 0.01},
        n_levels=levels,
        steps_per_level=per_level,
        epsilon=2e-5,
    )

    def seeded():
        return torch.Generator().manual_seed(1)

    out = [
        # the same hand-written loop on both sides: any distance of its ratio from 1 is
        # this run's measurement noise, the resolution of every other ratio
        Case(
            f"control: hand-written ULA against itself, MLP 2-128-128-1, {chains_mlp} chains",
            "samplers",
            lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
            lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
            steps,
            note="identical code on both sides: the noise floor of this run",
        ),
        Case(
            f"langevin, MLP 2-128-128-1, {chains_mlp} chains",
            "samplers",
            lambda: Langevin(eta).run(energy, x_mlp, steps, generator=seeded()),
            lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
            steps,
            target=1.05,
            note="vs hand-written ULA",
        ),
        Case(
            f"mala, MLP 2-128-128-1, {chains_mlp} chains",
            "samplers",
            lambda: MALA(eta).run(energy, x_mlp, steps, generator=seeded()),
            lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
            steps,
            target=1.15,
            note="vs hand-written ULA",
        ),
        Case(
            "langevin, MLP + 1000 no-op submodules",
            "samplers",
            lambda: Langevin(eta).run(energy_noop, x_mlp, steps, generator=seeded()),
            lambda: hand_ula(f_mlp, x_mlp, eta, steps, seeded()),
            steps,
            target=1.05,
            note="vs hand-written ULA on the plain MLP",
        ),
        Case(
            f"hmc (L=5), MLP 2-128-128-1, {chains_mlp} chains",
            "samplers",
            lambda: HMC(0.05, n_leapfrog=5).run(energy, x_mlp, steps // 5 or 1, generator=seeded()),
            lambda: hand_hmc(f_mlp, x_mlp, 0.05, 5, steps // 5 or 1, seeded()),
            steps // 5 or 1,
            target=1.05,
            note="vs hand-written HMC",
        ),
        Case(
            f"annealed-langevin ({levels} levels × {per_level}), noise-conditional MLP "
            f"2-128-128-1, {chains_mlp} chains",
            "samplers",
            lambda: annealed.run(ncsn, x_mlp, generator=seeded()),
            lambda: hand_annealed_ula(ncsn.net, x_mlp, annealed.sigmas, per_level, 2e-5, seeded()),
            levels * per_level,
            target=1.05,
            note="vs hand-written annealed ULA",
        ),
        Case(
            f"langevin, 8-mode GMM, {chains_gmm} chains",
            "samplers",
            lambda: Langevin(eta).run(gmm_energy, x_gmm, steps, generator=seeded()),
            lambda: hand_ula(gmm, x_gmm, eta, steps, seeded()),
            steps,
            target=1.05,
            note="vs hand-written ULA",
        ),
        Case(
            f"mala, 8-mode GMM, {chains_gmm} chains",
            "samplers",
            lambda: MALA(eta).run(gmm_energy, x_gmm, steps, generator=seeded()),
            lambda: hand_ula(gmm, x_gmm, eta, steps, seeded()),
            steps,
            target=1.15,
            note="vs hand-written ULA",
        ),
    ]
    return out
