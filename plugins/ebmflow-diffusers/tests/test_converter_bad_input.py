"""The converter ``diffusers`` on damaged or hostile pipeline folders: tiny real pipelines
saved with ``save_pretrained``, then tampered on disk (bad scheduler values, configs that are
not JSON objects, weights that are special files or integers). Every case is a
``ConversionError`` (a ``ConfigError``) naming the file, the key or tensor, the value and what
is accepted; ``ebmflow convert`` prints one ``ebmflow: error:`` line, exits 1 and writes no
OUT. Cases that could block (FIFOs, ``/dev/zero``) run in a subprocess under a timeout."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest
import safetensors.torch
import torch
from diffusers import DDPMScheduler
from ebmflow_diffusers import ConversionError, convert

import ebmflow
from ebmflow.cli import main as cli_main

WEIGHTS = "diffusion_pytorch_model.safetensors"
SCHEDULER = "scheduler_config.json"


@pytest.fixture
def pipeline(unet, save_pipeline, tmp_path):
    """A saved tiny DDPM pipeline folder, ready to be damaged."""
    return save_pipeline(tmp_path / "pipe", unet, DDPMScheduler())


def edit_json(file, **changes):
    data = json.loads(file.read_text())
    data.update(changes)
    file.write_text(json.dumps(data))


def refuse_on_the_cli(folder, out, capsys, *fragments):
    """``ebmflow convert`` in-process: exit 1, one ``ebmflow: error:`` line holding every
    fragment, OUT not written."""
    assert cli_main(["convert", str(folder), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("ebmflow: error:"), err
    assert "internal error" not in err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert not out.exists()


# -- scheduler values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,value,accepted",
    [
        ("num_train_timesteps", 0, "an integer"),
        ("num_train_timesteps", -5, "an integer"),
        ("num_train_timesteps", "1000", "an integer"),
        ("num_train_timesteps", 1.5, "an integer"),
        ("num_train_timesteps", True, "an integer"),
        ("num_train_timesteps", 10**12, "an integer"),
        ("beta_start", "0.0001", "a finite number"),
        ("beta_end", None, "a finite number"),
        ("beta_schedule", ["linear"], "linear"),
        ("trained_betas", "0.1 0.2", "a list of"),
        ("trained_betas", [], "a list of"),
        ("rescale_betas_zero_snr", "yes", "True or False"),
        ("prediction_type", ["epsilon"], "supported: epsilon"),
        ("schedule", ["vp"], "'vp' or 've'"),
    ],
)
def test_ill_typed_or_out_of_range_scheduler_values_name_the_file_key_and_value(
    key, value, accepted, pipeline, tmp_path, capsys
):
    edit_json(pipeline / "scheduler" / SCHEDULER, **{key: value})
    with pytest.raises(ConversionError) as info:
        convert(pipeline)
    message = str(info.value)
    assert isinstance(info.value, ebmflow.ConfigError)
    for fragment in (SCHEDULER, key, repr(value)[:40], accepted):
        assert fragment in message, (fragment, message)
    refuse_on_the_cli(pipeline, tmp_path / "out", capsys, SCHEDULER, key)


@pytest.mark.parametrize(
    "changes,value",
    [
        ({"beta_end": 5}, "beta"),  # β > 1: ᾱ changes sign, σ = NaN
        ({"beta_end": 1.0}, "beta"),  # β = 1: ᾱ = 0 mid-table
        ({"beta_start": -0.01}, "-0.01"),  # β < 0
        ({"beta_start": 0.0, "beta_end": 0.02}, "beta"),  # β = 0: σ_min = 0, log σ = −∞
        ({"trained_betas": [0.01, float("nan"), 0.02]}, "nan"),
        ({"trained_betas": [0.5] * 40 + [0.9] * 960}, "alphas_cumprod"),  # ᾱ underflows to 0
        ({"beta_end": 0.02, "beta_schedule": "sigmoid", "beta_start": 2.0}, "beta"),
    ],
)
def test_schedules_with_invalid_noise_levels_are_refused_not_converted(
    changes, value, pipeline, tmp_path, capsys
):
    """A β outside (0, 1) or a ᾱ outside (0, 1] makes some noise level σ = √((1 − ᾱ)/ᾱ) NaN,
    0 or ∞; such a model used to convert 'successfully' with sigma_max = nan."""
    edit_json(pipeline / "scheduler" / SCHEDULER, **changes)
    with pytest.raises(ConversionError) as info:
        convert(pipeline)
    message = str(info.value)
    assert SCHEDULER in message and value in message, message
    assert "(0, 1)" in message, message
    refuse_on_the_cli(pipeline, tmp_path / "out", capsys, SCHEDULER)


def test_valid_schedules_still_convert_with_finite_noise_levels(pipeline):
    for beta_schedule in ("linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid", "laplace"):
        edit_json(pipeline / "scheduler" / SCHEDULER, beta_schedule=beta_schedule)
        model = convert(pipeline)
        assert torch.isfinite(model.log_sigmas).all(), beta_schedule
        assert 0 < model.table.sigma_min < model.table.sigma_max < math.inf


def test_zero_terminal_snr_keeps_its_one_infinite_noise_level(pipeline):
    """rescale_betas_zero_snr sets the last β to exactly 1 on purpose (ᾱ_T = 0, σ_T = ∞);
    that one level stays accepted, as DDPMScheduler accepts it."""
    edit_json(
        pipeline / "scheduler" / SCHEDULER,
        rescale_betas_zero_snr=True,
        prediction_type="v_prediction",
    )
    model = convert(pipeline)
    assert math.isinf(model.table.sigma_max)
    assert torch.isfinite(model.log_sigmas[:-1]).all()


def test_ve_sigma_range_must_be_finite_numbers(unet, save_pipeline, tmp_path):
    from diffusers import ScoreSdeVeScheduler

    folder = save_pipeline(tmp_path / "pipe", unet, ScoreSdeVeScheduler())
    for sigma_max in ("50", float("inf"), None):
        edit_json(folder / "scheduler" / SCHEDULER, sigma_max=sigma_max)
        with pytest.raises(ConversionError, match="sigma_max") as info:
            convert(folder)
        assert SCHEDULER in str(info.value) and repr(sigma_max) in str(info.value)


# -- configs that are not JSON objects ----------------------------------------------------


@pytest.mark.parametrize(
    "relative", ["unet/config.json", f"scheduler/{SCHEDULER}", "model_index.json"]
)
@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "3"])
def test_a_config_that_is_not_a_json_object_is_named(relative, content, pipeline, tmp_path, capsys):
    (pipeline / relative).write_text(content)
    with pytest.raises(ConversionError, match="must hold a JSON object") as info:
        convert(pipeline)
    assert relative.split("/")[-1] in str(info.value)
    refuse_on_the_cli(pipeline, tmp_path / "out", capsys, relative.split("/")[-1], "object")


def test_an_empty_component_entry_in_model_index_is_named(pipeline):
    edit_json(pipeline / "model_index.json", unet=[])
    with pytest.raises(ConversionError, match="no 'unet' or 'transformer' component"):
        convert(pipeline)


def test_a_unet_config_that_builds_no_network_is_named(pipeline, tmp_path, capsys):
    edit_json(pipeline / "unet" / "config.json", block_out_channels="wide")
    with pytest.raises(ConversionError, match=r"config\.json") as info:
        convert(pipeline)
    assert "UNet2DModel" in str(info.value)
    refuse_on_the_cli(pipeline, tmp_path / "out", capsys, "config.json")


# -- weights ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_non_floating_weights_are_refused_naming_the_tensor_and_dtype(
    dtype, pipeline, tmp_path, capsys
):
    file = pipeline / "unet" / WEIGHTS
    state = safetensors.torch.load_file(file)
    first = sorted(state)[0]
    state[first] = state[first].to(dtype)
    safetensors.torch.save_file(state, file)
    with pytest.raises(ConversionError) as info:
        convert(pipeline)
    message = str(info.value)
    for fragment in (WEIGHTS, first, str(dtype).replace("torch.", ""), "float32"):
        assert fragment in message, (fragment, message)
    refuse_on_the_cli(pipeline, tmp_path / "out", capsys, first)


def test_float16_weights_still_convert_as_float16(pipeline):
    file = pipeline / "unet" / WEIGHTS
    state = safetensors.torch.load_file(file)
    safetensors.torch.save_file({k: v.half() for k, v in state.items()}, file)
    model = convert(pipeline)
    assert next(model.unet.parameters()).dtype == torch.float16


# -- special files: a subprocess under a timeout, so a regression fails instead of hanging --


def _dev_zero(path):
    path.unlink()
    path.symlink_to("/dev/zero")


def _fifo(path):
    path.unlink()
    os.mkfifo(path)


def _huge(path):
    """A sparse regular file far above any config's size (reads as 256 MiB of zeros)."""
    path.unlink()
    with open(path, "wb") as handle:
        handle.truncate(256 * 2**20)


