"""Training state, resume after edits and run-file input: every bad case is one clear error.

A training checkpoint's ``training.json`` / ``training.safetensors`` may be tampered with
(a re-hashed ``config.json`` passes the integrity check), a run file may be edited between
a run and its resume, and a run file may simply be wrong. Each case must end as an
:class:`ebmflow.EbmflowError` naming the file or table and the key (on the CLI: one
``ebmflow: error:`` line, exit status 1), never as an internal error deep inside torch.
"""

from __future__ import annotations

import json
import shutil
import textwrap

import pytest
import torch

import ebmflow
from ebmflow.checkpoint import read_json, read_tensors, write_checkpoint_folder
from ebmflow.cli import main
from ebmflow.run_config import build, load_run_config, parse_run_config
from ebmflow.trainer import Trainer

RUN = """
[data]
name = "8gaussians"

[energy]
name = "mlp"
dim = 2
widths = [8]

[objective]
name = "tiny-pcd"
n_chains = 8
k = 1

[sampler]
name = "langevin"
step_size = 0.02

[train]
steps = 4
batch_size = 16
seed = 1
log_every = 2
checkpoint_every = 2
optimizer = { name = "adam", lr = 1e-2 }
ema = 0.9
"""


@pytest.fixture(scope="module")
def host(tinyobj_plugin):
    host = ebmflow.PluginHost(entry_points=False)
    host.register(tinyobj_plugin, name="tinyobj")
    return host


