"""Posterior sampling benchmarks: one corrector step of ``annealed-posterior`` (MALA at σ_L
on E_prior(x, σ) + E_lik(x | y, σ)) against a hand-written MALA loop on the same posterior.

The hand-written loop is what a user writes without ebmflow: the prior's energy and its
gradient by one autograd pass, the Gaussian measurement's residual y − A x, its energy and
gradient Aᵀ(y − A x)/v by hand, the MALA proposal and the Metropolis test. Both sides make
one prior evaluation per step and start from the same positions (a state after the
annealing), with the same step size, so the ratio is the price of the posterior energy's
composition and the sampler's bookkeeping.
"""

from __future__ import annotations

import math

import torch

import ebmflow
from benchmarks.harness import Case, pick

SIGMA_L = 0.05


def _problems(size: str):
    """(label, prior, likelihood, A, Aᵀ, x): a 2-D MLP prior observed through one
    coordinate, and a noise-conditional convnet on 8×8 images with half the pixels masked."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)  # inside fork_rng: the caller's RNG state is restored
        mlp = ebmflow.create("energy", "mlp", dim=2, widths=[128, 128], noise_conditional=True)
        conv = ebmflow.create(
            "energy", "convnet", channels=1, image_size=8, widths=[32, 64], noise_conditional=True
        )
    gen = torch.Generator().manual_seed(1)
    matrix = torch.tensor([[1.0, 0.0]])
    mask = (torch.arange(64).reshape(1, 1, 8, 8) % 8 < 4).float()
    n_mlp, n_conv = pick(size, 4096, 4096, 64), pick(size, 256, 256, 8)
    return [
        (
            f"MLP 2-128-128-1 prior, 1 of 2 coordinates observed, {n_mlp} chains",
            mlp,
            ebmflow.GaussianMeasurement(
                [0.7], 0.5, operator={"name": "matrix", "matrix": matrix.tolist()}, event_shape=[2]
            ),
            lambda x: x @ matrix.T,
            lambda v: v @ matrix,
            torch.randn(n_mlp, 2, generator=gen),
        ),
        (
            f"convnet 8×8 prior, half the pixels masked, {n_conv} chains",
            conv,
            ebmflow.GaussianMeasurement(
                torch.rand(1, 8, 8, generator=gen), 0.1, operator={"name": "mask", "mask": mask[0]}
            ),
            lambda x: x * mask,
            lambda v: v * mask,
            torch.rand(n_conv, 1, 8, 8, generator=gen),
        ),
    ]


def cases(size: str = "full", **_options) -> list[Case]:
    steps = pick(size, 25, 10, 2)
    return [_case(*problem, steps) for problem in _problems(size)]


def _case(label, prior, likelihood, a, a_t, x, steps: int, eta: float = 1e-3) -> Case:
    prior.requires_grad_(False)
    post = ebmflow.posterior(prior, likelihood)
    sampler = ebmflow.create(
        "sampler",
        "annealed-posterior",
        noise_schedule=[1.0, SIGMA_L],
        n_levels=2,
        steps_per_level=1,
        corrector_steps=10**6,
        corrector_step_size=eta,
    )
    # a state in the correction phase, at σ_L
    e0, s0 = post.energy_and_score(x, SIGMA_L)
    start = sampler.init(post, x).replace(
        step=sampler.annealing_steps, sigma=torch.full((x.shape[0],), SIGMA_L), energy=e0, score=s0
    )
    y = likelihood.observation
    v = likelihood.noise_std**2 + SIGMA_L**2 * likelihood.operator.norm() ** 2
    log_norm = 0.5 * likelihood.n_measured * math.log(2 * math.pi * v)

    def energy_and_score(z, sigma):
        with torch.enable_grad():
            zg = z.detach().requires_grad_(True)
            e_prior = prior(zg, sigma)
            (g,) = torch.autograd.grad(e_prior.sum(), zg)
        residual = y - a(z)
        e_lik = residual.square().flatten(1).sum(1) / (2 * v) + log_norm
        return e_prior.detach() + e_lik, -g + a_t(residual) / v

    def ours():
        gen = torch.Generator().manual_seed(2)
        state = start
        for _ in range(steps):
            state = sampler.step(post, state, gen)

    def reference():
        gen = torch.Generator().manual_seed(2)
        z = x
        sigma = torch.full((z.shape[0],), SIGMA_L)
        e, s = energy_and_score(z, sigma)
        view = (-1, *(1,) * (z.ndim - 1))
        for _ in range(steps):
            xi = torch.randn(z.shape, generator=gen)
            z_new = z + eta * s + math.sqrt(2 * eta) * xi
            e_new, s_new = energy_and_score(z_new, sigma)
            fwd = (z_new - z - eta * s).square().flatten(1).sum(1)
            bwd = (z - z_new - eta * s_new).square().flatten(1).sum(1)
            log_alpha = e - e_new + (fwd - bwd) / (4 * eta)
            accept = torch.rand(z.shape[0], generator=gen) < log_alpha.clamp(max=0).exp()
            z = torch.where(accept.view(view), z_new, z)
            s = torch.where(accept.view(view), s_new, s)
            e = torch.where(accept, e_new, e)

    return Case(
        f"annealed-posterior corrector (mala), {label}",
        "posterior",
        ours,
        reference,
        steps,
        target=1.05,
        note="vs a hand-written MALA loop on prior + Gaussian measurement",
    )
