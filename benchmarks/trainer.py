"""A Trainer iteration: ``ebmflow.Trainer.fit`` with the ``dsm`` objective against the
hand-written training loop a user would write for the same work.

One iteration draws a batch of 256 from the ``8gaussians`` dataset (the same dataset object
and generator seeds on both sides), computes the DSM loss at σ = 0.1 on a clean MLP energy
(J = ½ E‖σ s(x̃) + z‖², s = −∇ₓE by ``torch.autograd.grad(create_graph=True)``), backward,
and an Adam step. The hand-written loop reads the loss once per step (``loss.item()``, as
any loop that logs or checks for NaN does); the Trainer checks the loss and the gradients
for NaN/inf every step on the CPU and logs means once per ``fit`` call here. Cheap
objectives make the Trainer's own per-step cost most visible, hence DSM on a small MLP.
Needs the ebmflow-score plugin.
"""

from __future__ import annotations

import copy
import math

import torch

import ebmflow
from benchmarks.harness import Case, Skip, pick
from benchmarks.score import SIGMA, mlp_energy


def hand_dsm_loop(net, data, batch_size, iterations, lr, seed):
    """``iterations`` DSM steps with Adam by hand; returns the runner."""
    optimizer = torch.optim.Adam(net.parameters(), lr=lr)
    gen_data = torch.Generator().manual_seed(seed)
    gen_noise = torch.Generator().manual_seed(seed + 1)

    def run():
        for _ in range(iterations):
            x = data.sample(batch_size, gen_data)
            z = torch.randn(x.shape, generator=gen_noise)
            x_noisy = (x + SIGMA * z).requires_grad_(True)
            energy = net(x_noisy).squeeze(-1)
            (score,) = torch.autograd.grad(-energy.sum(), x_noisy, create_graph=True)
            loss = 0.5 * (SIGMA * score + z).square().sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if not math.isfinite(loss.item()):
                raise RuntimeError(f"diverged: loss {loss.item()}")

    return run


def cases(size: str = "full", **_options) -> list[Case | Skip]:
    iterations = pick(size, 20, 5, 1)
    batch_size = pick(size, 256, 256, 32)
    name = f"Trainer iteration, dsm, MLP 2-128-128-1 clean, batch {batch_size}"
    try:
        objective = ebmflow.create("objective", "dsm", sigma=SIGMA)
    except ebmflow.UnknownComponentError as exc:
        return [Skip(name, "trainer", f"the ebmflow-score plugin is not available: {exc}")]
    data = ebmflow.create("dataset", "8gaussians")
    energy = mlp_energy(False)
    reference = hand_dsm_loop(copy.deepcopy(energy.net), data, batch_size, iterations, 1e-4, 0)
    trainer = ebmflow.Trainer(
        energy,
        objective,
        data,
        optimizer={"name": "adam", "lr": 1e-4},
        batch_size=batch_size,
        steps=10**9,
        log_every=iterations,
        progress=False,
    )

    def ours():
        trainer.fit(until=trainer.step + iterations)

    return [
        Case(
            name,
            "trainer",
            ours,
            reference,
            iterations,
            unit="iteration",
            target=1.05,
            note="Trainer.fit vs hand-written DSM + Adam loop",
        )
    ]