def _folder(path):
    path.unlink()
    path.mkdir()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs and /dev/zero")
@pytest.mark.parametrize(
    "relative",
    [f"unet/{WEIGHTS}", "unet/config.json", f"scheduler/{SCHEDULER}", "model_index.json"],
)
@pytest.mark.parametrize(
    "make,what",
    [
        (_dev_zero, "character device"),
        (_fifo, "FIFO"),
        (_folder, "folder"),
    ],
)
def test_special_files_are_named_for_what_they_are_and_never_block(
    relative, make, what, pipeline, tmp_path
):
    make(pipeline / relative)
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "ebmflow", "convert", str(pipeline), str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    err = done.stderr.strip()
    assert done.returncode == 1, err
    assert err.count("\n") == 0 and err.startswith("ebmflow: error:"), err
    assert relative.split("/")[-1] in err and what in err and "not a regular file" in err, err
    assert "is missing" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "relative", ["unet/config.json", f"scheduler/{SCHEDULER}", "model_index.json"]
)
def test_an_oversized_config_is_refused_before_it_is_read(relative, pipeline, tmp_path):
    _huge(pipeline / relative)
    done = subprocess.run(
        [sys.executable, "-m", "ebmflow", "convert", str(pipeline), str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    err = done.stderr.strip()
    assert done.returncode == 1 and err.count("\n") == 0, err
    assert relative.split("/")[-1] in err and "268435456 bytes" in err and "at most" in err, err


def test_symlinked_regular_files_still_convert(pipeline, tmp_path):
    """Hugging Face's cache holds pipelines as symlinks to blobs: a symlink to a regular file
    is read as that file."""
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    for relative in (f"unet/{WEIGHTS}", "unet/config.json", "model_index.json"):
        target = blobs / relative.replace("/", "-")
        (pipeline / relative).rename(target)
        (pipeline / relative).symlink_to(target)
    assert convert(pipeline).event_shape == (1, 8, 8)


def test_the_ebm_scheduler_refuses_the_same_invalid_tables():
    """EBMScheduler builds its table with the same function: beta_end = 5 is refused there too
    (it used to build a table with NaN noise levels)."""
    from ebmflow_diffusers import EBMScheduler

    with pytest.raises(ebmflow.ConfigError, match=r"EBMScheduler: beta_end .* got 5"):
        EBMScheduler(beta_end=5)
    with pytest.raises(ebmflow.ConfigError, match="EBMScheduler: num_train_timesteps"):
        EBMScheduler(num_train_timesteps=0)
