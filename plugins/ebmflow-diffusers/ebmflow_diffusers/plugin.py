"""Hook implementations of ebmflow-diffusers: one record per component.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``
(neither torch nor diffusers); ``ebmflow.create`` imports a component's module on first use.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_converters():
    return [
        ebmflow.Component(
            "diffusers",
            "ebmflow_diffusers.converter:convert",
            "a diffusers pipeline folder (model_index.json, unet or transformer, scheduler, "
            "optional vae) or objects -> a VE score model, conditional on labels or "
            "embeddings where the network is (epsilon, v, x0 and score prediction; VP and VE)",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_schedulers():
    return [
        ebmflow.Component(
            "ebm",
            "ebmflow_diffusers.scheduler:EBMScheduler",
            "diffusers scheduler: DDPM/DDIM predictor + any ebmflow sampler as corrector",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_energies():
    return [
        ebmflow.Component(
            "diffusers-unet",
            "ebmflow_diffusers.model:DiffusersScoreModel",
            "a diffusers UNet or DiT as a score-only model s(x, sigma[, y]) in VE coordinates",
        ),
        ebmflow.Component(
            "unet-energy",
            "ebmflow_diffusers.energies:NetworkEnergy",
            "energy parameterisation of a diffusion network: 1/2|f(x,s)|^2 or |x - f(x,s)|^2",
        ),
        ebmflow.Component(
            "line-integral",
            "ebmflow_diffusers.segment:PathEnergy",
            "energy of a score-only model by integrating its score from a reference point",
        ),
    ]
