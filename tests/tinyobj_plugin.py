"""A test plugin with one objective, ``tiny-pcd``: small enough to train in a test, stateful
enough to exercise every part of the training state (optimizer, generators, objective
buffers, pending metrics).

Tests use it in-process through the ``tinyobj_plugin`` fixture of ``conftest.py``, and
installed into a fake site (its source, under this module name) for subprocesses.
"""

import math

import torch

import ebmflow


class TinyPCD(ebmflow.Objective):
    """Persistent chains (a buffer) moved by k ULA steps of the given sampler's step size."""

    def __init__(self, n_chains=16, k=2, sampler=None):
        super().__init__()
        self.k, self.sampler = k, sampler
        self.register_buffer("chains", torch.zeros(n_chains, 2))

    def forward(self, energy, batch, *, generator=None):
        eta = self.sampler.step_size if self.sampler is not None else 0.05
        x = self.chains
        for _ in range(self.k):
            noise = torch.randn(x.shape, generator=generator)
            x = x + eta * energy.score(x) + math.sqrt(2 * eta) * noise
        self.chains.copy_(x)
        pos, neg = energy(batch).mean(), energy(x).mean()
        return ebmflow.ObjectiveOutput(pos - neg, {"energy_gap": float((neg - pos).detach())})


@ebmflow.hookimpl
def ebmflow_objectives():
    return [ebmflow.Component("tiny-pcd", "tinyobj_plugin:TinyPCD", "test objective")]
