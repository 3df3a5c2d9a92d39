"""EBMScheduler: equivalence with DDPMScheduler / DDIMScheduler, and the checks diffusers
applies to its own schedulers (tests/schedulers/test_schedulers.py: save/load equality, tuple
vs dataclass outputs, step shape, add_noise, trained betas, compatibles, attribute access).

Equivalence is tested three ways:

- teacher-forced: both schedulers get the same (model output, t, x_t) and the same noise at
  every step of a 50-step run of a tiny UNet; the scheduler arithmetic alone differs. In
  float32 the outputs agree to 1e-5 relative to the sample's scale (the coefficients are
  computed in float64 here, in float32 by diffusers: about 1e-7 apart).
- free-running in float32 on the exact denoiser of Gaussian data, whose reverse process
  contracts, so rounding differences do not grow: 1e-5 after 50 steps. (A random UNet is
  not a denoiser and amplifies a 1-ulp difference over 50 steps: DDIMScheduler against
  itself with float64 tables drifts by ~7e-3 on it, and so does any reimplementation.)
- free-running in float64 on the tiny UNet: 1e-10 after 50 steps, against a reference whose
  float32 tables are cast to float64 (the tables themselves are bit-identical; diffusers
  computes its coefficients from float32 tables even for float64 samples).
"""

from __future__ import annotations

import inspect
import tempfile

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler
from ebmflow_diffusers import EBMScheduler, GaussianDenoiser

import ebmflow

STEPS = 50
#: configurations run in the fast suite; the others are marked slow (~1-3 s each on one core)
FAST = {"default"}


def params(names, *extra):
    """pytest params over config names (× ``extra`` values), the non-FAST ones marked slow."""
    out = []
    for name in sorted(names):
        for value in extra or (None,):
            args = (name,) if not extra else (name, value)
            fast = name in FAST and (not extra or value == extra[-1])
            out.append(pytest.param(*args, marks=() if fast else pytest.mark.slow))
    return out


DDPM_CONFIGS = {
    "default": {},
    "v": {"prediction_type": "v_prediction"},
    "x0": {"prediction_type": "sample"},
    "scaled-linear-large": {
        "beta_schedule": "scaled_linear",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "variance_type": "fixed_large",
    },
    "cosine-small-log": {"beta_schedule": "squaredcos_cap_v2", "variance_type": "fixed_small_log"},
    "sigmoid-trailing-noclip": {
        "beta_schedule": "sigmoid",
        "timestep_spacing": "trailing",
        "clip_sample": False,
    },
    "laplace-linspace": {"beta_schedule": "laplace", "timestep_spacing": "linspace"},
    "thresholding": {"thresholding": True, "sample_max_value": 1.5},
    "offset": {"steps_offset": 1},
    "zero-snr-v": {
        "rescale_betas_zero_snr": True,
        "prediction_type": "v_prediction",
        "timestep_spacing": "trailing",
    },
    "trained-betas": {"trained_betas": np.linspace(1e-4, 0.02, 1000).tolist()},
}
DDIM_CONFIGS = {
    "default": {},
    "alpha-not-one": {"set_alpha_to_one": False},
    "trailing-v-noclip": {
        "timestep_spacing": "trailing",
        "prediction_type": "v_prediction",
        "clip_sample": False,
    },
    "x0": {"prediction_type": "sample"},
}


def upcast(ref):
    """The reference with its float32 tables as float64 (same values)."""
    ref.alphas_cumprod = ref.alphas_cumprod.to(torch.float64)
    if hasattr(ref, "one"):
        ref.one = ref.one.to(torch.float64)
    if hasattr(ref, "final_alpha_cumprod"):
        ref.final_alpha_cumprod = ref.final_alpha_cumprod.to(torch.float64)
    return ref


def model_fn(net, dtype):
    net = net.to(dtype)

    def call(x, t):
        with torch.no_grad():
            return net(x, t).sample

    return call


def free_run(scheduler, model, dtype, step_kwargs=None, shape=(4, 1, 8, 8), seed=1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=gen, dtype=dtype)
    scheduler.set_timesteps(STEPS)
    for t in scheduler.timesteps:
        x = scheduler.step(model(x, t), t, x, generator=gen, **(step_kwargs or {})).prev_sample
    return x


