"""The command line after the demo: run folders, default noise levels, user-facing shape and
JSON errors, closed pipes, suffix errors, --quick folders and the figures' labels."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ebmflow
from ebmflow.cli import main
from ebmflow.commands.arguments import parse_assignment

ROOT = Path(__file__).resolve().parents[1]


def _installed(distribution: str) -> bool:
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder of `ebmflow train` with a noise-conditional energy trained by dsm at
    σ = 0.2 (a few steps: only the folder's layout and records matter here)."""
    if not _installed("ebmflow-score"):
        pytest.skip("needs ebmflow-score")
    root = tmp_path_factory.mktemp("run")
    config = root / "run.toml"
    config.write_text(
        '[data]\nname = "moons"\n'
        '[energy]\nname = "mlp"\ndim = 2\nwidths = [8]\nnoise_conditional = true\n'
        '[objective]\nname = "dsm"\nsigma = 0.2\n'
        "[train]\nsteps = 2\nbatch_size = 16\nlog_every = 1\n",
        encoding="utf-8",
    )
    assert main(["train", str(config), "--out", str(root / "out"), "--no-progress"]) == 0
    return root / "out"


def test_evaluate_takes_a_run_folder_and_the_runs_smallest_noise_level(trained_run, capsys):
    argv = ["evaluate", str(trained_run), "--data", "moons", "--n", "100", "--resolution", "32"]
    assert main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["checkpoint"] == str(trained_run / "checkpoint")
    assert report["sigma"] == 0.2
    assert f"{trained_run} is a run folder; using its checkpoint" in captured.err
    assert "no --sigma given; using σ = 0.2, the smallest noise level" in captured.err
    # an explicit --sigma wins, silently
    assert main([*argv, "--sigma", "0.5", "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sigma"] == 0.5 and "no --sigma" not in captured.err


def test_sample_uses_the_runs_noise_level_too(trained_run, tmp_path, capsys):
    out = tmp_path / "s.safetensors"
    assert main(["sample", str(trained_run), "--steps", "2", "--n", "4", "--out", str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["sigma"] == 0.2


def test_a_folder_without_a_checkpoint_names_what_to_give(tmp_path, capsys):
    (tmp_path / "runs" / "a" / "checkpoint").mkdir(parents=True)
    ebmflow.save(ebmflow.GMMEnergy.ring(), tmp_path / "runs" / "a" / "checkpoint")
    assert main(["evaluate", str(tmp_path / "runs"), "--data", "8gaussians"]) == 1
    err = capsys.readouterr().err
    assert "config.json is missing" in err and "RUN/checkpoint" in err
    assert "run folders inside it: a" in err and err.count("\n") == 1


def test_a_2d_energy_on_image_data_is_refused_in_user_terms_before_any_work(tmp_path, capsys):
    pytest.importorskip("sklearn")
    ebmflow.save(ebmflow.GMMEnergy.ring(), tmp_path / "gmm")
    assert main(["evaluate", str(tmp_path / "gmm"), "--data", "digits"]) == 1
    err = capsys.readouterr().err
    assert "takes samples of shape 2-D vectors, but dataset 'digits' gives samples of shape " in err
    assert "1 × 8 × 8" in err and "ais_log_z" not in err


@pytest.mark.parametrize(
    ("text", "position"),
    [('local_sampler={"name": "mala"', "character 16"), ("widths=[8, 8", "character 6")],
)
def test_malformed_json_arguments_are_json_errors_with_the_position(text, position):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="invalid JSON at " + position):
        parse_assignment(text)
    # plain strings and valid JSON are unchanged
    assert parse_assignment("name=mala") == ("name", "mala")
    assert parse_assignment('s={"a": 1}') == ("s", {"a": 1})


def test_malformed_json_on_the_command_line_says_json(tmp_path, capsys):
    ebmflow.save(ebmflow.GMMEnergy.ring(), tmp_path / "gmm")
    argv = ["sample", str(tmp_path / "gmm"), "--sampler-arg", "step_size=[0.1", "--out", "x.png"]
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "invalid JSON at character" in err
    assert "unknown sampler" not in err and "unknown plugin" not in err


def test_a_closed_pipe_ends_quietly_with_the_sigpipe_status():
    """`ebmflow components --json | head -c 50`: the reader is gone before the write (here
    for sure: the pipe's read end is closed before the command starts)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "ebmflow", "components", "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            env=env,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (141, "")


def test_a_broken_pipe_in_process_returns_141_and_prints_nothing(capsys, monkeypatch):
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            raise BrokenPipeError(32, "Broken pipe")

        def fileno(self):
            raise OSError("no descriptor")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["components", "--json"], host=ebmflow.PluginHost(entry_points=False)) == 141
    assert capsys.readouterr().err == ""


def test_a_wrong_suffix_lists_the_accepted_ones_as_text(tmp_path, capsys):
    ebmflow.save(ebmflow.GMMEnergy.ring(), tmp_path / "gmm")
    assert main(["sample", str(tmp_path / "gmm"), "--out", str(tmp_path / "x.jpg")]) == 1
    err = capsys.readouterr().err
    assert "unsupported suffix '.jpg'; use .safetensors or .png" in err and "(" not in err


def test_quick_runs_write_to_their_own_folder():
    from ebmflow.commands.demo import DEFAULT_OUT, QUICK_OUT

    assert QUICK_OUT != DEFAULT_OUT
    for example in ("ncsn_digits.py", "jem_digits.py"):
        source = (ROOT / "examples" / example).read_text(encoding="utf-8")
        assert "-quick" in source, example


def test_landscape_densities_have_a_colour_bar_and_every_panel_axis_labels(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from ebmflow import plotting

    figures = []
    monkeypatch.setattr(plotting, "_save", lambda plt, fig, path, title="": figures.append(fig))
    grid = torch.rand(8, 8)
    plotting.plot_landscape(grid, grid, grid, ((-1, 1), (-1, 1)), tmp_path / "l.png")
    plotting.plot_samples_over_data({"a": torch.randn(5, 2)}, torch.randn(5, 2), tmp_path / "s.png")
    landscape, samples = figures
    labels = [ax.get_ylabel() for ax in landscape.axes]
    assert "E − min E (nats)" in labels and "density p(x)" in labels  # both colour bars
    panels = [ax for ax in landscape.axes if ax.get_title()]
    assert len(panels) == 3
    assert all((ax.get_xlabel(), ax.get_ylabel()) == ("x₁", "x₂") for ax in panels)
    (ax,) = samples.axes
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("x₁", "x₂") and ax.get_legend() is not None
