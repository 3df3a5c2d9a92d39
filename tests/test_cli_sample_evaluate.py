"""`ebmflow sample` and `ebmflow evaluate` on real checkpoints (run in-process via cli.main)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

import ebmflow
from ebmflow.cli import main


@pytest.fixture(scope="module")
def gmm_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "gmm"
    ebmflow.save(ebmflow.GMMEnergy.ring(), path)
    return path


def test_sample_writes_safetensors_with_settings_as_metadata(gmm_checkpoint, tmp_path, capsys):
    out = tmp_path / "samples.safetensors"
    argv = [
        "sample",
        str(gmm_checkpoint),
        "--sampler",
        "mala",
        "--sampler-arg",
        "step_size=0.05",
        "--steps",
        "50",
        "--n",
        "64",
        "--seed",
        "3",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 50 and 0 < summary["acceptance_rate"] <= 1
    samples = load_file(str(out))["samples"]
    assert samples.shape == (64, 2) and torch.isfinite(samples).all()
    # the same seed reproduces the file exactly
    again = tmp_path / "again.safetensors"
    assert main([*argv[:-1], str(again)]) == 0
    assert torch.equal(load_file(str(again))["samples"], samples)


def test_sample_writes_a_png_for_2d_data(gmm_checkpoint, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "samples.png"
    assert (
        main(["sample", str(gmm_checkpoint), "--steps", "5", "--n", "32", "--out", str(out)]) == 0
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_gmm_checkpoint_matches_true_density_nll(gmm_checkpoint, capsys):
    # GMMEnergy.ring() is the 8gaussians density itself, so its NLL on the same samples is
    # the true NLL up to the grid's quadrature error (checked < 1e-3 nats by the grid).
    assert (
        main(["evaluate", str(gmm_checkpoint), "--data", "8gaussians", "--n", "4000", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    assert report["method"] == "grid quadrature"
    assert abs(report["nll"] - report["true_nll"]) < 2e-3
    assert abs(report["log_z"]) < 1e-3  # the energy is a normalised −log p


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["sample", "{ckpt}", "--sampler", "nope", "--out", "x.safetensors"],
            "unknown sampler 'nope'",
        ),
        (
            ["sample", "{ckpt}", "--sampler-arg", "stepsize=1", "--out", "x.safetensors"],
            "did you mean 'step_size'",
        ),
        (["sample", "{ckpt}", "--out", "x.txt"], "unsupported suffix"),
        (["sample", "{ckpt}", "--n", "0", "--out", "x.safetensors"], "--n must be ≥ 1"),
        (["evaluate", "{ckpt}", "--data", "8gausians"], "did you mean '8gaussians'"),
        (["evaluate", "/nonexistent/ckpt", "--data", "8gaussians"], "nonexistent"),
    ],
)
def test_user_errors_are_one_line_without_traceback(
    gmm_checkpoint, tmp_path, monkeypatch, capsys, argv, message
):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{ckpt}", str(gmm_checkpoint)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err and err.count("\n") == 1


def test_noise_conditional_energy_needs_sigma(tmp_path, capsys):
    path = tmp_path / "nc"
    with torch.random.fork_rng():
        ebmflow.save(ebmflow.MLPEnergy(dim=2, widths=[8], noise_conditional=True), path)
    assert main(["evaluate", str(path), "--data", "moons", "--n", "10"]) == 1
    assert "needs --sigma" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                str(path),
                "--data",
                "moons",
                "--n",
                "100",
                "--sigma",
                "0.1",
                "--resolution",
                "64",
                "--json",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["sigma"] == 0.1


class RecordingEvaluator:
    """An evaluator that claims every GMM energy and reports what the command handed it."""

    def claims(self, energy):
        return isinstance(energy, ebmflow.GMMEnergy)

    def evaluate(self, energy, request):
        return {
            "evaluator": "recording",
            "data": request.data,
            "data_args": request.data_args,
            "run_data_args": request.run_data_args,
            "seed": request.seed,
        }

    def format(self, report):
        return f"recorded {report['data']}"


def test_evaluate_hands_a_claimed_energy_to_a_plugins_evaluator(
    gmm_checkpoint, make_plugin, capsys
):
    host = ebmflow.PluginHost(entry_points=False)  # the core's components and this plugin
    host.register(
        make_plugin(evaluators=[ebmflow.Component("recording", RecordingEvaluator)]),
        name="recorder",
    )
    argv = ["evaluate", str(gmm_checkpoint), "--data", "8gaussians", "--n", "500"]
    assert main([*argv, "--json", "--data-arg", "seed=4"], host=host) == 0
    assert json.loads(capsys.readouterr().out) == {
        "evaluator": "recording",
        "data": "8gaussians",
        "data_args": {"seed": 4},
        "run_data_args": {},
        "seed": 0,  # ebmflow.save wrote no training run
    }
    assert main(argv, host=host) == 0
    assert capsys.readouterr().out.strip() == "recorded 8gaussians"
    # --nll skips the evaluators: the grid NLL as for any energy
    assert main([*argv, "--nll", "--json"], host=host) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "grid quadrature"


def test_the_core_evaluate_command_knows_no_classifier():
    from pathlib import Path

    import ebmflow.commands.evaluate as command

    source = Path(command.__file__).read_text(encoding="utf-8")
    # no classifier test, no classification metrics: a plugin's evaluator owns them
    for name in (
        "predict_proba",
        "classification_report",
        "expected_calibration_error",
        "ood_scores",
        "ebmflow_jem",
    ):
        assert name not in source, name
