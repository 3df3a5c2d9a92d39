"""Peak resident memory per chain of a ULA run, one fresh process per measurement:
``python -m benchmarks.scaling_memory LIBRARY CHAINS`` prints the bytes per chain.

In a long-lived process the allocator keeps and reuses the memory of earlier runs, so a
second run's peak hardly rises and the order of the libraries decides the figure; a fresh
process, warmed up on 16 chains (kernels, autograd, lazy imports), measures each alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

STEPS = 5


def measure(library: str, chains: int) -> float:
    import torch

    import ebmflow
    from benchmarks import loops
    from benchmarks.memory import peak_excess_mib
    from benchmarks.scaling import ETA, NetEnergy, mlp

    torch.set_num_threads(1)
    f = mlp(2, 64)
    energy = NetEnergy(f)
    sampler = ebmflow.Langevin(ETA)

    def run(n: int):
        x = torch.randn(n, 2, generator=torch.Generator().manual_seed(0))
        if library == "ebmflow":
            return lambda: sampler.run(energy, x, STEPS, generator=torch.Generator()).samples
        return lambda: loops.ula(f, x, ETA, STEPS, torch.Generator())

    run(16)()
    excess, _method = peak_excess_mib(run(chains))
    return max(excess, 0.0) * 2**20 / chains


def in_fresh_process(library: str, chains: int) -> float:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.scaling_memory", library, str(chains)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"scaling_memory {library} {chains} failed: {done.stderr[-800:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1]))


if __name__ == "__main__":
    print(json.dumps(measure(sys.argv[1], int(sys.argv[2]))))
