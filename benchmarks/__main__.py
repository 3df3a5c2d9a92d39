"""``python -m benchmarks [--quick | --tiny] [--only GROUP ...] [--clock cpu] [--out DIR]
[--readme docs/guide/benchmarks.md]``: every benchmark group, one process, interleaved
repetitions."""

from __future__ import annotations

import argparse
import importlib
import shlex
import sys
import time
from pathlib import Path

import torch

import ebmflow
from benchmarks.harness import CLOCKS, Skip, describe, run_item, without_readme, write

#: group name -> module; each module has ``cases(size, **options)``. Groups whose module
#: cannot be imported (a plugin is not installed) are recorded as skipped.
GROUPS = {
    "startup": "benchmarks.startup",
    "samplers": "benchmarks.samplers",
    "memory": "benchmarks.memory",
    "compiled": "benchmarks.compiled",
    "tempering": "benchmarks.tempering",
    "score": "benchmarks.score",
    "objectives": "benchmarks.objectives",
    "trainer": "benchmarks.trainer",
    "diffusers": "benchmarks.diffusers_scheduler",
    "ode": "benchmarks.ode",
    "posterior": "benchmarks.posterior",
    "discrete": "benchmarks.discrete",
    "dynamics": "benchmarks.dynamics",
    "contrastive": "benchmarks.contrastive",
    "workloads": "benchmarks.workloads",
}

DEFAULT_REPEATS = {"full": 21, "quick": 3, "tiny": 1}


def group_items(group: str, size: str, clock: str, device: str) -> list:
    try:
        module = importlib.import_module(GROUPS[group])
    except ImportError as exc:
        return [Skip(group, group, f"cannot import {GROUPS[group]}: {exc}")]
    try:
        return module.cases(size, clock=clock, device=device)
    except ebmflow.UnknownComponentError as exc:  # a plugin it needs is not installed
        return [Skip(group, group, str(exc).splitlines()[0])]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--quick", action="store_true", help="fewer steps and repeats: a look in about a minute"
    )
    sizes.add_argument(
        "--tiny",
        action="store_true",
        help="a few steps, one repeat, no torch.compile: checks that every "
        "benchmark runs (the test suite uses it)",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=sorted(GROUPS),
        default=None,
        help="run only these groups (default: all)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="interleaved repetitions per case (default: 21; quick: 3; tiny: 1)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="folder for benchmarks.json and benchmarks.md (default: %(default)s)",
    )
    parser.add_argument(
        "--clock",
        choices=sorted(CLOCKS),
        default="wall",
        help="wall: elapsed time, for a quiet machine; cpu: the thread's CPU "
        "time with torch on one thread, for a shared machine "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads (default: torch's choice; 1 with --clock cpu)",
    )
    parser.add_argument(
        "--device",
        default="cpu",
        help="device of the compiled-sampling group, e.g. cuda (default: cpu; "
        "the other groups run on the CPU)",
    )
    parser.add_argument(
        "--gpu-check",
        action="store_true",
        help="correctness on --device, then compiled / CUDA-graph timings and the realistic "
        "workloads there (see benchmarks.gpu_check); with --device cpu --tiny, a dry run",
    )
    parser.add_argument(
        "--readme",
        type=Path,
        default=None,
        help="also rewrite the table between the benchmark markers of this "
        "markdown page (see python -m benchmarks.readme)",
    )
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    repeats = args.repeats or DEFAULT_REPEATS[size]
    threads = args.threads or (1 if args.clock == "cpu" else None)
    if args.clock == "cpu" and threads != 1:
        parser.error("--clock cpu measures one thread: use --threads 1")
    if args.clock == "cpu" and args.device != "cpu":
        parser.error("--clock cpu measures CPU time; time a GPU with --clock wall")
    if args.device != "cpu" and not (args.device.startswith("cuda") and torch.cuda.is_available()):
        parser.error(f"--device {args.device}: only cpu and an available cuda device are supported")
    if threads:
        torch.set_num_threads(threads)
    if args.gpu_check:
        from benchmarks.gpu_check import main as gpu_check

        return gpu_check(args.device, size, args.out, args.repeats or (1 if size == "tiny" else 5))
    started = time.perf_counter()
    results, group_seconds = [], {}
    for group in args.only or GROUPS:
        group_started = time.perf_counter()
        for item in group_items(group, size, args.clock, args.device):
            result = run_item(item, repeats, args.clock)
            if size == "tiny":  # a step or two: the figures check that it runs, nothing more
                result.passed = None
            print(describe(result), flush=True)
            results.append(result)
        group_seconds[group] = round(time.perf_counter() - group_started, 1)
    seconds = time.perf_counter() - started
    command = " ".join(["python -m benchmarks", *(shlex.quote(a) for a in without_readme(argv))])
    json_path, md_path = write(
        results,
        args.out,
        {
            "size": size,
            "quick": size != "full",
            "repeats": repeats,
            "command": command,
            "seconds": round(seconds, 1),
            "group_seconds": group_seconds,
        },
        clock=args.clock,
        device=args.device,
    )
    print(f"wrote {json_path} and {md_path} ({seconds:.0f} s)")
    if args.readme is not None:
        from benchmarks.readme import update_readme

        update_readme(args.readme, json_path)
        print(f"updated the benchmark table in {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
