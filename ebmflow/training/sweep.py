"""Train one run file on each 2-D dataset and score it against the best NLL its model class
can reach: the recipe-transfer sweep behind ``ebmflow sweep``.

Each run is the run file with only ``[data] name`` (and ``[train] seed``) replaced, trained
to the end, then scored by the exact NLL of its EMA weights on held-out samples (grid
quadrature, :func:`ebmflow.evaluate.nll`). The reference beside it is the best any energy of
that kind can do on the same samples:

- an energy trained on the data itself (cd, pcd, nce, ...) models the data: the reference
  is the true density's NLL;
- a noise-conditional energy is scored at the objective's smallest noise level σ_min, where
  it models the data smoothed by N(0, σ_min² I): the reference is the smoothed density's
  cross-entropy −E_p[log p_σ] (:func:`ebmflow.datasets.smoothed.smoothed`), the floor;
- so is a clean energy trained by denoising at one level σ (``dsm``): it models the data
  smoothed at σ, and the floor is that smoothed density's cross-entropy.

The gap NLL − reference has a smaller standard error than either figure, because both are
averages over the same points; it is reported with it.

Every run writes ``OUT/RUN/DATA/seed-S/`` (the checkpoint, ``metrics.jsonl`` and
``result.json``). A run whose ``result.json`` exists is read, not trained again, so an
interrupted sweep continues where it stopped.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ebmflow.errors import ConfigError

#: the built-in 2-D sets with exact densities, in the order tables list them
TWO_D_DATASETS = ("8gaussians", "checkerboard", "rings", "moons", "2spirals")
#: held-out points per score (the standard error of an NLL is then about 0.005 nats)
DEFAULT_EVAL_POINTS = 20_000
RESULT_FILE = "result.json"


@dataclass(frozen=True)
class SweepResult:
    """One trained and scored run."""

    run: str  # the run file's stem
    data: str
    seed: int
    nll: float
    stderr: float
    reference: float
    reference_kind: str  # "true density" or "smoothed at σ = …"
    gap: float
    gap_stderr: float
    sigma: float | None
    steps: int
    train_seconds: float


def run_name(path: str | os.PathLike) -> str:
    return Path(path).stem


def check_scorable(dataset: Any, name: str) -> None:
    """Refuse a dataset the sweep cannot score: it needs an exact density and a box."""
    if getattr(dataset, "bounds", None) is None or not getattr(dataset, "has_log_prob", False):
        raise ConfigError(
            f"ebmflow sweep: dataset {name!r} has no exact density and bounding box, which "
            f"the exact NLL needs; accepted: {', '.join(TWO_D_DATASETS)}"
        )


def trained_level(objective: Any) -> float | None:
    """The noise level whose smoothed data the trained energy models at best: the
    objective's ``sigma_min`` (noise-conditional objectives), or the ``sigma`` of a
    single-level denoising objective, whose clean energy models the data smoothed at σ;
    ``None`` for objectives that model the data itself."""
    for name in ("sigma_min", "sigma"):
        value = getattr(objective, name, None)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


def _with_data(run_config: Any, data: str, seed: int, steps: int | None) -> Any:
    from ebmflow.training.run_config import RunConfig

    config = run_config.to_dict()
    config["data"] = {**(config.get("data") or {}), "name": data}
    train = dict(config.get("train") or {})
    train["seed"] = seed
    if steps is not None:
        train["steps"] = steps
    config["train"] = train
    return RunConfig.from_dict(config, source=f"{run_config.source} with [data] name = {data!r}")


def train_and_score(
    run_file: str | os.PathLike | Any,
    data: str,
    seed: int,
    out: str | os.PathLike,
    *,
    steps: int | None = None,
    n_eval: int = DEFAULT_EVAL_POINTS,
    host: Any = None,
) -> SweepResult:
    """Train ``run_file`` (a path or a :class:`~ebmflow.training.run_config.RunConfig`) on
    ``data`` with seed ``seed`` in the folder ``out`` and score it (see the module
    docstring); the result is also written to ``out/result.json``. A folder that already
    holds a result returns it without training."""
    import torch

    from ebmflow import evaluate
    from ebmflow.datasets.smoothed import smoothed
    from ebmflow.registry import default_host
    from ebmflow.seeding import derive_seed
    from ebmflow.training.run_config import load_run_config
    from ebmflow.training.trainer import build

    out = Path(out)
    done = out / RESULT_FILE
    if done.exists():
        return SweepResult(**json.loads(done.read_text(encoding="utf-8")))
    host = default_host() if host is None else host
    from ebmflow.training.run_config import RunConfig

    loaded = run_file if isinstance(run_file, RunConfig) else load_run_config(run_file)
    config = _with_data(loaded, data, seed, steps)
    checkpoint = out / "checkpoint"
    if checkpoint.exists():
        raise ConfigError(
            f"ebmflow sweep: {checkpoint} holds an unfinished run (no {RESULT_FILE}); remove "
            f"{out} to train it again"
        )
    trainer = build(
        config,
        host=host,
        checkpoint_dir=checkpoint,
        metrics_file=out / "metrics.jsonl",
        progress=False,
    )
    dataset = trainer.data
    check_scorable(dataset, data)
    start = time.perf_counter()
    trainer.fit()
    seconds = time.perf_counter() - start
    energy = trainer.energy
    energy.load_state_dict(trainer.ema_state_dict())
    energy.eval().requires_grad_(False)
    level = trained_level(trainer.objective)
    sigma = level if energy.noise_conditional else None
    if energy.noise_conditional and level is None:
        raise ConfigError(
            f"ebmflow sweep: {loaded.source} trains a noise-conditional energy, but its "
            "objective has no sigma_min to score it at"
        )
    held_out = dataset.sample(n_eval, torch.Generator().manual_seed(derive_seed(seed, "held-out")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate.nll(energy, held_out, dataset.bounds, sigma=sigma)
    reference_density = dataset if level is None else smoothed(dataset, level)
    # in float64: log_prob returns its input's dtype
    reference_log_p = reference_density.log_prob(held_out.double())
    with torch.no_grad():
        energies = torch.cat([energy(chunk, sigma) for chunk in held_out.split(4096)])
        pointwise = energies.double() + result.log_z + reference_log_p
    outcome = SweepResult(
        run=run_name(loaded.source),
        data=data,
        seed=seed,
        nll=result.nll,
        stderr=result.stderr,
        reference=float(-reference_log_p.mean()),
        reference_kind="true density" if level is None else f"smoothed at σ = {level:g}",
        gap=float(pointwise.mean()),
        gap_stderr=float(pointwise.std() / math.sqrt(len(pointwise))),
        sigma=sigma,
        steps=trainer.steps,
        train_seconds=round(seconds, 2),
    )
    tmp = out / f".{RESULT_FILE}.tmp"
    tmp.write_text(json.dumps(asdict(outcome), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, done)
    return outcome


def _worker(task: tuple[str, str, int, str, int | None, int, int]) -> SweepResult:
    """One run in a worker process, with its own thread count."""
    from ebmflow.runtime import using_threads

    run_file, data, seed, out, steps, n_eval, threads = task
    with using_threads(threads):
        return train_and_score(run_file, data, seed, out, steps=steps, n_eval=n_eval)


def sweep(
    run_files: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    datasets: Sequence[str] = TWO_D_DATASETS,
    seeds: Sequence[int] = (0, 1, 2),
    steps: int | None = None,
    n_eval: int = DEFAULT_EVAL_POINTS,
    jobs: int = 1,
    threads: int = 1,
    report: Any = None,
) -> list[SweepResult]:
    """Every run file × dataset × seed through :func:`train_and_score`, ``jobs`` at a time
    in worker processes of ``threads`` torch threads each; ``report(result)`` is called as
    each finishes. Returns the results in the order of the arguments."""
    tasks = [
        (str(f), d, s, str(Path(out) / run_name(f) / d / f"seed-{s}"), steps, n_eval, threads)
        for f in run_files
        for d in datasets
        for s in seeds
    ]
    results: list[SweepResult] = []
    if jobs == 1:
        for task in tasks:
            results.append(_worker(task))
            if report is not None:
                report(results[-1])
        return results
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker, free of the parent's torch threads and locks
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = [pool.submit(_worker, task) for task in tasks]
        for future in futures:
            results.append(future.result())
            if report is not None:
                report(results[-1])
    return results


def summarise(results: Sequence[SweepResult]) -> list[dict[str, Any]]:
    """One row per (run file, dataset): the NLL and gap averaged over seeds, with their
    spread (the standard deviation over seeds; 0 for one seed), the reference and the mean
    training time."""
    groups: dict[tuple[str, str], list[SweepResult]] = {}
    for result in results:
        groups.setdefault((result.run, result.data), []).append(result)
    rows = []
    for (run, data), group in groups.items():
        nlls = [r.nll for r in group]
        gaps = [r.gap for r in group]
        rows.append(
            {
                "run": run,
                "data": data,
                "seeds": [r.seed for r in group],
                "nll": statistics.fmean(nlls),
                "nll_spread": statistics.stdev(nlls) if len(nlls) > 1 else 0.0,
                "reference": statistics.fmean(r.reference for r in group),
                "reference_kind": group[0].reference_kind,
                "gap": statistics.fmean(gaps),
                "gap_max": max(gaps),
                "train_seconds": statistics.fmean(r.train_seconds for r in group),
            }
        )
    return rows


def markdown_table(rows: Sequence[dict[str, Any]], tolerance: float = 0.10) -> str:
    """The summary as a Markdown table; a row is "yes" when every seed's gap is within
    ``tolerance`` nats."""
    lines = [
        "| run file | data | NLL (mean ± sd over seeds) | reference | gap (worst seed) "
        f"| training s | within {tolerance:g} |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        ok = "yes" if row["gap_max"] <= tolerance else "**no**"
        lines.append(
            f"| {row['run']} | {row['data']} | {row['nll']:.3f} ± {row['nll_spread']:.3f} "
            f"({len(row['seeds'])}) | {row['reference']:.3f} ({row['reference_kind']}) | "
            f"{row['gap']:+.3f} ({row['gap_max']:+.3f}) | {row['train_seconds']:.0f} | {ok} |"
        )
    return "\n".join(lines)
