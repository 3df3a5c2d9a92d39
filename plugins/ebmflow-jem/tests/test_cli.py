"""The command line on a JEM run: `ebmflow train` with the digits run file, `ebmflow
evaluate` (classification report on the held-out split), `ebmflow jem-sample`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from ebmflow.cli import main

CONFIG = Path(__file__).resolve().parents[3] / "examples" / "configs" / "jem_digits.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The digits run file, trained for 3 steps (the run's own settings otherwise)."""
    out = tmp_path_factory.mktemp("jem") / "run"
    assert main(["train", str(CONFIG), "--out", str(out), "--steps", "3", "--no-progress"]) == 0
    return out / "checkpoint"


def test_evaluate_reports_accuracy_ece_and_auroc_on_the_test_split(run, capsys):
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", "digits", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    # the run's [data] arguments, with the held-out split
    assert report["data_args"] == {
        "split": "test",
        "test_fraction": 0.2,
        "seed": 0,
        "scale": "symmetric",
    }
    assert report["n"] == 359
    assert 0.0 <= report["accuracy"] <= 1.0 and 0.0 <= report["ece"] <= 1.0
    assert set(report["auroc"]) == {"uniform", "shuffled"}
    for scores in report["auroc"].values():
        assert set(scores) == {"log_px", "max_prob", "grad_norm"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
    # text output and --data-arg
    assert main(["evaluate", str(run), "--data", "digits", "--data-arg", "split=train"]) == 0
    text = capsys.readouterr().out
    assert "split=train" in text and "1438 labelled images" in text
    assert "pixel-shuffled" in text and "log p(x)" in text


def test_evaluate_of_a_classifier_on_unlabelled_data_is_a_clear_error(run, capsys):
    assert main(["evaluate", str(run), "--data", "8gaussians"]) == 1
    assert "no labels" in capsys.readouterr().err


def test_jem_sample_writes_one_row_per_class(run, tmp_path, capsys):
    out = tmp_path / "grid.safetensors"
    assert (
        main(["jem-sample", str(run), "--out", str(out), "--per-class", "3", "--steps", "5"]) == 0
    )
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= summary["classified_as_own_class"] <= 1.0
    tensors = load_file(str(out))
    assert tensors["samples"].shape == (10, 3, 1, 8, 8)
    assert torch.equal(tensors["labels"], torch.arange(10).repeat_interleave(3))
    png = tmp_path / "grid.png"
    assert (
        main(["jem-sample", str(run), "--out", str(png), "--per-class", "2", "--steps", "2"]) == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["jem-sample", str(run), "--out", str(tmp_path / "grid.jpg")]) == 1
