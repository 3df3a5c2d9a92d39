"""Objective benchmarks: one training iteration of the ``cd`` and ``pcd`` objectives
(ebmflow-cd plugin) and of ``jem`` (ebmflow-jem; skipped when it is not installed) against
hand-written PyTorch loops doing the same work.

One iteration is: k ULA steps x ← x − η∇E(x) + √(2η)ξ for a batch of chains, then the loss
mean E(x⁺) − mean E(x⁻) on data and negatives, backward, and an Adam step. The hand-written
loops are what a careful user writes: detach, require grad, forward, ``torch.autograd.grad``,
update; PCD's hand loop keeps its chains in a tensor of slots drawn with ``randint``, with
5% of them restarted from the uniform box, as IGEBM/JEM code does. Both sides use copies of
the same network, the same optimizer settings and the same generator seed.
"""

from __future__ import annotations

import copy
import math

import torch

import ebmflow
from benchmarks.harness import Case, Skip, pick
from benchmarks.samplers import NetEnergy, mlp_2_128_128_1


def hand_cd_step(net, optimizer, batch, eta, k, gen):
    """CD-k: chains start at the data."""
    noise = math.sqrt(2 * eta)
    x = batch
    for _ in range(k):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x).sum(), x)
        x = x - eta * g + noise * torch.randn(x.shape, generator=gen)
    return _hand_update(net, optimizer, batch, x.detach())


def hand_pcd_step(net, optimizer, batch, eta, k, gen, chains, box):
    """PCD-k: chains drawn from (and written back to) a tensor of slots."""
    n = batch.shape[0]
    slots = torch.randint(chains.shape[0], (n,), generator=gen)
    fresh = torch.rand(n, generator=gen) < 0.05
    z = torch.rand((n, *chains.shape[1:]), generator=gen) * (2 * box) - box
    x = torch.where(fresh[:, None], z, chains[slots])
    noise = math.sqrt(2 * eta)
    for _ in range(k):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x).sum(), x)
        x = x - eta * g + noise * torch.randn(x.shape, generator=gen)
    x = x.detach()
    chains[slots] = x
    return _hand_update(net, optimizer, batch, x)


def _hand_update(net, optimizer, batch, negatives):
    n = batch.shape[0]
    e = net(torch.cat([batch, negatives])).squeeze(-1)
    loss = e[:n].mean() - e[n:].mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def ebmflow_step(objective, energy, optimizer, batch, gen):
    out = objective(energy, batch, generator=gen)
    optimizer.zero_grad(set_to_none=True)
    out.loss.backward()
    optimizer.step()
    return out.metrics


