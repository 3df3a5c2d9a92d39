"""Mixing components programmatically: compose energies, swap samplers inside objectives,
use parallel tempering as a corrector.

    python examples/mixing.py [--quick] [--seed S]

1. **Compose energies** (analytic Gaussians, so every answer is known in closed form):
   a product of experts E_a + E_b, a tempered energy E_a / T, a negation E_a − ½E_b and a
   weighted mixture, each sampled by a core sampler and checked against its exact mean,
   variance, weight or log Z (grid quadrature).
2. **Swap samplers inside an objective**: the same persistent-CD run on 8gaussians three
   times, changing only the sampler the objective is given (``langevin``, ``mala``,
   ``hmc``; any registered sampler, a plugin's too, is passed the same way). Exact NLL of each.
3. **Parallel tempering as a corrector**: on the σ-smoothed mixture 0.8·N((5, 5), I) +
   0.2·N((−5, −5), I), annealed Langevin over σ ∈ [0.05, 1] (too small to cross the 14-unit
   gap) keeps whatever split its start had (≈ ½); a few hundred parallel-tempering steps at
   σ_min from its output restore the 0.8 weight, where MALA with the same budget cannot.

``--quick`` uses fewer steps (a tenth for the MALA and training runs); the checks hold for
both. Needs the
first-party plugins ebmflow-cd and ebmflow-tempering (``bash scripts/install.sh``).
"""

from __future__ import annotations

import argparse
import math
import sys
import warnings

import torch

import ebmflow

REQUIRES = ("ebmflow-cd", "ebmflow-tempering")


def report(name: str, got: float, expected: float, tol: float, checks: dict) -> None:
    ok = abs(got - expected) <= tol
    checks[name] = ok
    print(
        f"   {name:<44s} {got:8.4f}   expected {expected:8.4f} ± {tol:.3f}   "
        f"{'ok' if ok else 'FAILED'}"
    )


def compose(steps: int, gen: torch.Generator, checks: dict) -> None:
    print("1. composing energies")
    s = 0.5
    a = ebmflow.create("energy", "gaussian", mean=[-1.0, 0.0], std=s)
    b = ebmflow.create("energy", "gaussian", mean=[1.0, 0.0], std=s)
    mala = ebmflow.create("sampler", "mala", step_size=0.05)
    n = 4000
    x0 = torch.randn(n, 2, generator=gen)

    def sample(energy):
        return mala.run(energy, x0, steps, generator=gen).samples

    # product of experts: N(−1, s²)·N(1, s²) ∝ N(0, s²/2); log Z = log N(μa; μb, 2s²I)
    product = a + b
    x = sample(product)
    report("product a + b: mean x", float(x[:, 0].mean()), 0.0, 4 * math.sqrt(s**2 / 2 / n), checks)
    report("product a + b: variance", float(x.var(dim=0).mean()), s**2 / 2, 0.02, checks)
    log_z = ebmflow.evaluate.grid_log_z(product, [(-4, 4), (-4, 4)]).log_z
    exact = -math.log(2 * math.pi * 2 * s**2) - 2.0**2 / (4 * s**2)
    report("product a + b: log Z (grid quadrature)", log_z, exact, 1e-3, checks)

    # tempering: exp(−E/T) of a Gaussian has variance T s²
    x = sample(a / 2.0)
    report("tempered a / 2: variance", float(x.var(dim=0).mean()), 2 * s**2, 0.05, checks)

    # negation: E_a − ½E_b = ‖x − μa‖²/(2s²) − ‖x − μb‖²/(4s²) + c, a Gaussian with mean
    # 2μa − μb and variance 2s²
    x = sample(a - 0.5 * b)
    report(
        "negation a − ½b: mean x", float(x[:, 0].mean()), -3.0, 4 * math.sqrt(2 * s**2 / n), checks
    )

    # a weighted mixture of normalised parts; MALA cannot cross between the modes, parallel
    # tempering (a plugin sampler, created the same way) can
    far_a = ebmflow.create("energy", "gaussian", mean=[-4.0, 0.0], std=s)
    far_b = ebmflow.create("energy", "gaussian", mean=[4.0, 0.0], std=s)
    mix = ebmflow.mixture([far_a, far_b], weights=[0.3, 0.7])
    pt = ebmflow.create(
        "sampler",
        "parallel-tempering",
        n_replicas=8,
        beta_min=0.02,
        local_sampler={"name": "mala", "step_size": 0.05},
    )
    start = torch.tensor([[-4.0, 0.0]]).expand(1000, 2)  # every chain in the minor mode
    x = pt.run(mix, start, 400, generator=gen).samples  # PT steps are cheap here: fixed
    report(
        "mixture 0.3/0.7 by PT: weight of x > 0",
        float((x[:, 0] > 0).float().mean()),
        0.7,
        4 * math.sqrt(0.21 / 1000) + 0.03,
        checks,
    )


