"""The converter ``diffusers`` and ``ebmflow convert``: tiny real pipelines saved with
``save_pretrained`` become VE score models whose scores are the model outputs mapped as
k-diffusion maps them; the ebmflow checkpoint round-trips bit for bit; unsupported folders
say what is missing and what is supported."""

from __future__ import annotations

import json
import math
import shutil

import pytest
import torch
from diffusers import DDIMScheduler, DDPMPipeline, DDPMScheduler, ScoreSdeVeScheduler
from ebmflow_diffusers import (
    ConversionError,
    DiffusersScoreModel,
    GaussianDenoiser,
    convert,
)
from torch.overrides import TorchFunctionMode

import ebmflow
from ebmflow.cli import main as cli_main

TIMESTEPS = (0, 10, 500, 999)


def vp_sigma(scheduler, t):
    ac = float(scheduler.alphas_cumprod[t])
    return math.sqrt((1 - ac) / ac), ac


def expected_score(prediction_type, out, x_ve, x_vp, sigma, ac):
    if prediction_type == "epsilon":
        return -out / sigma
    if prediction_type == "v_prediction":
        eps = math.sqrt(ac) * out + math.sqrt(1 - ac) * x_vp
        return -eps / sigma
    return (out - x_ve) / sigma**2  # x0-prediction


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_converted_unet_scores_are_its_outputs_in_ve_coordinates(
    prediction_type, unet, save_pipeline, tmp_path
):
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    model = convert(save_pipeline(tmp_path / "pipe", unet, scheduler))
    assert isinstance(model, DiffusersScoreModel) and model.event_shape == (1, 8, 8)
    assert not model.has_energy and model.noise_conditional
    gen = torch.Generator().manual_seed(0)
    for t in TIMESTEPS:
        sigma, ac = vp_sigma(scheduler, t)
        x_ve = torch.randn(3, 1, 8, 8, generator=gen) * math.sqrt(1 + sigma**2)
        x_vp = math.sqrt(ac) * x_ve
        with torch.no_grad():
            out = unet(x_vp, torch.tensor(t)).sample
            score = model.score(x_ve, sigma)
        want = expected_score(prediction_type, out, x_ve, x_vp, sigma, ac)
        # float32: the maps differ from the reference's arithmetic by a few ulps
        assert torch.allclose(score, want, rtol=1e-4, atol=1e-5 * float(want.abs().max())), t


def test_noise_levels_between_training_levels_interpolate_the_timestep(
    unet, save_pipeline, tmp_path
):
    scheduler = DDPMScheduler()
    model = convert(save_pipeline(tmp_path / "pipe", unet, scheduler))
    s100, _ = vp_sigma(scheduler, 100)
    s101, _ = vp_sigma(scheduler, 101)
    sigma = math.exp(0.25 * math.log(s100) + 0.75 * math.log(s101))  # t = 100.75 in log σ
    ac = 1 / (1 + sigma**2)
    x_ve = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = unet(math.sqrt(ac) * x_ve, torch.tensor([100.75, 100.75])).sample
        score = model.score(x_ve, sigma)
    assert torch.allclose(score, -out / sigma, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction", "sample"])
def test_converted_exact_gaussian_denoiser_gives_the_exact_ve_score(
    prediction_type, save_pipeline, tmp_path
):
    """The whole map (σ → t, x_ve → x_t, output → score) is exact: the converted exact
    denoiser of N(μ, s²) data has the score −(x − μ)/(s² + σ²) of the VE marginal."""
    mu, s = 0.5, 0.3
    net = GaussianDenoiser(sample_size=4, mean=mu, std=s, prediction_type=prediction_type)
    folder = save_pipeline(tmp_path / "pipe", net, DDPMScheduler(prediction_type=prediction_type))
    model = convert(folder).to(torch.float64)
    mu, s = (float(torch.tensor(v, dtype=torch.float32)) for v in (mu, s))  # as stored
    x = torch.randn(5, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for sigma in (0.02, 0.1, 1.0, 10.0, 100.0):  # inside [σ_0, σ_999] = [0.0100005, 156.9]
        got = model.score(x * math.sqrt(s * s + sigma * sigma) + mu, sigma)
        want = -(x * math.sqrt(s * s + sigma * sigma)) / (s * s + sigma * sigma)
        assert torch.allclose(got, want, rtol=1e-9, atol=0), sigma


def test_ve_schedules_convert_score_models(unet, save_pipeline, tmp_path):
    # a VE (ScoreSdeVe) pipeline: the network takes σ and outputs the score itself
    folder = save_pipeline(tmp_path / "ve", unet, ScoreSdeVeScheduler(sigma_max=50.0))
    model = convert(folder)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)) * 3.0
    with torch.no_grad():
        assert torch.allclose(model.score(x, 3.0), unet(x, torch.tensor([3.0, 3.0])).sample)
    exact = GaussianDenoiser(
        sample_size=4, mean=-0.2, std=0.7, prediction_type="score", schedule="ve"
    )
    model = convert(save_pipeline(tmp_path / "ve-exact", exact, ScoreSdeVeScheduler()))
    x = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(model.score(x, 2.0), -(x + 0.2) / (0.49 + 4.0), rtol=1e-6)


