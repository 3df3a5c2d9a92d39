"""Conditional, transformer and latent checkpoints: tiny real diffusers networks built here
(a class-label UNet2DConditionModel, a cross-attention one, a DiT, a class-conditional
Transformer2DModel, an AutoencoderKL), saved with ``save_pretrained`` and converted; their
scores are the networks' outputs mapped by the k-diffusion formulas, the conditions work with
``ebmflow.condition``, guidance and composition, and the checkpoints round-trip."""

from __future__ import annotations

import json
import math

import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DiTTransformer2DModel,
    ScoreSdeVeScheduler,
    Transformer2DModel,
)
from ebmflow_diffusers import ConversionError, DiffusersScoreModel, PathEnergy, convert
from ebmflow_diffusers.tiny import dit, label_unet, text_unet, vae

import ebmflow
from ebmflow.cli import main as cli_main


def write_pipeline(folder, **components):
    """A pipeline folder as ``DiffusionPipeline.save_pretrained`` lays it out."""
    folder.mkdir(parents=True, exist_ok=True)
    index = {"_class_name": "DiffusionPipeline", "_diffusers_version": "0.30.0"}
    for name, component in components.items():
        index[name] = ["diffusers", type(component).__name__]
        component.save_pretrained(folder / name)
    (folder / "model_index.json").write_text(json.dumps(index))
    return folder


def vp(scheduler, t):
    ac = float(scheduler.alphas_cumprod[t])
    return math.sqrt((1 - ac) / ac), ac


def mapped(prediction_type, out, x_ve, sigma, ac):
    """The VE score of a raw VP output (k-diffusion's map)."""
    x_t = math.sqrt(ac) * x_ve
    if prediction_type == "epsilon":
        return -out / sigma
    if prediction_type == "v_prediction":
        return -(math.sqrt(ac) * out + math.sqrt(1 - ac) * x_t) / sigma
    return (out - x_ve) / sigma**2


def randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


PREDICTIONS = ["epsilon", "v_prediction", "sample"]
LABELS = torch.tensor([0, 2, 1])


# -- scores are the networks' outputs, mapped ------------------------------------------


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_class_label_unet_scores_are_its_outputs_per_label(prediction_type, tmp_path):
    net = label_unet()
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    model = convert(write_pipeline(tmp_path / "pipe", unet=net, scheduler=scheduler))
    assert model.conditioning.kind == "label" and model.event_shape == (4, 8, 8)
    for t in (10, 500):
        sigma, ac = vp(scheduler, t)
        x = randn(3, 4, 8, 8, seed=t) * math.sqrt(1 + sigma**2)
        with torch.no_grad():
            out = net(math.sqrt(ac) * x, torch.tensor(t), None, class_labels=LABELS).sample
            got = model.score(x, sigma, y=LABELS)
        want = mapped(prediction_type, out, x, sigma, ac)
        assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max())), t


@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_cross_attention_unet_scores_take_embeddings(prediction_type, tmp_path):
    net = text_unet()
    scheduler = DDIMScheduler(prediction_type=prediction_type)
    model = convert(write_pipeline(tmp_path / "pipe", unet=net, scheduler=scheduler))
    assert model.conditioning.kind == "embedding" and model.condition_ndim == 2
    sigma, ac = vp(scheduler, 300)
    x, emb = randn(2, 4, 8, 8, seed=1), randn(2, 5, 12, seed=2)
    with torch.no_grad():
        out = net(math.sqrt(ac) * x, torch.tensor(300), emb).sample
        got = model.score(x, sigma, y=emb)
    want = mapped(prediction_type, out, x, sigma, ac)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("cls", [DiTTransformer2DModel, Transformer2DModel])
@pytest.mark.parametrize("prediction_type", PREDICTIONS)
def test_dit_scores_come_from_the_first_half_of_its_learned_variance_output(
    cls, prediction_type, tmp_path
):
    net = dit(transformer_class=cls)
    scheduler = DDPMScheduler(prediction_type=prediction_type)
    model = convert(write_pipeline(tmp_path / "pipe", transformer=net, scheduler=scheduler))
    assert model.conditioning.null_label == 5 and model.null_condition() == 5
    sigma, ac = vp(scheduler, 200)
    x = randn(3, 4, 8, 8, seed=3)
    labels = torch.tensor([0, 4, 5])  # 5: the null label
    with torch.no_grad():
        t = torch.full((3,), 200.0)
        out = net(math.sqrt(ac) * x, timestep=t, class_labels=labels).sample[:, :4]
        got = model.score(x, sigma, y=labels)
    want = mapped(prediction_type, out, x, sigma, ac)
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-5 * float(want.abs().max()))


