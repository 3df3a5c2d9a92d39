"""``ebmflow train CONFIG.toml --out DIR``: run a training run described by TOML.

``--resume`` continues the run in DIR from its checkpoint (with DIR/config.toml unless
CONFIG is given), or starts it from scratch, saying so on stderr, when DIR has no
checkpoint yet (a job stopped before its first checkpoint is restarted with the same
command). An edited run file may change what :meth:`ebmflow.Trainer.load_checkpoint`
accepts (the total steps, the learning rate and schedule, the logging and checkpoint
intervals...); any other change is refused, naming the changed keys. ``--steps N``
replaces the run's total number of steps (and so the length of a learning-rate schedule);
``--until N`` stops early at step N without changing the run, so that ``--until 1000`` then
``--resume`` is bit-identical (on the CPU) to one job.

The run folder ``DIR`` holds

- ``DIR/config.toml``: a copy of the run file;
- ``DIR/checkpoint/``: the training checkpoint (an energy checkpoint folder plus the
  training state, see :mod:`ebmflow.trainer`): ``ebmflow sample`` and ``ebmflow evaluate``
  read it, ``--resume`` continues from it;
- ``DIR/metrics.jsonl``: one JSON object per log record, appended as training goes;
- with ``--tensorboard LOGDIR``, TensorBoard event files in LOGDIR
  (:class:`ebmflow.TensorBoardLogger`).

The checkpoint is a sub-folder because a checkpoint folder is replaced as a whole on every
save, so it holds nothing but checkpoint files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ebmflow.commands.arguments import check_int_option
from ebmflow.commands.options import add_device_option, add_progress_options, device_of, progress_of
from ebmflow.errors import ConfigError
from ebmflow.validation import MAX_STEPS

CONFIG_COPY = "config.toml"
CHECKPOINT = "checkpoint"
METRICS = "metrics.jsonl"


def add_train(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train an energy from a TOML run file ([data], [energy], [objective], ...)",
        description="Train the run described by CONFIG (TOML tables [data], [energy], "
        "[objective], optional [sampler] and [train]) and write DIR/config.toml (a copy), "
        "DIR/checkpoint (an energy checkpoint with the training state; `ebmflow evaluate "
        "DIR/checkpoint` works on it) and DIR/metrics.jsonl. Runs under torchrun too "
        "(`torchrun --nproc_per_node N -m ebmflow train ...`).",
    )
    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        help="the TOML run file (default with --resume: DIR/config.toml)",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the run folder")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in DIR from its checkpoint (bit-identical on "
        "the CPU; default: start a new run)",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        metavar="N",
        help="total steps to train to, replacing [train] steps (default: the run file's)",
    )
    parser.add_argument(
        "--until",
        type=int,
        default=None,
        metavar="N",
        help="stop after step N without changing the run (its length and "
        "learning-rate schedule); continue later with --resume "
        "(default: train to the end)",
    )
    parser.add_argument(
        "--tensorboard",
        default=None,
        metavar="LOGDIR",
        help="log losses, metrics, energies, acceptance and sample figures to TensorBoard "
        "event files in LOGDIR (needs pip install 'ebmflow[tensorboard]') (default: off)",
    )
    add_device_option(parser)
    add_progress_options(parser)
    parser.set_defaults(func=run_train)


def run_train(args: argparse.Namespace) -> int:
    from ebmflow.run_config import build, load_run_config

    out = Path(args.out)
    checkpoint = out / CHECKPOINT
    for option in ("steps", "until"):
        value = getattr(args, option)
        if value is not None:
            check_int_option(f"--{option}", value, 0, MAX_STEPS)
    config_path = args.config
    if config_path is None:
        if not args.resume:
            raise ConfigError(
                "give the TOML run file (CONFIG), or --resume to continue the run in --out"
            )
        config_path = out / CONFIG_COPY
    run_config = load_run_config(config_path)
    has_checkpoint = checkpoint.is_dir() or (out / f".{CHECKPOINT}.ebmflow-old").is_dir()
    rank = int(os.environ.get("RANK", "0") or 0)
    if args.resume and not has_checkpoint and rank == 0:
        # as Trainer.fit(resume=True): a job preempted before its first checkpoint is
        # simply restarted with the same command
        print(
            f"ebmflow: no checkpoint at {checkpoint} yet; starting the run from scratch",
            file=sys.stderr,
        )
    if not args.resume and has_checkpoint:
        raise ConfigError(
            f"{out} already holds a run ({checkpoint} exists); continue it with --resume, or "
            f"choose a new --out"
        )
    overrides: dict[str, Any] = {"checkpoint_dir": checkpoint, "metrics_file": out / METRICS}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.progress is not None or not progress_of(args):
        overrides["progress"] = progress_of(args)
    if args.device is not None:
        overrides["device"] = device_of(args)
    if args.tensorboard is not None:
        from ebmflow.training.tensorboard import TensorBoardLogger

        overrides["callbacks"] = [TensorBoardLogger(args.tensorboard)]
    trainer = build(run_config, host=args.host, **overrides)
    if args.resume and has_checkpoint:
        # before the run file is copied: a run file the checkpoint cannot continue under
        # must not replace the copy that it can
        trainer.load_checkpoint()
    if rank == 0 and run_config.text is not None:
        copy = out / CONFIG_COPY
        if not copy.exists() or copy.resolve() != Path(config_path).resolve():
            out.mkdir(parents=True, exist_ok=True)
            tmp = out / f".{CONFIG_COPY}.tmp.{os.getpid()}"
            tmp.write_text(run_config.text, encoding="utf-8")
            os.replace(tmp, copy)
    history = trainer.fit(until=args.until)
    if trainer.rank == 0:
        last = history[-1] if history else {}
        loss = f", loss {last['loss']:.5g}" if "loss" in last else ""
        print(
            f"step {trainer.step} of {trainer.steps}{loss}; checkpoint {checkpoint}, "
            f"metrics {out / METRICS}"
        )
    return 0
