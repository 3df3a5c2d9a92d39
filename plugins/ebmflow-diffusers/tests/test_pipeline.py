"""EBMPipeline: predictor–corrector sampling with correctors that call the model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler
from ebmflow_diffusers import EBMPipeline, EBMScheduler, GaussianDenoiser, convert

import ebmflow

MU, S = 0.5, 0.3


def quiet(pipe):
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_without_corrector_it_is_the_ddpm_pipeline(unet):
    ref = quiet(DDPMPipeline(unet=unet, scheduler=DDPMScheduler()))
    ours = quiet(EBMPipeline(unet=unet, scheduler=EBMScheduler.from_config(ref.scheduler.config)))
    a = ref(
        batch_size=2,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=20,
        output_type="np",
    ).images
    b = ours(
        batch_size=2,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=20,
        output_type="np",
    ).images
    assert np.abs(a - b).max() < 1e-5


@pytest.mark.parametrize("args", [None, {"clip": [-2.0, 2.0]}], ids=["plain", "clip"])
def test_stock_loop_langevin_equals_pipeline_langevin(unet, args):
    """ULA inside DDPMPipeline's loop (repeated timesteps) and ULA run by EBMPipeline through
    the ebmflow sampler draw the same noise in the same order: the same samples (clipped in
    VE coordinates alike when the corrector has a ``clip``)."""
    scheduler = EBMScheduler(corrector="langevin", corrector_steps=2, corrector_args=args)
    stock = quiet(DDPMPipeline(unet=unet, scheduler=scheduler))
    ours = quiet(EBMPipeline(unet=unet, scheduler=EBMScheduler.from_config(scheduler.config)))
    a = stock(
        batch_size=2,
        generator=torch.Generator().manual_seed(1),
        num_inference_steps=8,
        output_type="pt",
    ).images
    b = ours(
        batch_size=2,
        generator=torch.Generator().manual_seed(1),
        num_inference_steps=8,
        output_type="pt",
    ).images
    plain = quiet(DDPMPipeline(unet=unet, scheduler=DDPMScheduler()))
    c = plain(
        batch_size=2,
        generator=torch.Generator().manual_seed(1),
        num_inference_steps=8,
        output_type="pt",
    ).images
    assert float((a - b).abs().max()) < 1e-5
    assert float((a - c).abs().max()) > 1e-2  # the corrector did something
    if args is not None:  # and the clip did: the same run without it ends elsewhere
        unclipped = quiet(
            DDPMPipeline(unet=unet, scheduler=EBMScheduler(corrector="langevin", corrector_steps=2))
        )
        d = unclipped(
            batch_size=2,
            generator=torch.Generator().manual_seed(1),
            num_inference_steps=8,
            output_type="pt",
        ).images
        assert float((a - d).abs().max()) > 1e-3


@pytest.mark.parametrize(
    "corrector,args",
    [
        ("mala", {}),
        ("hmc", {"n_leapfrog": 2}),
        ("parallel-tempering", {"n_replicas": 3, "beta_min": 0.3}),
    ],
)
def test_metropolis_correctors_call_the_model_themselves(corrector, args, unet):
    scheduler = EBMScheduler(corrector=corrector, corrector_steps=2, corrector_args=args)
    pipe = quiet(EBMPipeline(unet=unet, scheduler=scheduler))
    out = pipe(
        batch_size=3,
        generator=torch.Generator().manual_seed(2),
        num_inference_steps=4,
        output_type="pt",
    )
    assert out.images.shape == (3, 1, 8, 8) and torch.isfinite(out.images).all()
    assert len(out.acceptance_rates) == 4 and len(out.step_sizes) == 4
    assert all(0.0 <= r <= 1.0 for r in out.acceptance_rates)
    assert max(out.acceptance_rates) > 0.0


@pytest.mark.parametrize("corrector", ["langevin", "mala"])
@pytest.mark.parametrize("k", [1, 3])
def test_a_corrector_step_costs_one_network_call(corrector, k, unet):
    """Per level: the score at the level's start (the snr rule's, which also starts the
    chains), one call per corrector step, and the predictor's output at the corrected
    sample. Evaluating the start twice would make it k + 3."""
    calls = []
    hook = unet.register_forward_hook(lambda *_: calls.append(1))
    try:
        scheduler = EBMScheduler(corrector=corrector, corrector_steps=k)
        quiet(EBMPipeline(unet=unet, scheduler=scheduler))(
            batch_size=2,
            generator=torch.Generator().manual_seed(0),
            num_inference_steps=4,
            output_type="latent",
        )
    finally:
        hook.remove()
    assert len(calls) == 4 * (k + 2)


def test_progress_bar_is_shown(unet, capsys):
    pipe = EBMPipeline(unet=unet, scheduler=EBMScheduler())
    pipe.set_progress_bar_config(disable=False)
    pipe(batch_size=1, generator=torch.Generator().manual_seed(0), num_inference_steps=3)
    assert "3/3" in capsys.readouterr().err


def test_needs_an_ebm_scheduler(unet):
    with pytest.raises(TypeError, match=r"EBMScheduler.from_config\(ddpmscheduler.config"):
        EBMPipeline(unet=unet, scheduler=DDPMScheduler())


def test_pipeline_saves_and_loads(unet, tmp_path):
    scheduler = EBMScheduler(corrector="mala", corrector_steps=1)
    quiet(EBMPipeline(unet=unet, scheduler=scheduler)).save_pretrained(tmp_path)
    loaded = quiet(EBMPipeline.from_pretrained(tmp_path))
    assert loaded.scheduler.config.corrector == "mala"
    a = EBMPipeline(unet=unet, scheduler=scheduler)
    quiet(a)
    kwargs = dict(batch_size=2, num_inference_steps=3, output_type="pt")
    x = a(generator=torch.Generator().manual_seed(3), **kwargs).images
    y = loaded(generator=torch.Generator().manual_seed(3), **kwargs).images
    assert torch.allclose(x, y)


def test_composed_energies_are_sampled_as_the_model():
    """A product of two converted models (an ebmflow Sum) is a noise-conditional energy like
    any other: EBMPipeline samples it with no unet. Two exact Gaussian models with means
    −0.4 and 0.6 and equal widths: the product is centred on their midpoint 0.1."""
    a = convert(unet=GaussianDenoiser(sample_size=4, mean=-0.4, std=S), scheduler=EBMScheduler())
    b = convert(unet=GaussianDenoiser(sample_size=4, mean=0.6, std=S), scheduler=EBMScheduler())
    product = a + b
    assert isinstance(product, ebmflow.Energy) and not product.has_energy
    scheduler = EBMScheduler(
        clip_sample=False,
        corrector="mala",
        corrector_steps=2,
        snr=0.3,
        energy_rule="simpson",
        energy_points=3,
    )
    pipe = quiet(EBMPipeline(unet=None, scheduler=scheduler))
    out = pipe(
        batch_size=500,
        generator=torch.Generator().manual_seed(4),
        num_inference_steps=10,
        energy=product,
        output_type="latent",
    )
    x = out.images
    assert x.shape == (500, 1, 4, 4)
    # mean over 8000 coordinates of variance ≤ s²: SE ≤ 0.0034; 5 SE
    assert abs(float(x.mean()) - 0.1) < 0.017
    assert 0.5 < np.mean(out.acceptance_rates) < 1.0


@pytest.mark.slow
def test_mala_corrector_reproduces_the_gaussian_marginal_that_ddpm_alone_misses():
    """20 DDPM steps with the exact ε-model of N(0.5, 0.3²) underdisperse (measured variance
    0.046: each ancestral step plugs in E[x₀ | x_t] and drops Var(x₀ | x_t)). Ten MALA steps
    per level (snr rule, r = 0.3; 3-point Simpson energies) restore the variance (measured
    0.0898); ten ULA steps of the same size overshoot to ULA's biased stationary variance
    v/(1 − η/(2v)) ≈ v/(1 − r²) (measured 0.102)."""
    net = GaussianDenoiser(sample_size=4, mean=MU, std=S)

    def sample(**config):
        scheduler = EBMScheduler(
            clip_sample=False, snr=0.3, energy_rule="simpson", energy_points=3, **config
        )
        pipe = quiet(EBMPipeline(unet=net, scheduler=scheduler))
        return pipe(
            batch_size=2000,
            generator=torch.Generator().manual_seed(0),
            num_inference_steps=20,
            output_type="latent",
        ).images.flatten()

    n = 2000 * 16
    se_var = S * S * math.sqrt(2 / n)  # 7e-4
    plain = sample()
    mala = sample(corrector="mala", corrector_steps=10)
    ula = sample(corrector="langevin", corrector_steps=10)
    assert float(plain.var()) < S * S - 0.03
    assert abs(float(mala.mean()) - MU) < 4 * S / math.sqrt(n)
    assert abs(float(mala.var()) - S * S) < 4 * se_var
    assert float(ula.var()) > S * S / (1 - 0.3**2) - 4 * se_var


@pytest.mark.slow
def test_ve_schedule_with_mala_corrector_reproduces_the_gaussian_marginal():
    """VE (SMLD) ancestral sampling over 30 levels σ ∈ [0.01, 20] of the exact VE score model
    of N(0.5, 0.3²), with 5 MALA steps per level: measured mean 0.4998, variance 0.0920
    (without the corrector 0.0712); 16000 coordinates, SE(var) = 0.001."""
    net = GaussianDenoiser(sample_size=4, mean=MU, std=S, prediction_type="score", schedule="ve")
    scheduler = EBMScheduler(
        schedule="ve",
        prediction_type="score",
        sigma_min=0.01,
        sigma_max=20.0,
        clip_sample=False,
        corrector="mala",
        corrector_steps=5,
        snr=0.3,
        energy_rule="simpson",
        energy_points=3,
    )
    pipe = quiet(EBMPipeline(unet=net, scheduler=scheduler))
    x = pipe(
        batch_size=1000,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=30,
        output_type="latent",
    ).images.flatten()
    n = x.numel()
    assert abs(float(x.mean()) - MU) < 4 * S / math.sqrt(n)
    assert abs(float(x.var()) - S * S) < 4 * S * S * math.sqrt(2 / n)