@pytest.mark.parametrize("prediction_type", ["score", "epsilon", "sample"])
def test_ve_schedules_convert_conditional_networks(prediction_type, tmp_path):
    net = label_unet()
    scheduler = ScoreSdeVeScheduler(sigma_max=50.0)
    folder = write_pipeline(tmp_path / "pipe", unet=net, scheduler=scheduler)
    model = convert(folder, prediction_type=prediction_type)
    x, sigma = randn(3, 4, 8, 8, seed=4) * 3.0, 3.0
    with torch.no_grad():
        out = net(x, torch.full((3,), sigma), None, class_labels=LABELS).sample
        got = model.score(x, sigma, y=LABELS)
    want = {"score": out, "epsilon": -out / sigma, "sample": (out - x) / sigma**2}
    assert torch.allclose(got, want[prediction_type], rtol=1e-5, atol=1e-6)


# -- condition, guidance, composition ----------------------------------------------------


def test_condition_guidance_and_composition_of_a_converted_label_model():
    model = convert(unet=label_unet(), scheduler=DDPMScheduler())
    x, sigma = randn(4, 4, 8, 8, seed=5), 0.8
    score = {y: model.score(x, sigma, y=y) for y in (0, 1, 2)}
    a, b = ebmflow.condition(model, 0), ebmflow.condition(model, 1)
    assert torch.equal(a.score(x, sigma), score[0])
    torch.testing.assert_close((a + b).score(x, sigma), score[0] + score[1])
    torch.testing.assert_close((a - 0.5 * b).score(x, sigma), score[0] - 0.5 * score[1])
    guided = model.guided(0, 3.0, null=2)  # this UNet has no null row: name one
    torch.testing.assert_close(guided.score(x, sigma), score[2] + 3.0 * (score[0] - score[2]))
    stock = ebmflow.guidance(a, ebmflow.condition(model, 2), 3.0)
    torch.testing.assert_close(stock.score(x, sigma), guided.score(x, sigma))
    with pytest.raises(ebmflow.ConfigError, match="no null label; pass the unconditional"):
        model.guided(0, 3.0)


def test_one_embedding_conditions_a_whole_batch():
    model = convert(unet=text_unet(), scheduler=DDPMScheduler())
    x, emb, empty = randn(3, 4, 8, 8, seed=6), randn(5, 12, seed=7), torch.zeros(1, 5, 12)
    full = model.score(x, 0.5, y=emb.expand(3, 5, 12))
    assert torch.equal(ebmflow.condition(model, emb).score(x, 0.5), full)
    assert torch.equal(ebmflow.condition(model, emb[None]).score(x, 0.5), full)
    guided = model.guided(emb, 2.0, null=empty)
    uncond = model.score(x, 0.5, y=empty.expand(3, 5, 12))
    torch.testing.assert_close(guided.score(x, 0.5), uncond + 2.0 * (full - uncond))


def test_dit_guidance_uses_its_null_label():
    model = convert(unet=dit(), scheduler=DDPMScheduler())
    x = randn(2, 4, 8, 8, seed=8)
    cond, null = model.score(x, 1.0, y=3), model.score(x, 1.0, y=5)
    torch.testing.assert_close(model.guided(3, 4.0).score(x, 1.0), null + 4.0 * (cond - null))


# -- latent pipelines ----------------------------------------------------------------------


