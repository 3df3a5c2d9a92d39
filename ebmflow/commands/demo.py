"""``ebmflow demo``: the main job, end to end on a 2-D toy set with an exact density.

1. **Train** a noise-conditional MLP energy E_θ(x, σ) (an energy-parameterised diffusion
   model) with ``multiscale-dsm`` (plugin ebmflow-score): σ per example from EDM's
   log-normal (the ``karras`` schedule, p_mean = −2, clipped to [σ_min, σ_max] = [0.1, 3]),
   weighting λ(σ) = σ; Adam at lr 1e-2 after a 100-step linear warm-up, cosine decay to 0,
   gradients clipped to norm 1, batches of 512, 1500 steps. A lower lr lets some seeds
   stall with the σ_min slice a blurred ring instead of 8 modes, and an EMA of the weights
   does not help after a cosine decay, so it is off.
2. **Exact NLL**: p_θ(x) = exp(−E_θ(x, σ_min)) / Z with log Z by grid quadrature over the
   dataset's box (:func:`ebmflow.evaluate.nll`), on held-out samples, beside the floor and
   the true density's NLL on the same samples. The energy at σ_min models the data smoothed
   by N(0, σ_min²I), so the floor is that smoothed density's NLL
   (:func:`ebmflow.datasets.smoothed.smoothed`): for 8gaussians 2.839 nats against the
   true 2.836, for rings 2.792 against 2.630.
3. **Annealed Langevin** (Song & Ermon 2019) from N(0, σ_max²I) down the geometric levels
   σ_max → σ_min, with the final denoising step x + σ_min² s(x, σ_min).
4. **Parallel tempering** (plugin ebmflow-tempering) on E_θ(·, σ_min), every chain started
   at the *same* data point: only swaps with hotter replicas carry chains to the other modes.
5. **Figures** (matplotlib, optional): the learned density beside the true one, both
   samplers' samples over the data, the training curve.

Everything is seeded from ``--seed``: each random stream (the initial weights, the
batches, the held-out samples, each sampler) by :func:`ebmflow.seeding.derive_seed`, as in
``ebmflow train``. The run folder ``--out`` receives ``checkpoint/``
(``ebmflow sample`` and ``ebmflow evaluate`` read it), ``metrics.jsonl``, ``summary.json``
and the PNG figures. :func:`run_demo` is the same job as a function.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ebmflow.commands.arguments import MAX_SAMPLER_STEPS
from ebmflow.commands.demo_report import print_summary, write_figures
from ebmflow.commands.options import add_progress_options, progress_of
from ebmflow.errors import ConfigError, UnknownComponentError
from ebmflow.runtime import MAX_THREADS, using_threads
from ebmflow.seeding import derive_seed
from ebmflow.validation import MAX_SEED

DEFAULT_DATA = "8gaussians"
DEFAULT_OUT = "runs/demo"
#: --quick runs get their own folder, so that a smoke run never replaces the full run's.
QUICK_OUT = "runs/demo-quick"
#: Upper bound of --steps (beyond it the run cannot finish); --seed takes what
#: torch.Generator.manual_seed accepts, --threads what ebmflow.runtime does.
MAX_STEPS = MAX_SAMPLER_STEPS
#: where the components the demo needs beyond the core come from.
PLUGIN_OF = {"multiscale-dsm": "ebmflow-score", "parallel-tempering": "ebmflow-tempering"}


@dataclass(frozen=True)
class DemoSettings:
    """Every number the demo uses; :data:`FULL` and :data:`QUICK` are the two presets."""

    # model and training
    widths: tuple[int, ...] = (128, 128, 128)
    sigma_min: float = 0.1
    sigma_max: float = 3.0
    p_mean: float = -2.0
    steps: int = 1500
    batch_size: int = 512
    lr: float = 1e-2
    warmup: int = 100
    grad_clip: float | None = 1.0
    ema: float | None = None
    log_every: int = 25
    # exact NLL
    n_eval: int = 20_000
    resolution: int = 512
    # annealed Langevin
    al_chains: int = 1000
    al_levels: int = 10
    al_steps_per_level: int = 20
    al_epsilon: float = 0.01
    # parallel tempering
    pt_chains: int = 500
    pt_replicas: int = 5
    pt_beta_min: float = 0.05
    pt_step_size: float = 0.1
    pt_steps: int = 150
    # figures
    landscape_resolution: int = 200


FULL = DemoSettings()
QUICK = DemoSettings(
    steps=40,
    batch_size=256,
    warmup=5,
    log_every=5,
    n_eval=2000,
    resolution=128,
    al_chains=300,
    al_levels=4,
    al_steps_per_level=5,
    pt_chains=200,
    pt_replicas=4,
    pt_steps=20,
    landscape_resolution=64,
)


#: torch threads unless --threads or OMP_NUM_THREADS says otherwise (the rule of
#: :mod:`ebmflow.runtime`: the demo's batches of 512 through a 128-wide MLP gain little
#: from a second thread, and lose a lot to a busy machine).
DEFAULT_THREADS = None


def add_demo(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the main job: train, sample, evaluate and plot an energy on 2-D toy data",
        description="Train a noise-conditional energy E(x, σ) with multiscale denoising "
        "score matching on a 2-D dataset with an exact density, report its exact NLL (grid "
        "quadrature at the smallest noise level) beside the true density's, sample it with "
        "annealed Langevin and with parallel tempering, and write PNG figures (learned vs "
        "true density, samples over the data, the training curve) to --out. Takes under a "
        "minute on 2 CPU cores; --quick runs every stage in a few seconds. Figures need "
        "matplotlib (pip install 'ebmflow[plot]'); without it everything else still runs.",
    )
    parser.add_argument(
        "--data",
        default=DEFAULT_DATA,
        metavar="NAME",
        help="a 2-D dataset with an exact density: 8gaussians, "
        f"checkerboard, rings, moons, 2spirals (default: {DEFAULT_DATA})",
    )
    parser.add_argument(
        "--out",
        default=None,
        metavar="DIR",
        help="folder for the checkpoint, metrics, summary.json and figures "
        f"(default: {DEFAULT_OUT}, or {QUICK_OUT} with --quick)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny settings that still run every stage, for tests and a "
        "first look (default: off; the full run)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help=f"training steps (default: {FULL.steps}, or {QUICK.steps} with --quick)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed of every random draw (default: 0)"
    )
    parser.add_argument(
        "--tensorboard",
        default=None,
        metavar="LOGDIR",
        help="also log the training to TensorBoard event files in LOGDIR (default: off)",
    )
    add_progress_options(parser)
    parser.set_defaults(func=run_demo_command)


def run_demo_command(args: argparse.Namespace) -> int:
    run_demo(
        data=args.data,
        out=args.out,
        quick=args.quick,
        steps=args.steps,
        seed=args.seed,
        threads=getattr(args, "threads", None),
        progress=progress_of(args),
        host=args.host,
        tensorboard=args.tensorboard,
    )
    return 0


def _check_int(option: str, value: Any, minimum: int, maximum: int) -> None:
    if value is not None and (
        not isinstance(value, int) or isinstance(value, bool) or value < minimum
    ):
        raise ConfigError(f"ebmflow demo: {option} must be an integer ≥ {minimum}, got {value!r}")
    if value is not None and value > maximum:
        raise ConfigError(
            f"ebmflow demo: {option} must be an integer from {minimum} to {maximum}, got {value!r}"
        )


def _two_d_datasets(host: Any) -> list[str]:
    """Registered datasets the demo accepts (2-D, exact log-density, a bounding box)."""
    names = []
    for component in host.components("dataset"):
        with contextlib.suppress(Exception):
            dataset = host.create("dataset", component.qualified_name)
            if _is_two_d(dataset):
                names.append(component.name)
    return names


def _is_two_d(dataset: Any) -> bool:
    return (
        tuple(getattr(dataset, "event_shape", ()) or ()) == (2,)
        and getattr(dataset, "bounds", None) is not None
        and bool(getattr(dataset, "has_log_prob", False))
    )


def _require(host: Any, kind: str, name: str) -> None:
    try:
        host.get(kind, name)
    except UnknownComponentError:
        raise ConfigError(
            f"ebmflow demo needs the {kind} {name!r} from the plugin distribution "
            f"{PLUGIN_OF[name]}, which is not installed (or failed to load: see `ebmflow "
            f"plugins`); install it with `pip install -e plugins/{PLUGIN_OF[name]}` from the "
            "ebmflow repository (scripts/install.sh installs every plugin)"
        ) from None


def run_demo(
    data: str = DEFAULT_DATA,
    out: str | os.PathLike | None = None,
    *,
    quick: bool = False,
    steps: int | None = None,
    seed: int = 0,
    threads: int | str | None = DEFAULT_THREADS,
    progress: bool = True,
    host: Any = None,
    settings: DemoSettings | None = None,
    tensorboard: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Run the demo (see the module docstring) and return its summary (also written to
    ``out/summary.json`` and printed).

    ``settings`` replaces the preset (:data:`FULL`, or :data:`QUICK` with ``quick``);
    ``steps`` replaces its number of training steps; ``threads`` follows the rule of
    :func:`ebmflow.runtime.resolve_threads`; ``tensorboard`` is a folder for TensorBoard
    event files of the training (:class:`ebmflow.TensorBoardLogger`).
    """
    _check_int("--steps", steps, 1, MAX_STEPS)
    _check_int("--seed", seed, 0, MAX_SEED)
    if threads != "auto":
        _check_int("--threads", threads, 1, MAX_THREADS)
    if host is None:
        from ebmflow.registry import default_host

        host = default_host()
    settings = settings or (QUICK if quick else FULL)
    if steps is not None:
        settings = replace(settings, steps=steps)
    out = Path(out if out is not None else QUICK_OUT if quick else DEFAULT_OUT)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"ebmflow demo: --out {out} exists and is not a folder")
    dataset = host.create("dataset", data)
    if not _is_two_d(dataset):
        raise ConfigError(
            f"ebmflow demo: dataset {data!r} is not a 2-D dataset with an exact density and a "
            f"bounding box, which the exact NLL needs; accepted: "
            f"{', '.join(_two_d_datasets(host))}"
        )
    _require(host, "objective", "multiscale-dsm")
    callbacks = []
    if tensorboard is not None:
        from ebmflow.training.tensorboard import TensorBoardLogger

        callbacks.append(TensorBoardLogger(tensorboard))
    with using_threads(threads) as n:
        return _run(host, dataset, data, out, settings, seed, n, progress, callbacks)