def write(tmp_path, text, name="run.toml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def train(host, *argv):
    return main(["train", *map(str, argv), "--no-progress"], host=host)


def one_error_line(capsys, *fragments):
    """The CLI's stderr is exactly one ``ebmflow: error:`` line holding ``fragments``."""
    err = capsys.readouterr().err
    assert err.startswith("ebmflow: error: "), err
    assert err.count("\n") == 1 and "internal error" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


@pytest.fixture(scope="module")
def trained(host, tmp_path_factory):
    """A run folder stopped at step 2 of 4 (checkpoint written), to copy and tamper with."""
    tmp = tmp_path_factory.mktemp("trained")
    config = write(tmp, RUN)
    assert train(host, config, "--out", tmp / "run", "--until", 2) == 0
    return tmp / "run"


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def rewrite(folder, edit):
    """Rewrite the checkpoint ``folder`` with ``edit(state, tensors)`` applied to the decoded
    ``training.json`` and ``training.safetensors``, with a re-hashed ``config.json`` (what a
    deliberate edit looks like: the integrity check passes)."""
    config = read_json(folder)
    files = {}
    for name in config["files"]:
        if name.endswith(".safetensors"):
            files[name] = dict(read_tensors(folder, name, config=config))
        else:
            files[name] = (folder / name).read_bytes()
    state = json.loads(files["training.json"])
    edit(state, files["training.safetensors"])
    files["training.json"] = json.dumps(state).encode()
    write_checkpoint_folder(folder, files, {k: v for k, v in config.items() if k != "files"})


# -- tampered training state ------------------------------------------------------------------


def _set(path, value):
    """An edit that sets ``state[path[0]][path[1]]... = value``."""

    def edit(state, tensors):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return edit


def _tensor(key, value):
    def edit(state, tensors):
        tensors[key] = value

    return edit


def _drop_tensor(key):
    def edit(state, tensors):
        del tensors[key]

    return edit


AIS = {
    "__component__": {
        "kind": "log_z_estimator",
        "plugin": "ebmflow",
        "name": "ais",
        "arguments": {},
    }
}

TAMPERED = {
    "generator-too-short": (
        _tensor("generator.data", torch.zeros(16, dtype=torch.uint8)),
        "generator.data",
    ),
    "generator-not-bytes": (
        _tensor("generator.objective.rank0", torch.zeros(5056)),
        "generator.objective.rank0",
    ),
    "optimizer-tensor-shape": (
        _tensor("optimizer.state.0.exp_avg", torch.zeros(3)),
        "optimizer.state.0.exp_avg",
    ),
    "optimizer-tensor-complex": (
        _tensor("optimizer.state.0.exp_avg_sq", torch.zeros(8, 2, dtype=torch.complex64)),
        "optimizer.state.0.exp_avg_sq",
    ),
    "optimizer-tensor-missing": (
        _drop_tensor("optimizer.state.1.exp_avg"),
        "optimizer.state.1.exp_avg",
    ),
    "optimizer-step-a-string": (
        _set(["optimizer", "state", "0", "step"], "many"),
        "optimizer.state.0.step",
    ),
    "optimizer-state-index": (_set(["optimizer", "state", "99"], {}), "optimizer.state"),
    "optimizer-groups-not-a-list": (
        _set(["optimizer", "param_groups"], "adam"),
        "optimizer.param_groups",
    ),
    "optimizer-group-params": (
        _set(["optimizer", "param_groups", 0, "params"], [0]),
        "optimizer.param_groups",
    ),
    "optimizer-not-an-object": (_set(["optimizer"], [1, 2]), "optimizer"),
    "pending-loss-strings": (_set(["pending", "loss"], ["x"]), "pending.loss"),
    "pending-metrics-object": (
        _set(["pending", "metrics_by_rank"], {"a": 1}),
        "pending.metrics_by_rank",
    ),
    "pending-metric-value": (
        _set(["pending", "metrics_by_rank"], [[{"gap": "big"}]]),
        "pending.metrics_by_rank",
    ),
    "pending-a-component": (_set(["pending", "loss"], [AIS]), "__component__"),
    "data-a-list": (_set(["data"], [1]), "data"),
    "step-negative": (_set(["step"], -3), "step"),
    "ema-raw-weights-shape": (
        _tensor("weights.net.0.weight", torch.zeros(2, 2)),
        "weights.net.0.weight",
    ),
    "ema-raw-weights-integers": (
        _tensor("weights.net.0.bias", torch.zeros(8, dtype=torch.int64)),
        "weights.net.0.bias",
    ),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_resume_from_a_tampered_training_state_is_one_error_naming_file_and_key(
    host, run, capsys, case
):
    edit, key = TAMPERED[case]
    rewrite(run / "checkpoint", edit)
    capsys.readouterr()
    assert train(host, "--resume", "--out", run) == 1
    one_error_line(capsys, "training.", key)


def test_a_tampered_permutation_of_tensor_data_is_refused_naming_the_key(tmp_path, tinyobj_plugin):
    data = torch.randn(64, 2)
    energy = ebmflow.create("energy", "mlp", dim=2, widths=[8])
    objective = tinyobj_plugin.TinyPCD(n_chains=8, k=1)

    def trainer():
        return Trainer(
            energy,
            objective,
            data,
            batch_size=16,
            steps=4,
            progress=False,
            checkpoint_dir=tmp_path / "ckpt",
        )

    trainer().fit(until=2)
    rewrite(tmp_path / "ckpt", _tensor("data.permutation", torch.full((64,), 10**6)))
    with pytest.raises(ebmflow.CheckpointError, match=r"training.safetensors.*data.permutation"):
        trainer().fit(resume=True)


# -- resume after editing the run file ---------------------------------------------------------


def edited(run, old, new):
    path = run / "config.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_resume_refuses_another_optimizer_naming_the_key_and_both_values(host, run, capsys):
    edited(run, 'name = "adam"', 'name = "sgd"')
    assert train(host, "--resume", "--out", run) == 1
    one_error_line(capsys, "train.optimizer.name", "'adam'", "'sgd'", "start a new run")


def test_resume_refuses_other_widths_in_one_line_naming_the_key(host, run, capsys):
    edited(run, "widths = [8]", "widths = [16]")
    assert train(host, "--resume", "--out", run) == 1
    one_error_line(capsys, "energy.widths", "[8]", "[16]")


def test_resume_refuses_a_new_seed_which_the_saved_generators_would_silently_override(
    host, run, capsys
):
    edited(run, "seed = 1", "seed = 2")
    assert train(host, "--resume", "--out", run) == 1
    one_error_line(capsys, "train.seed", "1", "2")


def test_resume_applies_a_new_lr_and_the_checkpoint_records_the_lr_used(host, run):
    edited(run, "lr = 1e-2", "lr = 1e-3")
    assert train(host, "--resume", "--out", run) == 0
    folder = run / "checkpoint"
    state = read_json(folder, "training.json")
    assert state["step"] == 4
    assert state["run"]["train"]["optimizer"] == {"name": "adam", "lr": 1e-3}
    assert [g["lr"] for g in state["optimizer"]["param_groups"]] == [1e-3]
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["lr"]) for r in records] == [(2, 1e-2), (4, 1e-3)]


