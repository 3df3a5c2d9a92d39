"""TOML run files (ebmflow.run_config) and `ebmflow train`."""

from __future__ import annotations

import inspect
import json
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import ebmflow
from ebmflow.cli import main
from ebmflow.run_config import TRAIN_KEYS, build, load_run_config, parse_run_config
from ebmflow.trainer import Trainer

RUN = """
[data]
name = "8gaussians"

[energy]
name = "mlp"
dim = 2
widths = [16]

[objective]
name = "tiny-pcd"
k = 2

[sampler]
name = "langevin"
step_size = 0.02

[train]
steps = 6
batch_size = 32
seed = 1
log_every = 2
checkpoint_every = 2
optimizer = { name = "adam", lr = 3e-3 }
ema = 0.9
"""


@pytest.fixture(scope="module")
def site(fake_site_factory, tinyobj_plugin):
    site = fake_site_factory("train-site")
    source = Path(tinyobj_plugin.__file__).read_text(encoding="utf-8")
    site.add("tinyobj", {"tinyobj": "tinyobj_plugin"}, {"tinyobj_plugin.py": source})
    return site


@pytest.fixture(scope="module")
def host(tinyobj_plugin):
    """The same plugin, registered in-process."""
    host = ebmflow.PluginHost(entry_points=False)
    host.register(tinyobj_plugin, name="tinyobj")
    return host


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_run_file_builds_a_trainer_with_the_sampler_passed_to_the_objective(host, tmp_path):
    config = load_run_config(write(tmp_path, RUN))
    assert config.energy == {"name": "mlp", "dim": 2, "widths": [16]}
    assert config.train["optimizer"] == {"name": "adam", "lr": 3e-3}
    t = build(config, host=host, progress=False, checkpoint_dir=tmp_path / "ckpt")
    assert isinstance(t, Trainer) and t.steps == 6 and t.batch_size == 32
    assert type(t.objective.sampler).__name__ == "Langevin"
    assert t.objective.sampler.step_size == 0.02
    assert t.optimizer.param_groups[0]["lr"] == 3e-3 and t.ema_decay == 0.9
    assert t.fit()[-1]["step"] == 6


def test_a_run_file_always_builds_the_same_initial_weights_without_touching_the_rng(host, tmp_path):
    config = load_run_config(write(tmp_path, RUN))
    before = torch.get_rng_state()
    a, b = (
        build(config, host=host, checkpoint_dir=tmp_path / "a"),
        build(config, host=host, checkpoint_dir=tmp_path / "b"),
    )
    assert torch.equal(torch.get_rng_state(), before)
    assert all(torch.equal(p, q) for p, q in zip(a.energy.parameters(), b.energy.parameters()))
    c = build(config, host=host, checkpoint_dir=tmp_path / "c", seed=2)
    assert not torch.equal(a.energy.net[0].weight, c.energy.net[0].weight)


def test_train_keys_are_exactly_the_trainers_run_arguments():
    signature = inspect.signature(Trainer.__init__).parameters
    set_by_caller = {
        "self",
        "energy",
        "objective",
        "data",
        "checkpoint_dir",
        "metrics_file",
        "host",
        "run_config",
        "callbacks",  # objects (loggers), not values a run file can hold
    }
    assert set(TRAIN_KEYS) == set(signature) - set_by_caller


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (
            lambda t: t.replace('name = "mlp"\n', 'name = "mlp\n'),
            ebmflow.ConfigError,
            "run.toml: TOML syntax error: .*line 6",
        ),
        (
            lambda t: t.replace("[energy]", "[energies]"),
            ebmflow.ConfigError,
            "run.toml: unknown table 'energies'",
        ),
        (
            lambda t: t.replace("[train]", "[trian]"),
            ebmflow.ConfigError,
            r"unknown table 'trian' \(did you mean \[train\]\?\)",
        ),
        (
            lambda t: t.replace("[energy]\nname", "[energy]\nnom"),
            ebmflow.ConfigError,
            r"run.toml \[energy\]: needs a key 'name'",
        ),
        (
            lambda t: t.replace('[data]\nname = "8gaussians"\n', ""),
            ebmflow.ConfigError,
            r"run.toml: missing table \[data\]",
        ),
        (
            lambda t: t.replace("steps = 6", "stpes = 6"),
            ebmflow.ConfigError,
            r"run.toml \[train\]: unknown key 'stpes' \(did you mean 'steps'\?\); accepted: "
            r"optimizer, lr_schedule, batch_size, steps",
        ),
        (
            lambda t: t.replace("steps = 6", "checkpoint_dir = 'x'"),
            ebmflow.ConfigError,
            r"\[train\]: unknown key 'checkpoint_dir'.*--out DIR",
        ),
        (
            lambda t: t.replace("widths = [16]", "width = [16]"),
            ebmflow.ComponentArgumentError,
            r"run.toml \[energy\]: energy 'ebmflow:mlp'.*did you mean 'widths'",
        ),
        (
            lambda t: t.replace("dim = 2", 'dim = "two"'),
            ebmflow.ConfigError,
            r"run.toml \[energy\]: MLPEnergy: dim must be an integer ≥ 1, got 'two'",
        ),
        (
            lambda t: t.replace('name = "langevin"', 'name = "langevn"'),
            ebmflow.UnknownComponentError,
            r"\[sampler\]: unknown sampler 'langevn'",
        ),
        (
            lambda t: t.replace("step_size = 0.02", "step_size = -1.0"),
            ebmflow.ConfigError,
            r"run.toml \[sampler\]: .*step_size",
        ),
        (
            lambda t: t.replace("k = 2", "k = 2\nsampler = { name = 'mala' }"),
            ebmflow.ConfigError,
            "the sampler is given twice",
        ),
        (
            lambda t: t.replace("batch_size = 32", "batch_size = 0"),
            ebmflow.ConfigError,
            r"run.toml \[train\]: Trainer: batch_size must be an integer ≥ 1, got 0",
        ),
        (
            lambda t: t.replace("seed = 1", "seed = 2024-01-01"),
            ebmflow.ConfigError,
            r"\[train\] seed: dates and times are not accepted",
        ),
    ],
    ids=[
        "syntax",
        "unknown-table",
        "misspelt-table",
        "no-name",
        "missing-table",
        "unknown-train-key",
        "train-output-key",
        "unknown-argument",
        "ill-typed-argument",
        "unknown-sampler",
        "bad-sampler-value",
        "sampler-twice",
        "bad-train-value",
        "date",
    ],
)
def test_errors_name_the_file_the_table_and_the_key(host, tmp_path, edit, error, message):
    path = write(tmp_path, edit(RUN))
    with pytest.raises(error, match=message):
        build(load_run_config(path), host=host, progress=False)


