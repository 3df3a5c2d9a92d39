"""Score-matching benchmarks: one training iteration (loss, backward, Adam step) of the
ebmflow-score objectives against hand-written PyTorch loops doing identical work.

Both sides train copies of the same network (the hand-written side uses the ``nn.Sequential``
inside ebmflow's MLP energy, so the weights and arithmetic are the same) on the same fixed
batch, with the same generator seed, so the noise draws are the same too. The hand-written
loops are what a careful user writes: precomputed constants, ``torch.autograd.grad`` with
``create_graph=True`` for the score, one ``backward`` for the parameters.

Needs the ebmflow-score plugin installed (``pip install -e plugins/ebmflow-score``).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

import ebmflow
from benchmarks.harness import Case, pick

BATCH = 256
SIGMA = 0.1
SIGMA_MAX, SIGMA_MIN = 3.0, 0.1


def mlp_energy(noise_conditional: bool, seed: int = 0) -> ebmflow.Energy:
    with torch.random.fork_rng():  # the caller's RNG state is restored
        torch.manual_seed(seed)
        return ebmflow.create(
            "energy", "mlp", dim=2, widths=[128, 128], noise_conditional=noise_conditional
        )


def train_ours(energy, objective, x, iterations):
    """``iterations`` steps of the ebmflow objective with Adam; returns the runner."""
    optimizer = torch.optim.Adam(energy.parameters(), lr=1e-4)

    def run():
        gen = torch.Generator().manual_seed(1)
        for _ in range(iterations):
            loss = objective(energy, x, generator=gen).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def hand_dsm(net: nn.Module, x, iterations, conditional: bool):
    """DSM at one σ, J = ½ E‖σ s + z‖², s = −∇ₓ net([x̃, log σ])."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    log_sigma = torch.full((x.shape[0], 1), math.log(SIGMA))

    def run():
        gen = torch.Generator().manual_seed(1)
        for _ in range(iterations):
            z = torch.randn(x.shape, generator=gen)
            x_noisy = (x + SIGMA * z).requires_grad_(True)
            inp = torch.cat([x_noisy, log_sigma], 1) if conditional else x_noisy
            energy = net(inp).squeeze(-1)
            (score,) = torch.autograd.grad(-energy.sum(), x_noisy, create_graph=True)
            loss = 0.5 * (SIGMA * score + z).square().sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def hand_multiscale_dsm(net: nn.Module, x, iterations):
    """Multiscale DSM, log σ ~ U[log σ_min, log σ_max] per example, λ(σ) = σ²."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    log_min, log_max = math.log(SIGMA_MIN), math.log(SIGMA_MAX)

    def run():
        gen = torch.Generator().manual_seed(1)
        for _ in range(iterations):
            u = torch.rand(x.shape[0], generator=gen, dtype=torch.float64)
            sigma = torch.exp(log_min + u * (log_max - log_min)).float()[:, None]
            z = torch.randn(x.shape, generator=gen)
            x_noisy = (x + sigma * z).requires_grad_(True)
            energy = net(torch.cat([x_noisy, sigma.log()], 1)).squeeze(-1)
            (score,) = torch.autograd.grad(-energy.sum(), x_noisy, create_graph=True)
            loss = 0.5 * (sigma * score + z).square().sum(1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def hand_ssm(net: nn.Module, x, iterations):
    """SSM-VR with one Rademacher projection: E[½‖s‖² + vᵀ∇ₓ(vᵀs)]."""
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def run():
        gen = torch.Generator().manual_seed(1)
        for _ in range(iterations):
            x_in = x.detach().requires_grad_(True)
            v = torch.empty_like(x).bernoulli_(0.5, generator=gen).mul_(2).sub_(1)
            energy = net(x_in).squeeze(-1)
            (score,) = torch.autograd.grad(-energy.sum(), x_in, create_graph=True)
            (grad_v,) = torch.autograd.grad((v * score).sum(), x_in, create_graph=True)
            loss = (0.5 * score.square().sum(1) + (v * grad_v).sum(1)).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    return run


def cases(size: str = "full", **_options) -> list[Case]:
    iterations = pick(size, 20, 5, 1)
    batch = pick(size, BATCH, BATCH, 32)
    x = torch.randn(batch, 2, generator=torch.Generator().manual_seed(0))
    schedule = {"name": "geometric", "sigma_max": SIGMA_MAX, "sigma_min": SIGMA_MIN}
    dsm = ebmflow.create("objective", "dsm", sigma=SIGMA)
    out = []
    for conditional in (True, False):
        energy = mlp_energy(conditional)
        label = "noise-conditional" if conditional else "clean"
        out.append(
            Case(
                f"dsm, MLP 2-128-128-1 {label}, batch {batch}",
                "score",
                train_ours(energy, dsm, x, iterations),
                hand_dsm(copy.deepcopy(energy.net), x, iterations, conditional),
                iterations,
                unit="iteration",
                target=1.05,
                note="vs hand-written DSM",
            )
        )
    energy = mlp_energy(True)
    out.append(
        Case(
            f"multiscale-dsm, MLP 2-128-128-1, batch {batch}",
            "score",
            train_ours(
                energy,
                ebmflow.create("objective", "multiscale-dsm", noise_schedule=schedule),
                x,
                iterations,
            ),
            hand_multiscale_dsm(copy.deepcopy(energy.net), x, iterations),
            iterations,
            unit="iteration",
            target=1.05,
            note="vs hand-written multiscale DSM",
        )
    )
    energy = mlp_energy(False)
    ssm = ebmflow.create("objective", "ssm", n_projections=1)
    out.append(
        Case(
            f"ssm (1 projection), MLP 2-128-128-1 clean, batch {batch}",
            "score",
            train_ours(energy, ssm, x, iterations),
            hand_ssm(copy.deepcopy(energy.net), x, iterations),
            iterations,
            unit="iteration",
            target=1.05,
            note="vs hand-written SSM-VR",
        )
    )
    out.append(
        Case(
            f"ssm (1 projection) / dsm iteration, MLP 2-128-128-1 clean, batch {batch}",
            "score",
            train_ours(energy, ssm, x, iterations),
            train_ours(mlp_energy(False), dsm, x, iterations),
            iterations,
            unit="iteration",
            target=2.2,
            note="ebmflow ssm vs ebmflow dsm",
        )
    )
    return out
