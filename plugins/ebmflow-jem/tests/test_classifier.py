"""Classifier energies: E(x) = −logsumexp f(x), E(x, y) = −f(x)[y], p(y|x) = softmax f(x);
conditioning, checkpoints and argument errors."""

from __future__ import annotations

import pytest
import torch
from ebmflow_jem import ClassifierEnergy, ConvClassifierEnergy
from torch import nn

import ebmflow
from ebmflow.testing import check_energy


def seeded(factory, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


@pytest.fixture()
def energy():
    return seeded(lambda: ebmflow.create("energy", "classifier-convnet", widths=[8, 16]))


@pytest.fixture()
def images():
    return torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1


def test_energies_are_negative_logsumexp_and_negative_logit(energy, images):
    logits = energy.logits(images)
    assert logits.shape == (6, 10)
    assert torch.allclose(energy(images), -torch.logsumexp(logits, dim=1))
    y = torch.tensor([0, 1, 2, 3, 9, 9])
    assert torch.allclose(energy(images, y=y), -logits[torch.arange(6), y])
    assert torch.allclose(energy(images, y=4), -logits[:, 4])
    check_energy(energy, images)


def test_predict_proba_is_the_posterior_of_the_joint_energy(energy, images):
    # p(y|x) = exp(−E(x, y)) / Σ_y' exp(−E(x, y')) = exp(E(x) − E(x, y))
    probs = energy.predict_proba(images)
    for k in range(10):
        joint = torch.exp(energy(images) - energy(images, y=k))
        assert torch.allclose(probs[:, k], joint, atol=1e-6)
    assert torch.allclose(probs.sum(1), torch.ones(6), atol=1e-6)
    assert torch.equal(energy.predict(images), probs.argmax(1))
    assert torch.allclose(energy.predict_log_proba(images).exp(), probs, atol=1e-6)
    assert not probs.requires_grad


def test_condition_gives_the_class_conditional_energy_and_score(energy, images):
    conditional = ebmflow.condition(energy, 3)
    assert torch.allclose(conditional(images), -energy.logits(images)[:, 3])
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy.logits(x)[:, 3].sum(), x)
    assert torch.allclose(conditional.score(images), grad, atol=1e-6)  # s = ∇ₓ f(x)[y]


def test_any_network_can_be_wrapped():
    net = seeded(lambda: nn.Sequential(nn.Flatten(), nn.Linear(4, 16), nn.SiLU(), nn.Linear(16, 3)))
    energy = ClassifierEnergy(net, n_classes=3, event_shape=[4])
    x = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    assert energy(x).shape == (5,)
    assert energy.predict_proba(x).shape == (5, 3)
    # any sampler runs on it, conditionally too
    sampler = ebmflow.create("sampler", "mala", step_size=0.01)
    result = sampler.run(
        ebmflow.condition(energy, 2), x, 3, generator=torch.Generator().manual_seed(0)
    )
    assert result.samples.shape == (5, 4)
    # its network is not a registered component, so ebmflow.save says how to proceed
    with pytest.raises(ebmflow.CheckpointError, match="network"):
        ebmflow.save(energy, "/tmp/never-written-jem-test")


def test_checkpoint_round_trip(energy, images, tmp_path):
    ebmflow.save(energy, tmp_path / "ckpt")
    loaded = ebmflow.load(tmp_path / "ckpt")
    assert isinstance(loaded, ConvClassifierEnergy)
    assert torch.equal(loaded.logits(images), energy.logits(images))
    mlp = seeded(lambda: ebmflow.create("energy", "classifier-mlp", dim=3, n_classes=4))
    ebmflow.save(mlp, tmp_path / "mlp")
    x = torch.randn(7, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(ebmflow.load(tmp_path / "mlp")(x), mlp(x))


def test_bad_inputs_raise_clear_errors(energy, images):
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 10\).*10"):
        energy(images, y=10)
    with pytest.raises(ValueError, match="y must be an integer class"):
        energy(images, y=torch.zeros(6))
    with pytest.raises(ValueError, match="y must be an integer class"):
        energy(images, y=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match=r"clean energy.*sigma=0.1"):
        energy(images, 0.1)
    wrong = ClassifierEnergy(nn.Flatten(), n_classes=10)
    with pytest.raises(ValueError, match=r"logits of shape \(6, 10\).*\(6, 64\)"):
        wrong(images)
    with pytest.raises(TypeError, match=r"network must be a torch.nn.Module"):
        ClassifierEnergy("resnet")
    with pytest.raises(ValueError, match="n_classes must be an integer ≥ 2"):
        ebmflow.create("energy", "classifier-convnet", n_classes=1)
    with pytest.raises(ValueError, match="unknown activation 'tanhh'"):
        ebmflow.create("energy", "classifier-mlp", activation="tanhh")
