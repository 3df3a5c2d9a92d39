"""Parallel-tempering benchmarks: one step of ``parallel-tempering`` with R = 8 replicas ×
512 chains against one ``mala`` step on 4096 chains of the same energy.

Both sides make one energy+score evaluation on 4096 chains per step (PT evaluates all its
replicas in one batched call), so the ratio is the price of the tempering bookkeeping: the
per-chain β scaling, the coordinate change y = √β x and the even–odd swaps.

Both step from the *same* 4096 positions: a PT state warmed up for 100 steps, and a MALA
state initialised at that state's positions. Every repetition steps again from those
states (the steps are not chained), because the cost of these energies depends on where the
chains are (exp far in the tails is slower) and hot replicas roam further than MALA chains
at β = 1: chaining would compare different positions, not the bookkeeping. Same networks as
:mod:`benchmarks.samplers`; needs the ebmflow-tempering distribution installed.
"""

from __future__ import annotations

import torch
from ebmflow_tempering import ParallelTempering

import ebmflow
from benchmarks.harness import Case, pick
from benchmarks.samplers import GMMAutograd, NetEnergy, mlp_2_128_128_1
from ebmflow.samplers.mala import MALA

N_REPLICAS, CHAINS_PER_REPLICA, WARMUP_STEPS = 8, 512, 100


def cases(size: str = "full", **_options) -> list[Case]:
    steps = pick(size, 25, 10, 2)
    per_replica = pick(size, CHAINS_PER_REPLICA, CHAINS_PER_REPLICA, 16)
    warmup_steps = pick(size, WARMUP_STEPS, WARMUP_STEPS, 5)
    n_chains = N_REPLICAS * per_replica
    gen_x = torch.Generator().manual_seed(0)
    x_mlp = torch.randn(per_replica, 2, generator=gen_x)
    x_gmm = 4 * torch.randn(per_replica, 2, generator=gen_x)
    mlp_energy = NetEnergy(mlp_2_128_128_1())
    gmm = GMMAutograd()

    class GMMEnergy(ebmflow.Energy):
        def forward(self, x, sigma=None):
            return gmm(x)

    gmm_energy = GMMEnergy()
    eta = 0.01
    pt = ParallelTempering(n_replicas=N_REPLICAS, beta_min=0.05, local_sampler=MALA(eta))
    mala = MALA(eta)

    def steps_from(sampler, energy, state):
        def run():
            gen = torch.Generator().manual_seed(1)
            for _ in range(steps):
                sampler.step(energy, state, gen)

        return run

    out = []
    for label, energy, x in (
        ("MLP 2-128-128-1", mlp_energy, x_mlp),
        ("8-mode GMM", gmm_energy, x_gmm),
    ):
        warm = pt.run(energy, x, warmup_steps, generator=torch.Generator().manual_seed(2))
        pt_state = warm.state
        mala_state = mala.init(energy, pt_state.x)  # the same 4096 positions
        out.append(
            Case(
                f"parallel-tempering (mala), {label}, {N_REPLICAS}×{per_replica} chains",
                "tempering",
                steps_from(pt, energy, pt_state),
                steps_from(mala, energy, mala_state),
                steps,
                target=1.15,
                note=f"vs mala on the same {n_chains} positions",
            )
        )
    return out
