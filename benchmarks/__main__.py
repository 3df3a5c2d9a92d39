"""``python -m benchmarks [--quick] [--only GROUP ...] [--repeats N] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from benchmarks import objectives, samplers, score, tempering
from benchmarks.harness import CLOCKS, measure, write

GROUPS = {"samplers": samplers.cases, "tempering": tempering.cases, "score": score.cases,
          "objectives": objectives.cases}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="few steps and repeats: checks the harness runs (default: off)")
    parser.add_argument("--only", nargs="*", choices=sorted(GROUPS), default=None,
                        help="run only these groups (default: all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repetitions per case (default: 15, quick: 2)")
    parser.add_argument("--out", type=Path, default=Path("bench-results"),
                        help="folder for benchmarks.json and benchmarks.md (default: %(default)s)")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time, for a quiet machine; cpu: the thread's CPU "
                        "time with torch on one thread, for a shared machine "
                        "(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; 1 with "
                        "--clock cpu)")
    args = parser.parse_args(argv)
    repeats = args.repeats or (2 if args.quick else 15)
    threads = args.threads or (1 if args.clock == "cpu" else None)
    if args.clock == "cpu" and threads != 1:
        parser.error("--clock cpu measures one thread: use --threads 1")
    if threads:
        torch.set_num_threads(threads)
    results = []
    for group in args.only or GROUPS:
        for case in GROUPS[group](quick=args.quick):
            result = measure(case, repeats, clock=args.clock)
            flag = "" if result.passed is None else (" ok" if result.passed else " MISSED")
            print(f"{result.name:55s} {result.ratio:6.3f}  "
                  f"[{result.ratio_q1:.3f}, {result.ratio_q3:.3f}]  "
                  f"{result.ours_us:8.0f} µs vs {result.reference_us:8.0f} µs"
                  f"{'' if result.target is None else f'  target ≤ {result.target}'}{flag}",
                  flush=True)
            results.append(result)
    json_path, md_path = write(results, args.out, {"quick": args.quick, "repeats": repeats},
                               clock=args.clock)
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
