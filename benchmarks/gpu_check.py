"""``python -m benchmarks --device cuda --gpu-check --out DIR``: everything ebmflow does, on a
GPU, in one call of a few minutes.

1. **Correctness** (tensors and generators on the device, the statistical checks of the CPU
   suite at reduced size): ULA's stationary variance s² / (1 − η/(2s²)); MALA and HMC on a
   10-D standard Gaussian (variance 1 ± 0.05); annealed Langevin runs and stays finite;
   parallel tempering recovers the 0.8 mode of the ±(5, 5) mixture (± 0.06); one
   iteration of every objective (cd, pcd, sm, ssm, dsm, multiscale-dsm, jem) gives a
   finite loss and finite gradients; the Trainer runs a few steps; whole-step compilation
   matches the eager sampler. Each check is recorded as passed or failed with its error;
   one failure does not stop the others.
2. **Timings** of sampling a small energy (ULA and MALA, MLP 2-128-128-1, 1,024 chains)
   against an eager hand-written ULA loop: eager, ``compile=True``,
   ``compile="reduce-overhead"`` (CUDA graphs of the energy), and whole-step compilation
   (:func:`ebmflow.compile_step`) in both modes. Target: compiled ≥ 1.5× faster than the
   eager hand loop (ratio ≤ 0.667).
3. The **realistic workloads** of :mod:`benchmarks.workloads` on the device.

On a CPU (``--device cpu --gpu-check --tiny``) it runs as a dry run at tiny size without
compilation, which the test suite uses to keep the script working where no GPU is.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import torch

import ebmflow
from benchmarks import loops
from benchmarks.harness import Case, Result, Skip, Value, pick, run_item
from benchmarks.scaling import NetEnergy, mlp

GPU_TARGET = round(1 / 1.5, 3)


def _gen(device: torch.device, seed: int = 1) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


class Quadratic(ebmflow.Energy):
    """E(x) = ½ ‖x‖² / s², through autograd (no closed-form score)."""

    def __init__(self, s: float = 1.0) -> None:
        super().__init__()
        self.s = s

    def forward(self, x, sigma=None):
        return 0.5 * x.square().sum(1) / self.s**2


class TwoModes(ebmflow.Energy):
    """0.8 N((5, 5), I) + 0.2 N((−5, −5), I)."""

    def forward(self, x, sigma=None):
        a = -0.5 * (x - 5).square().sum(1) + math.log(0.8)
        b = -0.5 * (x + 5).square().sum(1) + math.log(0.2)
        return -torch.logaddexp(a, b)


def correctness_checks(dev: torch.device, size: str) -> list[tuple[str, Callable[[], str]]]:
    """(name, check) pairs; a check returns a short figure or raises AssertionError."""
    n = pick(size, 4096, 4096, 64)
    steps = pick(size, 400, 400, 3)
    tiny = size == "tiny"

    def ula():
        s, eta = 1.0, 0.1
        x = torch.zeros(n, 1, device=dev)
        out = ebmflow.Langevin(eta).run(Quadratic(s), x, steps, generator=_gen(dev)).samples
        want = s**2 / (1 - eta / (2 * s**2))
        got = float(out.var())
        assert tiny or abs(got - want) < 0.06 * want, f"variance {got:.3f}, want {want:.3f}"
        return f"variance {got:.3f} (want {want:.3f})"

    def gaussian_10d(name, **kw):
        def check():
            x = torch.zeros(n, 10, device=dev)
            sampler = ebmflow.create("sampler", name, **kw)
            out = sampler.run(Quadratic(), x, steps, generator=_gen(dev)).samples
            got = float(out.var(0).mean())
            assert tiny or abs(got - 1) < 0.05, f"variance {got:.3f}, want 1 ± 0.05"
            return f"variance {got:.3f}"

        return check

    def annealed():
        energy = ebmflow.create("energy", "mlp", dim=2, widths=[32], noise_conditional=True)
        sampler = ebmflow.create("sampler", "annealed-langevin", n_levels=3, steps_per_level=2)
        out = sampler.run(energy.to(dev), torch.randn(64, 2, device=dev), generator=_gen(dev))
        assert out.samples.device.type == dev.type and torch.isfinite(out.samples).all()
        return "finite"

    def tempering():
        pt = ebmflow.create(
            "sampler",
            "parallel-tempering",
            n_replicas=8,
            beta_min=0.02,
            local_sampler={"name": "mala", "step_size": 0.5},
        )
        x = torch.zeros(pick(size, 1024, 1024, 16), 2, device=dev)
        out = pt.run(TwoModes(), x, pick(size, 800, 800, 3), generator=_gen(dev)).samples
        w = float((out.sum(1) > 0).float().mean())
        assert tiny or abs(w - 0.8) < 0.06, f"major-mode weight {w:.3f}, want 0.8 ± 0.06"
        return f"major-mode weight {w:.3f}"

    checks = [
        ("langevin: stationary variance on N(0, 1)", ula),
        ("mala: 10-D Gaussian variance", gaussian_10d("mala", step_size=0.5)),
        ("hmc: 10-D Gaussian variance", gaussian_10d("hmc", step_size=0.3, n_leapfrog=5)),
        ("annealed-langevin: runs on the device", annealed),
        ("parallel-tempering: 0.8/0.2 mixture", tempering),
    ]
    checks += [
        (f"objective {name}: one iteration", _objective_check(name, dev)) for name in OBJECTIVES
    ]
    checks.append(("Trainer: a few steps on the device", lambda: _trainer_check(dev)))
    for name in ("langevin", "mala"):
        checks.append((f"compile_step({name}) = eager sampler", _whole_step_check(name, dev, tiny)))
    return checks


OBJECTIVES = {
    "cd": {"k": 2},
    "pcd": {"k": 2, "capacity": 256},
    "sm": {},
    "ssm": {},
    "dsm": {"sigma": 0.1},
    "multiscale-dsm": {},
    "jem": {"k": 2, "event_shape": [2], "capacity": 256},
}


def _objective_check(name: str, dev: torch.device) -> Callable[[], str]:
    def check():
        objective = ebmflow.create("objective", name, **OBJECTIVES[name]).to(dev)
        if name == "jem":
            energy = ebmflow.create("energy", "classifier-mlp", dim=2, n_classes=4, widths=[32])
            batch = (torch.randn(32, 2, device=dev), torch.randint(4, (32,), device=dev))
        else:
            nc = name == "multiscale-dsm"
            energy = ebmflow.create("energy", "mlp", dim=2, widths=[32], noise_conditional=nc)
            batch = torch.randn(32, 2, device=dev)
        energy = energy.to(dev)
        out = objective(energy, batch, generator=_gen(dev))
        out.loss.backward()
        grads = [p.grad for p in energy.parameters() if p.grad is not None]
        loss = float(out.loss.detach())
        assert math.isfinite(loss), f"loss {loss}"
        assert grads and all(torch.isfinite(g).all() for g in grads), "non-finite gradients"
        return f"loss {loss:.3g}"

    return check


def _trainer_check(dev: torch.device) -> str:
    energy = ebmflow.create("energy", "mlp", dim=2, widths=[32])
    objective = ebmflow.create("objective", "dsm", sigma=0.1)
    data = ebmflow.create("dataset", "8gaussians")
    trainer = ebmflow.Trainer(
        energy, objective, data, batch_size=64, steps=5, progress=False, device=dev, log_every=5
    )
    trainer.fit()
    assert next(energy.parameters()).device.type == dev.type
    return "5 steps"


def _whole_step_check(name: str, dev: torch.device, tiny: bool) -> Callable[[], str]:
    def check():
        # the network and batch of the timings below, so that their graphs are reused
        energy = NetEnergy(mlp(2, 128)).to(dev)
        x = torch.randn(1024, 2, generator=_gen(dev, 0), device=dev)
        sampler = ebmflow.create("sampler", name, step_size=0.05)
        eager = sampler.run(energy, x, 10, generator=_gen(dev)).samples
        mode = None if tiny else ("reduce-overhead" if dev.type == "cuda" else True)
        whole = ebmflow.compile_step(sampler, mode=mode).run(energy, x, 10, generator=_gen(dev))
        err = float((whole.samples - eager).abs().max())
        assert err < 1e-4, f"max |compiled − eager| = {err:.2e}"
        return f"max difference {err:.1e} (mode {mode!r})"

    return check


def run_checks(dev: torch.device, size: str) -> list[Result]:
    out = []
    for name, check in correctness_checks(dev, size):
        started = time.perf_counter()
        try:
            figure, passed = check(), True
        except Exception as exc:  # recorded, and the other checks still run
            figure, passed = f"{type(exc).__name__}: {exc}", False
            traceback.print_exc()
        seconds = time.perf_counter() - started
        result = Result(
            name,
            "gpu-check",
            "value",
            "s",
            value=seconds,
            value_q1=seconds,
            value_q3=seconds,
            passed=passed,
            note=figure,
        )
        print(f"{'ok    ' if passed else 'FAILED'} {name}: {figure} ({seconds:.1f} s)", flush=True)
        out.append(result)
    return out


def _synced(fn: Callable[[], object], dev: torch.device) -> Callable[[], object]:
    if dev.type != "cuda":
        return fn

    def run():
        out = fn()
        torch.cuda.synchronize(dev)
        return out

    return run


def timing_items(dev: torch.device, size: str) -> list[Case | Skip | Value]:
    if size == "tiny":
        modes: list = [False]
    elif dev.type == "cuda":
        modes = [False, True, "reduce-overhead"]
    else:
        modes = [False, True]
    steps, chains = pick(size, 100, 50, 2), 1024
    f = mlp(2, 128).to(dev)
    energy = NetEnergy(f)
    x = torch.randn(chains, 2, generator=_gen(dev, 0), device=dev)
    out: list[Case | Skip | Value] = []
    for kind in ("langevin", "mala"):
        sampler = ebmflow.create("sampler", kind, step_size=0.01)
        for mode in modes:
            variants = [
                (
                    "energy",
                    lambda s=sampler, m=mode: s.run(
                        energy, x, steps, generator=_gen(dev), compile=m
                    ),
                )
            ]
            if mode is not False:
                whole = ebmflow.compile_step(sampler, mode=mode)
                variants.append(
                    ("whole step", lambda w=whole: w.run(energy, x, steps, generator=_gen(dev)))
                )
            for what, ours in variants:
                label = "eager" if mode is False else f"compile={mode!r} ({what})"
                out.append(
                    Case(
                        f"{kind} {label}, MLP 2-128-128-1, {chains} chains, {dev.type}",
                        "gpu-check",
                        _synced(ours, dev),
                        _synced(lambda: loops.ula(f, x, 0.01, steps, _gen(dev)), dev),
                        steps,
                        target=GPU_TARGET if dev.type == "cuda" and mode is not False else None,
                        note="vs eager hand-written ULA",
                    )
                )
    return out


def main(device: str, size: str, out: Path, repeats: int, budget_s: float = 500.0) -> int:
    """Run everything on ``device``; timings stop (recorded as skipped) once ``budget_s``
    seconds have passed, so that one call fits in ten minutes whatever the machine."""
    from benchmarks.harness import describe, write
    from benchmarks.workloads import cases as workload_cases

    dev = torch.device(device)
    started = time.perf_counter()
    results = run_checks(dev, size)
    items: list = timing_items(dev, size)
    items += workload_cases(size, device=device, cpu_extras=False)
    for item in items:
        if time.perf_counter() - started > budget_s:
            item = Skip(
                item.name, item.group, f"not run: the check's {budget_s:.0f} s budget is spent"
            )
        result = run_item(item, repeats, "wall")
        if size == "tiny":
            result.passed = None
        print(describe(result), flush=True)
        results.append(result)
    seconds = time.perf_counter() - started
    json_path, md_path = write(
        results,
        out,
        {
            "size": size,
            "repeats": repeats,
            "seconds": round(seconds, 1),
            "gpu_check": True,
            "command": f"python -m benchmarks --device {device} --gpu-check",
        },
        clock="wall",
        device=device,
    )
    failed = [
        r.name
        for r in results
        if r.group == "gpu-check" and r.passed is False and r.kind == "value"
    ]
    print(
        f"wrote {json_path} and {md_path} ({seconds:.0f} s); "
        f"{len(failed)} correctness check(s) failed{': ' + '; '.join(failed) if failed else ''}"
    )
    return 1 if failed else 0
