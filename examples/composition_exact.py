"""Composing diffusion models, measured against exact answers: biased vs corrected vs exact.

    python examples/composition_exact.py [--quick] [--chains N] [--seed S] [--json FILE]

The model is an exact class-conditional denoiser (``ClassConditionalGMM``: per-class
Gaussian mixtures in 2-D whose noisy scores are closed form at every noise level), what a
perfectly trained class-conditional diffusion model would output. Three compositions have
exact targets:

- **product** ``condition(model, 0) + condition(model, 1)``: p(x|0) p(x|1), closed form;
- **negation** ``condition(model, 0) - 0.5 * condition(model, 2)``: p(x|0) / p(x|2)^½,
  closed form;
- **guidance** ``ebmflow.guidance(condition(model, 0), model, 3)``: p(x|0)³ p(x)⁻², by
  quadrature on a 2-D grid.

Each is sampled from σ = 10 down to σ = 0.01 (60 levels) by the reverse process alone on
the summed scores (VE ancestral steps), by registered ``annealed-langevin`` (no Metropolis
test), and by the reverse process with a MALA or an HMC corrector on the composed energy (5
steps per level, 300 at the last); the product also with MALA on a score-only copy of the
model (line-integral energies), and guidance also the way diffusers pipelines guide: the
same model as a diffusers model (``MixtureDenoiser``) in ``DDPMScheduler``'s loop with
ε_u + w (ε_c − ε_u). The table gives the mass of the left mode, the mean
and the variance of x₁, and how many Monte Carlo standard errors (SE) each sampler is from
the exact value at worst (over the mean, covariance and mode weights). ``--quick`` uses
fewer chains and steps (the figures are then noisier). Nothing is downloaded. Needs the
ebmflow-diffusers plugin (``bash scripts/install.sh``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

import ebmflow

REQUIRES = ("ebmflow-diffusers",)

CONFIG = dict(
    means=[[-1.5, 0.0], [1.5, 0.0], [-1.5, 0.0], [1.5, 0.0], [1.5, 0.0]],
    labels=[0, 0, 1, 1, 2],
    stds=[1.0, 1.0, 0.5, 1.5, 1.5],
)
CENTRES = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])


def compositions(model):
    from ebmflow_diffusers.exact_composition import negation, product

    a, b, c = (ebmflow.condition(model, y) for y in range(3))
    return {
        "product p(x|0) p(x|1)": (a + b, product(model.conditional(0), model.conditional(1))),
        "negation p(x|0) / p(x|2)^0.5": (
            a - 0.5 * c,
            negation(model.conditional(0), model.conditional(2), 0.5),
        ),
        "guidance w = 3, p(x|0)^3 p(x)^-2": (ebmflow.guidance(a, model, 3.0), None),  # quadrature
    }


def stock_guidance(weight, sigma_max):
    """The usual guided loop of a diffusers pipeline on the same model as a diffusers model
    (``MixtureDenoiser``), in VP coordinates, all 1000 steps of ``DDPMScheduler``."""
    from diffusers import DDPMScheduler
    from ebmflow_diffusers.conditional_denoiser import MixtureDenoiser

    model = MixtureDenoiser(**CONFIG)

    def run(x0, generator):
        scheduler = DDPMScheduler(clip_sample=False)  # the data reach beyond [−1, 1]
        scheduler.set_timesteps(1000)
        x = (x0 / sigma_max).reshape(-1, 2, 1, 1)  # the same N(0, I) draw, as the loop expects
        labels = torch.zeros(x.shape[0], dtype=torch.long)
        for t in scheduler.timesteps:
            eps_c, eps_u = model(x, t, labels).sample, model(x, t).sample
            eps = eps_u + weight * (eps_c - eps_u)
            x = scheduler.step(eps, t, x, generator=generator).prev_sample
        return x.flatten(1), None

    return run


def samplers(energy, sigmas, steps, score_only_too, guidance=None):
    """(label, run(x0, generator) -> (samples, acceptance)) for each sampler compared."""
    from ebmflow_diffusers.conditional_mixture import ClassConditionalGMM
    from ebmflow_diffusers.reverse_sampling import reverse_diffusion

    def reverse(target, corrector=None):
        def run(x0, generator):
            result = reverse_diffusion(
                target,
                x0,
                sigmas,
                generator=generator,
                corrector=corrector,
                corrector_steps=steps[0] if corrector else 0,
                final_steps=steps[1] if corrector else 0,
            )
            return result.samples, result.acceptance_rate

        return run

    def annealed(x0, generator):
        # Song & Ermon's rule, no Metropolis test: ULA on the summed scores at each level
        sampler = ebmflow.create(
            "sampler", "annealed-langevin", noise_schedule=sigmas, steps_per_level=20, epsilon=1e-5
        )
        return sampler.run(energy, x0, generator=generator).samples, None

    yield "reverse process alone", reverse(energy)
    yield "annealed Langevin, no Metropolis", annealed
    yield "+ MALA corrector", reverse(energy, ebmflow.create("sampler", "mala", step_size=0.1))
    hmc = ebmflow.create("sampler", "hmc", step_size=0.3, n_leapfrog=4)
    yield "+ HMC corrector (4 leapfrog)", reverse(energy, hmc)
    if guidance is not None:
        yield "diffusers DDPMScheduler, ε_u + w (ε_c − ε_u)", stock_guidance(guidance, sigmas[0])
    if score_only_too:
        # the same product of a score-only model: MALA integrates the score (3-point Simpson)
        model = ClassConditionalGMM(**CONFIG, score_only=True)
        product = ebmflow.condition(model, 0) + ebmflow.condition(model, 1)
        mala = ebmflow.create("sampler", "mala", step_size=0.1)
        yield "score-only, + MALA (line integral)", reverse(product, mala)


def escaped(name: str) -> str:
    """``name`` for a cell of a Markdown table (where ``|`` separates the cells)."""
    return name.replace("|", "\\|")


def row(moments) -> dict:
    return {
        "left_mode": float(moments.mode_weights[0]),
        "mean_x1": float(moments.mean[0]),
        "var_x1": float(moments.covariance[0, 0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer chains and steps")
    parser.add_argument("--chains", type=int, default=None, help="independent chains (4000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args(argv)
    ebmflow.set_threads(args.threads)  # one thread unless asked: see docs/guide/cli.md
    from ebmflow_diffusers.conditional_mixture import ClassConditionalGMM
    from ebmflow_diffusers.exact_composition import grid_moments, sample_moments
    from ebmflow_diffusers.reverse_sampling import geometric_sigmas

    n = args.chains or (500 if args.quick else 4000)
    sigmas = geometric_sigmas(10.0, 0.01, 15 if args.quick else 60)
    steps = (2, 50) if args.quick else (5, 300)
    model = ClassConditionalGMM(**CONFIG)
    results = {}
    print(
        f"{n} chains, {len(sigmas)} levels; correctors: {steps[0]} steps a level, "
        f"{steps[1]} at the last"
    )
    print("| composition | sampler | left mode | mean x₁ | var x₁ | worst SE | time |")
    print("|---|---|---|---|---|---|---|")
    for name, (energy, closed_form) in compositions(model).items():
        exact, _ = grid_moments(energy if closed_form is None else closed_form, CENTRES)
        figures = {"exact": row(exact)}
        print(
            f"| {escaped(name)} | exact | {figures['exact']['left_mode']:.3f} | "
            f"{figures['exact']['mean_x1']:.3f} | {figures['exact']['var_x1']:.3f} | | |"
        )
        for label, run in samplers(
            energy,
            sigmas,
            steps,
            name.startswith("product"),
            3.0 if name.startswith("guidance") else None,
        ):
            generator = torch.Generator().manual_seed(args.seed)
            x0 = sigmas[0] * torch.randn(n, 2, generator=generator)
            start = time.perf_counter()
            samples, acceptance = run(x0, generator)
            seconds = time.perf_counter() - start
            moments = sample_moments(samples, CENTRES)
            worst = max(moments.z_scores(exact).values())
            figures[label] = {**row(moments), "worst_se": worst, "seconds": seconds}
            if acceptance is not None:
                figures[label]["acceptance"] = acceptance
            print(
                f"| | {label} | {moments.mode_weights[0]:.3f} | {moments.mean[0]:.3f} | "
                f"{moments.covariance[0, 0]:.3f} | {worst:.1f} | {seconds:.1f} s |"
            )
        results[name] = figures
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"chains": n, "levels": len(sigmas), "steps": steps, **results}, f, indent=1)
    corrected = [
        figures["worst_se"]
        for r in results.values()
        for label, figures in r.items()
        if "corrector" in label or "line integral" in label
    ]
    if not args.quick and max(corrected) > 4.0:
        print(
            f"the corrected sampler is {max(corrected):.1f} SE from an exact value", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
