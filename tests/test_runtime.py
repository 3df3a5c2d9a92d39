"""Threads, devices and progress bars: one rule for every command (ebmflow.runtime and
ebmflow.commands.options)."""

from __future__ import annotations

import argparse
import io
import json

import pytest
import torch

import ebmflow
from ebmflow.cli import build_parser, main
from ebmflow.commands.options import progress_of
from ebmflow.runtime import available_cores, check_device, resolve_threads, using_threads


@pytest.fixture
def host():
    return ebmflow.PluginHost(entry_points=False)


@pytest.fixture(scope="module")
def gmm_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "gmm"
    ebmflow.save(ebmflow.GMMEnergy.ring(), path)
    return path


# -- threads ---------------------------------------------------------------------------------


def test_the_thread_rule(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert resolve_threads() == 1  # small problems, shared machines: one thread
    assert resolve_threads(3) == 3 and resolve_threads("2") == 2
    assert resolve_threads("auto") == available_cores()
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert resolve_threads() == 2  # the environment's choice is kept
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ebmflow.ConfigError, match="OMP_NUM_THREADS must be a positive integer"):
        resolve_threads()
    for bad in (0, -1, "x", 10**6, True):
        with pytest.raises(ebmflow.ConfigError, match="threads must be"):
            resolve_threads(bad)


def test_using_threads_restores_the_callers_count(monkeypatch):
    before = torch.get_num_threads()
    with using_threads(2) as n:
        assert n == 2 and torch.get_num_threads() == 2
    assert torch.get_num_threads() == before


def test_every_command_takes_threads_plugin_commands_included(host, make_plugin):
    def commands(subparsers):
        parser = subparsers.add_parser("hello", help="a plugin's command")
        parser.set_defaults(func=lambda args: print(torch.get_num_threads()))

    host.register(make_plugin(commands=commands), name="greeter")
    parser = build_parser(host)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in action.choices.items():
        assert "--threads" in sub._option_string_actions, name


def test_threads_option_sets_torch_threads_for_the_command_only(host, make_plugin, capsys):
    def commands(subparsers):
        parser = subparsers.add_parser("hello", help="a plugin's command")
        parser.set_defaults(func=lambda args: print(torch.get_num_threads()))

    host.register(make_plugin(commands=commands), name="greeter")
    before = torch.get_num_threads()
    assert main(["hello", "--threads", "2"], host=host) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert torch.get_num_threads() == before
    assert main(["hello", "--threads", "0"], host=host) == 1
    assert "--threads must be an integer ≥ 1, got 0" in capsys.readouterr().err


def test_a_plugin_command_with_its_own_threads_option_still_loads(host, make_plugin, capsys):
    def commands(subparsers):
        parser = subparsers.add_parser("own", help="a plugin's command")
        parser.add_argument("--threads", type=int, default=1, help="its own (default: 1)")
        parser.set_defaults(func=lambda args: print(args.threads))

    host.register(make_plugin(commands=commands), name="own")
    assert main(["own", "--threads", "2"], host=host) == 0
    assert capsys.readouterr().out.strip() == "2"


# -- devices ---------------------------------------------------------------------------------


def test_check_device_accepts_cpu_and_names_what_exists():
    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ebmflow.ConfigError, match="'gpu' is not a torch device; accepted: cpu"):
        check_device("gpu", "--device")
    if not torch.cuda.is_available():
        with pytest.raises(ebmflow.ConfigError, match="'cuda:1' is not available here") as caught:
            check_device("cuda:1", "--device")
        assert "accepted: cpu" in str(caught.value)
        if torch.version.cuda is None:  # a CPU build says how to get a CUDA one
            assert "pip install torch --index-url" in str(caught.value)


def test_cuda_index_beyond_the_machines_devices_is_named(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.6")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ebmflow.ConfigError, match="has 2 CUDA device"):
        check_device("cuda:5", "--device")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "{ckpt}", "--steps", "2", "--out", "x.safetensors", "--device", "cuda"],
        ["evaluate", "{ckpt}", "--data", "8gaussians", "--device", "cuda"],
        ["train", "run.toml", "--out", "run", "--device", "cuda"],
    ],
)
def test_a_missing_device_is_one_clear_error(gmm_checkpoint, tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.toml").write_text(
        '[data]\nname = "8gaussians"\n[energy]\nname = "gaussian"\ndim = 2\n'
        '[objective]\nname = "nll-free"\n',
        encoding="utf-8",
    )
    argv = [a.replace("{ckpt}", str(gmm_checkpoint)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("ebmflow: error: --device 'cuda' is not available here")
    assert err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_sample_on_cpu_device_matches_the_default(gmm_checkpoint, tmp_path, capsys):
    argv = ["sample", str(gmm_checkpoint), "--steps", "5", "--n", "16"]
    assert main([*argv, "--out", str(tmp_path / "a.safetensors")]) == 0
    assert main([*argv, "--device", "cpu", "--out", str(tmp_path / "b.safetensors")]) == 0
    a, b = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert a["device"] == b["device"] == "cpu"
    from safetensors.torch import load_file

    assert torch.equal(
        load_file(str(tmp_path / "a.safetensors"))["samples"],
        load_file(str(tmp_path / "b.safetensors"))["samples"],
    )


# -- progress bars -----------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_follows_the_terminal_unless_an_option_says(monkeypatch):
    args = argparse.Namespace(progress=None)
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_of(args) is False
    monkeypatch.setattr("sys.stderr", _Terminal())
    assert progress_of(args) is True
    assert progress_of(argparse.Namespace(progress=False)) is False
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress_of(argparse.Namespace(progress=True)) is True


def test_sample_shows_a_bar_on_a_terminal_and_none_in_a_pipe(gmm_checkpoint, tmp_path, monkeypatch):
    argv = ["sample", str(gmm_checkpoint), "--steps", "20", "--n", "8"]
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main([*argv, "--out", str(tmp_path / "a.safetensors")]) == 0
    assert "20/20" in terminal.getvalue()
    pipe = io.StringIO()
    monkeypatch.setattr("sys.stderr", pipe)
    assert main([*argv, "--out", str(tmp_path / "b.safetensors")]) == 0
    assert pipe.getvalue() == ""
    terminal = _Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert main([*argv, "--no-progress", "--out", str(tmp_path / "c.safetensors")]) == 0
    assert terminal.getvalue() == ""
