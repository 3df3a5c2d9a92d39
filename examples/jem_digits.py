"""Train JEM on scikit-learn's 8×8 digits, evaluate it, and draw class-conditional samples.

    python examples/jem_digits.py [--quick] [--out DIR] [--no-baseline] [--splits N]

1. trains the run of ``examples/configs/jem_digits.toml`` (a convolutional classifier as a
   joint energy-based model, ebmflow-jem's ``jem`` objective) on the train split;
2. trains the same network with cross-entropy alone (``mode = "conditional"``) for the same
   number of steps, the calibration baseline;
3. reports, on the held-out test split: accuracy, expected calibration error (15 bins) and
   the OOD AUROC of the log p(x), max p(y|x) and gradient-norm scores against uniform noise
   and pixel-shuffled test digits;
4. writes ``DIR/samples.png``, a grid of class-conditional samples (row y: SGLD samples of
   p(x | y) ∝ exp(f(x)[y]) from uniform noise), and ``DIR/report.json``.

``--splits N`` repeats 1–3 on N train/test splits: split s adds s to the run file's data
seed and training seed (split 0 is the run file itself). A test split holds only 359 images,
on which one misclassified digit moves ECE by about 0.003, so the report adds the ECE of
the N test splits' predictions pooled (each model predicting its own split's test images),
and a paired bootstrap of JEM's minus cross-entropy's pooled ECE that resamples the test
images within each split (the same resample for both models).

Without ``--quick`` it exits with status 1 unless the targets that JEM meets here
hold on every split: test accuracy ≥ 97% and log p(x) AUROC ≥ 0.9 against both OOD sets
(the ECE comparison with the baseline is reported, not checked: see
plugins/ebmflow-jem/README.md). ``--quick`` shortens everything (30 steps, 5 SGLD steps, a
small network) so that the script runs in seconds; its figures mean nothing and only their
ranges are checked. Needs ebmflow-jem, scikit-learn and matplotlib.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import ebmflow
from ebmflow.run_config import RunConfig, build, load_run_config

REQUIRES = ("ebmflow-jem", "scikit-learn", "matplotlib")
CONFIG = Path(__file__).resolve().parent / "configs" / "jem_digits.toml"


def tables(quick: bool, mode: str, split: int = 0) -> dict:
    run = load_run_config(CONFIG).to_dict()
    run["objective"]["mode"] = mode
    run["data"]["seed"] = run["data"].get("seed", 0) + split
    run["train"]["seed"] = run["train"].get("seed", 0) + split
    if quick:
        run["energy"]["widths"] = [8, 16]
        run["objective"].update(k=5, capacity=500)
        run["train"].update(
            steps=30, batch_size=32, log_every=10, checkpoint_every=None, lr_schedule=None
        )
    return run


def train(run: dict, out: Path, progress: bool) -> tuple[ebmflow.Energy, float]:
    config = RunConfig.from_dict(run, source=f"{CONFIG} ({run['objective']['mode']})")
    trainer = build(
        config,
        checkpoint_dir=out / "checkpoint",
        progress=progress,
        metrics_file=out / "metrics.jsonl",
    )
    start = time.perf_counter()
    trainer.fit()
    return trainer.energy.eval(), time.perf_counter() - start


def pool(splits: list[dict], n_resamples: int = 2000) -> dict:
    """Accuracy, ECE and NLL of every model's test predictions (``log_probs``) pooled over
    the splits; JEM's minus cross-entropy's ECE, pooled and split by split (mean and
    standard error over the splits), and a paired bootstrap of the pooled difference (test
    images resampled within each split, the same indices for both models)."""
    labels = torch.cat([split["labels"] for split in splits])
    log_probs = {
        name: torch.cat([split["log_probs"][name] for split in splits])
        for name in splits[0]["log_probs"]
    }
    probs = {name: lp.exp() for name, lp in log_probs.items()}
    ece = ebmflow.evaluate.expected_calibration_error
    pooled: dict = {"n": int(labels.shape[0]), "splits": len(splits)}
    for name, p in probs.items():
        picked = log_probs[name].gather(1, labels.view(-1, 1)).squeeze(1)
        pooled[name] = {
            "accuracy": ebmflow.evaluate.accuracy(p, labels),
            "ece": ece(p, labels),
            "nll": float(-picked.mean()),
        }
    if set(probs) == {"jem", "ce_only"}:
        gen = torch.Generator().manual_seed(0)
        sizes = [split["labels"].shape[0] for split in splits]
        starts = torch.tensor([0, *sizes[:-1]]).cumsum(0).tolist()
        differences = []
        for _ in range(n_resamples):
            rows = torch.cat(
                [
                    start + torch.randint(size, (size,), generator=gen)
                    for start, size in zip(starts, sizes)
                ]
            )
            differences.append(
                ece(probs["jem"][rows], labels[rows]) - ece(probs["ce_only"][rows], labels[rows])
            )
        d = torch.tensor(differences, dtype=torch.float64).sort().values
        # split by split: the spread of these includes the training runs' and the splits'
        per_split = torch.tensor(
            [
                ece(split["log_probs"]["jem"].exp(), split["labels"])
                - ece(split["log_probs"]["ce_only"].exp(), split["labels"])
                for split in splits
            ],
            dtype=torch.float64,
        )
        pooled["ece_difference"] = {
            "jem_minus_ce_only": pooled["jem"]["ece"] - pooled["ce_only"]["ece"],
            "per_split": per_split.tolist(),
            "per_split_mean": float(per_split.mean()),
            "per_split_se": float(per_split.std() / len(splits) ** 0.5),
            "bootstrap_sd": float(d.std()),
            "bootstrap_95": [
                float(d[int(0.025 * n_resamples)]),
                float(d[int(0.975 * n_resamples) - 1]),
            ],
            "bootstrap_fraction_above_0": float((d > 0).double().mean()),
            "resamples": n_resamples,
        }
    return pooled


def failed_checks(report: dict) -> list[str]:
    """What does not hold: ranges always, the targets without --quick, on every split."""
    failures = []
    for split in report["splits"]:
        where = f"split {split['split']}"
        for name in ("jem", "ce_only"):
            if name not in split:
                continue
            result = split[name]
            values = [
                result["accuracy"],
                result["ece"],
                *(v for scores in result["auroc"].values() for v in scores.values()),
            ]
            if not all(0.0 <= v <= 1.0 for v in values):
                failures.append(f"{where}, {name}: a metric outside [0, 1]: {values}")
        if not report["quick"]:
            jem = split["jem"]
            if jem["accuracy"] < 0.97:
                failures.append(f"{where}: JEM test accuracy {jem['accuracy']:.4f} < 0.97")
            for ood, scores in jem["auroc"].items():
                if scores["log_px"] < 0.9:
                    failures.append(
                        f"{where}: JEM log p(x) AUROC against {ood} {scores['log_px']:.4f} < 0.9"
                    )
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a seconds-long smoke run")
    parser.add_argument(
        "--out",
        default=None,
        help="output folder (default: runs/jem-digits-example, or runs/jem-digits-example-quick "
        "with --quick)",
    )
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the cross-entropy-only baseline"
    )
    parser.add_argument(
        "--splits",
        type=int,
        default=1,
        help="train/test splits to repeat the comparison on (default: 1, the run file's)",
    )
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args()
    ebmflow.set_threads(args.threads)  # one thread unless asked: see docs/guide/cli.md
    if args.splits < 1:
        parser.error(f"--splits must be ≥ 1, got {args.splits}")
    out = Path(args.out or f"runs/jem-digits-example{'-quick' if args.quick else ''}")
    from ebmflow_jem import class_grid, classification_report, plot_class_grid

    report: dict = {
        "quick": args.quick,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "torch_threads": torch.get_num_threads(),
        "steps": tables(args.quick, "joint")["train"]["steps"],
        "splits": [],
    }
    models = {"jem": "joint"} if args.no_baseline else {"jem": "joint", "ce_only": "conditional"}
    predictions = []
    for split in range(args.splits):
        data = tables(args.quick, "joint", split)["data"]
        x, y = ebmflow.create("dataset", {**data, "split": "test"}).tensors()
        result: dict = {"split": split, "data_seed": data["seed"]}
        log_probs = {}
        folder = out if split == 0 else out / f"split{split}"
        for name, mode in models.items():
            energy, seconds = train(tables(args.quick, mode, split), folder / name, args.progress)
            with torch.no_grad():
                log_probs[name] = energy.predict_log_proba(x).double()
            result[name] = {
                "train_seconds": round(seconds, 1),
                **classification_report(energy, x, y, generator=torch.Generator().manual_seed(0)),
            }
            if split == 0:
                report[name] = result[name]
                if name == "jem":
                    jem = energy
        report["splits"].append(result)
        predictions.append({"labels": y, "log_probs": log_probs})
    if args.splits > 1:
        report["pooled"] = pool(predictions)
    grid = class_grid(
        jem,
        4 if args.quick else 10,
        n_steps=20 if args.quick else 100,
        generator=torch.Generator().manual_seed(0),
    )
    labels = torch.arange(grid.shape[0]).repeat_interleave(grid.shape[1])
    report["samples_classified_as_own_class"] = float(
        (jem.predict(grid.flatten(0, 1)) == labels).double().mean()
    )
    report["samples_png"] = str(
        plot_class_grid(grid, out / "samples.png", title="JEM on digits: p(x | y)")
    )
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    failures = failed_checks(report)
    for failure in failures:
        print(f"check failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
