"""The jem objective: its loss is the JEM loss, SGLD has JEM's step and noise, modes,
any sampler, the replay buffer in checkpoints, and argument errors."""

from __future__ import annotations

import pytest
import torch

import ebmflow


def seeded(factory, seed: int = 0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory()


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture()
def energy():
    return seeded(
        lambda: ebmflow.create("energy", "classifier-mlp", dim=4, n_classes=3, widths=[16])
    )


@pytest.fixture()
def batch():
    g = gen(1)
    return torch.rand(12, 4, generator=g) * 2 - 1, torch.randint(0, 3, (12,), generator=g)


def jem(**kwargs):
    return ebmflow.create("objective", "jem", **{"event_shape": [4], **kwargs})


def test_defaults_are_jems():
    objective = ebmflow.create("objective", "jem", event_shape=[1, 8, 8])
    sampler = objective.sampler
    assert (sampler.name, sampler.step_size, sampler.noise_scale) == ("langevin", 1.0, 0.01)
    assert objective.k == 20 and objective.data_noise == 0.03 and objective.mode == "joint"
    buffer = objective.buffer
    assert (buffer.capacity, buffer.reinit_prob, buffer.init) == (10000, 0.05, "uniform")
    assert (buffer.init_low, buffer.init_high) == (-1.0, 1.0)
    assert buffer.event_shape == (1, 8, 8)
    assert objective.needs_labels


def test_sgld_step_is_x_plus_grad_log_p_plus_0_01_noise(energy):
    # one step of the default sampler from the buffer's (empty, so uniform) starts:
    # x₁ = x₀ − 1·∇E(x₀) + 0.01·ε
    objective = jem(k=1)
    x_neg, acceptance = objective.negatives(energy, 5, gen(2))
    assert acceptance is None
    g = gen(2)
    fresh = jem(k=1).buffer
    x0, slots = fresh.sample(5, g)
    noise = ebmflow.gaussian_like(x0, g)
    expected = x0 + 1.0 * energy.score(x0) + 0.01 * noise
    assert torch.allclose(x_neg, expected, atol=1e-6)
    # and the chains went back to the slots they came from
    assert len(objective.buffer) == len(set(slots.tolist()))


def test_joint_loss_is_cross_entropy_plus_contrastive_term(energy, batch):
    x, y = batch
    out = jem(k=3)(energy, (x, y), generator=gen(3))
    # replay the same randomness: data noise first, then the buffer draw and SGLD
    g = gen(3)
    x_pos = x + 0.03 * ebmflow.gaussian_like(x, g)
    x_neg, _ = jem(k=3).negatives(energy, 12, g, like=x_pos)
    logits = energy.logits(x_pos)
    ce = torch.nn.functional.cross_entropy(logits, y)
    expected = ce + energy(x_pos).mean() - energy(x_neg).mean()
    assert out.loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert out.metrics["ce"] == pytest.approx(ce.item(), abs=1e-6)
    assert out.metrics["energy_gap"] == pytest.approx(
        (energy(x_pos).mean() - energy(x_neg).mean()).item(), abs=1e-5
    )
    assert set(out.metrics) == {"ce", "accuracy", "e_data", "e_neg", "energy_gap"}


def test_k_sgld_steps_cost_k_gradient_evaluations_and_one_batched_forward(energy, batch):
    # with ULA the last step evaluates nothing at its new positions (k gradient evaluations
    # in x, not k + 1); the loss runs the classifier once on x⁺ and x⁻ together, and its
    # parameter gradient is the plain evaluation's
    x, y = batch
    calls = []
    energy.network.register_forward_hook(lambda module, inp, out: calls.append(inp[0].shape))
    out = jem(k=3)(energy, (x, y), generator=gen(4))
    # init + 2 steps on the 12 negatives (the third evaluates nothing), then data and
    # negatives in one batch of 24
    assert calls == [(12, 4)] * 3 + [(24, 4)]
    grads = torch.autograd.grad(out.loss, list(energy.parameters()))
    g = gen(4)
    x_pos = x + 0.03 * ebmflow.gaussian_like(x, g)
    x_neg, _ = jem(k=3).negatives(energy, 12, g, like=x_pos)
    logits = energy.logits(torch.cat([x_pos, x_neg]))
    expected = (
        torch.nn.functional.cross_entropy(logits[:12], y)
        - torch.logsumexp(logits[:12], -1).mean()
        + torch.logsumexp(logits[12:], -1).mean()
    )
    for got, want in zip(grads, torch.autograd.grad(expected, list(energy.parameters()))):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_weights_and_regulariser(energy, batch):
    x, y = batch
    base = jem(k=2)(energy, (x, y), generator=gen(4)).metrics
    out = jem(k=2, clf_weight=2.0, gen_weight=0.5, alpha=0.1)(energy, (x, y), generator=gen(4))
    expected = 2 * base["ce"] + 0.5 * base["energy_gap"] + 0.1 * out.metrics["l2"]
    assert out.loss.item() == pytest.approx(expected, abs=1e-5)


def test_conditional_mode_is_plain_cross_entropy(energy, batch):
    x, y = batch
    objective = jem(mode="conditional", data_noise=0.0)
    assert objective.buffer is None and objective.needs_labels
    out = objective(energy, (x, y), generator=gen(5))
    ce = torch.nn.functional.cross_entropy(energy.logits(x), y)
    assert out.loss.item() == pytest.approx(ce.item(), abs=1e-6)
    assert set(out.metrics) == {"ce", "accuracy"}
    # no event_shape is needed without a buffer
    ebmflow.create("objective", "jem", mode="conditional")


def test_generative_mode_needs_no_labels(energy, batch):
    x, _ = batch
    objective = jem(mode="generative", k=2)
    assert not objective.needs_labels
    out = objective(energy, x, generator=gen(6))
    assert "ce" not in out.metrics
    assert out.loss.item() == pytest.approx(out.metrics["energy_gap"], abs=1e-5)


def test_any_registered_sampler_can_draw_the_negatives(energy, batch):
    objective = jem(sampler={"name": "mala", "step_size": 0.01}, k=3)
    out = objective(energy, batch, generator=gen(7))
    assert 0.0 <= out.metrics["acceptance_rate"] <= 1.0
    assert objective.sampler.name == "mala"


def test_buffer_survives_save_and_load(energy, batch, tmp_path):
    objective = jem(k=2, capacity=40)
    g = gen(8)
    for _ in range(3):
        objective(energy, batch, generator=g)
    assert len(objective.buffer) > 0
    ebmflow.save(objective, tmp_path / "objective")
    loaded = ebmflow.load(tmp_path / "objective")
    for key, value in objective.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    assert loaded.get_config() == objective.get_config()
    # both continue identically
    state = g.get_state()
    a = objective(energy, batch, generator=g)
    g.set_state(state)
    b = loaded(energy, batch, generator=g)
    assert a.loss.item() == b.loss.item()
    assert torch.equal(objective.buffer.samples, loaded.buffer.samples)


def test_trainer_resume_continues_the_same_chains(tmp_path):
    data = ebmflow.create("dataset", "digits", scale="symmetric")

    def run(until=None, resume=False):
        energy = seeded(lambda: ebmflow.create("energy", "classifier-convnet", widths=[4, 8]))
        objective = ebmflow.create("objective", "jem", event_shape=[1, 8, 8], k=2, capacity=64)
        folder = tmp_path / ("ckpt" if until or resume else "straight")
        trainer = ebmflow.Trainer(
            energy, objective, data, batch_size=8, steps=6, progress=False, checkpoint_dir=folder
        )
        trainer.fit(until=until, resume=resume)
        return trainer

    straight = run()
    run(until=3)
    resumed = run(resume=True)
    assert resumed.step == 6
    for key, value in straight.objective.state_dict().items():
        assert torch.equal(resumed.objective.state_dict()[key], value), key
    for key, value in straight.energy.state_dict().items():
        assert torch.equal(resumed.energy.state_dict()[key], value), key


def test_bad_arguments_and_inputs(energy, batch):
    x, y = batch
    with pytest.raises(ValueError, match="needs event_shape"):
        ebmflow.create("objective", "jem")
    with pytest.raises(ValueError, match=r"unknown mode 'both'.*'joint'"):
        jem(mode="both")
    with pytest.raises(ValueError, match="data_noise must be a number ≥ 0"):
        jem(data_noise=-0.1)
    with pytest.raises(ValueError, match="jem: reinit_prob must be a probability"):
        jem(reinit_prob=2.0)
    with pytest.raises(TypeError, match=r"sampler must be an ebmflow.Sampler"):
        jem(sampler=3)
    with pytest.raises(ValueError, match="needs labelled batches"):
        jem()(energy, x, generator=gen(0))
    with pytest.raises(ValueError, match="buffer holds \\(4,\\); set event_shape=\\[5\\]"):
        jem()(energy, (torch.zeros(12, 5), y), generator=gen(0))
    plain = ebmflow.create("energy", "mlp", dim=4, widths=[8])
    with pytest.raises(ValueError, match="not a classifier energy"):
        jem()(plain, (x, y), generator=gen(0))


def test_non_finite_loss_is_an_error_not_a_constant(batch):
    x, y = batch
    net = torch.nn.Linear(4, 3)
    with torch.no_grad():
        net.bias.fill_(float("nan"))
    energy = ebmflow.create("energy", "classifier", network=net, n_classes=3)
    with pytest.raises(ebmflow.NonFiniteLossError, match="loss is not finite"):
        jem(mode="conditional")(energy, (x, y), generator=gen(0))


def test_a_runaway_loss_stops_training_at_max_loss(batch):
    # JEM diverges with finite, exploding energies; |L| > max_loss is an error too
    x, y = batch
    net = torch.nn.Linear(4, 3)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.copy_(torch.tensor([1e9, 0.0, 0.0]))
    energy = ebmflow.create("energy", "classifier", network=net, n_classes=3)
    with pytest.raises(ebmflow.EbmflowError, match="exceeds max_loss = 1e\\+08"):
        jem(mode="conditional")(energy, (x, y), generator=gen(0))
    out = jem(mode="conditional", max_loss=None)(energy, (x, y), generator=gen(0))
    assert out.loss.item() > 1e8
