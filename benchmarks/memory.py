"""Peak memory of a long sampling run: it must not grow with the number of steps.

A fresh Python process (``python -m benchmarks.memory``) builds an MLP energy and 256
chains, warms up the allocator and autograd with one short run, then measures the *peak
excess* of a run — its peak resident set size minus the resident size when it started —
for a short run of ``short`` steps and for a long run of ``long`` steps from the same start.
The figure is the difference. With no trajectory kept (``thin=None``, the default) the long
run needs no more memory than the short one, so it should be about zero; only the
(n_steps,) energy trace grows, by 4 bytes a step. The control run keeps the trajectory
(``thin=1``) and shows that the measurement sees growth: the trajectory's
``steps × 256 × 2 × 4`` bytes.

On Linux the peak is reset before each run (``/proc/self/clear_refs``) and read from
``VmHWM``; elsewhere the process's lifetime peak (``getrusage``) is used, which may hide
growth below an earlier peak (the import of torch, say). Resident size counts torch's CPU
allocations; its granularity is a page, and the allocator may keep a few spare MiB, hence
a target of 2 MiB rather than 0.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.harness import Skip, Value, pick

CHAINS, DIM = 256, 2
TARGET_MIB = 2.0


def _status_mib(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process from /proc (Linux), in MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    return None


def _reset_peak() -> bool:
    """Reset the peak resident size to the current one (Linux ≥ 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_mib("VmHWM") is not None


def _lifetime_peak_mib() -> float:
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes / KiB


def peak_excess_mib(run) -> tuple[float, str]:
    """How far the resident size rose above its starting value while ``run()`` ran (MiB),
    and the method (``"VmHWM"`` or the lifetime peak, ``"ru_maxrss"``)."""
    import gc

    gc.collect()
    if _reset_peak():
        before = _status_mib("VmRSS")
        result = run()
        excess = _status_mib("VmHWM") - before
        del result
        return excess, "VmHWM"
    before = _lifetime_peak_mib()
    result = run()
    excess = _lifetime_peak_mib() - before
    del result
    return excess, "ru_maxrss"


def child(sampler_name: str, short: int, long: int, thin: int | None) -> dict[str, float]:
    """The measurement, in this process: peak excess of ``short`` and of ``long`` steps."""
    import torch

    import ebmflow

    torch.set_num_threads(1)
    with torch.random.fork_rng():  # the caller's RNG state is restored
        torch.manual_seed(0)
        energy = ebmflow.create("energy", "mlp", dim=DIM, widths=[32, 32])
    sampler = ebmflow.create("sampler", sampler_name, step_size=0.01)
    x0 = torch.randn(CHAINS, DIM, generator=torch.Generator().manual_seed(0))

    def run(n_steps):
        return lambda: sampler.run(
            energy, x0, n_steps, generator=torch.Generator().manual_seed(1), thin=thin
        )

    run(short)()  # warm-up: allocator pools, autograd, lazy imports
    short_excess, method = peak_excess_mib(run(short))
    long_excess, _ = peak_excess_mib(run(long))
    return {
        "short_excess_mib": short_excess,
        "long_excess_mib": long_excess,
        "growth_mib": long_excess - short_excess,
        "method": method,
    }


def growths(runs: list[tuple[str, int, int, int | None]]) -> list[float]:
    """Growth of the peak excess (MiB) from ``short`` to ``long`` steps for each run
    ``(sampler, short, long, thin)``, one after the other in one fresh process. (Where the
    peak cannot be reset, a later run sees only growth above the earlier runs' peak: one
    run per process measures exactly, which is what the full and quick sizes do.)"""
    specs = [f"{s}:{a}:{b}:{'none' if t is None else t}" for s, a, b, t in runs]
    args = [sys.executable, "-m", "benchmarks.memory", *specs]
    done = subprocess.run(
        args,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args[1:])} failed: {done.stderr.strip()[-800:]}")
    return [r["growth_mib"] for r in json.loads(done.stdout.strip().splitlines()[-1])]


def cases(size: str = "full", **_options) -> list[Value | Skip]:
    try:
        import resource  # noqa: F401  (Unix only)
    except ImportError:
        return [Skip("peak memory of a long run", "memory", "needs the resource module (Unix)")]
    short, long = pick(size, (100, 10000), (100, 2000), (10, 100))
    long_mala, control = pick(size, 3000, 1000, 100), pick(size, 2000, 1000, 100)
    runs = [
        ("langevin", short, long, None),
        ("mala", short, long_mala, None),
        ("langevin", short, control, 1),
    ]
    if size == "tiny":  # one process for the three (see growths)
        cache: list[float] = []

        def sample(i: int) -> float:
            if not cache:
                cache.extend(growths(runs))
            return cache[i]
    else:

        def sample(i: int) -> float:
            return growths([runs[i]])[0]

    out = []
    for i, (sampler, _, steps, thin) in enumerate(runs):
        kept = steps * CHAINS * DIM * 4 / 2**20
        if thin is None:
            name = f"peak RSS growth, {sampler} {steps} vs {short} steps, thin=None"
            note = f"MLP 2-32-32-1, {CHAINS} chains; a kept trajectory would be {kept:.1f} MiB"
        else:
            name = f"peak RSS growth, {sampler} {steps} vs {short} steps, thin=1 (control)"
            note = f"keeps the trajectory: {kept:.2f} MiB"
        out.append(
            Value(
                name,
                "memory",
                lambda i=i: sample(i),
                "MiB",
                target=TARGET_MIB if thin is None else None,
                note=note,
                repeats=1,
            )
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.memory", description="peak-RSS measurements (see the module)"
    )
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="SAMPLER:SHORT:LONG:THIN",
        help="e.g. langevin:100:10000:none (thin: 'none' or an integer)",
    )
    args = parser.parse_args(argv)
    results = []
    for spec in args.runs:
        sampler, short, long, thin = spec.split(":")
        results.append(child(sampler, int(short), int(long), None if thin == "none" else int(thin)))
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
