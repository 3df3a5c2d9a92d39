"""EBMPipeline: predictor–corrector sampling where the corrector calls the model itself.

For each level t of ``scheduler.predictor_timesteps`` (N predictor steps):

1. corrector: ``scheduler.correct(energy, x, t)`` runs ``corrector_steps`` steps of the
   configured ebmflow sampler on E(·, σ_t) in VE coordinates. MALA and HMC evaluate the model
   at their proposals themselves; on a score-only model their Metropolis tests use
   segment-integral energy differences.
2. predictor: one DDPM or DDIM step of the scheduler from the model output at the corrected x.

The model is the pipeline's ``unet`` wrapped as a VE score model
(:class:`~ebmflow_diffusers.model.DiffusersScoreModel`), or any noise-conditional ebmflow
energy in VE coordinates passed as ``energy=`` (a composition of converted models, a
product with a guidance term, an energy parameterisation, an analytic energy). For the
``unet`` the predictor uses the network's own output, so with ``corrector_steps=0`` the
pipeline reproduces ``DDPMPipeline`` exactly; for another energy it uses the output the
energy's score corresponds to (:meth:`EBMScheduler.output_from_score`).

A conditional ``unet`` (class labels, ``encoder_hidden_states`` or a DiT's labels) takes its
condition as ``class_labels=``, ``encoder_hidden_states=`` or ``y=``; the predictor and the
corrector both evaluate the network on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor

import ebmflow
from ebmflow_diffusers.model import DiffusersScoreModel
from ebmflow_diffusers.scheduler import EBMScheduler


@dataclass
class EBMPipelineOutput(BaseOutput):
    """Output of :class:`EBMPipeline`.

    Attributes:
        images: the samples: a tensor (``output_type="pt"``, in the model's coordinates, or
            ``"latent"``: unscaled), a NumPy array (``"np"``) or PIL images (``"pil"``).
        acceptance_rates: the corrector's mean Metropolis acceptance per level (MH samplers).
        step_sizes: the corrector's step size per level.
    """

    images: Any
    acceptance_rates: list[float] = field(default_factory=list)
    step_sizes: list[float] = field(default_factory=list)


class EBMPipeline(DiffusionPipeline):
    """Predictor–corrector sampling with an :class:`EBMScheduler` (see the module docstring).

    Args:
        unet: the denoising network (may be ``None`` when every call passes ``energy=``).
        scheduler: an :class:`EBMScheduler` (convert another with
            ``EBMScheduler.from_config(scheduler.config, corrector=..., corrector_steps=...)``).
    """

    model_cpu_offload_seq = "unet"

    def __init__(self, unet: Any, scheduler: EBMScheduler) -> None:
        super().__init__()
        if not isinstance(scheduler, EBMScheduler):
            raise ebmflow.ComponentArgumentError(
                f"EBMPipeline needs an EBMScheduler, got {type(scheduler).__name__}; convert it "
                f"with EBMScheduler.from_config({type(scheduler).__name__.lower()}.config, "
                f"corrector='mala', corrector_steps=2)"
            )
        self.register_modules(unet=unet, scheduler=scheduler)

    def score_model(self) -> DiffusersScoreModel:
        """The pipeline's ``unet`` as a VE score model (shares its weights)."""
        if self.unet is None:
            raise ebmflow.ConfigError("EBMPipeline has no unet: pass energy= to the call")
        return DiffusersScoreModel.from_unet(self.unet, self.scheduler)

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        generator: torch.Generator | None = None,
        num_inference_steps: int = 50,
        energy: ebmflow.Energy | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
        class_labels: Any = None,
        encoder_hidden_states: Any = None,
        y: Any = None,
    ) -> EBMPipelineOutput | tuple:
        """Draw ``batch_size`` samples.

        Args:
            generator: the only source of randomness (initial noise, predictor noise and the
                corrector's draws); on the device the samples live on.
            num_inference_steps: predictor steps N (each preceded by the corrector's steps).
            energy: a noise-conditional ebmflow energy in VE coordinates to sample instead of
                the ``unet``.
            output_type: ``"pil"``, ``"np"``, ``"pt"`` (images mapped from [−1, 1] to
                [0, 1], as DDPMPipeline) or ``"latent"`` (the raw samples).
            class_labels: the labels of a class-conditional ``unet``: shape ``(B,)`` or one
                label for every sample.
            encoder_hidden_states: the embeddings of a cross-attention ``unet``: shape
                ``(B, L, D)`` or one ``(L, D)`` for every sample.
            y: either condition under the name ebmflow uses (pass at most one of the three).
        """
        scheduler = self.scheduler
        own = energy is None
        given = {
            name: value
            for name, value in (
                ("class_labels", class_labels),
                ("encoder_hidden_states", encoder_hidden_states),
                ("y", y),
            )
            if value is not None
        }
        if len(given) > 1:
            raise ebmflow.ComponentArgumentError(
                f"EBMPipeline: got {' and '.join(given)}; pass the condition once, as "
                f"class_labels=, encoder_hidden_states= or y="
            )
        if given and not own:
            raise ebmflow.ComponentArgumentError(
                f"EBMPipeline: {next(iter(given))}= conditions the unet, not energy=; fix the "
                f"condition of an energy with ebmflow.condition(energy, y)"
            )
        condition = next(iter(given.values()), None)
        model = self.score_model() if own else energy
        if not isinstance(model, ebmflow.Energy) or not model.noise_conditional:
            raise ebmflow.ComponentArgumentError(
                f"EBMPipeline: energy must be a noise-conditional ebmflow.Energy in VE "
                f"coordinates, got {type(model).__name__}"
            )
        if model.event_shape is None:
            raise ebmflow.ConfigError(
                f"EBMPipeline: {type(model).__name__} declares no event_shape, so the sample "
                f"shape is unknown"
            )
        # a converted model, or one with its condition fixed, knows its prediction type
        inner = getattr(model, "energy", None)
        check_scheduler = getattr(model, "check_scheduler", getattr(inner, "check_scheduler", None))
        if check_scheduler is not None:
            check_scheduler(scheduler)
        corrector_energy = model
        if own:
            # refused here, before any sampling, with the shape the network expects
            condition = model.conditioning.check(condition, batch_size, "EBMPipeline")
            if condition is not None:
                corrector_energy = ebmflow.condition(model, condition)
            device, dtype = self._execution_device, self.unet.dtype
        else:
            param = next(iter(list(model.parameters()) + list(model.buffers())), None)
            device = param.device if param is not None else torch.device("cpu")
            dtype = (
                param.dtype
                if param is not None and param.is_floating_point()
                else (torch.get_default_dtype())
            )
        shape = (batch_size, *model.event_shape)
        sample = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        sample = sample * scheduler.init_noise_sigma
        scheduler.set_timesteps(num_inference_steps, device=device, repeat_for_corrector=False)
        rates, steps = [], []
        for t in self.progress_bar(scheduler.predictor_timesteps):
            if scheduler.config.corrector_steps:
                corrected = scheduler.correct(corrector_energy, sample, t, generator)
                sample = corrected.x
                steps.append(corrected.step_size)
                if corrected.acceptance_rate is not None:
                    rates.append(corrected.acceptance_rate)
            if own:
                output = model.model_output(sample, t, condition)
            else:
                sigma = scheduler.sigma(t)
                score = model.score(scheduler.to_ve(sample, t), sigma)
                output = scheduler.output_from_score(score, t, sample)
            sample = scheduler.step(output, t, sample, generator=generator).prev_sample
        images = sample
        if output_type != "latent":
            images = (images / 2 + 0.5).clamp(0, 1)
            if output_type != "pt":
                images = images.cpu().permute(0, 2, 3, 1).float().numpy()
                if output_type == "pil":
                    images = self.numpy_to_pil(images)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return EBMPipelineOutput(images=images, acceptance_rates=rates, step_sizes=steps)
