"""A run evaluates the energy with its parameters frozen and gives them back as they were:
the samples are those of an unfrozen evaluation, and training afterwards sees the same
``requires_grad`` flags, also after a run that raised."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import ebmflow
from ebmflow.samplers.frozen import frozen_parameters
from ebmflow.samplers.langevin import Langevin


class Net(ebmflow.Energy):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)  # the parameters only; the samplers use their generators
        self.net = nn.Sequential(nn.Linear(2, 16), nn.SiLU(), nn.Linear(16, 1))
        self.fixed = nn.Parameter(torch.zeros(()), requires_grad=False)

    def forward(self, x, sigma=None):
        return self.net(x).squeeze(-1) + self.fixed


def flags(module: nn.Module) -> dict[str, bool]:
    return {name: p.requires_grad for name, p in module.named_parameters()}


def test_a_run_freezes_the_parameters_and_restores_exactly_the_ones_it_froze():
    energy = Net()
    before = flags(energy)
    seen = []
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    result = Langevin(step_size=0.01).run(
        energy, x0, 3, generator=torch.Generator(), callback=lambda s: seen.append(flags(energy))
    )
    assert seen and all(not any(f.values()) for f in seen)
    assert flags(energy) == before and not before["fixed"]
    # the score is the same as an evaluation with the parameters thawed
    _, thawed = energy.energy_and_score(result.samples)
    assert torch.equal(result.state.score, thawed)


def test_the_parameters_are_restored_after_a_run_that_raises():
    energy = Net()
    before = flags(energy)

    def fail(state):
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError, match="stop"):
        Langevin(step_size=0.01).run(energy, torch.zeros(4, 2), 2, callback=fail)
    assert flags(energy) == before


def test_nested_freezing_leaves_the_outer_context_in_charge():
    energy = Net()
    with frozen_parameters(energy):
        with frozen_parameters(energy):
            pass
        assert not any(flags(energy).values())
    assert flags(energy)["net.0.weight"]


def test_an_objectives_chains_run_frozen_and_its_loss_then_trains_every_parameter():
    from ebmflow.samplers.chains import run_chains

    class Recording(Net):
        def forward(self, x, sigma=None):
            self.seen.append(self.net[0].weight.requires_grad)
            return super().forward(x, sigma)

    energy = Recording()
    energy.seen = []
    x0 = torch.randn(8, 2, generator=torch.Generator().manual_seed(1))
    chains = run_chains(Langevin(step_size=0.01), energy, x0, 3, generator=torch.Generator())
    assert energy.seen == [False] * 4  # the start and three steps
    # the loss on the chains' ends reaches every trainable parameter, as without freezing
    loss = energy(chains.x).mean()
    loss.backward()
    assert energy.seen[-1] is True
    assert all(p.grad is not None for p in energy.net.parameters())
    assert energy.fixed.grad is None and not energy.fixed.requires_grad
