"""Timing: interleaved repetitions of (ebmflow, reference) pairs; the ratio of their times.

Interleaving puts both sides under the same machine conditions (thermal state, other
load), so the *ratio* is stable even when absolute times drift. Each repetition times
``ours`` then ``reference`` (alternating the order every repetition); the figure is the
median ratio with its inter-quartile spread.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch


@dataclass
class Case:
    """One comparison: ``ours()`` and ``reference()`` each do ``units`` units of work."""

    name: str
    group: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    units: int
    unit: str = "step"
    target: float | None = None
    note: str = ""


@dataclass
class Result:
    name: str
    group: str
    ratio: float
    ratio_q1: float
    ratio_q3: float
    ours_us: float
    reference_us: float
    unit: str
    target: float | None
    passed: bool | None
    note: str = ""
    ratios: list[float] = field(default_factory=list)


#: Clocks: "wall" (time.perf_counter) for a quiet machine; "cpu" (time.thread_time, the
#: CPU time of the calling thread, with torch limited to one thread) for a shared machine,
#: where other processes' load would otherwise dominate the ratios.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def _time(fn: Callable[[], object], clock: Callable[[], float]) -> float:
    start = clock()
    fn()
    return clock() - start


def measure(case: Case, repeats: int, warmup: int = 1, clock: str = "wall") -> Result:
    tick = CLOCKS[clock]
    for _ in range(warmup):
        case.ours()
        case.reference()
    ours, ref, ratios = [], [], []
    for i in range(repeats):
        if i % 2 == 0:
            t_ours, t_ref = _time(case.ours, tick), _time(case.reference, tick)
        else:
            t_ref, t_ours = _time(case.reference, tick), _time(case.ours, tick)
        ours.append(t_ours)
        ref.append(t_ref)
        ratios.append(t_ours / t_ref)
    q = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else [ratios[0]] * 3
    ratio = statistics.median(ratios)
    return Result(
        name=case.name,
        group=case.group,
        ratio=ratio,
        ratio_q1=q[0],
        ratio_q3=q[2],
        ours_us=statistics.median(ours) / case.units * 1e6,
        reference_us=statistics.median(ref) / case.units * 1e6,
        unit=case.unit,
        target=case.target,
        passed=None if case.target is None else ratio <= case.target,
        note=case.note,
        ratios=ratios,
    )


def machine(clock: str = "wall") -> dict[str, str | int]:
    return {
        "clock": clock,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }


def write(
    results: list[Result], out: Path, extra: dict | None = None, clock: str = "wall"
) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(clock), "results": [asdict(r) for r in results],
               **(extra or {})}
    json_path = out / "benchmarks.json"
    json_path.write_text(json.dumps(payload, indent=2))
    md_path = out / "benchmarks.md"
    md_path.write_text(markdown_table(payload))
    return json_path, md_path


def markdown_table(payload: dict) -> str:
    """The README's benchmark table, from the JSON payload."""
    m = payload["machine"]
    lines = [
        f"Machine: {m['processor']}, {m['threads']} torch thread(s), Python {m['python']}, "
        f"torch {m['torch']} ({m['device']}); {m.get('clock', 'wall')}-clock time, median of "
        f"{payload.get('repeats', '?')} interleaved repetitions.",
        "",
        "| benchmark | ebmflow / hand-written | spread (IQR) | ebmflow µs/unit | "
        "hand-written µs/unit | target | ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["results"]:
        target = "" if r["target"] is None else f"≤ {r['target']:.2f}"
        ok = "" if r["passed"] is None else ("yes" if r["passed"] else "**no**")
        name = r["name"] + (f" ({r['note']})" if r["note"] else "")
        lines.append(
            f"| {name} | {r['ratio']:.3f} | {r['ratio_q1']:.3f}–{r['ratio_q3']:.3f} | "
            f"{r['ours_us']:.0f} / {r['unit']} | {r['reference_us']:.0f} / {r['unit']} | "
            f"{target} | {ok} |"
        )
    return "\n".join(lines) + "\n"
