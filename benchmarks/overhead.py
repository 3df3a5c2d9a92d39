"""Small-batch overhead: the fixed per-step cost of ebmflow's samplers above a hand-written
loop, in µs, at 4 and 16 chains, where the network's own work is a few tens of µs and the
Python around it shows.

Each measurement runs ``steps`` steps of ebmflow's ``run`` and of the hand loop
(:mod:`benchmarks.loops`) on the same small MLP, interleaved, ``rounds`` times, and reports
(min ebmflow time − min hand time) / steps, in the thread's CPU time: the minimum is the
run least disturbed by other load, so the difference is the fixed cost, not the noise.
Targets: 10 µs per Langevin step, 15 µs per MALA step.
"""

from __future__ import annotations

import time

import torch
from torch import nn

import ebmflow
from benchmarks import loops
from benchmarks.harness import Value, pick

TARGETS = {"langevin": 10.0, "mala": 15.0}
ETA = 0.01


def small_mlp() -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return nn.Sequential(
            nn.Linear(2, 32),
            nn.SiLU(),
            nn.Linear(32, 32),
            nn.SiLU(),
            nn.Linear(32, 1),
            nn.Flatten(0),
        )


class _Net(ebmflow.Energy):
    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x, sigma=None):
        return self.f(x)


def overhead_us(kind: str, chains: int, steps: int, rounds: int) -> float:
    """(min ebmflow − min hand) CPU time per step, µs, over ``rounds`` interleaved rounds."""
    f = small_mlp()
    energy = _Net(f)
    x = torch.randn(chains, 2, generator=torch.Generator().manual_seed(0))
    sampler = ebmflow.create("sampler", kind, step_size=ETA)
    hand = loops.ula if kind == "langevin" else loops.mala

    def ours():
        sampler.run(energy, x, steps, generator=torch.Generator().manual_seed(1))

    def reference():
        hand(f, x, ETA, steps, torch.Generator().manual_seed(1))

    ours(), reference()
    best_ours = best_ref = float("inf")
    for i in range(rounds):
        pair = (ours, reference) if i % 2 == 0 else (reference, ours)
        for fn in pair:
            start = time.thread_time()
            fn()
            took = time.thread_time() - start
            if fn is ours:
                best_ours = min(best_ours, took)
            else:
                best_ref = min(best_ref, took)
    return (best_ours - best_ref) / steps * 1e6


def values(size: str, group: str) -> list[Value]:
    steps, rounds = pick(size, 200, 100, 5), pick(size, 31, 7, 1)
    out = []
    for kind in ("langevin", "mala"):
        for chains in (4, 16):
            out.append(
                Value(
                    f"{kind} per-step overhead above a hand-written loop, {chains} chains",
                    group,
                    lambda kind=kind, chains=chains: overhead_us(kind, chains, steps, rounds),
                    "µs",
                    target=TARGETS[kind],
                    note=f"MLP 2-32-32-1; (min ebmflow − min hand) / step over {rounds} rounds",
                    repeats=pick(size, 3, 2, 1),
                )
            )
    return out