def test_learned_variance_models_score_from_their_first_channels(
    make_unet, save_pipeline, tmp_path
):
    net = make_unet(out_channels=2)
    scheduler = DDPMScheduler(variance_type="learned_range")
    model = convert(save_pipeline(tmp_path / "pipe", net, scheduler))
    sigma, ac = vp_sigma(scheduler, 300)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        out = net(math.sqrt(ac) * x, torch.tensor(300)).sample[:, :1]
    assert torch.allclose(model.score(x, sigma), -out / sigma, rtol=1e-4, atol=1e-6)


def test_objects_and_folders_convert_alike(unet, save_pipeline, tmp_path):
    scheduler = DDIMScheduler(prediction_type="v_prediction")
    from_folder = convert(save_pipeline(tmp_path / "pipe", unet, scheduler))
    from_objects = convert(unet=unet, scheduler=scheduler)
    from_pipeline = convert(DDPMPipeline(unet=unet, scheduler=scheduler))
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        ref = from_folder.score(x, 0.7)
        assert torch.equal(from_objects.score(x, 0.7), ref)
        assert torch.equal(from_pipeline.score(x, 0.7), ref)
    assert from_objects.unet is unet  # objects are wrapped, not copied


def test_registry_converter_is_this_function(unet, save_pipeline, tmp_path):
    folder = save_pipeline(tmp_path / "pipe", unet, DDPMScheduler())
    model = ebmflow.create("converter", "diffusers", source=str(folder))
    assert isinstance(model, DiffusersScoreModel)


# -- ebmflow checkpoints -----------------------------------------------------------------


def test_save_and_load_round_trip_bit_identical_without_the_source(unet, save_pipeline, tmp_path):
    folder = save_pipeline(tmp_path / "pipe", unet, DDPMScheduler(prediction_type="sample"))
    model = convert(folder)
    out = ebmflow.save(model, tmp_path / "ebm")
    shutil.rmtree(folder)  # the checkpoint is self-contained
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((out / "config.json").read_text())
    assert (config["name"], config["plugin"]) == ("diffusers-unet", "diffusers")
    assert config["arguments"]["unet_config"]["block_out_channels"] == [8, 16]
    loaded = ebmflow.load(out)
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for sigma in (0.02, 1.0, 80.0):
            assert torch.equal(loaded.score(x, sigma), model.score(x, sigma))


