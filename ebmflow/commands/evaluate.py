"""``ebmflow evaluate CHECKPOINT --data NAME``: NLL and log Z of an energy on a dataset.

A plugin may report something else for the energies it knows: an *evaluator* (component kind
``evaluator``, hook ``ebmflow_evaluators``) that claims the loaded energy gets an
:class:`EvaluationRequest` and returns its own report (ebmflow-jem's classification report is
one). ``--nll`` skips the evaluators. ``--ksd`` tests samples against the model's score
instead (:mod:`ebmflow.commands.ksd_report`).
"""

from __future__ import annotations

import argparse
import json
import math
import warnings
from dataclasses import dataclass
from typing import Any

from ebmflow.commands.arguments import (
    MAX_GRID_CELLS,
    MAX_SAMPLER_STEPS,
    MAX_SAMPLES,
    check_int_option,
    checkpoint_argument,
    load_energy,
    parse_assignment,
    resolve_sigma,
)
from ebmflow.commands.ksd_report import add_ksd_options, run_ksd
from ebmflow.commands.likelihood_report import likelihood_report, scores_data, summary_line
from ebmflow.commands.options import (
    add_device_option,
    add_progress_options,
    device_of,
    progress_of,
)
from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_SEED


@dataclass(frozen=True)
class EvaluationRequest:
    """What ``ebmflow evaluate`` hands an evaluator: the command's settings.

    ``data_args`` are the ``--data-arg`` values; ``run_data_args`` the ``[data]`` arguments
    of the training run that wrote ``checkpoint`` when it trained on the same dataset (so an
    evaluator can keep its scaling and pick the held-out split), else empty. ``host`` is the
    :class:`ebmflow.PluginHost` to build datasets with.
    """

    checkpoint: str
    data: str
    data_args: dict[str, Any]
    run_data_args: dict[str, Any]
    n: int
    seed: int
    sigma: float | None
    host: Any


