"""EBMScheduler in a stock ``DDPMPipeline`` against the same pipeline with ``DDPMScheduler``.

With no corrector steps EBMScheduler reproduces DDPMScheduler (same noise, same seed), so
both pipelines do the same work: the ratio is the price of the scheduler. Two models:

- a tiny real ``UNet2DModel`` (1×8×8 images, channels (8, 16)), where the model dominates;
- the plugin's analytic ``GaussianDenoiser`` (a few tensor operations a call), where the
  scheduler's own ``step`` dominates: the harsher comparison;

and ``scheduler.step`` alone, the same loop over one precomputed model output for both.

Then each corrector-enabled diffusers scheduler (``with_corrector(DDIMScheduler)`` ...), with
the corrector off, against its stock class: in ``DDPMPipeline`` / ``DDIMPipeline`` for DDPM
and DDIM, and for the others in a stock pipeline's loop (``scale_model_input``, the tiny
UNet, ``step``; DDPMPipeline neither scales inputs nor suits schedulers whose ``step`` takes
no generator). Target 1.02.

Needs the ebmflow-diffusers plugin (and diffusers); skipped with a note otherwise. Nothing
is downloaded: the models are built in memory.
"""

from __future__ import annotations

import os

import torch

from benchmarks.harness import Case, Skip, pick


def cases(size: str = "full", **_options) -> list[Case | Skip]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from diffusers import DDPMPipeline, DDPMScheduler
        from diffusers.utils import logging
        from ebmflow_diffusers import EBMScheduler, GaussianDenoiser, tiny
    except ImportError as exc:
        return [
            Skip(
                "EBMScheduler in DDPMPipeline",
                "diffusers",
                f"ebmflow-diffusers (or diffusers) is not available: {exc}",
            )
        ]
    logging.set_verbosity_error()
    steps = pick(size, 20, 10, 2)
    batch = pick(size, 16, 16, 2)
    models = {
        "tiny UNet2DModel 1×8×8": tiny.unet(),
        "analytic GaussianDenoiser 1×8×8 (scheduler-bound)": GaussianDenoiser(
            sample_size=8, in_channels=1
        ),
    }
    out = []
    for label, model in models.items():
        ref = DDPMPipeline(unet=model, scheduler=DDPMScheduler())
        ours = DDPMPipeline(unet=model, scheduler=EBMScheduler.from_config(ref.scheduler.config))
        for pipe in (ref, ours):
            pipe.set_progress_bar_config(disable=True)

        def run(pipe):
            return lambda: pipe(
                batch_size=batch,
                generator=torch.Generator().manual_seed(0),
                num_inference_steps=steps,
                output_type="np",
            )

        out.append(
            Case(
                f"EBMScheduler in DDPMPipeline, {label}, batch {batch}",
                "diffusers",
                run(ours),
                run(ref),
                steps,
                unit="step",
                target=1.05,
                note=f"vs DDPMScheduler, {steps} steps, no corrector",
            )
        )

    unet = models["tiny UNet2DModel 1×8×8"]
    sample = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        output = unet(sample, torch.tensor(500)).sample

    def stepping(scheduler):
        scheduler.set_timesteps(steps)

        def run():
            gen = torch.Generator().manual_seed(0)
            x = sample
            for t in scheduler.timesteps:
                x = scheduler.step(output, t, x, generator=gen).prev_sample

        return run

    out.append(
        Case(
            f"EBMScheduler.step alone, batch {batch}",
            "diffusers",
            stepping(EBMScheduler()),
            stepping(DDPMScheduler()),
            steps,
            unit="step",
            target=1.05,
            note=f"vs DDPMScheduler.step, {steps} steps, one model output",
        )
    )
    out.extend(_corrected_cases(unet, batch, steps))
    return out


