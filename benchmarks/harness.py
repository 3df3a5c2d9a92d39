"""Timing: interleaved repetitions of (ebmflow, reference) pairs; the ratio of their times.

Interleaving puts both sides under the same machine conditions (thermal state, other
load), so the *ratio* is stable even when absolute times drift. Each repetition times
``ours`` then ``reference`` (alternating the order every repetition); the figure is the
median ratio with its inter-quartile spread.

A group of benchmarks (one module of this package) returns a list of three kinds of item:

- :class:`Case`: ebmflow against a hand-written loop; the result is the ratio of times;
- :class:`Value`: an absolute figure (start-up seconds, memory growth in MiB), sampled
  ``repeats`` times;
- :class:`Skip`: a benchmark that cannot run here (a plugin is missing, it needs a GPU),
  recorded with the reason so that the output shows what was not measured.
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: Sizes of a run: ``full`` (the published figures), ``quick`` (a few minutes less noise
#: for a look), ``tiny`` (seconds; checks that every benchmark still runs).
SIZES = ("full", "quick", "tiny")


def pick(size: str, full, quick, tiny):
    """The value for this run size."""
    return {"full": full, "quick": quick, "tiny": tiny}[size]


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
    #: overrides the run's repetitions (a case whose one call takes seconds needs few)
    repeats: int | None = None


@dataclass
class Value:
    """An absolute figure: each call of ``sample()`` returns one measurement in ``unit``.

    ``repeats`` overrides the run's repetitions (a sample that takes seconds needs few).
    The figure is the median; it passes when it is ≤ ``target``.
    """

    name: str
    group: str
    sample: Callable[[], float]
    unit: str
    target: float | None = None
    note: str = ""
    repeats: int | None = None


@dataclass
class Skip:
    """A benchmark that does not run here, and why."""

    name: str
    group: str
    reason: str


@dataclass
class Result:
    """One row of the output. ``kind`` is ``"ratio"`` (ebmflow time / hand-written time,
    with per-unit times in µs), ``"value"`` (``value`` in ``unit``) or ``"skipped"``."""

    name: str
    group: str
    kind: str
    unit: str = ""
    ratio: float | None = None
    ratio_q1: float | None = None
    ratio_q3: float | None = None
    ours_us: float | None = None
    reference_us: float | None = None
    value: float | None = None
    value_q1: float | None = None
    value_q3: float | None = None
    target: float | None = None
    passed: bool | None = None
    note: str = ""
    samples: list[float] = field(default_factory=list)


#: Clocks: "wall" (time.perf_counter) for a quiet machine; "cpu" (time.thread_time, the
#: CPU time of the calling thread, with torch limited to one thread) for a shared machine,
#: where other processes' load would otherwise dominate the ratios.
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def _time(fn: Callable[[], object], clock: Callable[[], float]) -> float:
    start = clock()
    fn()
    return clock() - start


def _quartiles(samples: list[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q = statistics.quantiles(samples, n=4)
    return q[0], statistics.median(samples), q[2]


def measure(case: Case, repeats: int, warmup: int = 1, clock: str = "wall") -> Result:
    tick = CLOCKS[clock]
    for _ in range(warmup):
        case.ours()
        case.reference()
    ours, ref, ratios = [], [], []
    for i in range(case.repeats or repeats):
        if i % 2 == 0:
            t_ours, t_ref = _time(case.ours, tick), _time(case.reference, tick)
        else:
            t_ref, t_ours = _time(case.reference, tick), _time(case.ours, tick)
        ours.append(t_ours)
        ref.append(t_ref)
        ratios.append(t_ours / t_ref)
    q1, ratio, q3 = _quartiles(ratios)
    return Result(
        name=case.name,
        group=case.group,
        kind="ratio",
        unit=case.unit,
        ratio=ratio,
        ratio_q1=q1,
        ratio_q3=q3,
        ours_us=statistics.median(ours) / case.units * 1e6,
        reference_us=statistics.median(ref) / case.units * 1e6,
        target=case.target,
        passed=None if case.target is None else ratio <= case.target,
        note=case.note,
        samples=ratios,
    )


def measure_value(value: Value, repeats: int) -> Result:
    samples = [float(value.sample()) for _ in range(value.repeats or repeats)]
    q1, median, q3 = _quartiles(samples)
    return Result(
        name=value.name,
        group=value.group,
        kind="value",
        unit=value.unit,
        value=median,
        value_q1=q1,
        value_q3=q3,
        target=value.target,
        passed=None if value.target is None else median <= value.target,
        note=value.note,
        samples=samples,
    )


def skipped(skip: Skip) -> Result:
    return Result(name=skip.name, group=skip.group, kind="skipped", note=skip.reason)


def run_item(item: Case | Value | Skip, repeats: int, clock: str) -> Result:
    if isinstance(item, Case):
        return measure(item, repeats, clock=clock)
    if isinstance(item, Value):
        return measure_value(item, repeats)
    return skipped(item)


def describe(result: Result) -> str:
    """One console line for a result."""
    flag = "" if result.passed is None else ("  ok" if result.passed else "  MISSED")
    target = "" if result.target is None else f"  target ≤ {result.target:g}"
    if result.kind == "ratio":
        return (
            f"{result.name:60s} {result.ratio:6.3f}  [{result.ratio_q1:.3f}, "
            f"{result.ratio_q3:.3f}]  {result.ours_us:9.0f} µs vs "
            f"{result.reference_us:9.0f} µs{target}{flag}"
        )
    if result.kind == "value":
        return (
            f"{result.name:60s} {result.value:8.3f} {result.unit}  [{result.value_q1:.3f}, "
            f"{result.value_q3:.3f}]{target}{flag}"
        )
    return f"{result.name:60s} skipped: {result.note}"


def without_readme(argv: list[str]) -> list[str]:
    """``argv`` less ``--readme PAGE``: the command line that reproduces a run's figures."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--readme":
            skip = True
        elif not arg.startswith("--readme="):
            out.append(arg)
    return out


