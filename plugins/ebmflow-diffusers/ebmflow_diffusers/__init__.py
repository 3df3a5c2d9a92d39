"""ebmflow-diffusers: diffusion checkpoints as energies, and ebmflow samplers in diffusers.

- :class:`EBMScheduler`: a diffusers scheduler (DDPM / DDIM predictor) whose corrector is
  any registered ebmflow sampler; with no corrector it reproduces DDPMScheduler and
  DDIMScheduler. Registered as the scheduler ``ebm``.
- :func:`with_corrector` / :func:`add_corrector`: any diffusers scheduler (DDPM, DDIM, Euler,
  Euler ancestral, Heun, DPM-Solver++, EDM Euler, UniPC, ...) with an MCMC corrector; with
  the corrector off it is diffusers' own class (``EBMDDIMScheduler`` ... are named).
- :class:`EBMPipeline`: predictor–corrector sampling in which the corrector calls the model
  (so MALA and HMC work), on a UNet or on any ebmflow energy.
- :func:`convert`: the converter ``diffusers``, a pipeline folder or objects → a
  :class:`DiffusersScoreModel` (energy ``diffusers-unet``) in VE coordinates: unconditional
  and conditional UNets, DiTs, latent pipelines; ``ebmflow convert SRC OUT`` saves one.
- :class:`PromptEncoder`: prompts → embeddings with a pipeline folder's tokenizer and text
  encoder (needs transformers), the condition of a converted cross-attention model.
- :class:`PathEnergy` and :func:`segment_difference`: energies of score-only models by
  integrating the score along segments (energy ``line-integral``), so MALA and HMC run on
  ε-checkpoints; :class:`NetworkEnergy` (energy ``unet-energy``): E = ½‖f‖² or ‖x − f‖².
- :class:`GaussianDenoiser`: the exact denoiser of Gaussian data, a diffusers model for tests;
  :class:`MixtureDenoiser` and :class:`ClassConditionalGMM`: the exact class-conditional
  denoiser of per-class Gaussian mixtures (a diffusers model; a noise-conditional energy),
  with :func:`product`, :func:`negation` and :func:`tilted_product` (the exact targets of
  compositions) and :func:`reverse_diffusion` (the reverse process with an optional MCMC
  corrector) to measure compositions against exact answers.

Importing this package imports neither torch nor diffusers; names load on first access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "EBMScheduler": "ebmflow_diffusers.scheduler",
    "EBMSchedulerOutput": "ebmflow_diffusers.scheduler",
    "with_corrector": "ebmflow_diffusers.corrected",
    "add_corrector": "ebmflow_diffusers.corrected",
    "CorrectorMixin": "ebmflow_diffusers.corrected",
    "EBMDDPMScheduler": "ebmflow_diffusers.corrected",
    "EBMDDIMScheduler": "ebmflow_diffusers.corrected",
    "EBMEulerDiscreteScheduler": "ebmflow_diffusers.corrected",
    "EBMEulerAncestralDiscreteScheduler": "ebmflow_diffusers.corrected",
    "EBMHeunDiscreteScheduler": "ebmflow_diffusers.corrected",
    "EBMDPMSolverMultistepScheduler": "ebmflow_diffusers.corrected",
    "EBMEDMEulerScheduler": "ebmflow_diffusers.corrected",
    "EBMUniPCMultistepScheduler": "ebmflow_diffusers.corrected",
    "EBMPipeline": "ebmflow_diffusers.pipeline",
    "EBMPipelineOutput": "ebmflow_diffusers.pipeline",
    "convert": "ebmflow_diffusers.converter",
    "ConversionError": "ebmflow_diffusers.converter",
    "DiffusersScoreModel": "ebmflow_diffusers.model",
    "Conditioning": "ebmflow_diffusers.networks",
    "PromptEncoder": "ebmflow_diffusers.prompts",
    "NetworkEnergy": "ebmflow_diffusers.energies",
    "PathEnergy": "ebmflow_diffusers.segment",
    "segment_difference": "ebmflow_diffusers.segment",
    "quadrature_weights": "ebmflow_diffusers.segment",
    "GaussianDenoiser": "ebmflow_diffusers.analytic",
    "MixtureDenoiser": "ebmflow_diffusers.conditional_denoiser",
    "ClassConditionalGMM": "ebmflow_diffusers.conditional_mixture",
    "product": "ebmflow_diffusers.exact_composition",
    "negation": "ebmflow_diffusers.exact_composition",
    "tilted_product": "ebmflow_diffusers.exact_composition",
    "reverse_diffusion": "ebmflow_diffusers.reverse_sampling",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
