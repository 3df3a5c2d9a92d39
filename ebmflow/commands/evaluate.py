"""``ebmflow evaluate CHECKPOINT --data NAME``: NLL and log Z of an energy on a dataset;
for a classifier energy (one with ``predict_proba``, e.g. JEM's) on a labelled dataset,
accuracy, expected calibration error and OOD AUROC instead."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from typing import Any

from ebmflow.commands.arguments import (
    MAX_GRID_CELLS,
    MAX_SAMPLER_STEPS,
    MAX_SAMPLES,
    check_int_option,
    check_sigma,
    load_energy,
    parse_assignment,
)
from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_SEED


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
        "shown when it has one. For a classifier energy (one with predict_proba, e.g. "
        "ebmflow-jem's) on a labelled dataset it reports accuracy, expected calibration "
        "error and OOD AUROC (log p(x), max p(y|x) and gradient-norm scores against uniform "
        "noise and pixel-shuffled images) on the held-out split instead (--nll for the NLL).",
    )
    parser.add_argument("checkpoint", help="an energy checkpoint folder (ebmflow.save)")
    parser.add_argument("--data", required=True, metavar="NAME",
                        help="registered dataset name, e.g. 8gaussians, digits")
    parser.add_argument("--n", type=int, default=20_000,
                        help="dataset samples to average over (default: 20000)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default: 0)")
    parser.add_argument("--sigma", type=float, default=None,
                        help="noise level for a noise-conditional energy (default: none)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="grid cells per dimension (default: 512 in 2-D)")
    parser.add_argument("--ais-chains", type=int, default=1024,
                        help="AIS chains when log Z is not exact (default: 1024)")
    parser.add_argument("--ais-temps", type=int, default=500,
                        help="AIS temperatures (default: 500)")
    parser.add_argument("--log-z", default="auto", metavar="METHOD",
                        help="log Z estimator: auto (grid quadrature when the dataset has a "
                        "box and the energy is 1-3-D, else ais), or any registered "
                        "log_z_estimator: grid, ais, stepping-stone, ... (default: auto)")
    parser.add_argument("--log-z-arg", dest="log_z_args", action="append",
                        type=parse_assignment, default=[], metavar="KEY=VALUE",
                        help="an argument for the log Z estimator, repeatable; VALUE is JSON "
                        "or a string, e.g. n_replicas=16 (default: none)")
    parser.add_argument("--data-arg", dest="data_args", action="append",
                        type=parse_assignment, default=[], metavar="KEY=VALUE",
                        help="an argument for the dataset, repeatable; VALUE is JSON or a "
                        "string, e.g. split=test (default: none; for a classifier energy "
                        "from a training checkpoint, the run's [data] arguments with "
                        "split=test)")
    parser.add_argument("--nll", action="store_true",
                        help="for a classifier energy (one with predict_proba, e.g. JEM's), "
                        "report the NLL as for any energy instead of accuracy, ECE and OOD "
                        "AUROC (default: off)")
    parser.add_argument("--json", action="store_true",
                        help="print JSON instead of text (default: text)")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    check_int_option("--n", args.n, 1, MAX_SAMPLES)
    check_int_option("--seed", args.seed, 0, MAX_SEED)
    check_int_option("--ais-chains", args.ais_chains, 1, MAX_SAMPLES)
    check_int_option("--ais-temps", args.ais_temps, 1, MAX_SAMPLER_STEPS)
    import torch

    from ebmflow import evaluate

    energy = load_energy(args.checkpoint)
    check_sigma(energy, args.sigma, "evaluate")
    if callable(getattr(energy, "predict_proba", None)) and not args.nll:
        return _run_classification(args, energy)
    dataset = args.host.create("dataset", args.data, **dict(args.data_args))
    gen = torch.Generator().manual_seed(args.seed)
    data = dataset.sample(args.n, gen)
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint), "data": args.data,
                              "n": args.n, "seed": args.seed, "sigma": args.sigma}
    dim = math.prod(data.shape[1:])
    # the largest resolution whose grid has at most MAX_GRID_CELLS cells in dim-D (smaller
    # than 2 is refused by the quadrature itself)
    largest = max(2, int(MAX_GRID_CELLS ** (1 / dim) + 1e-9))
    if args.resolution is not None and args.resolution > largest:
        check_int_option(f"--resolution (for a {dim}-D energy, at most {MAX_GRID_CELLS} grid "
                         f"cells)", args.resolution, 2, largest)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method = args.log_z
        if method == "auto":
            method = "grid" if dim <= 3 and dataset.bounds is not None else "ais"
        if method == "grid" and not args.log_z_args:
            result = evaluate.nll(energy, data, dataset.bounds, args.resolution,
                                  sigma=args.sigma)
            report.update(method="grid quadrature", nll=result.nll, stderr=result.stderr,
                          log_z=result.log_z, log_z_error=result.grid.error_estimate)
        else:
            options = _estimator_options(args, method, dataset, data, gen)
            estimate = evaluate.log_z(energy, method, host=args.host, **options)
            with torch.no_grad():
                e = torch.cat([energy(chunk, args.sigma) for chunk in data.split(4096)])
            stderr = float(getattr(estimate, "stderr", 0.0) or 0.0)
            report.update(
                method=_METHOD_NAMES.get(method, method), nll=float(e.mean()) + estimate.log_z,
                stderr=math.sqrt(float(e.var()) / len(e) + stderr**2),
                log_z=estimate.log_z, log_z_stderr=stderr,
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
    print(f"{args.data}: NLL {report['nll']:.4f} ± {report['stderr']:.4f} nats "
          f"({report['method']}, log Z {report['log_z']:.4f})")
    if "true_nll" in report:
        print(f"true density on the same samples: {report['true_nll']:.4f} nats")
    for message in report["warnings"]:
        print(f"warning: {message}")
    return 0


_METHOD_NAMES = {"grid": "grid quadrature", "ais": "annealed importance sampling"}


def _estimator_options(args: argparse.Namespace, method: str, dataset: Any, data: Any,
                       generator: Any) -> dict[str, Any]:
    """The estimator's keyword arguments: the command's settings that its signature takes
    (event shape, σ, generator, a Gaussian base fitted to the data, AIS sizes), then
    ``--log-z-arg`` on top."""
    import inspect

    factory = args.host.get("log_z_estimator", method).load()
    accepted = inspect.signature(factory).parameters
    settings: dict[str, Any] = {
        "bounds": dataset.bounds, "resolution": args.resolution,
        "event_shape": tuple(data.shape[1:]), "sigma": args.sigma, "generator": generator,
        "base_mean": float(data.mean()), "base_std": float(data.std()),
    }
    if method == "ais":
        settings.update(n_chains=args.ais_chains, n_temps=args.ais_temps)
    options = {key: value for key, value in settings.items()
               if key in accepted and value is not None}
    options.update(dict(args.log_z_args))
    return options


# -- classifier energies (JEM): accuracy, calibration, OOD detection ----------------------

_OOD_NAMES = {"uniform": "uniform noise", "shuffled": "pixel-shuffled"}
_SCORE_NAMES = {"log_px": "log p(x)", "max_prob": "max p(y|x)", "grad_norm": "-|grad log p|"}


def _classification_dataset(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """The labelled dataset to evaluate a classifier on, and the arguments it was built
    with: the training run's ``[data]`` arguments when CHECKPOINT is a training checkpoint of
    a run on the same dataset (so the split and scaling match), ``split="test"`` when the
    dataset takes a split, then ``--data-arg`` on top."""
    from ebmflow.checkpoint import read_json, resolve
    from ebmflow.errors import CheckpointError
    from ebmflow.trainer import TRAINING_STATE_FILE

    arguments: dict[str, Any] = {}
    try:
        folder = resolve(args.checkpoint)
        if TRAINING_STATE_FILE in read_json(folder).get("files", {}):
            run = read_json(folder, TRAINING_STATE_FILE).get("run") or {}
            table = run.get("data")
            if isinstance(table, dict) and str(table.get("name", "")).split(":")[-1] == (
                args.data.split(":")[-1]
            ):
                arguments = {k: v for k, v in table.items() if k not in ("name", "kind")}
    except (CheckpointError, AttributeError, TypeError):
        arguments = {}
    given = dict(args.data_args)
    if "split" not in given:
        probe = args.host.create("dataset", args.data, **{**arguments, **given})
        if "split" in probe.get_config():
            arguments["split"] = "test"
    arguments.update(given)
    return args.host.create("dataset", args.data, **arguments), arguments


def _run_classification(args: argparse.Namespace, energy: Any) -> int:
    import torch

    from ebmflow import evaluate

    dataset, arguments = _classification_dataset(args)
    gen = torch.Generator().manual_seed(args.seed)
    if callable(getattr(dataset, "tensors", None)):
        x, y = dataset.tensors()  # the whole split
    elif callable(getattr(dataset, "sample_with_labels", None)):
        x, y = dataset.sample_with_labels(args.n, gen)
    else:
        raise ConfigError(
            f"{type(energy).__name__} is a classifier energy, and the dataset {args.data!r} "
            f"has no labels (no sample_with_labels); evaluate it on a labelled dataset such "
            f"as digits, or pass --nll for the negative log-likelihood"
        )
    result = evaluate.classification_report(energy, x, y, generator=gen)
    report = {"checkpoint": str(args.checkpoint), "data": args.data,
              "data_args": arguments, "seed": args.seed, **result}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    shown = ", ".join(f"{k}={v}" for k, v in arguments.items())
    print(f"{args.data} ({shown or 'default arguments'}), {result['n']} labelled images: "
          f"accuracy {result['accuracy']:.4f}, ECE {result['ece']:.4f} ({result['n_bins']} "
          f"bins), NLL of p(y|x) {result['nll']:.4f} nats")
    scores = [k for k in _SCORE_NAMES if any(k in v for v in result["auroc"].values())]
    print("OOD AUROC (in-distribution = the images above):")
    print(f"  {'against':<16}" + "".join(f"{_SCORE_NAMES[k]:>15}" for k in scores))
    for name, values in result["auroc"].items():
        print(f"  {_OOD_NAMES.get(name, name):<16}"
              + "".join(f"{values[k]:>15.4f}" for k in scores))
    return 0
