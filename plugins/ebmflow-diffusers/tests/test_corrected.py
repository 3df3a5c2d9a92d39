"""with_corrector / add_corrector: diffusers' own schedulers with an MCMC corrector.

With the corrector off each class must be its diffusers base (same samples, bit for bit, in a
loop and in stock pipelines); with it on, the corrector must work in each scheduler's own
sample space (the score at a level is the exact one on the Gaussian denoiser, and a corrector
leaves that level's exact marginal in place)."""

from __future__ import annotations

import inspect
import math
import warnings

import pytest
import torch
from diffusers import (
    DDIMPipeline,
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    EDMEulerScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UniPCMultistepScheduler,
)
from ebmflow_diffusers import (
    EBMDDIMScheduler,
    EBMDDPMScheduler,
    GaussianDenoiser,
    add_corrector,
    tiny,
    with_corrector,
)
from ebmflow_diffusers.sample_space import LevelScore, level

import ebmflow


@pytest.fixture
def unet(make_unet):
    """A float32 tiny UNet of this module's own (the session one may have been cast)."""
    return make_unet()


BASES = (
    DDPMScheduler,
    DDIMScheduler,
    EulerDiscreteScheduler,
    EulerAncestralDiscreteScheduler,
    HeunDiscreteScheduler,
    DPMSolverMultistepScheduler,
    EDMEulerScheduler,
    UniPCMultistepScheduler,
)
IDS = [base.__name__ for base in BASES]


def loop(scheduler, model, steps=4, batch=2, seed=0, shape=(1, 8, 8)):
    """A stock pipeline's loop: scale_model_input, the model, step (with a generator where
    step takes one)."""
    takes_generator = "generator" in inspect.signature(scheduler.step).parameters
    gen = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    x = torch.randn(batch, *shape, generator=gen) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        with torch.no_grad():
            out = model(scheduler.scale_model_input(x, t), t).sample
        kwargs = {"generator": gen} if takes_generator else {}
        x = scheduler.step(out, t, x, **kwargs).prev_sample
    return x


@pytest.mark.parametrize("base", BASES, ids=IDS)
def test_corrector_off_is_the_base_scheduler_bit_for_bit(base, unet):
    ours = with_corrector(base)()
    assert isinstance(ours, base)
    assert torch.equal(loop(ours, unet), loop(base(), unet))


@pytest.mark.parametrize("base", BASES, ids=IDS)
def test_config_round_trips_with_the_base_class(base, tmp_path):
    klass = with_corrector(base)
    ours = klass.from_config(base().config, corrector="mala", corrector_steps=2)
    assert ours.config.corrector == "mala" and ours.config.corrector_steps == 2
    stock = base.from_config(ours.config)  # corrector entries are ignored by the base
    assert type(stock) is base
    ours.save_pretrained(tmp_path)
    loaded = klass.from_pretrained(tmp_path)
    assert loaded.config.corrector_steps == 2
    assert base in ours.compatibles
    # the signatures pipelines inspect are the base's
    for name in ("step", "set_timesteps"):
        assert inspect.signature(getattr(ours, name)) == inspect.signature(getattr(base(), name))


def test_stock_ddpm_and_ddim_pipelines_identical_with_the_corrector_off(unet):
    for pipe_class, base in ((DDPMPipeline, DDPMScheduler), (DDIMPipeline, DDIMScheduler)):
        images = []
        for scheduler in (base(), with_corrector(base)()):
            pipe = pipe_class(unet=unet, scheduler=base())
            pipe.scheduler = scheduler  # after __init__: DDIMPipeline rebuilds its own
            pipe.set_progress_bar_config(disable=True)
            out = pipe(
                batch_size=2,
                generator=torch.Generator().manual_seed(0),
                num_inference_steps=5,
                output_type="np",
            )
            images.append(out.images)
        assert (images[0] == images[1]).all()


@pytest.mark.parametrize("base", BASES, ids=IDS)
@pytest.mark.parametrize("corrector", ["langevin", "mala"])
def test_corrector_runs_and_is_seeded(base, corrector, unet):
    def run():
        scheduler = with_corrector(base)(corrector=corrector, corrector_steps=2)
        scheduler.bind_model(unet, generator=torch.Generator().manual_seed(5))
        return loop(scheduler, unet), scheduler.corrector_log

    (a, log), (b, _) = run(), run()
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert log and all(eta > 0 for eta, _ in log)
    if corrector == "mala":
        assert all(0 <= rate <= 1 for _, rate in log)
    assert not torch.equal(a, loop(base(), unet))


@pytest.mark.parametrize("k", [1, 3])
def test_a_langevin_corrector_costs_one_network_call_per_step(k, unet):
    """The pipeline's own call at the sample seeds the corrector, and the output at the
    corrected sample is the one its last step evaluated: k Langevin steps add exactly k
    calls per level, as a hand-written corrector loop makes."""
    calls = []

    def denoise(x, t):
        calls.append(t)
        return unet(x, t).sample

    scheduler = EBMDDPMScheduler(corrector="langevin", corrector_steps=k)
    scheduler.bind_model(denoise=denoise, generator=torch.Generator().manual_seed(0))
    steps = 4
    x = loop(scheduler, unet, steps=steps)
    assert torch.isfinite(x).all()
    # the last level (t = 0 after spacing, σ > 0) is corrected too; every level adds k
    assert len(calls) == k * steps


def test_heun_corrects_on_its_first_order_calls_only(unet):
    scheduler = with_corrector(HeunDiscreteScheduler)(corrector_steps=1)
    scheduler.bind_model(unet, generator=torch.Generator().manual_seed(0))
    loop(scheduler, unet, steps=4)
    assert len(scheduler.corrector_log) == 4  # 7 step calls, one correction per level


