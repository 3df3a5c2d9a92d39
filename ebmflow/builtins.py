"""The core's own components, registered through the same hooks as any plugin.

Factories are ``"module:attr"`` strings so that listing components imports no torch.
"""

from __future__ import annotations

from ebmflow.hookspecs import hookimpl
from ebmflow.registry import Component


@hookimpl
def ebmflow_energies():
    return [
        Component(
            "mlp",
            "ebmflow.energies.mlp:MLPEnergy",
            "MLP energy E(x) or E(x, σ) for vectors (optionally noise-conditional)",
        ),
        Component(
            "convnet",
            "ebmflow.energies.convnet:ConvNetEnergy",
            "small convolutional energy for 8x8..32x32 images (optional spectral norm)",
        ),
        Component(
            "gaussian",
            "ebmflow.energies.gaussian:GaussianEnergy",
            "analytic Gaussian N(μ, Σ) with full covariance and exact log Z",
        ),
        Component(
            "gmm",
            "ebmflow.energies.gmm:GMMEnergy",
            "analytic Gaussian mixture with exact log-density and log Z",
        ),
        Component(
            "gaussian-measurement",
            "ebmflow.inverse.measurement:GaussianMeasurement",
            "likelihood energy of y = A x + n (mask, blur, downsample, matrix), annealed in σ",
        ),
        Component(
            "posterior",
            "ebmflow.inverse.posterior:Posterior",
            "posterior energy E_prior(x, σ) + E_lik(x | y, σ) of an inverse problem",
        ),
    ]


@hookimpl
def ebmflow_samplers():
    return [
        Component(
            "langevin",
            "ebmflow.samplers.langevin:Langevin",
            "unadjusted Langevin x − η∇E + √(2η)ε; one gradient per step",
        ),
        Component(
            "mala",
            "ebmflow.samplers.mala:MALA",
            "Metropolis-adjusted Langevin; one gradient per step (cached state)",
        ),
        Component(
            "hmc",
            "ebmflow.samplers.hmc:HMC",
            "Hamiltonian Monte Carlo, leapfrog, optional step-size warm-up",
        ),
        Component(
            "annealed-langevin",
            "ebmflow.samplers.annealed_langevin:AnnealedLangevin",
            "Song & Ermon annealed Langevin over a noise schedule",
        ),
        Component(
            "annealed-posterior",
            "ebmflow.samplers.annealed_posterior:AnnealedPosterior",
            "annealed posterior Langevin, then MALA (+ noise-level exchange) at the lowest σ",
        ),
        Component(
            "dps",
            "ebmflow.samplers.dps:DPS",
            "diffusion posterior sampling (Chung et al. 2022), a baseline",
        ),
    ]


@hookimpl
def ebmflow_datasets():
    return [
        Component(
            "8gaussians",
            "ebmflow.datasets.toy2d:EightGaussians",
            "2-D: eight Gaussians on a circle (exact density)",
        ),
        Component(
            "checkerboard",
            "ebmflow.datasets.toy2d:Checkerboard",
            "2-D: uniform on the dark squares of a 4x4 board (exact density)",
        ),
        Component(
            "rings", "ebmflow.datasets.toy2d:Rings", "2-D: concentric noisy rings (exact density)"
        ),
        Component(
            "moons",
            "ebmflow.datasets.toy2d:Moons",
            "2-D: two interleaved noisy half-moons (exact density)",
        ),
        Component(
            "2spirals",
            "ebmflow.datasets.toy2d:TwoSpirals",
            "2-D: two noisy spirals (exact density)",
        ),
        Component(
            "digits",
            "ebmflow.datasets.digits:Digits",
            "8x8 handwritten digits shipped with scikit-learn",
        ),
    ]


@hookimpl
def ebmflow_noise_schedules():
    return [
        Component(
            "geometric",
            "ebmflow.noise_schedules.geometric:GeometricSchedule",
            "NCSN: σ geometric from sigma_max to sigma_min",
        ),
        Component(
            "vp-linear",
            "ebmflow.noise_schedules.vp:VPLinearSchedule",
            "DDPM linear β(t), mapped to VE σ = sqrt((1 − ᾱ)/ᾱ)",
        ),
        Component(
            "vp-cosine",
            "ebmflow.noise_schedules.vp:VPCosineSchedule",
            "improved-DDPM cosine ᾱ(t), mapped to VE σ",
        ),
        Component(
            "karras",
            "ebmflow.noise_schedules.karras:KarrasSchedule",
            "EDM (Karras et al. 2022) ρ-spaced σ",
        ),
    ]


@hookimpl
def ebmflow_log_z_estimators():
    return [
        Component(
            "grid",
            "ebmflow.evaluate.quadrature:grid_log_z",
            "exact log Z of a 1-3-D energy by quadrature over a box (needs bounds=)",
        ),
        Component(
            "ais",
            "ebmflow.evaluate.ais:ais_log_z",
            "annealed importance sampling from a Gaussian base, any dimension",
        ),
    ]
