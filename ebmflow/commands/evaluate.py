"""``ebmflow evaluate CHECKPOINT --data NAME``: NLL and log Z of an energy on a dataset."""

from __future__ import annotations

import argparse
import json
import math
import warnings
from typing import Any

from ebmflow.commands.arguments import check_sigma, load_energy
from ebmflow.errors import ConfigError


def add_evaluate(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="exact NLL and log Z of an energy checkpoint on a dataset",
        description="Normalise the energy in CHECKPOINT and report the negative "
        "log-likelihood of --n samples of the dataset. For 1-3-D energies on a dataset with "
        "a bounding box (the 2-D sets) log Z is exact, by grid quadrature over the "
        "dataset's box; otherwise it is estimated by annealed importance sampling (AIS) "
        "with a standard error. The dataset's own exact NLL is shown when it has one.",
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
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    if args.n < 1:
        raise ConfigError(f"--n must be ≥ 1, got {args.n}")
    import torch

    from ebmflow import evaluate

    energy = load_energy(args.checkpoint)
    check_sigma(energy, args.sigma, "evaluate")
    dataset = args.host.create("dataset", args.data)
    gen = torch.Generator().manual_seed(args.seed)
    data = dataset.sample(args.n, gen)
    report: dict[str, Any] = {"checkpoint": str(args.checkpoint), "data": args.data,
                              "n": args.n, "seed": args.seed, "sigma": args.sigma}
    dim = math.prod(data.shape[1:])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if dim <= 3 and dataset.bounds is not None:
            result = evaluate.nll(energy, data, dataset.bounds, args.resolution,
                                  sigma=args.sigma)
            report.update(method="grid quadrature", nll=result.nll, stderr=result.stderr,
                          log_z=result.log_z, log_z_error=result.grid.error_estimate)
        else:
            ais = evaluate.ais_log_z(
                energy, event_shape=tuple(data.shape[1:]), n_chains=args.ais_chains,
                n_temps=args.ais_temps, sigma=args.sigma, generator=gen,
                base_mean=float(data.mean()), base_std=float(data.std()),
            )
            with torch.no_grad():
                e = torch.cat([energy(chunk, args.sigma) for chunk in data.split(4096)])
            nll = float(e.mean()) + ais.log_z
            stderr = math.sqrt(float(e.var()) / len(e) + ais.stderr**2)
            report.update(method="annealed importance sampling", nll=nll, stderr=stderr,
                          log_z=ais.log_z, log_z_stderr=ais.stderr, ais_ess=ais.ess)
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
