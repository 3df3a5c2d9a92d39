"""``ebmflow sample CHECKPOINT --observation FILE --measurement SPEC``: posterior samples
from the command line, and its one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

import ebmflow
from ebmflow.cli import main


@pytest.fixture(scope="module")
def gaussian_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "gaussian"
    ebmflow.save(ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0), path)
    return path


@pytest.fixture
def observation(tmp_path):
    path = tmp_path / "y.safetensors"
    save_file({"observation": torch.tensor([2.0, 0.0]), "mask": torch.tensor([1.0, 0.0])}, path)
    return path


@pytest.mark.parametrize(
    "spec",
    [
        "operator=mask,noise_std=0.5",
        '{"operator": {"name": "mask", "mask": "@mask"}, "noise_std": 0.5}',
        'operator={"name": "matrix", "matrix": [[1.0, 0.0]]},noise_std=0.5',
    ],
    ids=["pairs", "json", "matrix"],
)
def test_sample_draws_the_posterior_given_an_observation(
    gaussian_checkpoint, observation, tmp_path, capsys, spec
):
    """N(0, I) prior, x₁ observed as 2 with noise 0.5: the posterior of x₁ is N(1.6, 0.2)
    and x₂ keeps N(0, 1); 2000 MALA chains match within 4 standard errors."""
    if "matrix" in spec:
        save_file({"observation": torch.tensor([2.0])}, observation)
    out = tmp_path / "post.safetensors"
    argv = ["sample", str(gaussian_checkpoint), "--sampler", "mala", "--sampler-arg"]
    argv += ["step_size=0.1", "--steps", "300", "--n", "2000", "--observation", str(observation)]
    assert main([*argv, "--measurement", spec, "--out", str(out)]) == 0
    json.loads(capsys.readouterr().out)
    x = load_file(out)["samples"].double()
    se = (torch.tensor([0.2, 1.0]) / 2000).sqrt()
    assert ((x.mean(0) - torch.tensor([1.6, 0.0])).abs() < 4 * se).all()
    assert abs(float(x[:, 0].var()) - 0.2) < 4 * 0.2 * (2 / 2000) ** 0.5


def test_measurement_spec_from_a_toml_file(gaussian_checkpoint, observation, tmp_path):
    spec = tmp_path / "measurement.toml"
    spec.write_text('noise_std = 0.5\n[operator]\nname = "mask"\nmask = "@mask"\n')
    out = tmp_path / "post.safetensors"
    argv = ["sample", str(gaussian_checkpoint), "--sampler", "mala", "--steps", "5", "--n", "4"]
    argv += ["--observation", str(observation), "--measurement", str(spec), "--out", str(out)]
    assert main(argv) == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--measurement", "noise_std=0.5"], "--measurement needs --observation too"),
        (["--observation", "OBS"], "--observation needs --measurement too"),
        (
            ["--observation", "OBS", "--measurement", "noise_std=-1"],
            "noise_std must be a number > 0, got -1",
        ),
        (["--observation", "OBS", "--measurement", "noise=0.5,oops"], "'oops' in 'noise=0.5,oops'"),
        (["--observation", "OBS", "--measurement", "{bad"], "not valid JSON"),
        (
            ["--observation", "OBS", "--measurement", "operator=mask,mask=@nope,noise_std=1"],
            "names tensor '@nope'",
        ),
        (
            ["--observation", "OBS", "--measurement", "operator=downsample,noise_std=1"],
            "downsample operator: needs images",
        ),
    ],
)
def test_posterior_options_give_one_line_errors(
    gaussian_checkpoint, observation, tmp_path, capsys, extra, message
):
    extra = [str(observation) if a == "OBS" else a for a in extra]
    argv = ["sample", str(gaussian_checkpoint), "--steps", "2", "--n", "2"]
    assert main([*argv, *extra, "--out", str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebmflow: error:") and message in err, err


def test_annealed_posterior_from_the_command_line_needs_no_sigma(tmp_path, observation):
    path = tmp_path / "ring"
    ebmflow.save(ebmflow.GMMEnergy.ring(noise_conditional=True), path)
    out = tmp_path / "post.safetensors"
    argv = ["sample", str(path), "--sampler", "annealed-posterior", "--n", "8"]
    argv += ["--sampler-arg", "n_levels=3", "--sampler-arg", "steps_per_level=2"]
    argv += ["--sampler-arg", "corrector_steps=3", "--sampler-arg", "corrector_step_size=0.01"]
    argv += ["--observation", str(observation), "--measurement", "operator=mask,noise_std=0.5"]
    assert main([*argv, "--out", str(out)]) == 0
    assert load_file(out)["samples"].shape == (8, 2)