def machine(clock: str = "wall", device: str = "cpu") -> dict[str, str | int]:
    import torch  # here, so that the README generator (benchmarks.readme) needs no torch

    info: dict[str, str | int] = {
        "clock": clock,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def write(
    results: list[Result],
    out: Path,
    extra: dict | None = None,
    clock: str = "wall",
    device: str = "cpu",
) -> tuple[Path, Path]:
    """Write ``benchmarks.json`` (everything) and ``benchmarks.md`` (the tables) to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine(clock, device),
        **(extra or {}),
        "results": [asdict(r) for r in results],
    }
    json_path = out / "benchmarks.json"
    json_path.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    md_path = out / "benchmarks.md"
    md_path.write_text(markdown_table(payload), encoding="utf-8")
    return json_path, md_path


def _target(r: dict) -> str:
    return "" if r["target"] is None else f"≤ {r['target']:g}"


def _ok(r: dict) -> str:
    return "" if r["passed"] is None else ("yes" if r["passed"] else "**no**")


def _name(r: dict) -> str:
    return r["name"] + (f" ({r['note']})" if r["note"] else "")


def markdown_table(payload: dict) -> str:
    """The benchmark tables (ratios, absolute figures, skipped) from the JSON payload."""
    m = payload["machine"]
    device = m["device"] + (f", {m['gpu']}" if m.get("gpu") else "")
    lines = [
        f"Machine: {m['processor']}, {m['threads']} torch thread(s), Python {m['python']}, "
        f"torch {m['torch']} ({device}); {m.get('clock', 'wall')}-clock time, median of "
        f"{payload.get('repeats', '?')} interleaved repetitions"
        + (
            {
                "quick": " (quick size: fewer steps)",
                "tiny": " (tiny size: a step or two, which checks that the harness runs; the "
                "figures mean nothing)",
            }.get(payload.get("size", "full"), "")
        )
        + (f", {payload['seconds']:.0f} s in all" if payload.get("seconds") else "")
        + ".",
    ]
    results = payload["results"]
    ratios = [r for r in results if r.get("kind", "ratio") == "ratio"]
    values = [r for r in results if r.get("kind") == "value"]
    skips = [r for r in results if r.get("kind") == "skipped"]
    if ratios:
        lines += [
            "",
            "| benchmark | ebmflow / hand-written | spread (IQR) | ebmflow µs/unit | "
            "hand-written µs/unit | target | ok |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in ratios:
            lines.append(
                f"| {_name(r)} | {r['ratio']:.3f} | {r['ratio_q1']:.3f}–{r['ratio_q3']:.3f} | "
                f"{r['ours_us']:.0f} / {r['unit']} | {r['reference_us']:.0f} / {r['unit']} | "
                f"{_target(r)} | {_ok(r)} |"
            )
    if values:
        lines += [
            "",
            "| measurement | median | spread (IQR) | target | ok |",
            "|---|---|---|---|---|",
        ]
        for r in values:
            lines.append(
                f"| {_name(r)} | {r['value']:.3g} {r['unit']} | {r['value_q1']:.3g}–"
                f"{r['value_q3']:.3g} {r['unit']} | {_target(r)} | {_ok(r)} |"
            )
    if skips:
        lines += ["", "Not measured here:", ""]
        lines += [f"- {r['name']}: {r['note']}" for r in skips]
    return "\n".join(lines) + "\n"