def _corrected_cases(unet, batch: int, steps: int) -> list[Case]:
    import inspect

    import diffusers
    from ebmflow_diffusers import with_corrector

    out = []
    for name in ("DDPMScheduler", "DDIMScheduler"):
        base = getattr(diffusers, name)
        pipeline_class = (
            diffusers.DDPMPipeline if name == "DDPMScheduler" else diffusers.DDIMPipeline
        )
        pipes = []
        for scheduler in (with_corrector(base)(), base()):
            pipe = pipeline_class(unet=unet, scheduler=base())
            pipe.scheduler = scheduler  # after __init__, which DDIMPipeline rebuilds it in
            pipe.set_progress_bar_config(disable=True)
            pipes.append(pipe)

        def run(pipe):
            return lambda: pipe(
                batch_size=batch,
                generator=torch.Generator().manual_seed(0),
                num_inference_steps=steps,
                output_type="np",
            )

        out.append(
            Case(
                f"EBM{name} in {pipeline_class.__name__}, tiny UNet, batch {batch}",
                "diffusers",
                run(pipes[0]),
                run(pipes[1]),
                steps,
                unit="step",
                target=1.02,
                note=f"vs {name}, {steps} steps, corrector off",
            )
        )
    names = (
        "EulerDiscreteScheduler",
        "EulerAncestralDiscreteScheduler",
        "HeunDiscreteScheduler",
        "DPMSolverMultistepScheduler",
        "EDMEulerScheduler",
        "UniPCMultistepScheduler",
    )
    for name in names:
        base = getattr(diffusers, name)

        def loop(scheduler):
            takes_generator = "generator" in inspect.signature(scheduler.step).parameters

            def run():
                gen = torch.Generator().manual_seed(0)
                scheduler.set_timesteps(steps)
                x = torch.randn(batch, 1, 8, 8, generator=gen) * scheduler.init_noise_sigma
                kwargs = {"generator": gen} if takes_generator else {}
                with torch.no_grad():
                    for t in scheduler.timesteps:
                        output = unet(scheduler.scale_model_input(x, t), t).sample
                        x = scheduler.step(output, t, x, **kwargs).prev_sample

            return run

        out.append(
            Case(
                f"EBM{name} in a pipeline loop, tiny UNet, batch {batch}",
                "diffusers",
                loop(with_corrector(base)()),
                loop(base()),
                steps,
                unit="step",
                target=1.02,
                note=f"vs {name}, {steps} steps, corrector off",
            )
        )
    out.append(_corrector_step_case(unet, batch, steps))
    return out


def _corrector_step_case(unet, batch: int, steps: int) -> Case:
    """A DDPM loop whose every level takes one Langevin corrector step, through
    ``EBMDDPMScheduler(corrector="langevin")`` against the same loop written by hand: the
    score −ε̂/σ in VE coordinates from the pipeline's call, the snr step size, one ULA move,
    the network at the moved sample, DDPMScheduler's step. Both make two network calls per
    level; the ratio is the price of running the corrector through an ebmflow sampler."""
    import math

    from diffusers import DDPMScheduler
    from ebmflow_diffusers import EBMDDPMScheduler

    snr = 0.16  # the corrector's default

    def ours():
        scheduler = EBMDDPMScheduler(corrector="langevin", corrector_steps=1, snr=snr)
        gen = torch.Generator().manual_seed(0)
        scheduler.bind_model(unet, generator=gen)
        scheduler.set_timesteps(steps)
        x = torch.randn(batch, 1, 8, 8, generator=gen)
        with torch.no_grad():
            for t in scheduler.timesteps:
                output = unet(x, t).sample
                x = scheduler.step(output, t, x, generator=gen).prev_sample

    def by_hand():
        scheduler = DDPMScheduler()
        gen = torch.Generator().manual_seed(0)
        scheduler.set_timesteps(steps)
        x = torch.randn(batch, 1, 8, 8, generator=gen)
        with torch.no_grad():
            for t in scheduler.timesteps:
                eps = unet(x, t).sample
                ab = float(scheduler.alphas_cumprod[t])
                sigma, a = math.sqrt((1.0 - ab) / ab), math.sqrt(ab)
                score = -eps / sigma  # VE score at x_ve = x / √ᾱ
                norm = float(score.flatten(1).norm(dim=1).mean())
                eta = 2.0 * (snr * math.sqrt(score[0].numel()) / norm) ** 2
                noise = torch.randn(x.shape, generator=gen)
                x_ve = x / a + eta * score + math.sqrt(2.0 * eta) * noise
                x = x_ve * a
                eps = unet(x, t).sample
                x = scheduler.step(eps, t, x, generator=gen).prev_sample

    return Case(
        f"EBMDDPMScheduler with a Langevin corrector step per level, tiny UNet, batch {batch}",
        "diffusers",
        ours,
        by_hand,
        steps,
        unit="level",
        target=1.05,
        note=f"vs a hand-written DDPM + ULA corrector loop, {steps} levels, 2 network calls each",
    )