def test_resume_honours_more_steps_and_new_intervals(host, run):
    edited(run, "steps = 4", "steps = 6")
    edited(run, "log_every = 2", "log_every = 1")
    assert train(host, "--resume", "--out", run) == 0
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 3, 4, 5, 6]
    assert read_json(run / "checkpoint", "training.json")["run"]["train"]["steps"] == 6


def test_trainer_fit_resume_refuses_a_changed_trainer_argument(tmp_path, tinyobj_plugin):
    data = torch.randn(64, 2)

    def trainer(**kwargs):
        energy = ebmflow.create("energy", "mlp", dim=2, widths=[8])
        objective = tinyobj_plugin.TinyPCD(n_chains=8, k=1)
        return Trainer(
            energy,
            objective,
            data,
            steps=4,
            progress=False,
            checkpoint_dir=tmp_path / "ckpt",
            **{"batch_size": 16, **kwargs},
        )

    trainer().fit(until=2)
    with pytest.raises(ebmflow.ConfigError, match=r"train.batch_size: 16 → 32"):
        trainer(batch_size=32).fit(resume=True)
    with pytest.raises(ebmflow.ConfigError, match=r"train.optimizer.name: 'adam' → 'sgd'"):
        trainer(optimizer={"name": "sgd", "lr": 0.1}).fit(resume=True)
    assert trainer(optimizer={"name": "adam", "lr": 1e-4}).fit(resume=True)[-1]["step"] == 4


def test_resume_with_no_checkpoint_yet_starts_from_scratch_and_says_so(host, tmp_path, capsys):
    config = write(tmp_path, RUN)
    assert train(host, config, "--out", tmp_path / "a") == 0
    capsys.readouterr()
    assert train(host, config, "--out", tmp_path / "b", "--resume") == 0
    err = capsys.readouterr().err
    assert "no checkpoint" in err and "from scratch" in err and err.count("\n") == 1
    for name in ("model.safetensors", "training.safetensors"):
        a = read_tensors(tmp_path / "a" / "checkpoint", name)
        b = read_tensors(tmp_path / "b" / "checkpoint", name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


# -- run-file mistakes ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ("dim = 2", "dim = 3", ["[energy]", "(3,)", "(2,)", "8gaussians"]),
        ('name = "8gaussians"', 'name = "digits"', ["[energy]", "(2,)", "(1, 8, 8)"]),
    ],
    ids=["dim", "digits-with-2d-mlp"],
)
def test_an_energy_that_does_not_fit_the_data_is_refused_before_training(
    host, tmp_path, capsys, old, new, fragments
):
    path = write(tmp_path, RUN.replace(old, new))
    with pytest.raises(ebmflow.ConfigError):
        build(load_run_config(path), host=host, progress=False)
    assert train(host, path, "--out", tmp_path / "run") == 1
    one_error_line(capsys, *fragments)
    assert not (tmp_path / "run" / "checkpoint").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_a_cuda_device_on_a_cpu_only_torch_is_one_error_naming_the_key(host, tmp_path, capsys):
    path = write(tmp_path, RUN.replace("seed = 1", 'seed = 1\ndevice = "cuda"'))
    assert train(host, path, "--out", tmp_path / "run") == 1
    one_error_line(capsys, "[train]", "device", "'cuda'", "cpu")


def test_integer_tensor_data_is_refused_naming_its_dtype(tinyobj_plugin):
    energy = ebmflow.create("energy", "mlp", dim=2, widths=[8])
    with pytest.raises(ebmflow.ConfigError, match=r"torch.int64.*floating"):
        Trainer(
            energy,
            tinyobj_plugin.TinyPCD(n_chains=8, k=1),
            torch.randint(0, 5, (64, 2)),
            batch_size=16,
            progress=False,
        )


def test_a_run_file_with_a_utf8_byte_order_mark_is_read_like_one_without(tmp_path):
    plain = load_run_config(write(tmp_path, RUN))
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + textwrap.dedent(RUN).encode())
    with_bom = load_run_config(path)
    assert with_bom.to_dict() == plain.to_dict()
    assert parse_run_config("\ufeff" + RUN).to_dict() == plain.to_dict()