def hand_jem_step(
    net, optimizer, x, y, gen, chains, k, reinit=0.05, eta=1.0, noise=0.01, data_noise=0.03
):
    """JEM (Grathwohl et al. 2020) by hand: CE + SGLD negatives from a replay buffer of slots,
    E(x) = −logsumexp f(x); SGLD x ← x − η∇E + s ξ with JEM's η = 1, s = 0.01."""
    n = x.shape[0]
    x_pos = x + data_noise * torch.randn(x.shape, generator=gen)
    slots = torch.randint(chains.shape[0], (n,), generator=gen)
    fresh = torch.rand(n, generator=gen) < reinit
    z = torch.rand((n, *chains.shape[1:]), generator=gen) * 2 - 1
    x_neg = torch.where(fresh[:, None], z, chains[slots])
    for _ in range(k):
        x_neg = x_neg.detach().requires_grad_(True)
        e = -torch.logsumexp(net(x_neg), -1)
        (g,) = torch.autograd.grad(e.sum(), x_neg)
        x_neg = x_neg - eta * g + noise * torch.randn(x_neg.shape, generator=gen)
    x_neg = x_neg.detach()
    chains[slots] = x_neg
    logits = net(torch.cat([x_pos, x_neg]))
    lp, ln = logits[:n], logits[n:]
    ce = torch.nn.functional.cross_entropy(lp, y)
    loss = ce - torch.logsumexp(lp, -1).mean() + torch.logsumexp(ln, -1).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def _jem_case(data, iterations, batch_size, k, seeded, adam) -> Case | Skip:
    name = f"jem, SGLD-{k} iteration, MLP classifier 2-128-128-8, batch {batch_size}"
    try:
        objective = ebmflow.create("objective", "jem", k=k, event_shape=[2], capacity=10000)
        energy = ebmflow.create("energy", "classifier-mlp", dim=2, n_classes=8, widths=[128, 128])
    except (ebmflow.UnknownComponentError, ImportError) as exc:
        return Skip(name, "objectives", f"the ebmflow-jem plugin is not available: {exc}")
    labels = torch.randint(8, (batch_size,), generator=torch.Generator().manual_seed(3))
    ref_net = copy.deepcopy(energy.network)
    ours_opt, ref_opt = adam(energy.parameters()), adam(ref_net.parameters())
    chains = torch.empty(10000, 2).uniform_(-1, 1, generator=torch.Generator().manual_seed(2))

    def ours():
        gen = seeded()
        for _ in range(iterations):
            ebmflow_step(objective, energy, ours_opt, (data, labels), gen)

    def reference():
        gen = seeded()
        for _ in range(iterations):
            hand_jem_step(ref_net, ref_opt, data, labels, gen, chains, k)

    return Case(
        name,
        "objectives",
        ours,
        reference,
        iterations,
        unit="iteration",
        target=1.05,
        note=f"jem objective + Adam vs hand-written JEM loop (k={k})",
    )


def cases(size: str = "full", **_options) -> list[Case | Skip]:
    iterations = pick(size, 5, 2, 1)
    batch_size, k, eta, box = pick(size, 256, 256, 32), pick(size, 10, 10, 2), 0.01, 4.0
    data = ebmflow.create("dataset", "8gaussians").sample(
        batch_size, torch.Generator().manual_seed(0)
    )
    net = mlp_2_128_128_1()

    def seeded():
        return torch.Generator().manual_seed(1)

    def adam(params):
        return torch.optim.Adam(params, lr=1e-3, betas=(0.0, 0.999))

    out: list[Case | Skip] = []
    for name in ("cd", "pcd"):
        ours_net, ref_net = copy.deepcopy(net), copy.deepcopy(net)
        energy = NetEnergy(ours_net)
        if name == "cd":
            objective = ebmflow.create(
                "objective", "cd", sampler={"name": "langevin", "step_size": eta}, k=k
            )
        else:
            objective = ebmflow.create(
                "objective",
                "pcd",
                sampler={"name": "langevin", "step_size": eta},
                k=k,
                capacity=10000,
                init_low=-box,
                init_high=box,
            )
        ours_opt, ref_opt = adam(ours_net.parameters()), adam(ref_net.parameters())
        chains = torch.zeros(10000, 2)
        # the hand loop's buffer starts full (of the box's uniform law), like a JEM buffer
        chains.uniform_(-box, box, generator=torch.Generator().manual_seed(2))

        def ours(objective=objective, energy=energy, opt=ours_opt):
            gen = seeded()
            for _ in range(iterations):
                ebmflow_step(objective, energy, opt, data, gen)

        if name == "cd":

            def reference(ref_net=ref_net, opt=ref_opt):
                gen = seeded()
                for _ in range(iterations):
                    hand_cd_step(ref_net, opt, data, eta, k, gen)
        else:

            def reference(ref_net=ref_net, opt=ref_opt, chains=chains):
                gen = seeded()
                for _ in range(iterations):
                    hand_pcd_step(ref_net, opt, data, eta, k, gen, chains, box)

        out.append(
            Case(
                f"{name}, CD-{k} iteration, MLP 2-128-128-1, batch {batch_size}",
                "objectives",
                ours,
                reference,
                iterations,
                unit="iteration",
                target=1.05,
                note=f"{name} objective + Adam vs hand-written loop (Langevin k={k})",
            )
        )
    out.append(_jem_case(data, iterations, batch_size, pick(size, 20, 20, 2), seeded, adam))
    return out