def test_latent_pipeline_energy_lives_in_latent_space_and_decodes(tmp_path):
    net, autoencoder = dit(), vae()
    folder = write_pipeline(
        tmp_path / "pipe", transformer=net, vae=autoencoder, scheduler=DDIMScheduler()
    )
    model = convert(folder)
    assert model.event_shape == (4, 8, 8) and model.vae is not None
    z = randn(2, 4, 8, 8, seed=9)
    with torch.no_grad():
        images = model.decode(z)
        want = autoencoder.decode(z / autoencoder.config.scaling_factor).sample
        assert images.shape == (2, 3, 16, 16) and torch.allclose(images, want, atol=1e-6)
        latents = model.encode(images)
        mean = autoencoder.encode(images).latent_dist.mean * autoencoder.config.scaling_factor
        assert torch.allclose(latents, mean, atol=1e-6)
        drawn = model.encode(images, generator=torch.Generator().manual_seed(0))
        assert drawn.shape == latents.shape and not torch.equal(drawn, latents)
    pixel = convert(unet=label_unet(), scheduler=DDPMScheduler())
    with pytest.raises(ebmflow.ConfigError, match="no autoencoder"):
        pixel.decode(z)


def test_a_pipeline_object_with_a_transformer_and_vae_converts():
    from diffusers import DiTPipeline

    pipe = DiTPipeline(transformer=dit(), vae=vae(), scheduler=DDIMScheduler())
    model = convert(pipe)
    assert model.unet is pipe.transformer and model.vae is pipe.vae


# -- checkpoints, the CLI and sampling ---------------------------------------------------


@pytest.mark.parametrize("kind", ["label-unet", "text-unet", "latent-dit", "transformer2d"])
def test_cli_convert_then_load_gives_identical_scores(kind, tmp_path, capsys):
    parts = {
        "label-unet": dict(unet=label_unet()),
        "text-unet": dict(unet=text_unet(), vae=vae()),
        "latent-dit": dict(transformer=dit(), vae=vae()),
        "transformer2d": dict(transformer=dit(transformer_class=Transformer2DModel)),
    }[kind]
    scheduler = DDPMScheduler(prediction_type="v_prediction")
    folder = write_pipeline(tmp_path / "pipe", **parts, scheduler=scheduler)
    assert cli_main(["convert", str(folder), str(tmp_path / "out")]) == 0
    assert json.loads(capsys.readouterr().out)["component"] == "DiffusersScoreModel"
    loaded, reference = ebmflow.load(tmp_path / "out").eval(), convert(folder)
    x = randn(2, 4, 8, 8, seed=10)
    y = randn(2, 3, 12, seed=11) if kind == "text-unet" else torch.tensor([1, 2])
    with torch.no_grad():
        for sigma in (0.05, 2.0):
            assert torch.equal(loaded.score(x, sigma, y=y), reference.score(x, sigma, y=y))
        if "vae" in parts:
            assert torch.equal(loaded.decode(x), reference.decode(x))


def test_samplers_draw_from_a_conditioned_converted_model():
    model = convert(unet=dit(), scheduler=DDPMScheduler())
    gen = torch.Generator().manual_seed(0)
    x0 = 2.0 * torch.randn(4, 4, 8, 8, generator=gen)
    annealed = ebmflow.create(
        "sampler",
        "annealed-langevin",
        noise_schedule={"name": "geometric", "sigma_max": 2.0, "sigma_min": 0.1},
        n_levels=3,
        steps_per_level=2,
        epsilon=1e-3,
    )
    out = annealed.run(model.guided(1, 2.0), x0, generator=gen).samples
    assert out.shape == x0.shape and torch.isfinite(out).all()
    # MALA on a score-only model: energy differences by the line integral of the score
    energy = PathEnergy(ebmflow.condition(model, 1), n_points=3, rule="simpson")
    mala = ebmflow.create("sampler", "mala", step_size=1e-3)
    result = mala.run(energy, x0, 3, sigma=1.0, generator=gen)
    assert torch.isfinite(result.samples).all()
    assert 0.0 <= float(result.diagnostics["acceptance_rate"]) <= 1.0


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "y,fragment",
    [
        (None, r"the network is conditional: pass y=, integer class labels"),
        (torch.tensor([0.5, 1.0]), r"y has shape \(2,\) and dtype float32; expected integer"),
        (torch.tensor([0, 1, 2]), r"y has shape \(3,\) and dtype int64; expected integer"),
        (torch.tensor([0, 6]), r"labels \[0, 6\] out of range; .*values in \[0, 6\)"),
    ],
)
def test_bad_labels_name_the_expected_shape_and_range(y, fragment):
    model = convert(unet=dit(), scheduler=DDPMScheduler())
    with pytest.raises(ebmflow.ConfigError, match=fragment):
        model.score(randn(2, 4, 8, 8), 1.0, y=y)