def test_add_corrector_survives_ddim_pipeline_and_warns_where_it_would_be_dropped(unet):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe = DDIMPipeline(unet=unet, scheduler=EBMDDIMScheduler())  # corrector off: quiet
    with pytest.warns(UserWarning, match="add_corrector"):
        DDIMPipeline(unet=unet, scheduler=EBMDDIMScheduler(corrector_steps=2))
    add_corrector(pipe, "mala", 2, snr=0.1)
    assert type(pipe.scheduler) is EBMDDIMScheduler
    assert pipe.scheduler.config.corrector == "mala" and pipe.scheduler.config.snr == 0.1
    pipe.set_progress_bar_config(disable=True)
    out = pipe(batch_size=2, generator=torch.Generator().manual_seed(0), num_inference_steps=3)
    assert len(out.images) == 2 and len(pipe.scheduler.corrector_log) == 3


def test_pipeline_with_a_corrector_saves_and_loads(unet, tmp_path):
    pipe = add_corrector(DDPMPipeline(unet=unet, scheduler=DDPMScheduler()), "langevin", 1)
    pipe.save_pretrained(tmp_path)
    loaded = DiffusionPipeline.from_pretrained(tmp_path)
    assert type(loaded.scheduler) is EBMDDPMScheduler
    assert loaded.scheduler.config.corrector_steps == 1


def test_clear_errors():
    scheduler = EBMDDPMScheduler(corrector_steps=1)
    out = torch.zeros(1, 1, 8, 8)
    scheduler.set_timesteps(2)
    with pytest.raises(ebmflow.ConfigError, match="add_corrector"):
        scheduler.step(out, scheduler.timesteps[0], out, generator=torch.Generator())
    heun = with_corrector(HeunDiscreteScheduler)(corrector_steps=1)
    heun.bind_model(denoise=lambda x, t: torch.zeros_like(x))
    heun.set_timesteps(2)
    with pytest.raises(ebmflow.ConfigError, match="generator"):
        heun.step(out, heun.timesteps[0], out)
    with pytest.raises(ebmflow.ComponentArgumentError, match="EulerDiscreteScheduler"):
        with_corrector(FlowMatchEulerDiscreteScheduler)
    with pytest.raises(ebmflow.ConfigError, match="corrector_steps"):
        EBMDDPMScheduler(corrector_steps=-1)
    with pytest.raises(ebmflow.ConfigError, match="EDM"):
        with_corrector(EDMEulerScheduler)(step_size_rule="beta")
    with pytest.raises(ebmflow.ConfigError, match="prediction_type"):
        with_corrector(DPMSolverMultistepScheduler)(
            prediction_type="flow_prediction", corrector_steps=1
        )
    cond = tiny.text_unet(channels=1, embedding_dim=8)
    with pytest.raises(ebmflow.ComponentArgumentError, match="encoder_hidden_states"):
        scheduler.bind_model(cond)


MU, STD = 0.5, 0.7
SPACE_BASES = [b for b in BASES if b is not EDMEulerScheduler]  # EDM needs an EDM network


def exact_level(base, step=1, steps=10):
    """The scheduler at its ``step``-th level, its (σ, c) and the exact denoiser's LevelScore."""
    model = GaussianDenoiser(sample_size=4, mean=MU, std=STD)
    scheduler = with_corrector(base)(
        beta_start=0.0001,  # the denoiser's training schedule (Heun's default differs)
        beta_end=0.02,
        beta_schedule="linear",
        corrector="mala",
        corrector_steps=10,
        snr=0.2,
    )
    scheduler.bind_model(model, generator=torch.Generator().manual_seed(1))
    scheduler.set_timesteps(steps)
    t = scheduler.timesteps[step * getattr(scheduler, "order", 1)]
    if hasattr(scheduler, "_init_step_index"):
        scheduler._init_step_index(t)
    sigma, scale = level(scheduler, t, scheduler.sample_space)
    return scheduler, model, t, sigma, scale


@pytest.mark.parametrize("base", SPACE_BASES, ids=[b.__name__ for b in SPACE_BASES])
def test_level_score_is_the_exact_score_in_each_sample_space(base):
    scheduler, model, t, sigma, scale = exact_level(base)
    assert scale == (1.0 if scheduler.sample_space == "ve" else 1 / math.sqrt(1 + sigma**2))
    energy = LevelScore(
        scheduler, lambda x, t: model(x, t).sample, t, sigma, scale, scheduler.sample_space
    )
    x = torch.randn(8, 1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = -(x - MU) / (STD**2 + sigma**2)
    assert torch.allclose(energy.score(x.float()).double(), exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("base", [DDPMScheduler, EulerDiscreteScheduler], ids=["vp", "ve"])
def test_corrector_keeps_the_exact_marginal_of_its_level(base):
    scheduler, model, t, sigma, scale = exact_level(base, step=5)
    var = STD**2 + sigma**2
    gen = torch.Generator().manual_seed(2)
    x_ve = MU + math.sqrt(var) * torch.randn(4000, 1, 4, 4, generator=gen)
    with torch.no_grad():
        output = model(scheduler.scale_model_input(x_ve * scale, t), t).sample
    _, sample = scheduler.correct(output, t, x_ve * scale, gen)
    moved = sample / scale
    assert float((moved - x_ve).abs().mean()) > 0.05 * math.sqrt(var)  # it did move
    n = moved.numel()
    assert abs(float(moved.mean()) - MU) < 5 * math.sqrt(var / n) + 5e-3
    assert abs(float(moved.var()) / var - 1) < 5 * math.sqrt(2 / n) + 5e-3
