"""Compiled sampling: ``Sampler.run(..., compile=...)`` against the *eager* hand-written loop.

``compile=True`` runs the energy and its score (forward and gradient) as one
``torch.compile`` graph; on CUDA the harness uses ``compile="reduce-overhead"``, which
replays that graph as a CUDA graph. The reference is the same hand-written ULA loop as in
:mod:`benchmarks.samplers`, eager, on the same device. The target (compiled at least 1.5×
faster, a ratio ≤ 0.667) is for a GPU, where an eager step of a small MLP is bound by kernel
launches; on a CPU the ratio is reported without a target.

The first call compiles (seconds to tens of seconds on a CPU); it happens while the cases
are built, is timed, and is reported in the note. The tiny size skips this group.
"""

from __future__ import annotations

import time

import torch

from benchmarks.harness import Case, Skip, pick
from benchmarks.samplers import NetEnergy, hand_ula, mlp_2_128_128_1
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA

GPU_TARGET = round(1 / 1.5, 3)


def _synchronised(fn, device: torch.device):
    if device.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(device)
        return out

    return run


def cases(size: str = "full", device: str = "cpu", **_options) -> list[Case | Skip]:
    if size == "tiny":
        return [
            Skip(
                "compiled sampling",
                "compiled",
                "torch.compile takes 10-60 s on a CPU; run without --tiny "
                "(tests/test_compiled.py checks compiled = eager)",
            )
        ]
    dev = torch.device(device)
    mode = "reduce-overhead" if dev.type == "cuda" else True
    steps = pick(size, 50, 20, 2)
    chains = 1024
    x = torch.randn(chains, 2, generator=torch.Generator().manual_seed(0)).to(dev)
    net = mlp_2_128_128_1().to(dev)
    energy = NetEnergy(net)
    f = lambda z: net(z).squeeze(-1)  # noqa: E731
    eta = 0.01
    target = GPU_TARGET if dev.type == "cuda" else None
    where = (
        "CUDA graphs"
        if dev.type == "cuda"
        else f"CPU: no target (the ≤ {GPU_TARGET} target is for GPUs)"
    )

    def seeded():
        return torch.Generator(device=dev).manual_seed(1)

    out = []
    for name, sampler in (("langevin", Langevin(eta)), ("mala", MALA(eta))):

        def ours(sampler=sampler):
            return sampler.run(energy, x, steps, generator=seeded(), compile=mode)

        started = time.perf_counter()
        ours()  # compiles (once per process: the mala case reuses langevin's graph)
        first = time.perf_counter() - started
        out.append(
            Case(
                f"{name} compile={mode!r}, MLP 2-128-128-1, {chains} chains, {dev.type}",
                "compiled",
                _synchronised(ours, dev),
                _synchronised(lambda: hand_ula(f, x, eta, steps, seeded()), dev),
                steps,
                target=target,
                note=f"vs eager hand-written ULA; {where}; first run {first:.1f} s",
            )
        )
    return out