def test_a_wrong_embedding_shape_names_the_expected_one():
    model = convert(unet=text_unet(), scheduler=DDPMScheduler())
    with pytest.raises(ebmflow.ConfigError, match=r"shape \(2, 5, 7\).*\(B, L, 12\), B = 2"):
        model.score(randn(2, 4, 8, 8), 1.0, y=randn(2, 5, 7))
    with pytest.raises(ebmflow.ConfigError, match=r"shape \(3, 5, 12\).*B = 2"):
        model.score(randn(2, 4, 8, 8), 1.0, y=randn(3, 5, 12))
    unconditional = convert(unet=label_unet(classes=None), scheduler=DDPMScheduler())
    assert unconditional.conditioning.kind == "none"
    with pytest.raises(ebmflow.ConfigError, match="unconditional and takes no y"):
        unconditional.score(randn(2, 4, 8, 8), 1.0, y=torch.tensor([0, 1]))


def test_networks_needing_inputs_ebmflow_cannot_supply_are_refused_by_name():
    sdxl_like = dict(text_unet().config)
    sdxl_like.update(addition_embed_type="text_time", addition_time_embed_dim=4)
    with pytest.raises(ebmflow.ConfigError, match="needs addition_embed_type='text_time'"):
        DiffusersScoreModel(sdxl_like, dict(DDPMScheduler().config), "UNet2DConditionModel")


def test_pickled_weights_are_refused_with_the_way_to_re_save_them(tmp_path):
    net = label_unet()
    folder = write_pipeline(tmp_path / "pipe", unet=net, scheduler=DDPMScheduler())
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    net.save_pretrained(folder / "unet", safe_serialization=False)
    assert (folder / "unet" / "diffusion_pytorch_model.bin").exists()
    with pytest.raises(ConversionError, match=r"a \.bin file is a pickle.*safe_serialization"):
        convert(folder)


def test_a_prediction_type_the_network_contradicts_is_an_error(tmp_path):
    from ebmflow_diffusers import GaussianDenoiser

    net = GaussianDenoiser(sample_size=4, prediction_type="v_prediction")
    folder = write_pipeline(tmp_path / "pipe", unet=net, scheduler=DDPMScheduler())
    with pytest.raises(ConversionError, match="predicts 'v_prediction' but the scheduler"):
        convert(folder)
    assert convert(folder, prediction_type="v_prediction").prediction_type == "v_prediction"


def test_a_latent_channel_mismatch_names_the_autoencoder(tmp_path):
    folder = write_pipeline(
        tmp_path / "pipe", unet=label_unet(channels=1), vae=vae(), scheduler=DDPMScheduler()
    )
    with pytest.raises(ConversionError, match=r"vae/config.json: .*4 latent channels.*1-channel"):
        convert(folder)


def test_a_sampling_scheduler_with_another_prediction_type_is_refused():
    model = convert(unet=dit(), scheduler=DDPMScheduler(prediction_type="v_prediction"))
    model.check_scheduler(DDIMScheduler(prediction_type="v_prediction"))  # agrees
    model.check_scheduler(DDIMScheduler(prediction_type="v_prediction").config)
    with pytest.raises(ebmflow.ConfigError, match="predicts 'v_prediction' but the scheduler"):
        model.check_scheduler(DDIMScheduler())


def test_a_class_conditional_unet2dmodel_takes_labels(make_unet):
    net = make_unet(num_class_embeds=4)
    scheduler = DDPMScheduler()
    model = convert(unet=net, scheduler=scheduler)
    assert model.conditioning.kind == "label" and model.conditioning.num_classes == 4
    sigma, ac = vp(scheduler, 100)
    x, labels = randn(2, 1, 8, 8, seed=12), torch.tensor([3, 0])
    with torch.no_grad():
        out = net(math.sqrt(ac) * x, torch.tensor(100), class_labels=labels).sample
    assert torch.allclose(model.score(x, sigma, y=labels), -out / sigma, rtol=1e-4, atol=1e-6)