def test_cli_convert_writes_a_checkpoint_ebmflow_load_reads(unet, save_pipeline, tmp_path, capsys):
    folder = save_pipeline(tmp_path / "pipe", unet, DDPMScheduler(prediction_type="v_prediction"))
    assert cli_main(["convert", str(folder), str(tmp_path / "out")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["component"] == "DiffusersScoreModel"
    loaded = ebmflow.load(tmp_path / "out")
    reference = convert(folder)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert torch.equal(loaded.score(x, 0.3), reference.score(x, 0.3))
    assert (
        json.loads((tmp_path / "out" / "config.json").read_text())["metadata"]["converter"]
        == "diffusers:diffusers"
    )


def test_cli_convert_with_explicit_converter_and_options(unet, save_pipeline, tmp_path):
    folder = save_pipeline(tmp_path / "pipe", unet, DDPMScheduler())
    args = [
        "convert",
        str(folder),
        str(tmp_path / "out"),
        "--converter",
        "diffusers",
        "--converter-arg",
        "prediction_type=sample",
    ]
    assert cli_main(args) == 0
    assert ebmflow.load(tmp_path / "out").prediction_type == "sample"


def test_cli_convert_reports_unsupported_folders_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli_main(["convert", str(tmp_path / "empty"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "model_index.json is missing" in err and "supported:" in err


# -- unsupported sources -----------------------------------------------------------------


def edit_json(file, **changes):
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


@pytest.mark.parametrize(
    "damage,fragment",
    [
        (lambda f: (f / "model_index.json").unlink(), "model_index.json is missing"),
        (
            lambda f: edit_json(f / "model_index.json", scheduler=None),
            "has no 'scheduler' component (it lists: unet",
        ),
        (
            lambda f: edit_json(f / "model_index.json", unet=["diffusers", "UNet3DConditionModel"]),
            "UNet3DConditionModel network, which is not supported",
        ),
        (
            lambda f: edit_json(f / "model_index.json", scheduler=["diffusers", "LCMScheduler"]),
            "scheduler 'LCMScheduler', which is not supported",
        ),
        (
            lambda f: edit_json(f / "scheduler" / "scheduler_config.json", prediction_type="flow"),
            "prediction_type 'flow' is not supported for a VP schedule; supported: epsilon",
        ),
        (
            lambda f: (f / "scheduler" / "scheduler_config.json").unlink(),
            "scheduler_config.json is missing",
        ),
        (
            lambda f: (f / "unet" / "diffusion_pytorch_model.safetensors").rename(
                f / "unet" / "diffusion_pytorch_model.bin"
            ),
            "a .bin file is a pickle",
        ),
        (
            lambda f: edit_json(f / "unet" / "config.json", block_out_channels=[8, 24]),
            "does not fit unet/config.json",
        ),
        (  # a network of far more bytes than its weights file: refused before it is built
            lambda f: edit_json(f / "unet" / "config.json", block_out_channels=[40000, 40000]),
            "building the pipeline's networks would allocate .* but a checkpoint may "
            "allocate at most",
        ),
    ],
)
def test_unsupported_folders_name_what_is_missing_and_what_is_supported(
    damage, fragment, unet, save_pipeline, tmp_path
):
    folder = save_pipeline(tmp_path / "pipe", unet, DDPMScheduler())
    damage(folder)
    with pytest.raises(ConversionError, match=fragment.replace("(", r"\(")) as info:
        convert(folder)
    assert isinstance(info.value, ebmflow.ConfigError)


def test_score_needs_a_noise_level(unet):
    model = convert(unet=unet, scheduler=DDPMScheduler())
    with pytest.raises(ValueError, match="noise-conditional: pass sigma"):
        model.score(torch.zeros(1, 1, 8, 8))


# -- sampling a converted model ------------------------------------------------------------


@pytest.mark.slow
def test_annealed_langevin_on_converted_gaussian_reproduces_its_marginal(save_pipeline, tmp_path):
    """Annealed Langevin (ebmflow's sampler) over 8 VE levels 5 → 0.05 on the converted exact
    ε-model of N(0.5, 0.3²) data ends at the last level's ULA stationary law: mean μ and
    variance v/(1 − η/(2v)), v = s² + σ_L², η = ε/2 (the discretisation bias of ULA). 300
    steps per level relax the variance by (1 − η/v)^600 ≈ 2e-3 of its offset, far below the
    tolerance."""
    mu, s, sigma_l, epsilon = 0.5, 0.3, 0.05, 2e-3  # ε < 4σ_L²: ULA stable at every level
    net = GaussianDenoiser(sample_size=4, mean=mu, std=s, prediction_type="epsilon")
    model = convert(save_pipeline(tmp_path / "pipe", net, DDPMScheduler()))
    sampler = ebmflow.create(
        "sampler",
        "annealed-langevin",
        noise_schedule={"name": "geometric", "sigma_max": 5.0, "sigma_min": sigma_l},
        n_levels=8,
        steps_per_level=300,
        epsilon=epsilon,
        denoise=False,
    )
    gen = torch.Generator().manual_seed(0)
    x0 = 5.0 * torch.randn(2000, 1, 4, 4, generator=gen)
    samples = sampler.run(model, x0, generator=gen).samples.flatten()
    v = s * s + sigma_l * sigma_l
    eta = epsilon / 2
    var = v / (1 - eta / (2 * v))
    n = samples.numel()  # 32000 independent coordinates
    # 4 standard errors: SE(mean) = √(var/n), SE(var) = var √(2/n)
    assert abs(float(samples.mean()) - mu) < 4 * math.sqrt(var / n)
    assert abs(float(samples.var()) - var) < 4 * var * math.sqrt(2 / n)


class _Allocations(TorchFunctionMode):
    """Bytes of the tensors that torch functions return off the meta device."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor) and out.device.type != "meta":
            self.bytes += out.numel() * out.element_size()
        return out


@pytest.mark.parametrize("latent", [False, True], ids=["pixels", "latent"])
def test_converting_objects_allocates_no_second_network(latent):
    # the converter checks the configs by building the model, and the wrapper's constructor
    # builds its networks from config before the given ones replace them: both must be
    # skeletons, or converting a pipeline object would hold two or three copies of it
    from ebmflow_diffusers import tiny

    channels = 4 if latent else 1
    denoiser = tiny.unet(channels=channels, block_out_channels=(64, 128))
    vae = tiny.vae() if latent else None
    parts = [denoiser] if vae is None else [denoiser, vae]
    weights = sum(p.numel() * p.element_size() for m in parts for p in m.parameters())
    with _Allocations() as allocations:
        model = convert(unet=denoiser, scheduler=DDPMScheduler(), vae=vae)
    assert model.unet is denoiser and model.vae is vae
    # what is left is the noise table: a few arrays of 1000 levels, about 0.2 MB, against
    # 4 MB of weights that a throwaway build would allocate again
    assert allocations.bytes < weights / 10, (allocations.bytes, weights)
    x = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.isfinite(model.score(x, 0.5)).all()
