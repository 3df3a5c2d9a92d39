"""Trainer callbacks and the TensorBoard logger built on them (event files read back)."""

from __future__ import annotations

import importlib.metadata
import math

import pytest
import torch

import ebmflow
from ebmflow.cli import main
from ebmflow.trainer import Trainer
from ebmflow.training.tensorboard import scalar_tag


class ShortRunCD(ebmflow.Objective):
    """Contrastive divergence with k Langevin steps from noise; reports the data and negative
    energies and a made-up acceptance rate, as Metropolis objectives do."""

    def forward(self, energy, batch, *, generator=None):
        x = torch.randn(batch.shape, generator=generator)
        for _ in range(3):
            noise = torch.randn(x.shape, generator=generator)
            x = (x + 0.05 * energy.score(x) + math.sqrt(0.1) * noise).detach()
        e_data, e_neg = energy(batch).mean(), energy(x).mean()
        e_data_value, e_neg_value = float(e_data.detach()), float(e_neg.detach())
        metrics = {"e_data": e_data_value, "e_neg": e_neg_value, "acceptance_rate": 1.0}
        return ebmflow.ObjectiveOutput(e_data - e_neg, metrics)


class Recorder(ebmflow.Callback):
    def __init__(self):
        self.calls = []

    def on_start(self, trainer):
        self.calls.append(("start", trainer.step))

    def on_step(self, trainer, step, output):
        assert isinstance(output, ebmflow.ObjectiveOutput)
        self.calls.append(("step", step))

    def on_log(self, trainer, record):
        self.calls.append(("log", record["step"]))

    def on_checkpoint(self, trainer, path):
        self.calls.append(("checkpoint", trainer.step, path.name))

    def on_end(self, trainer):
        self.calls.append(("end", trainer.step))


def make_trainer(tmp_path=None, seed=0, **kwargs):
    host = ebmflow.PluginHost(entry_points=False)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        energy = ebmflow.MLPEnergy(dim=2, widths=[16])
    data = host.create("dataset", "8gaussians")
    return Trainer(
        energy, ShortRunCD(), data, batch_size=32, seed=seed, progress=False, host=host, **kwargs
    )


def test_callbacks_see_every_step_log_checkpoint_and_the_end(tmp_path):
    recorder = Recorder()
    trainer = make_trainer(
        steps=4,
        log_every=2,
        checkpoint_every=3,
        checkpoint_dir=tmp_path / "ckpt",
        callbacks=[recorder],
    )
    history = trainer.fit()
    assert recorder.calls == [
        ("start", 0),
        ("step", 1),
        ("step", 2),
        ("log", 2),
        ("step", 3),
        ("checkpoint", 3, "ckpt"),
        ("step", 4),
        ("log", 4),
        ("checkpoint", 4, "ckpt"),
        ("end", 4),
    ]
    assert [r["step"] for r in history] == [2, 4]


def test_on_end_runs_when_fit_raises():
    class Boom(ebmflow.Callback):
        ended = False

        def on_step(self, trainer, step, output):
            raise RuntimeError("callback failed")

        def on_end(self, trainer):
            Boom.ended = True

    with pytest.raises(RuntimeError, match="callback failed"):
        make_trainer(steps=2, callbacks=[Boom()]).fit()
    assert Boom.ended


def test_an_object_with_no_hook_is_refused():
    with pytest.raises(ebmflow.ConfigError, match="has none of the methods on_start"):
        make_trainer(steps=1, callbacks=[object()])


def test_scalar_tags_group_the_record():
    assert [
        scalar_tag(k) for k in ("loss", "lr", "e_neg", "energy_gap", "acceptance_rate", "kl")
    ] == [
        "train/loss",
        "train/lr",
        "energy/e_neg",
        "energy/energy_gap",
        "sampler/acceptance_rate",
        "objective/kl",
    ]


def _event_tags(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    scalars = {tag: [e.step for e in events.Scalars(tag)] for tag in tags["scalars"]}
    images = {tag: [e.step for e in events.Images(tag)] for tag in tags["images"]}
    return scalars, images, events


def test_tensorboard_logger_writes_what_it_promises_and_changes_nothing(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    plain = make_trainer(steps=6, log_every=2)
    plain.fit()
    logger = ebmflow.TensorBoardLogger(tmp_path / "tb", sample_every=3, n_samples=64)
    logged = make_trainer(steps=6, log_every=2, callbacks=[logger])
    logged.fit()
    for a, b in zip(plain.energy.parameters(), logged.energy.parameters()):
        assert torch.equal(a, b)  # logging draws from its own generator
    scalars, images, events = _event_tags(tmp_path / "tb")
    for tag in ("train/loss", "train/lr", "train/grad_norm", "energy/e_data", "energy/e_neg"):
        assert scalars[tag] == [2, 4, 6], tag
    assert scalars["sampler/acceptance_rate"] == [2, 4, 6]
    assert scalars["energy/data"] == scalars["energy/samples"] == [3, 6]
    assert images["samples"] == [3, 6]
    loss = [e.value for e in events.Scalars("train/loss")]
    assert loss == pytest.approx([r["loss"] for r in logged.history])
    assert "run" in "".join(events.Tags()["tensors"])


def test_tensorboard_logger_draws_image_grids_for_image_energies(tmp_path):
    pytest.importorskip("tensorboard")
    host = ebmflow.PluginHost(entry_points=False)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        energy = ebmflow.ConvNetEnergy(channels=1, image_size=8, widths=[4, 8])
    images = torch.rand(64, 1, 8, 8)
    logger = ebmflow.TensorBoardLogger(tmp_path / "tb", sample_every=2, n_samples=4)
    trainer = Trainer(
        energy,
        ShortRunCD(),
        images,
        batch_size=8,
        steps=2,
        log_every=1,
        progress=False,
        host=host,
        callbacks=[logger],
    )
    trainer.fit()
    _, images_logged, events = _event_tags(tmp_path / "tb")
    assert images_logged["samples"] == [2]
    image = events.Images("samples")[0]
    assert (image.width, image.height) == (4 * 8, 8)  # the 4 images side by side


def _installed(distribution):
    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _installed("ebmflow-cd"), reason="needs ebmflow-cd")
def test_train_command_logs_to_tensorboard(tmp_path, capsys):
    pytest.importorskip("tensorboard")
    pytest.importorskip("matplotlib")
    config = tmp_path / "run.toml"
    config.write_text(
        '[data]\nname = "8gaussians"\n'
        '[energy]\nname = "mlp"\ndim = 2\nwidths = [16]\n'
        '[objective]\nname = "cd"\nk = 2\n'
        '[sampler]\nname = "mala"\nstep_size = 0.05\n'
        "[train]\nsteps = 4\nbatch_size = 32\nlog_every = 2\n",
        encoding="utf-8",
    )
    argv = ["train", str(config), "--out", str(tmp_path / "run")]
    assert main([*argv, "--tensorboard", str(tmp_path / "tb")]) == 0
    scalars, images, _ = _event_tags(tmp_path / "tb")
    for tag in ("train/loss", "energy/e_data", "energy/e_neg", "sampler/acceptance_rate"):
        assert scalars[tag] == [2, 4], tag
    assert images["samples"] == [2, 4]  # every log interval in so short a run