@pytest.mark.parametrize(
    ("old", "new", "fragments"),
    [
        ("seed = 1", 'seed = 1\nprogress = "yes"', ["progress", "'yes'", "true or false"]),
        ("dim = 2", 'dim = 2\nkind = "sampler"', ["[energy]", "kind", "'sampler'", "'energy'"]),
        (
            "seed = 1",
            "seed = 1180591620717411303424",
            ["seed", "1180591620717411303424", "18446744073709551615"],
        ),
        (
            "steps = 4",
            "steps = 1000000000000000000000000000000",
            ["steps", "1000000000000000000000000000000", "9007199254740992"],
        ),
        (
            "batch_size = 16",
            "batch_size = 1000000000000000000000000000000",
            ["batch_size", "2147483647"],
        ),
        ("widths = [8]", "widths = [100000000000]", ["[energy]", "memory"]),
        ("lr = 1e-2 }", "lr = 1e-2, betas = [0.9] }", ["[train]", "optimizer 'adam'", "betas"]),
        ("lr = 1e-2", "lr = inf", ["[train]", "lr must be finite", "inf"]),
        ("seed = 1", 'seed = 1\ndevice = "meta"', ["[train]", "device", "'meta'"]),
    ],
    ids=[
        "progress-a-string",
        "kind-of-another-table",
        "huge-seed",
        "huge-steps",
        "huge-batch",
        "huge-widths",
        "betas-too-short",
        "infinite-lr",
        "meta-device",
    ],
)
def test_run_file_values_of_the_wrong_type_or_size_are_one_error_naming_the_key(
    host, tmp_path, capsys, old, new, fragments
):
    path = write(tmp_path, RUN.replace(old, new))
    assert train(host, path, "--out", tmp_path / "run", "--until", 0) == 1
    one_error_line(capsys, *fragments)


def test_a_kind_key_equal_to_the_tables_kind_is_accepted(host, tmp_path):
    path = write(tmp_path, RUN.replace("dim = 2", 'dim = 2\nkind = "energy"'))
    trainer = build(
        load_run_config(path), host=host, progress=False, checkpoint_dir=tmp_path / "ckpt"
    )
    assert trainer.energy.event_shape == (2,)


@pytest.mark.parametrize(
    ("argv", "fragments"),
    [
        (
            ["evaluate", "{ckpt}", "--data", "8gaussians", "--resolution", "1000000000"],
            ["--resolution", "1000000000"],
        ),
        (
            ["evaluate", "{ckpt}", "--data", "8gaussians", "--seed", str(2**70)],
            ["--seed", "18446744073709551615"],
        ),
        (["evaluate", "{ckpt}", "--data", "8gaussians", "--n", str(10**12)], ["--n"]),
        (
            [
                "evaluate",
                "{ckpt}",
                "--data",
                "8gaussians",
                "--log-z",
                "ais",
                "--ais-chains",
                str(10**11),
            ],
            ["--ais-chains"],
        ),
        (["sample", "{ckpt}", "--out", "{tmp}/s.safetensors", "--seed", str(2**70)], ["--seed"]),
        (["sample", "{ckpt}", "--out", "{tmp}/s.safetensors", "--steps", str(10**30)], ["--steps"]),
        (["sample", "{ckpt}", "--out", "{tmp}/s.safetensors", "--n", str(10**12)], ["--n"]),
        (["demo", "--quick", "--out", "{tmp}/demo", "--seed", str(2**70)], ["--seed"]),
        (["train", "{tmp}/run.toml", "--out", "{tmp}/new", "--steps", str(10**30)], ["--steps"]),
    ],
    ids=[
        "evaluate-resolution",
        "evaluate-seed",
        "evaluate-n",
        "evaluate-ais-chains",
        "sample-seed",
        "sample-steps",
        "sample-n",
        "demo-seed",
        "train-steps",
    ],
)
def test_huge_command_line_numbers_are_one_error_naming_the_option_and_range(
    host, trained, tmp_path, capsys, argv, fragments
):
    write(tmp_path, RUN)
    argv = [a.format(ckpt=trained / "checkpoint", tmp=tmp_path) for a in argv]
    capsys.readouterr()
    assert main(argv, host=host) == 1
    one_error_line(capsys, *fragments, "from")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "huge"])
def test_a_run_file_that_is_a_device_a_fifo_or_huge_is_refused_without_reading_it(tmp_path, kind):
    import os
    import subprocess
    import sys

    path = tmp_path / "run.toml"
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.write_text("# " + "x" * (2 << 20) + "\n")
    result = subprocess.run(
        [sys.executable, "-m", "ebmflow", "train", str(path), "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    err = result.stderr
    assert err.startswith("ebmflow: error: run config") and err.count("\n") == 1, err
    assert ("not a regular file" if kind != "huge" else "larger than") in err