def test_a_sampler_table_for_an_objective_without_a_sampler_says_so(host, tmp_path):
    class NoSampler(ebmflow.Objective):
        def __init__(self, k: int = 1):
            super().__init__()

    class Plugin:
        @ebmflow.hookimpl
        def ebmflow_objectives(self):
            return [ebmflow.Component("no-sampler", NoSampler)]

    local = ebmflow.PluginHost(entry_points=False)
    local.register(Plugin(), name="nosampler")
    config = parse_run_config(
        RUN.replace("tiny-pcd", "no-sampler").replace("k = 2", ""), source="inline.toml"
    )
    with pytest.raises(
        ebmflow.ComponentArgumentError,
        match=r"inline.toml \[objective\].*'sampler'.*passed to the objective",
    ):
        build(config, host=local)


def test_cli_train_writes_the_run_folder_and_resumes_bit_identically_in_a_new_process(
    host, site, tmp_path, capsys
):
    config = write(tmp_path, RUN)
    # straight: 6 steps in one go
    assert (
        main(["train", str(config), "--out", str(tmp_path / "a"), "--no-progress"], host=host) == 0
    )
    assert "step 6 of 6" in capsys.readouterr().out
    run = tmp_path / "a"
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint", "config.toml", "metrics.jsonl"]
    assert (run / "config.toml").read_text() == config.read_text()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4, 6] and "energy_gap" in records[0]
    assert isinstance(ebmflow.load(run / "checkpoint", host=host), ebmflow.Energy)

    # split: 3 steps here, then --resume in a new process (the plugin installed there)
    # (same thread count in both processes: float reductions depend on it)
    assert (
        main(
            ["train", str(config), "--out", str(tmp_path / "b"), "--until", "3", "--no-progress"],
            host=host,
        )
        == 0
    )
    assert "step 3 of 6" in capsys.readouterr().out
    result = site.run(
        "train",
        "--resume",
        "--out",
        str(tmp_path / "b"),
        "--no-progress",
        OMP_NUM_THREADS=str(torch.get_num_threads()),
    )
    assert result.returncode == 0, result.stderr
    assert "step 6 of 6" in result.stdout
    for name in ("model.safetensors", "training.safetensors", "objective.safetensors"):
        a = load_file(str(run / "checkpoint" / name))
        b = load_file(str(tmp_path / "b" / "checkpoint" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "b" / "metrics.jsonl").read_text() == (run / "metrics.jsonl").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "{config}", "--out", "{out}"], "already holds a run"),
        (["train", "--out", "{tmp}/fresh"], "give the TOML run file"),
        (["train", "{tmp}/missing.toml", "--out", "{tmp}/fresh"], "does not exist"),
        (["train", "{config}", "--out", "{tmp}/fresh", "--steps", "-2"], "--steps must be ≥ 0"),
        (["train", "{config}", "--out", "{tmp}/fresh", "--until", "-1"], "--until must be ≥ 0"),
    ],
)
def test_cli_train_errors_are_one_line(host, tmp_path, capsys, argv, message):
    config = write(tmp_path, RUN.replace("steps = 6", "steps = 1"))
    assert (
        main(["train", str(config), "--out", str(tmp_path / "run"), "--no-progress"], host=host)
        == 0
    )
    capsys.readouterr()
    argv = [a.format(config=config, out=tmp_path / "run", tmp=tmp_path) for a in argv]
    assert main(argv, host=host) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1
