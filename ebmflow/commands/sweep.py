"""``ebmflow sweep RUNFILE... --out DIR``: train run files on every 2-D dataset and print
how far each lands from the best its model class can reach.

Only ``[data] name`` and ``[train] seed`` change from run to run; see
:mod:`ebmflow.training.sweep` for the scoring and the references. The table (Markdown) is
printed and written to ``DIR/sweep.md``, every run's figures to ``DIR/sweep.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ebmflow.commands.arguments import check_int_option
from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_SEED, MAX_STEPS

MAX_JOBS = 64


def add_sweep(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sweep",
        help="train run files on each 2-D dataset and tabulate NLL against the reachable floor",
        description="Train each RUNFILE with only [data] name (and [train] seed) changed, on "
        "each dataset and seed, score it by exact NLL (grid quadrature on held-out samples) "
        "and print a table: NLL, the reference (the true density for a clean energy, the "
        "data smoothed at σ_min for a noise-conditional one), the gap and the training time. "
        "Runs go to DIR/RUN/DATA/seed-S; finished runs are read back, so an interrupted "
        "sweep continues where it stopped.",
    )
    parser.add_argument("run_files", nargs="+", metavar="RUNFILE", help="TOML run files")
    parser.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    parser.add_argument(
        "--data",
        nargs="+",
        default=None,
        metavar="NAME",
        help="datasets (default: 8gaussians checkerboard rings moons 2spirals)",
    )
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=[0, 1, 2],
        metavar="S",
        help="seeds (default: 0 1 2)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="training steps of every run, replacing [train] steps (default: the run file's)",
    )
    parser.add_argument(
        "--n-eval",
        type=int,
        default=None,
        metavar="N",
        help="held-out points per score (default: 20000)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="runs trained at once, each in its own process with --threads torch threads "
        "(default: 1)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.10,
        metavar="NATS",
        help="the gap a row must stay within on every seed to be marked met (default: 0.1)",
    )
    parser.set_defaults(func=run_sweep)


def run_sweep(args: argparse.Namespace) -> int:
    from ebmflow.runtime import resolve_threads
    from ebmflow.training.sweep import (
        DEFAULT_EVAL_POINTS,
        TWO_D_DATASETS,
        check_scorable,
        markdown_table,
        run_name,
        summarise,
        sweep,
    )

    if args.data is None:
        args.data = list(TWO_D_DATASETS)
    if args.n_eval is None:
        args.n_eval = DEFAULT_EVAL_POINTS

    for path in args.run_files:
        if not Path(path).is_file():
            raise ConfigError(f"ebmflow sweep: run file {path} does not exist")
    names = [run_name(p) for p in args.run_files]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"ebmflow sweep: run files must have different names (their runs go to DIR/NAME), "
            f"got {', '.join(names)}"
        )
    if len(set(args.data)) != len(args.data):
        raise ConfigError(f"ebmflow sweep: --data names a dataset twice: {' '.join(args.data)}")
    for seed in args.seeds:
        check_int_option("--seeds", seed, 0, MAX_SEED)
    if args.steps is not None:
        check_int_option("--steps", args.steps, 1, MAX_STEPS)
    check_int_option("--n-eval", args.n_eval, 2, 10_000_000)
    check_int_option("--jobs", args.jobs, 1, MAX_JOBS)
    if not args.tolerance > 0:
        raise ConfigError(f"ebmflow sweep: --tolerance must be > 0, got {args.tolerance}")
    for name in args.data:
        check_scorable(args.host.create("dataset", name), name)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"ebmflow sweep: --out {out} exists and is not a folder")
    total = len(args.run_files) * len(args.data) * len(args.seeds)
    done = 0

    def report(result: Any) -> None:
        nonlocal done
        done += 1
        print(
            f"[{done}/{total}] {result.run} on {result.data}, seed {result.seed}: NLL "
            f"{result.nll:.3f}, reference {result.reference:.3f}, gap {result.gap:+.3f}, "
            f"{result.train_seconds:.0f} s",
            file=sys.stderr,
            flush=True,
        )

    results = sweep(
        args.run_files,
        out,
        datasets=args.data,
        seeds=args.seeds,
        steps=args.steps,
        n_eval=args.n_eval,
        jobs=args.jobs,
        threads=resolve_threads(getattr(args, "threads", None)),
        report=report,
    )
    rows = summarise(results)
    table = markdown_table(rows, args.tolerance)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sweep.md").write_text(table + "\n", encoding="utf-8")
    runs = [result.__dict__ for result in results]
    (out / "sweep.json").write_text(
        json.dumps({"runs": runs, "rows": rows}, indent=2) + "\n", encoding="utf-8"
    )
    print(table)
    return 0
