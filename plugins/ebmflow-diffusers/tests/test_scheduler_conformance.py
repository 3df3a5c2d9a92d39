"""EBMScheduler as a drop-in for DDPMScheduler and DDIMScheduler, as diffusers users call
them: configs of either class, DDIM's positional arguments, diffusers' own numbers (float32
coefficients), the helpers stock pipelines call, and no silent loss of the corrector."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler
from ebmflow_diffusers import EBMScheduler

import ebmflow


@pytest.fixture
def unet(make_unet):
    """A float32 tiny UNet of this module's own (the session one may have been cast)."""
    return make_unet()


def test_from_config_of_a_ddim_config_gives_the_ddim_predictor():
    assert EBMScheduler.from_config(DDIMScheduler().config).config.predictor == "ddim"
    assert EBMScheduler.from_config(DDPMScheduler().config).config.predictor == "ddpm"
    chosen = EBMScheduler.from_config(DDIMScheduler().config, predictor="ddpm")
    assert chosen.config.predictor == "ddpm"
    # an EBMScheduler config names its predictor, which wins
    ddim = EBMScheduler(predictor="ddim", eta=0.3)
    assert EBMScheduler.from_config(ddim.config).config.eta == 0.3


def test_ddim_positional_eta_and_ddpm_positional_generator(unet):
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    # DDIMScheduler.step(out, t, x, eta, use_clipped_model_output, generator);
    # DDPMScheduler.step(out, t, x, generator)
    for stock, args in ((DDIMScheduler(), (1.0, False)), (DDPMScheduler(), ())):
        ours = EBMScheduler.from_config(stock.config)
        for s in (stock, ours):
            s.set_timesteps(10)
        t = stock.timesteps[3]
        out = unet(x, t).sample.detach()
        a = stock.step(out, t, x, *args, torch.Generator().manual_seed(1)).prev_sample
        b = ours.step(out, t, x, *args, torch.Generator().manual_seed(1)).prev_sample
        assert torch.equal(a, b)
    with pytest.raises(ebmflow.ComponentArgumentError, match="both by position and name"):
        ours.step(out, t, x, torch.Generator(), generator=torch.Generator())


def test_closely_spaced_timesteps_give_diffusers_numbers_exactly(unet):
    timesteps = list(range(999, 979, -1))  # float64 coefficients differed by ~1e-4 here
    ref, ours = DDPMScheduler(), EBMScheduler()
    results = []
    for scheduler in (ref, ours):
        scheduler.set_timesteps(timesteps=timesteps)
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(2, 1, 8, 8, generator=gen)
        for t in scheduler.timesteps:
            with torch.no_grad():
                x = scheduler.step(unet(x, t).sample, t, x, generator=gen).prev_sample
        results.append(x)
    assert torch.equal(*results)


def test_previous_timestep_is_a_tensor_and_helpers_match_ddpm():
    ref, ours = DDPMScheduler(), EBMScheduler()
    for s in (ref, ours):
        s.set_timesteps(10)
    t = ref.timesteps[2]
    prev = ours.previous_timestep(t)
    assert isinstance(prev, torch.Tensor) and torch.equal(prev, ref.previous_timestep(t))
    assert torch.equal(ours._get_variance(t), ref._get_variance(t))
    x0 = 3 * torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ours._threshold_sample(x0), ref._threshold_sample(x0))


@pytest.mark.parametrize(
    "variance_type",
    ["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"],
)
def test_every_ddpm_variance_type_is_accepted_and_matches_ddpm(variance_type, unet):
    ref = DDPMScheduler(variance_type=variance_type)
    ours = EBMScheduler.from_config(ref.config)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    for s in (ref, ours):
        s.set_timesteps(10)
    t = ref.timesteps[4]
    out = unet(x, t).sample.detach()
    a = ref.step(out, t, x, generator=torch.Generator().manual_seed(1)).prev_sample
    b = ours.step(out, t, x, generator=torch.Generator().manual_seed(1)).prev_sample
    assert torch.allclose(a, b, rtol=0, atol=0, equal_nan=True)


def test_an_alpha_bar_that_rounds_to_one_is_a_clear_error():
    with pytest.raises(ebmflow.ConfigError, match="alphas_cumprod_0 = 1 in float32"):
        EBMScheduler(beta_start=1e-10, beta_end=1e-10)


def test_ddim_pipeline_cannot_drop_the_corrector_silently(unet):
    with pytest.warns(UserWarning, match="corrector will not run"):
        pipe = DDIMPipeline(unet=unet, scheduler=EBMScheduler(corrector_steps=1))
    assert type(pipe.scheduler) is DDIMScheduler  # what DDIMPipeline does, now said aloud