def teacher_forced(ref, ours, model, dtype, ref_kwargs=None, shape=(4, 1, 8, 8)):
    """max over steps of |ours − ref| / max(1, max|ref|), both fed the reference's inputs."""
    g_ref, g_ours = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=dtype)
    ref.set_timesteps(STEPS)
    ours.set_timesteps(STEPS)
    assert torch.equal(ref.timesteps, ours.timesteps)
    worst = 0.0
    for t in ref.timesteps:
        out = model(x, t)
        r = ref.step(out, t, x, generator=g_ref, **(ref_kwargs or {}))
        o = ours.step(out, t, x, generator=g_ours)
        scale = max(1.0, float(r.prev_sample.abs().max()))
        worst = max(worst, float((r.prev_sample - o.prev_sample).abs().max()) / scale)
        x0_scale = max(1.0, float(r.pred_original_sample.abs().max()))
        worst = max(
            worst, float((r.pred_original_sample - o.pred_original_sample).abs().max()) / x0_scale
        )
        x = r.prev_sample
    return worst


@pytest.mark.parametrize("name", sorted(DDPM_CONFIGS))
def test_tables_are_bit_identical_to_ddpm(name):
    ref, ours = DDPMScheduler(**DDPM_CONFIGS[name]), EBMScheduler(**DDPM_CONFIGS[name])
    assert torch.equal(ref.betas, ours.betas)
    assert torch.equal(ref.alphas_cumprod, ours.alphas_cumprod)


@pytest.mark.parametrize("name", params(DDPM_CONFIGS))
def test_ddpm_predictor_matches_ddpm_scheduler_step_by_step_float32(name, make_unet):
    config = DDPM_CONFIGS[name]
    learned = config.get("variance_type", "").startswith("learned")
    model = model_fn(make_unet(out_channels=2 if learned else 1), torch.float32)
    ref = DDPMScheduler(**config)
    ours = EBMScheduler.from_config(ref.config)
    assert teacher_forced(ref, ours, model, torch.float32) < 1e-5


@pytest.mark.slow
def test_learned_range_variance_matches_ddpm(make_unet):
    model = model_fn(make_unet(out_channels=2), torch.float32)
    ref = DDPMScheduler(variance_type="learned_range")
    assert teacher_forced(ref, EBMScheduler.from_config(ref.config), model, torch.float32) < 1e-5


