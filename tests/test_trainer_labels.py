"""ebmflow.Trainer with labelled batches: an objective with ``needs_labels = True`` gets
``(x, y)`` from a Dataset's ``sample_with_labels`` or from tensor data ``(x, y)``; the
batches, resume and rank sharding behave as for unlabelled data."""

from __future__ import annotations

import pytest
import torch

import ebmflow
from ebmflow.trainer import Trainer
from ebmflow.training.batches import DatasetBatches, TensorBatches


class Recording(ebmflow.Objective):
    """Mean energy of x; records every batch it gets. ``needs_labels`` as given."""

    def __init__(self, needs_labels: bool = True) -> None:
        super().__init__()
        self.needs_labels = needs_labels
        self.batches: list = []

    def forward(self, energy, batch, *, generator=None):
        self.batches.append(batch)
        x = batch[0] if isinstance(batch, tuple) else batch
        return ebmflow.ObjectiveOutput(energy(x).mean(), {})


class Plugin:
    @ebmflow.hookimpl
    def ebmflow_objectives(self):
        return [ebmflow.Component("recording", Recording)]


@pytest.fixture(scope="module")
def host():
    host = ebmflow.PluginHost()
    host.register(Plugin(), name="label-tests")
    return host


def mlp(host):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return host.create("energy", "mlp", dim=4, widths=[8])


def labelled_rows(n: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """x[i] = (i, i, i, i), y[i] = i: every x row names its label."""
    y = torch.arange(n)
    return y.float().unsqueeze(1).repeat(1, 4), y


def test_tensor_pair_gives_matching_rows_and_same_order_as_unlabelled(host):
    x, y = labelled_rows()
    objective = Recording()
    Trainer(mlp(host), objective, (x, y), batch_size=8, steps=12, progress=False, host=host).fit()
    plain = Recording(needs_labels=False)
    Trainer(mlp(host), plain, x, batch_size=8, steps=12, progress=False, host=host).fit()
    assert len(objective.batches) == 12
    for (bx, by), px in zip(objective.batches, plain.batches):
        assert torch.equal(bx[:, 0].long(), by)  # rows and labels match
        assert torch.equal(bx, px)  # the same rows as without labels


def test_dataset_batches_come_from_sample_with_labels(host):
    data = ebmflow.create("dataset", "digits")
    objective = Recording()
    energy = ebmflow.create("energy", "convnet", widths=[4])
    Trainer(
        energy, objective, data, batch_size=16, steps=3, seed=5, progress=False, host=host
    ).fit()
    plain = Recording(needs_labels=False)
    Trainer(energy, plain, data, batch_size=16, steps=3, seed=5, progress=False, host=host).fit()
    images, labels = data.tensors()
    for (bx, by), px in zip(objective.batches, plain.batches):
        assert by.dtype == torch.int64 and by.shape == (16,)
        assert torch.equal(bx, px)
        # every (image, label) pair is a row of the split
        rows = (images.flatten(1)[None] == bx.flatten(1)[:, None]).all(-1)  # (16, N)
        assert rows.any(1).all()
        assert all(bool((labels[r] == label).any()) for r, label in zip(rows, by))


def test_labels_given_to_an_objective_that_does_not_ask_are_dropped(host):
    x, y = labelled_rows()
    objective = Recording(needs_labels=False)
    Trainer(mlp(host), objective, (x, y), batch_size=8, steps=2, progress=False, host=host).fit()
    assert all(isinstance(b, torch.Tensor) for b in objective.batches)


def test_unlabelled_data_for_a_labelled_objective_is_refused(host):
    x, _ = labelled_rows()
    with pytest.raises(ebmflow.ConfigError, match=r"needs labelled batches.*data=\(x, y\)"):
        Trainer(mlp(host), Recording(), x, batch_size=8, progress=False, host=host)
    gaussians = ebmflow.create("dataset", "8gaussians")
    energy = host.create("energy", "mlp", dim=2, widths=[8])
    with pytest.raises(ebmflow.ConfigError, match="'8gaussians' has no sample_with_labels"):
        Trainer(energy, Recording(), gaussians, batch_size=8, progress=False, host=host)
    with pytest.raises(ebmflow.ConfigError, match="labels of shape \\(40,\\)"):
        Trainer(
            mlp(host),
            Recording(),
            (x, torch.zeros(39, dtype=torch.long)),
            batch_size=8,
            progress=False,
            host=host,
        )


def test_ranks_shard_images_and_labels_alike():
    x, y = labelled_rows(32)
    g = [torch.Generator().manual_seed(3) for _ in range(3)]
    cpu = torch.device("cpu")
    whole = TensorBatches(x, 8, 0, 1, g[0], cpu, labels=y).next()
    parts = [TensorBatches(x, 8, r, 2, g[r + 1], cpu, labels=y).next() for r in (0, 1)]
    for r, (px, py) in enumerate(parts):
        assert torch.equal(px, whole[0][r::2]) and torch.equal(py, whole[1][r::2])
    data = ebmflow.create("dataset", "digits")
    g = [torch.Generator().manual_seed(4) for _ in range(3)]
    whole = DatasetBatches(data, 8, 0, 1, g[0], cpu, labels=True).next()
    for r in (0, 1):
        px, py = DatasetBatches(data, 8, r, 2, g[r + 1], cpu, labels=True).next()
        assert torch.equal(px, whole[0][r::2]) and torch.equal(py, whole[1][r::2])


def test_resume_with_labelled_tensor_data_is_bit_identical(host, tmp_path):
    x, y = labelled_rows()
    straight = Recording()
    Trainer(mlp(host), straight, (x, y), batch_size=8, steps=9, progress=False, host=host).fit()
    first = Recording()
    Trainer(
        mlp(host),
        first,
        (x, y),
        batch_size=8,
        steps=9,
        progress=False,
        host=host,
        checkpoint_dir=tmp_path / "ckpt",
    ).fit(until=4)
    second = Recording()
    trainer = Trainer.resume(
        tmp_path / "ckpt", objective=second, data=(x, y), host=host, progress=False
    )
    assert trainer.step == 4
    trainer.fit()
    for (ax, ay), (bx, by) in zip(straight.batches, first.batches + second.batches):
        assert torch.equal(ax, bx) and torch.equal(ay, by)
