"""`ebmflow evaluate CHECKPOINT --ksd`: the kernel Stein discrepancy test of samples drawn
from the checkpoint's model, or read from a file, against the model's own score."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import ebmflow
from ebmflow.cli import main


@pytest.fixture(scope="module")
def gaussian_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ksd") / "gaussian"
    ebmflow.save(ebmflow.create("energy", "gaussian", mean=[0.5, -0.5], std=[1.0, 0.5]), path)
    return path


def evaluate_json(capsys, *argv) -> dict:
    assert main(["evaluate", *map(str, argv), "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_samples_drawn_from_the_model_pass_and_the_text_report_names_the_figures(
    gaussian_checkpoint, capsys
):
    # MALA tunes its step size over the first half of the steps (no --sampler-arg given);
    # the chains' final positions are independent draws from the model, so the test does
    # not reject at this seed
    argv = [gaussian_checkpoint, "--ksd", "--chains", "200", "--steps", "200", "--seed", "1"]
    report = evaluate_json(capsys, *argv)
    assert report["test"] == "kernel Stein discrepancy" and report["n"] == 200
    assert report["sampler"] == "mala" and report["sampler_args"] == {"adapt_steps": 100}
    assert report["p_value"] > 0.05 and report["reject"] is False
    assert main(["evaluate", *map(str, argv)]) == 0
    text = capsys.readouterr().out
    assert "KSD² = " in text and "p-value = " in text and "n = 200" in text
    assert "not rejected" in text


def test_a_samples_file_from_another_distribution_is_rejected(
    gaussian_checkpoint, tmp_path, capsys
):
    gen = torch.Generator().manual_seed(2)
    right = torch.tensor([0.5, -0.5]) + torch.tensor([1.0, 0.5]) * torch.randn(
        300, 2, generator=gen
    )
    shifted = right + torch.tensor([0.7, 0.0])  # the model's samples moved by 0.7 σ
    for name, samples in (("right", right), ("shifted", shifted)):
        save_file({"samples": samples.contiguous()}, str(tmp_path / f"{name}.safetensors"))
    ok = evaluate_json(
        capsys, gaussian_checkpoint, "--ksd", "--samples", tmp_path / "right.safetensors"
    )
    assert ok["samples"].endswith("right.safetensors") and ok["n"] == 300
    assert ok["reject"] is False
    bad = evaluate_json(
        capsys, gaussian_checkpoint, "--ksd", "--samples", tmp_path / "shifted.safetensors"
    )
    assert bad["reject"] is True and bad["p_value"] < 0.01 and bad["ksd2"] > ok["ksd2"]


def test_ebmflow_sample_output_is_a_samples_file(gaussian_checkpoint, tmp_path, capsys):
    out = tmp_path / "mala.safetensors"
    argv = ["sample", str(gaussian_checkpoint), "--sampler", "mala", "--steps", "300"]
    argv += ["--sampler-arg", "step_size=0.3", "--n", "150", "--out", str(out)]
    assert main(argv) == 0
    capsys.readouterr()
    report = evaluate_json(capsys, gaussian_checkpoint, "--ksd", "--samples", out)
    assert report["n"] == 150 and report["reject"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "evaluate: --data NAME is required (or --ksd, which needs no data)"),
        (["--ksd", "--chains", "5"], "--chains"),
        (["--ksd", "--samples", "/nonexistent/x.safetensors"], "no such file"),
        (["--ksd", "--samples", "{wrong}"], "samples of shape (3,), but the energy takes (2,)"),
        (["--ksd", "--samples", "{unnamed}"], "no tensor named 'samples'"),
    ],
)
def test_bad_ksd_options_say_what_is_wrong(gaussian_checkpoint, tmp_path, capsys, extra, message):
    save_file({"samples": torch.zeros(20, 3)}, str(tmp_path / "wrong.safetensors"))
    save_file({"x": torch.zeros(20, 2)}, str(tmp_path / "unnamed.safetensors"))
    files = {"wrong": tmp_path / "wrong.safetensors", "unnamed": tmp_path / "unnamed.safetensors"}
    extra = [a.format(**files) for a in extra]
    assert main(["evaluate", str(gaussian_checkpoint), *extra]) == 1
    assert message in capsys.readouterr().err
