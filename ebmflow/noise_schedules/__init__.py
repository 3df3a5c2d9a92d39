"""Noise schedules: σ levels in variance-exploding coordinates (a noisy sample is x + σ z).

``sigmas(n)`` gives the decreasing levels samplers anneal through; ``sample(batch_size,
generator)`` gives continuous training noise levels. VP (DDPM) schedules are mapped in by
σ = √((1 − ᾱ)/ᾱ), see :func:`sigma_from_alpha_bar`.
"""

from ebmflow.noise_schedules.base import NoiseSchedule, alpha_bar_from_sigma, sigma_from_alpha_bar
from ebmflow.noise_schedules.geometric import GeometricSchedule
from ebmflow.noise_schedules.karras import KarrasSchedule
from ebmflow.noise_schedules.vp import VPCosineSchedule, VPLinearSchedule

__all__ = [
    "GeometricSchedule",
    "KarrasSchedule",
    "NoiseSchedule",
    "VPCosineSchedule",
    "VPLinearSchedule",
    "alpha_bar_from_sigma",
    "sigma_from_alpha_bar",
]