def add_evaluate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="exact NLL and log Z of an energy checkpoint on a dataset",
        description="Normalise the energy in CHECKPOINT and report the negative "
        "log-likelihood of --n samples of the dataset. For 1-3-D energies on a dataset with "
        "a bounding box (the 2-D sets) log Z is exact, by grid quadrature over the "
        "dataset's box; otherwise it is estimated by annealed importance sampling (AIS) "
        "with a standard error, or by any registered log Z estimator chosen with --log-z "
        "(e.g. stepping-stone from ebmflow-tempering). The dataset's own exact NLL is "
        "shown when it has one. A plugin's evaluator may report something else for the "
        "energies it knows (e.g. ebmflow-jem: accuracy, calibration and OOD AUROC of a "
        "classifier energy on the held-out split); --nll asks for the NLL anyway.",
    )
    parser.add_argument(
        "checkpoint", help="an energy checkpoint folder (ebmflow.save), or a run folder"
    )
    parser.add_argument(
        "--data",
        metavar="NAME",
        help="registered dataset name, e.g. 8gaussians, digits (default: none; required "
        "unless --ksd)",
    )
    parser.add_argument(
        "--n", type=int, default=20_000, help="dataset samples to average over (default: 20000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="noise level for a noise-conditional energy (default: the smallest "
        "noise level of the run that trained it, when the checkpoint records one)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="grid cells per dimension (default: 512 in 2-D)",
    )
    parser.add_argument(
        "--ais-chains",
        type=int,
        default=1024,
        help="AIS chains when log Z is not exact (default: 1024)",
    )
    parser.add_argument(
        "--ais-temps", type=int, default=500, help="AIS temperatures (default: 500)"
    )
    parser.add_argument(
        "--log-z",
        default="auto",
        metavar="METHOD",
        help="log Z estimator: auto (grid quadrature when the dataset has a "
        "box and the energy is 1-3-D, else ais), or any registered "
        "log_z_estimator: grid, ais, stepping-stone, ... An estimator that scores the "
        "data itself, e.g. ode (ebmflow-ode: NLL and bits/dim by the probability-flow "
        "ODE, σ_min from --sigma), reports its own NLL (default: auto)",
    )
    parser.add_argument(
        "--log-z-arg",
        dest="log_z_args",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="an argument for the log Z estimator, repeatable; VALUE is JSON "
        "or a string, e.g. n_replicas=16 (default: none)",
    )
    parser.add_argument(
        "--data-arg",
        dest="data_args",
        action="append",
        type=parse_assignment,
        default=[],
        metavar="KEY=VALUE",
        help="an argument for the dataset, repeatable; VALUE is JSON or a "
        "string, e.g. split=test (default: none; a plugin's evaluator may "
        "start from the training run's [data] arguments)",
    )
    parser.add_argument(
        "--nll",
        action="store_true",
        help="report the NLL even for an energy that a plugin's evaluator "
        "claims (e.g. ebmflow-jem's classifier energies) (default: off)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print JSON instead of text (default: text)"
    )
    add_device_option(parser)
    add_progress_options(parser)
    add_ksd_options(parser)
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    check_int_option("--n", args.n, 1, MAX_SAMPLES)
    check_int_option("--seed", args.seed, 0, MAX_SEED)
    check_int_option("--ais-chains", args.ais_chains, 1, MAX_SAMPLES)
    check_int_option("--ais-temps", args.ais_temps, 1, MAX_SAMPLER_STEPS)
    import torch

    from ebmflow import evaluate

    device = device_of(args)
    args.checkpoint = checkpoint_argument(args.checkpoint, "evaluate")
    energy = load_energy(args.checkpoint, "evaluate").to(device)
    args.sigma = resolve_sigma(energy, args.sigma, args.checkpoint, "evaluate")
    if args.ksd:
        return run_ksd(args, energy, device)
    if args.data is None:
        raise ConfigError("evaluate: --data NAME is required (or --ksd, which needs no data)")
    evaluator = None if args.nll else _claiming_evaluator(args.host, energy)
    if evaluator is not None:
        claimed = evaluator.evaluate(energy, _request(args))
        print(json.dumps(claimed, indent=2) if args.json else evaluator.format(claimed))
        return 0
    dataset = args.host.create("dataset", args.data, **dict(args.data_args))
    check_shapes(energy, dataset, args.data, args.checkpoint)
    gen = torch.Generator().manual_seed(args.seed)
    data = dataset.sample(args.n, gen).to(device)
    if device.type != "cpu":
        gen = torch.Generator(device=device).manual_seed(args.seed)
    report: dict[str, Any] = {
        "checkpoint": str(args.checkpoint),
        "data": args.data,
        "n": args.n,
        "seed": args.seed,
        "sigma": args.sigma,
    }
    dim = math.prod(data.shape[1:])
    # the largest resolution whose grid has at most MAX_GRID_CELLS cells in dim-D (smaller
    # than 2 is refused by the quadrature itself)
    largest = max(2, int(MAX_GRID_CELLS ** (1 / dim) + 1e-9))
    if args.resolution is not None and args.resolution > largest:
        check_int_option(
            f"--resolution (for a {dim}-D energy, at most {MAX_GRID_CELLS} grid cells)",
            args.resolution,
            2,
            largest,
        )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method = args.log_z
        if method == "auto":
            method = "grid" if dim <= 3 and dataset.bounds is not None else "ais"
        if method == "grid" and not args.log_z_args:
            result = evaluate.nll(energy, data, dataset.bounds, args.resolution, sigma=args.sigma)
            report.update(
                method="grid quadrature",
                nll=result.nll,
                stderr=result.stderr,
                log_z=result.log_z,
                log_z_error=result.grid.error_estimate,
            )
        elif method != "grid" and scores_data(args.host, method):  # e.g. ebmflow-ode's "ode"
            options = _estimator_options(args, method, dataset, data, gen)
            estimate = evaluate.log_z(energy, method, host=args.host, data=data, **options)
            report.update(method=method, **likelihood_report(estimate))
        else:
            options = _estimator_options(args, method, dataset, data, gen)
            estimate = evaluate.log_z(energy, method, host=args.host, **options)
            with torch.no_grad():
                e = torch.cat([energy(chunk, args.sigma) for chunk in data.split(4096)])
            stderr = float(getattr(estimate, "stderr", 0.0) or 0.0)
            report.update(
                method=_METHOD_NAMES.get(method, method),
                nll=float(e.mean()) + estimate.log_z,
                stderr=math.sqrt(float(e.var()) / len(e) + stderr**2),
                log_z=estimate.log_z,
                log_z_stderr=stderr,
            )
            if hasattr(estimate, "ess"):
                report["ais_ess"] = estimate.ess
            if hasattr(estimate, "swap_acceptance"):
                report["swap_acceptance"] = estimate.swap_acceptance
        if dataset.has_log_prob:
            report["true_nll"] = float(-dataset.log_prob(data).mean())
    report["warnings"] = [str(w.message) for w in caught]
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(summary_line(args.data, report))
    if "true_nll" in report:
        print(f"true density on the same samples: {report['true_nll']:.4f} nats")
    for message in report["warnings"]:
        print(f"warning: {message}")
    return 0


def check_shapes(energy: Any, dataset: Any, name: str, checkpoint: str) -> None:
    """Refuse, before any work, a dataset whose samples the energy does not take."""
    wanted = getattr(energy, "event_shape", None)
    given = getattr(dataset, "event_shape", None)
    if wanted is None or given is None or tuple(wanted) == tuple(given):
        return
    raise ConfigError(
        f"the energy in {checkpoint} ({type(energy).__name__}) takes samples of shape "
        f"{_shape(wanted)}, but dataset {name!r} gives samples of shape {_shape(given)}; "
        "evaluate it on the data it was trained on"
    )


def _shape(shape: Any) -> str:
    dims = tuple(int(n) for n in shape)
    return f"{dims[0]}-D vectors" if len(dims) == 1 else " × ".join(map(str, dims))


_METHOD_NAMES = {"grid": "grid quadrature", "ais": "annealed importance sampling"}


def _estimator_options(
    args: argparse.Namespace, method: str, dataset: Any, data: Any, generator: Any
) -> dict[str, Any]:
    """The estimator's keyword arguments: the command's settings that its signature takes
    (event shape, σ, generator, a Gaussian base fitted to the data, AIS sizes), then
    ``--log-z-arg`` on top."""
    import inspect

    factory = args.host.get("log_z_estimator", method).load()
    accepted = inspect.signature(factory).parameters
    settings: dict[str, Any] = {
        "bounds": dataset.bounds,
        "resolution": args.resolution,
        "event_shape": tuple(data.shape[1:]),
        "sigma": args.sigma,
        "generator": generator,
        "base_mean": float(data.mean()),
        "base_std": float(data.std()),
        "progress": progress_of(args),
    }
    if method == "ais":
        settings.update(n_chains=args.ais_chains, n_temps=args.ais_temps)
    options = {
        key: value for key, value in settings.items() if key in accepted and value is not None
    }
    options.update(dict(args.log_z_args))
    return options


def _claiming_evaluator(host: Any, energy: Any) -> Any:
    """The first registered evaluator (by name) that claims ``energy``, or ``None``."""
    for component in host.components("evaluator"):
        evaluator = host.create("evaluator", component.qualified_name)
        if evaluator.claims(energy):
            return evaluator
    return None


def _request(args: argparse.Namespace) -> EvaluationRequest:
    return EvaluationRequest(
        checkpoint=str(args.checkpoint),
        data=args.data,
        data_args=dict(args.data_args),
        run_data_args=_run_data_arguments(args.checkpoint, args.data),
        n=args.n,
        seed=args.seed,
        sigma=args.sigma,
        host=args.host,
    )


def _run_data_arguments(checkpoint: Any, data: str) -> dict[str, Any]:
    """The ``[data]`` arguments of the training run that wrote ``checkpoint``, when it is a
    training checkpoint of a run on the dataset ``data``; else ``{}``."""
    from ebmflow.checkpoint import read_json, resolve
    from ebmflow.errors import CheckpointError
    from ebmflow.trainer import TRAINING_STATE_FILE

    try:
        folder = resolve(checkpoint)
        if TRAINING_STATE_FILE not in read_json(folder).get("files", {}):
            return {}
        table = (read_json(folder, TRAINING_STATE_FILE).get("run") or {}).get("data")
    except (CheckpointError, AttributeError, TypeError):
        return {}
    if not isinstance(table, dict) or (
        str(table.get("name", "")).split(":")[-1] != data.split(":")[-1]
    ):
        return {}
    return {k: v for k, v in table.items() if k not in ("name", "kind")}
