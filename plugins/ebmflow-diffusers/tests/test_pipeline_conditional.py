"""EBMPipeline on conditional networks: tiny real UNet2DConditionModels built here (class
labels, cross-attention) take their condition in the predictor and the corrector; a missing
or misshapen condition and a scheduler of another prediction type are refused."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from ebmflow_diffusers import DiffusersScoreModel, EBMPipeline, EBMScheduler
from ebmflow_diffusers.tiny import label_unet, text_unet

import ebmflow


def pipeline(unet, **scheduler_args):
    pipe = EBMPipeline(unet=unet, scheduler=EBMScheduler(**scheduler_args))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def draw(pipe, seed=0, steps=4, **condition):
    return pipe(
        batch_size=2,
        generator=torch.Generator().manual_seed(seed),
        num_inference_steps=steps,
        output_type="latent",
        **condition,
    )


def test_without_corrector_the_labels_reach_the_network_as_in_a_ddpm_loop():
    unet = label_unet()
    labels = torch.tensor([0, 2])
    ours = draw(pipeline(unet), class_labels=labels).images
    scheduler = DDPMScheduler()
    scheduler.set_timesteps(4)
    generator = torch.Generator().manual_seed(0)
    sample = torch.randn((2, 4, 8, 8), generator=generator)
    with torch.no_grad():
        for t in scheduler.timesteps:
            output = unet(sample, t, None, class_labels=labels).sample
            sample = scheduler.step(output, t, sample, generator=generator).prev_sample
    assert torch.allclose(ours, sample, atol=1e-5)


def test_seeded_mala_corrector_on_class_labels():
    pipe = pipeline(label_unet(), corrector="mala", corrector_steps=2)
    a = draw(pipe, class_labels=1)
    b = draw(pipe, y=torch.tensor([1, 1]))
    other = draw(pipe, class_labels=2)
    assert torch.isfinite(a.images).all()
    assert torch.equal(a.images, b.images)  # one label is broadcast; y= is the same input
    assert a.acceptance_rates == b.acceptance_rates and len(a.acceptance_rates) == 4
    assert not torch.allclose(a.images, other.images)


def test_the_corrector_evaluates_the_conditioned_network():
    """A label in the call samples as the model with that label fixed by ebmflow.condition
    (passed as energy=, whose predictor goes through the score), and another label differs."""
    pipe = pipeline(label_unet(), corrector="langevin", corrector_steps=2)
    model = pipe.score_model()
    a = draw(pipe, class_labels=0).images
    b = draw(pipe, energy=ebmflow.condition(model, 0)).images
    c = draw(pipe, energy=ebmflow.condition(model, 2)).images
    assert torch.allclose(a, b, atol=1e-4)
    assert not torch.allclose(a, c, atol=1e-3)


def test_encoder_hidden_states_with_a_corrector():
    pipe = pipeline(text_unet(), corrector="mala", corrector_steps=1)
    states = torch.randn(3, 12, generator=torch.Generator().manual_seed(3))
    a = draw(pipe, encoder_hidden_states=states).images
    b = draw(pipe, encoder_hidden_states=states.expand(2, 3, 12)).images
    assert torch.isfinite(a).all() and torch.allclose(a, b, atol=1e-6)


def test_missing_condition_names_the_expected_shape():
    with pytest.raises(ebmflow.ConfigError, match=r"EBMPipeline.*conditional.*shape \(B,\)"):
        draw(pipeline(label_unet()))
    with pytest.raises(ebmflow.ConfigError, match=r"encoder_hidden_states.*\(B, L, 12\)"):
        draw(pipeline(text_unet()))


@pytest.mark.parametrize(
    "unet, condition, match",
    [
        (label_unet, {"class_labels": torch.tensor([0, 1, 2])}, r"shape \(3,\).*B = 2"),
        (label_unet, {"class_labels": torch.tensor([0.0, 1.0])}, r"dtype float32"),
        (label_unet, {"y": 3}, r"out of range"),
        (text_unet, {"encoder_hidden_states": torch.zeros(2, 3, 5)}, r"\(B, L, 12\)"),
    ],
    ids=["batch", "dtype", "range", "embedding-dim"],
)
def test_wrong_condition_is_refused_with_the_expected_shape(unet, condition, match):
    with pytest.raises(ebmflow.ConfigError, match=match):
        draw(pipeline(unet()), **condition)


def test_two_conditions_or_a_condition_with_energy_are_refused():
    pipe = pipeline(label_unet())
    with pytest.raises(ebmflow.ComponentArgumentError, match="class_labels and y"):
        draw(pipe, class_labels=0, y=0)
    with pytest.raises(ebmflow.ComponentArgumentError, match=r"ebmflow.condition\(energy, y\)"):
        draw(pipe, energy=ebmflow.condition(pipe.score_model(), 0), class_labels=0)


def test_an_unconditional_network_refuses_a_condition():
    pipe = pipeline(label_unet(classes=None))
    with pytest.raises(ebmflow.ConfigError, match="unconditional and takes no y"):
        draw(pipe, class_labels=0)


def test_a_scheduler_of_another_prediction_type_is_refused():
    unet = label_unet()
    pipe = pipeline(unet)
    v_model = DiffusersScoreModel.from_unet(unet, pipe.scheduler, prediction_type="v_prediction")
    with pytest.raises(ebmflow.ConfigError, match=r"predicts 'v_prediction'.*expects 'epsilon'"):
        draw(pipe, energy=ebmflow.condition(v_model, 0))