def swap_samplers(steps: int, seed: int, checks: dict) -> None:
    print("2. one objective, three samplers (persistent CD on 8gaussians)")
    data = ebmflow.create("dataset", "8gaussians")
    test = data.sample(5000, torch.Generator().manual_seed(seed + 1))
    samplers = {
        "langevin": {"name": "langevin", "step_size": 0.01},
        "mala": {"name": "mala", "step_size": 0.01},
        "hmc": {"name": "hmc", "step_size": 0.05, "n_leapfrog": 3},
    }
    for name, sampler in samplers.items():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)  # the same initial weights for every sampler
            energy = ebmflow.create("energy", "mlp", dim=2, widths=[64, 64])
        objective = ebmflow.create(
            "objective", "pcd", sampler=sampler, k=10, init_low=-4.0, init_high=4.0, alpha=0.1
        )
        trainer = ebmflow.Trainer(
            energy,
            objective,
            data,
            steps=steps,
            batch_size=256,
            optimizer={"name": "adam", "lr": 2e-3, "betas": [0.0, 0.999]},
            seed=seed,
            progress=False,
        )
        trainer.fit()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a short run's energy may leak to the box edge
            nll = ebmflow.evaluate.nll(energy.eval(), test, data.bounds).nll
        checks[f"pcd with {name} trains"] = math.isfinite(nll)
        print(
            f"   pcd + {name:<20s} {steps} steps: exact NLL {nll:.3f} nats "
            f"(true density {float(-data.log_prob(test).mean()):.3f}; uniform on the box "
            f"{math.log(144):.3f})"
        )


def corrector(steps: int, gen: torch.Generator, checks: dict) -> None:
    print("3. parallel tempering as a corrector after annealed Langevin")
    target = ebmflow.create(
        "energy",
        "gmm",
        means=[[5.0, 5.0], [-5.0, -5.0]],
        weights=[0.8, 0.2],
        noise_conditional=True,
    )
    predictor = ebmflow.create(
        "sampler",
        "annealed-langevin",
        noise_schedule={"name": "geometric", "sigma_max": 1.0, "sigma_min": 0.05},
        n_levels=5,
        steps_per_level=20,
        epsilon=0.005,  # α = ε/2 · (σ/σ_L)²: 1 at σ = 1
    )
    n = 2000
    x0 = 16 * torch.rand(n, 2, generator=gen) - 8
    x = predictor.run(target, x0, generator=gen).samples
    major = float((x.sum(1) > 0).float().mean())
    print(f"   annealed Langevin alone: weight of the 0.8 mode {major:.3f}")
    sigma = predictor.sigmas[-1]
    mala = ebmflow.create("sampler", "mala", step_size=0.5)
    pt = ebmflow.create(
        "sampler",
        "parallel-tempering",
        n_replicas=6,
        beta_min=0.04,
        local_sampler={"name": "mala", "step_size": 0.5},
    )
    y_mala = mala.run(target, x, steps, sigma=sigma, generator=gen).samples
    y_pt = pt.run(target, x, steps, sigma=sigma, generator=gen).samples
    w_mala = float((y_mala.sum(1) > 0).float().mean())
    w_pt = float((y_pt.sum(1) > 0).float().mean())
    print(f"   + {steps} MALA steps at σ = {sigma:.2f}: {w_mala:.3f}")
    # stderr of a weight from n chains, √(0.16 / n) ≈ 0.009; plus the residual of a finite run
    report("+ parallel tempering: weight of the 0.8 mode", w_pt, 0.8, 0.05, checks)
    checks["PT corrects what MALA does not"] = abs(w_pt - 0.8) < abs(w_mala - 0.8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="a tenth of the steps, for tests (default: off)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args(argv)
    ebmflow.set_threads(args.threads)  # one thread unless asked: see docs/guide/cli.md
    gen = torch.Generator().manual_seed(args.seed)
    checks: dict[str, bool] = {}
    compose(100 if args.quick else 1000, gen, checks)
    swap_samplers(10 if args.quick else 300, args.seed, checks)
    corrector(300 if args.quick else 400, gen, checks)
    failed = [name for name, ok in checks.items() if not ok]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(checks)} checks passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