def _run(host, dataset, data_name, out, s: DemoSettings, seed, threads, progress, callbacks):
    import torch

    from ebmflow import evaluate
    from ebmflow.datasets.smoothed import smoothed
    from ebmflow.plotting import INSTALL_HINT, matplotlib_available
    from ebmflow.trainer import Trainer

    wall0, cpu0 = time.perf_counter(), time.process_time()
    seconds: dict[str, float] = {}
    out.mkdir(parents=True, exist_ok=True)
    n_stages = 5
    print(
        f"ebmflow demo: {data_name}, seed {seed}, {threads} torch thread(s), run folder {out}",
        flush=True,
    )

    def stage(i: int, text: str) -> float:
        print(f"[{i}/{n_stages}] {text}", flush=True)
        return time.perf_counter()

    # 1. training -----------------------------------------------------------------------
    t = stage(
        1, f"training a noise-conditional MLP energy E(x, σ) with multiscale-dsm, {s.steps} steps"
    )
    with torch.random.fork_rng(devices=[]):
        # the initial weights, from the stream a run file with this seed uses; the
        # caller's RNG state is restored
        torch.manual_seed(derive_seed(seed, "init"))
        energy = host.create(
            "energy", "mlp", dim=2, widths=list(s.widths), activation="silu", noise_conditional=True
        )
    schedule = {
        "name": "karras",
        "sigma_min": s.sigma_min,
        "sigma_max": s.sigma_max,
        "p_mean": s.p_mean,
    }
    objective = host.create("objective", "multiscale-dsm", noise_schedule=schedule, weighting=1.0)
    trainer = Trainer(
        energy,
        objective,
        dataset,
        optimizer={"name": "adam", "lr": s.lr},
        lr_schedule={"name": "cosine", "warmup": min(s.warmup, s.steps)},
        ema=s.ema,
        grad_clip=s.grad_clip,
        steps=s.steps,
        batch_size=s.batch_size,
        seed=seed,
        log_every=min(s.log_every, s.steps),
        progress=progress,
        checkpoint_dir=out / "checkpoint",
        metrics_file=out / "metrics.jsonl",
        callbacks=callbacks,
        host=host,
    )
    history = trainer.fit()
    energy.load_state_dict(trainer.ema_state_dict())  # the EMA weights, when EMA is on
    energy.eval().requires_grad_(False)
    seconds["train"] = time.perf_counter() - t

    # 2. exact NLL ----------------------------------------------------------------------
    t = stage(
        2,
        f"exact NLL: grid quadrature of exp(−E(x, σ = {s.sigma_min:g})) over the box "
        f"{[list(b) for b in dataset.bounds]}, {s.resolution}² cells",
    )
    test = dataset.sample(s.n_eval, _generator(seed, "held-out"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = evaluate.nll(energy, test, dataset.bounds, s.resolution, sigma=s.sigma_min)
    true_nll = float(-dataset.log_prob(test.double()).mean())
    # the energy at σ_min models the data smoothed at σ_min: that density is the floor
    floor_nll = float(-smoothed(dataset, s.sigma_min).log_prob(test.double()).mean())
    seconds["nll"] = time.perf_counter() - t

    # 3. annealed Langevin ----------------------------------------------------------------
    t = stage(
        3,
        f"annealed Langevin: {s.al_chains} chains, {s.al_levels} levels "
        f"σ = {s.sigma_max:g} → {s.sigma_min:g}, {s.al_steps_per_level} steps each",
    )
    gen = _generator(seed, "annealed-langevin")
    annealed = host.create(
        "sampler",
        "annealed-langevin",
        noise_schedule={"name": "geometric", "sigma_max": s.sigma_max, "sigma_min": s.sigma_min},
        n_levels=s.al_levels,
        steps_per_level=s.al_steps_per_level,
        epsilon=s.al_epsilon,
    )
    x0 = s.sigma_max * torch.randn(s.al_chains, 2, generator=gen)
    al_samples = annealed.run(energy, x0, generator=gen, progress=progress).samples.detach()
    reference = dataset.sample(s.al_chains, _generator(seed, "annealed-langevin", "reference"))
    al_report = {
        "chains": s.al_chains,
        "steps": annealed.total_steps,
        "mmd2": evaluate.mmd(al_samples, reference),
    }
    seconds["annealed_langevin"] = time.perf_counter() - t

    # 4. parallel tempering ---------------------------------------------------------------
    t = stage(
        4,
        f"parallel tempering at σ = {s.sigma_min:g}: {s.pt_chains} chains × "
        f"{s.pt_replicas} replicas, {s.pt_steps} steps, every chain started at one "
        "data point",
    )
    pt_samples, pt_report = _parallel_tempering(host, energy, dataset, s, seed, progress)
    seconds["parallel_tempering"] = time.perf_counter() - t

    # 5. figures --------------------------------------------------------------------------
    t = stage(5, f"figures in {out}")
    figures: list[str] = []
    figure_note = None
    if matplotlib_available():
        figures = write_figures(
            energy,
            dataset,
            data_name,
            out,
            s,
            result,
            true_nll,
            history,
            test,
            {"annealed Langevin": al_samples, "parallel tempering": pt_samples},
        )
    else:
        figure_note = f"figures skipped: matplotlib is not installed; {INSTALL_HINT}"
        print(figure_note, flush=True)
    seconds["figures"] = time.perf_counter() - t

    summary: dict[str, Any] = {
        "data": data_name,
        "seed": seed,
        "threads": threads,
        "settings": asdict(s),
        "sigma_min": s.sigma_min,
        "nll": result.nll,
        "nll_stderr": result.stderr,
        "true_nll": true_nll,
        "nll_gap": result.nll - true_nll,
        "floor_nll": floor_nll,
        "floor_gap": result.nll - floor_nll,
        "log_z": result.log_z,
        "n_eval": s.n_eval,
        "quadrature_warnings": [str(w.message) for w in caught],
        "final_loss": history[-1]["loss"] if history else None,
        "annealed_langevin": al_report,
        "parallel_tempering": pt_report,
        "mmd2_reference": _reference_mmd(dataset, s.al_chains, seed),
        "figures": figures,
        "figure_note": figure_note,
        "checkpoint": str(out / "checkpoint"),
        "metrics": str(out / "metrics.jsonl"),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "wall_seconds": round(time.perf_counter() - wall0, 2),
        "cpu_seconds": round(time.process_time() - cpu0, 2),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print_summary(summary, out)
    return summary


def _generator(seed: int, *labels: str | int) -> Any:
    """A generator for the demo's stream ``labels`` (held-out data, each sampler and its
    reference samples), seeded like every other stream of a run."""
    import torch

    return torch.Generator().manual_seed(derive_seed(seed, *labels))


def _parallel_tempering(host, energy, dataset, s: DemoSettings, seed: int, progress: bool):
    import torch

    from ebmflow import evaluate

    try:
        _require(host, "sampler", "parallel-tempering")
    except ConfigError as exc:
        note = f"parallel tempering skipped: {exc}"
        print(note, file=sys.stderr, flush=True)
        return None, {"skipped": note}
    gen = _generator(seed, "parallel-tempering")
    sampler = host.create(
        "sampler",
        "parallel-tempering",
        n_replicas=s.pt_replicas,
        beta_min=s.pt_beta_min,
        local_sampler={"name": "mala", "step_size": s.pt_step_size},
    )
    start = dataset.sample(1, gen)
    x0 = start.expand(s.pt_chains, 2).clone()
    run = sampler.run(energy, x0, s.pt_steps, sigma=s.sigma_min, generator=gen, progress=progress)
    samples = run.samples.detach()
    reference = dataset.sample(s.pt_chains, _generator(seed, "parallel-tempering", "reference"))
    diagnostics = run.diagnostics
    swap = [float(v) for v in torch.as_tensor(diagnostics["swap_acceptance"]).flatten()]
    report = {
        "chains": s.pt_chains,
        "replicas": s.pt_replicas,
        "steps": s.pt_steps,
        "start": [round(float(v), 4) for v in start[0]],
        "betas": [float(v) for v in torch.as_tensor(diagnostics["betas"]).flatten()],
        "swap_acceptance": swap,
        "swap_acceptance_mean": sum(swap) / len(swap),
        "mala_acceptance": float(diagnostics["acceptance_rate"]),
        "round_trip_rate": float(diagnostics.get("round_trip_rate", math.nan)),
        "mmd2": evaluate.mmd(samples, reference),
    }
    return samples, report


def _reference_mmd(dataset, n: int, seed: int) -> float:
    """MMD² between two independent data sets of n points: the scale of "indistinguishable"."""
    from ebmflow import evaluate

    a = dataset.sample(n, _generator(seed, "reference-mmd", 0))
    b = dataset.sample(n, _generator(seed, "reference-mmd", 1))
    return evaluate.mmd(a, b)