@pytest.mark.parametrize("name,eta", params(DDIM_CONFIGS, 0.0, 1.0))
def test_ddim_predictor_matches_ddim_scheduler_step_by_step_float32(name, eta, unet):
    ref = DDIMScheduler(**DDIM_CONFIGS[name])
    ours = EBMScheduler.from_config(ref.config, predictor="ddim", eta=eta)
    assert (
        teacher_forced(ref, ours, model_fn(unet, torch.float32), torch.float32, {"eta": eta}) < 1e-5
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
@pytest.mark.parametrize("predictor,eta", [("ddpm", None), ("ddim", 0.0), ("ddim", 1.0)])
def test_free_running_float32_on_exact_denoiser_within_1e5(prediction_type, predictor, eta):
    net = GaussianDenoiser(sample_size=8, mean=0.3, std=0.5, prediction_type=prediction_type)
    model = model_fn(net, torch.float32)
    if predictor == "ddpm":
        ref, kwargs = DDPMScheduler(prediction_type=prediction_type), None
        ours = EBMScheduler.from_config(ref.config)
    else:
        ref, kwargs = DDIMScheduler(prediction_type=prediction_type), {"eta": eta}
        ours = EBMScheduler.from_config(ref.config, predictor="ddim", eta=eta)
    a = free_run(ref, model, torch.float32, kwargs)
    b = free_run(ours, model, torch.float32)
    assert float((a - b).abs().max()) < 1e-5


@pytest.mark.parametrize(
    "name",
    params(["default", "v", "scaled-linear-large", "sigmoid-trailing-noclip", "thresholding"]),
)
def test_ddpm_free_running_float64_is_ddpm_scheduler_exactly(name, make_unet):
    # drop-in means diffusers' numbers: its float32 tables and coefficients, also on
    # float64 samples
    model = model_fn(make_unet(), torch.float64)
    ref = DDPMScheduler(**DDPM_CONFIGS[name])
    ours = EBMScheduler.from_config(ref.config)
    assert torch.equal(free_run(ref, model, torch.float64), free_run(ours, model, torch.float64))


@pytest.mark.parametrize("name,eta", params(DDIM_CONFIGS, 0.0, 1.0))
def test_ddim_free_running_float64_is_ddim_scheduler_exactly(name, eta, make_unet):
    model = model_fn(make_unet(), torch.float64)
    ref = DDIMScheduler(**DDIM_CONFIGS[name])
    ours = EBMScheduler.from_config(ref.config, predictor="ddim", eta=eta)
    a = free_run(ref, model, torch.float64, {"eta": eta})
    assert torch.equal(a, free_run(ours, model, torch.float64))


@pytest.mark.slow
def test_ddim_eta_one_with_clipped_output_is_ddpm(unet):
    """DDIM with η = 1 and ε̂ recomputed from the clipped x̂₀ is the DDPM posterior."""
    model = model_fn(unet, torch.float64)
    ddpm = EBMScheduler()
    ddim = EBMScheduler(predictor="ddim", eta=1.0, timestep_spacing="leading")
    a = free_run(ddpm, model, torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 1, 8, 8, generator=gen, dtype=torch.float64)
    ddim.set_timesteps(STEPS)
    for t in ddim.timesteps:
        x = ddim.step(model(x, t), t, x, generator=gen, use_clipped_model_output=True).prev_sample
    # the two updates are equal in exact arithmetic; both compute their coefficients in
    # float32 as diffusers does, in different orders, so they agree to float32 rounding
    assert float((a - x).abs().max()) < 2e-5


def test_drop_in_for_stock_ddpm_pipeline(unet):
    ref = DDPMPipeline(unet=unet, scheduler=DDPMScheduler())
    ours = DDPMPipeline(unet=unet, scheduler=EBMScheduler.from_config(ref.scheduler.config))
    for pipe in (ref, ours):
        pipe.set_progress_bar_config(disable=True)
    a = ref(
        batch_size=3,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=20,
        output_type="np",
    ).images
    b = ours(
        batch_size=3,
        generator=torch.Generator().manual_seed(0),
        num_inference_steps=20,
        output_type="np",
    ).images
    assert np.abs(a - b).max() < 1e-5


# -- conversions and persistence ---------------------------------------------------------


def test_converts_to_and_from_ddpm_scheduler():
    ebm = EBMScheduler(
        prediction_type="v_prediction",
        beta_schedule="scaled_linear",
        corrector="mala",
        corrector_steps=2,
    )
    ddpm = DDPMScheduler.from_config(ebm.config)
    assert ddpm.config.prediction_type == "v_prediction"
    assert torch.equal(ddpm.alphas_cumprod, ebm.alphas_cumprod)
    back = EBMScheduler.from_config(ddpm.config, corrector="mala", corrector_steps=2)
    assert {k: v for k, v in back.config.items() if k != "_use_default_values"} == {
        k: v for k, v in ebm.config.items() if k != "_use_default_values"
    }


def test_save_pretrained_round_trip_keeps_the_corrector(tmp_path):
    ebm = EBMScheduler(
        corrector="hmc",
        corrector_steps=3,
        corrector_args={"n_leapfrog": 4},
        step_size_rule="beta",
        step_size_scale=0.5,
        energy_rule="simpson",
        energy_points=3,
    )
    ebm.save_pretrained(tmp_path)
    loaded = EBMScheduler.from_pretrained(tmp_path)
    config = dict(ebm.config)
    del config["_use_default_values"]
    assert dict(loaded.config) == config
    assert loaded.make_corrector(0.1).n_leapfrog == 4


def test_registered_as_the_scheduler_ebm():
    scheduler = ebmflow.create("scheduler", "ebm", predictor="ddim", eta=0.5)
    assert isinstance(scheduler, EBMScheduler)
    assert scheduler.config.eta == 0.5


# -- diffusers' scheduler checks -------------------------------------------------------

CHECK_CONFIGS = {
    "ddpm": {
        "num_train_timesteps": 1000,
        "beta_start": 0.0001,
        "beta_end": 0.02,
        "beta_schedule": "linear",
        "variance_type": "fixed_small",
        "clip_sample": True,
    },
    "ddim": {"predictor": "ddim", "eta": 0.5},
    "ddpm-with-corrector": {"corrector": "mala", "corrector_steps": 2},
    "ve": {"schedule": "ve", "prediction_type": "score", "sigma_min": 0.01, "sigma_max": 50.0},
}


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def dummy_sample():
    return torch.rand((4, 3, 8, 8), generator=torch.Generator().manual_seed(0))


def timestep_for(scheduler, index=1):
    if scheduler.config.schedule == "ve":
        scheduler.set_timesteps(10)
        return scheduler.timesteps[index]
    return index


@pytest.fixture(params=sorted(CHECK_CONFIGS))
def check_config(request):
    return CHECK_CONFIGS[request.param]


def test_check_from_save_pretrained_gives_identical_steps(check_config):
    for time_step in (0, 1, 5):
        scheduler = EBMScheduler(**check_config)
        sample = dummy_sample()
        residual = 0.1 * sample
        with tempfile.TemporaryDirectory() as folder:
            scheduler.save_config(folder)
            new = EBMScheduler.from_pretrained(folder)
        t = timestep_for(scheduler, time_step)
        if scheduler.config.schedule == "ve":
            new.set_timesteps(10)
        out = scheduler.step(residual, t, sample, generator=seeded()).prev_sample
        new_out = new.step(residual, t, sample, generator=seeded()).prev_sample
        assert torch.sum(torch.abs(out - new_out)) < 1e-5


def test_check_from_pretrained_config_equality(check_config, tmp_path):
    scheduler = EBMScheduler(**check_config)
    scheduler.save_pretrained(tmp_path)
    new = EBMScheduler.from_pretrained(tmp_path)
    config = dict(scheduler.config)
    del config["_use_default_values"]
    assert config == new.config


def test_check_step_shape(check_config):
    scheduler = EBMScheduler(**check_config)
    sample = dummy_sample()
    residual = 0.1 * sample
    t0, t1 = timestep_for(scheduler, 0), timestep_for(scheduler, 1)
    out0 = scheduler.step(residual, t0, sample).prev_sample
    out1 = scheduler.step(residual, t1, sample).prev_sample
    assert out0.shape == sample.shape == out1.shape


def test_check_tuple_and_dataclass_outputs_agree(check_config):
    scheduler = EBMScheduler(**check_config)
    sample = dummy_sample()
    residual = 0.1 * sample
    scheduler.set_timesteps(50, repeat_for_corrector=False)
    t = scheduler.timesteps[-1]
    as_dict = scheduler.step(residual, t, sample, generator=torch.Generator().manual_seed(0))
    scheduler.set_timesteps(50, repeat_for_corrector=False)
    as_tuple = scheduler.step(
        residual, t, sample, generator=torch.Generator().manual_seed(0), return_dict=False
    )
    assert isinstance(as_tuple, tuple) and len(as_tuple) == 2
    for a, b in zip(as_tuple, as_dict.values()):
        assert torch.allclose(a, b, atol=1e-5)


def test_check_public_api(check_config):
    scheduler = EBMScheduler(**check_config)
    assert hasattr(scheduler, "init_noise_sigma")
    sample = dummy_sample()
    assert scheduler.scale_model_input(sample, 0.0).shape == sample.shape
    assert callable(scheduler.step)


def test_check_add_noise(check_config):
    scheduler = EBMScheduler(**check_config)
    scheduler.set_timesteps(100, repeat_for_corrector=False)
    sample = dummy_sample()
    noise = torch.randn(sample.shape, generator=torch.Generator().manual_seed(1))
    t = scheduler.timesteps[5][None]
    noised = scheduler.add_noise(sample, noise, t)
    assert noised.shape == sample.shape
    if scheduler.config.schedule == "vp":
        ref = DDPMScheduler.from_config(scheduler.config)
        assert torch.equal(noised, ref.add_noise(sample, noise, t))
        assert torch.equal(
            scheduler.get_velocity(sample, noise, t), ref.get_velocity(sample, noise, t)
        )
    else:
        assert torch.allclose(noised, sample + float(t) * noise)


def test_check_no_kwargs_without_deprecations():
    has_kwargs = "kwargs" in inspect.signature(EBMScheduler.__init__).parameters
    assert has_kwargs == (len(EBMScheduler._deprecated_kwargs) > 0)


def test_check_trained_betas_round_trip(tmp_path):
    scheduler = EBMScheduler(**CHECK_CONFIGS["ddpm"], trained_betas=np.array([0.1, 0.3]))
    scheduler.save_pretrained(tmp_path)
    new = EBMScheduler.from_pretrained(tmp_path)
    assert scheduler.betas.tolist() == new.betas.tolist()


@pytest.mark.slow  # builds every compatible diffusers scheduler (~4 s)
def test_check_compatibles_convert_both_ways():
    scheduler = EBMScheduler(**CHECK_CONFIGS["ddpm"])
    assert scheduler.compatibles and all(c is not None for c in scheduler.compatibles)
    converted = 0
    for cls in scheduler.compatibles:
        try:
            other = cls.from_config(scheduler.config)
        except ImportError:  # a compatible scheduler with an optional dependency (torchsde)
            continue
        converted += 1
        new = EBMScheduler.from_config(other.config)
        new_config = {k: v for k, v in new.config.items() if k in scheduler.config}
        assert new_config == dict(scheduler.config)
    assert converted >= 10


def test_check_attribute_access():
    scheduler = EBMScheduler()
    scheduler.dummy_attribute = 5
    scheduler.register_to_config(test_attribute=5)
    assert scheduler.dummy_attribute == 5
    with pytest.warns(FutureWarning):
        assert scheduler.test_attribute == 5
    with pytest.raises(AttributeError) as error:
        scheduler.does_not_exist  # noqa: B018
    assert str(error.value) == "'EBMScheduler' object has no attribute 'does_not_exist'"


# -- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"predictor": "heun"}, "predictor must be one of 'ddpm', 'ddim'"),
        ({"prediction_type": "score"}, "prediction_type must be one of 'epsilon'"),
        ({"schedule": "ve", "prediction_type": "v_prediction"}, "'score', 'epsilon', 'sample'"),
        ({"variance_type": "fixed_huge"}, "variance_type must be one of"),
        ({"step_size_rule": "adaptive"}, "step_size_rule must be one of 'snr', 'beta'"),
        ({"energy_rule": "simpson", "energy_points": 4}, "odd number of points"),
        ({"corrector_steps": -1}, "corrector_steps must be an integer ≥ 0"),
        ({"eta": -0.5}, "eta must be a finite number ≥ 0"),
        (
            {"corrector_steps": 1, "corrector_args": {"n_leapfrg": 3}, "corrector": "hmc"},
            "did you mean 'n_leapfrog'",
        ),
    ],
)
def test_bad_arguments_name_the_value_and_what_is_accepted(kwargs, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        EBMScheduler(**kwargs)


def test_unknown_corrector_lists_the_samplers():
    with pytest.raises(ebmflow.UnknownComponentError, match="mala"):
        EBMScheduler(corrector="malla")


def test_metropolis_corrector_refuses_the_stock_loop():
    scheduler = EBMScheduler(corrector="mala", corrector_steps=2)
    with pytest.raises(ValueError, match="only 'langevin' runs inside a stock pipeline"):
        scheduler.set_timesteps(10)
    scheduler.set_timesteps(10, repeat_for_corrector=False)  # EBMPipeline's way
    assert len(scheduler.timesteps) == 10


def test_stock_loop_repeats_timesteps_for_langevin():
    scheduler = EBMScheduler(corrector="langevin", corrector_steps=2)
    scheduler.set_timesteps(5)
    assert scheduler.order == 3
    assert scheduler.timesteps.tolist() == [t for t in (800, 600, 400, 200, 0) for _ in range(3)]
    assert scheduler.predictor_timesteps.tolist() == [800, 600, 400, 200, 0]
    sample = dummy_sample()
    scheduler.step(0.1 * sample, 800, sample)
    with pytest.raises(ValueError, match=r"must follow scheduler\.timesteps in order"):
        scheduler.step(0.1 * sample, 600, sample)


def test_stock_pipeline_holding_it_round_trips(unet, tmp_path):
    pipe = DDPMPipeline(unet=unet, scheduler=EBMScheduler(corrector="langevin", corrector_steps=1))
    pipe.save_pretrained(tmp_path)
    loaded = DDPMPipeline.from_pretrained(tmp_path)
    assert isinstance(loaded.scheduler, EBMScheduler)
    assert loaded.scheduler.config.corrector_steps == 1


def test_step_size_rules():
    """beta: η = c (σ_t² − σ_{t−1}²) = c β_t / ᾱ_t (VP); snr: η = 2 (r √d / mean‖s‖)²."""
    scheduler = EBMScheduler(step_size_rule="beta", step_size_scale=0.5)
    for t in (0, 1, 500, 999):
        want = 0.5 * float(scheduler.betas[t]) / float(scheduler.alphas_cumprod[t])
        assert scheduler.level_step_size(t) == pytest.approx(want, rel=1e-5)
    ve = EBMScheduler(
        schedule="ve",
        prediction_type="score",
        step_size_rule="beta",
        num_train_timesteps=11,
        sigma_min=0.01,
        sigma_max=100.0,
    )
    q = (100.0 / 0.01) ** 0.1  # neighbouring training levels differ by this factor
    assert ve.level_step_size(2.0) == pytest.approx(4.0 * (1 - q**-2), rel=1e-12)
    snr = EBMScheduler(step_size_rule="snr", snr=0.2)
    score = torch.full((3, 1, 4, 4), 0.5)  # ‖s‖ = 0.5 · 4 = 2, d = 16
    assert snr.level_step_size(10, score) == pytest.approx(2 * (0.2 * 4 / 2) ** 2)
    with pytest.raises(ValueError, match="snr step-size rule needs the score"):
        snr.level_step_size(10)
