"""``python -m benchmarks.scaling [--quick | --tiny] [--out DIR] [--readme PAGE]``: how the
per-step cost grows with the work, for ebmflow, a hand-written loop and the peer libraries.

Curves (per-step time in µs, the minimum over interleaved repetitions of the thread's CPU
time, torch on one thread):

- against chains (16 … 65,536) for ``langevin``, ``mala``, ``hmc`` (L = 5) and
  ``parallel-tempering`` (4 replicas, MALA moves; chains counted over all replicas), on an
  MLP 2-64-64-1;
- against dimension (2 … 4,096), ULA on an MLP d-128-128-1, 256 chains;
- against replicas (2 … 32), parallel tempering with 256 chains per replica;
- against network width (32 … 1,024), ULA on an MLP 2-w-w-1, 1,024 chains;
- peak resident memory per chain of a ULA run (bytes), ebmflow and the hand loop.

The hand-written loops are :mod:`benchmarks.loops`; the peers (ebmkit, torchebm) come from
:mod:`benchmarks.peers` and are skipped, with the reason in the output, where they are not
installed or have no such sampler. Writes ``scaling.json``, ``scaling.md`` and one PNG per
curve (matplotlib) into ``--out``; ``--readme`` also rewrites the block between
``<!-- scaling:start -->`` and ``<!-- scaling:end -->`` of a markdown page.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

import ebmflow
from benchmarks import loops, peers
from benchmarks.harness import machine, pick, without_readme

START = "<!-- scaling:start -->"
END = "<!-- scaling:end -->"
LIBRARIES = ("ebmflow", "hand-written", *peers.PEERS)
ETA = 0.01


@dataclass
class Curve:
    """One figure: per-step µs of each library at each ``x``; ``None`` where not run."""

    name: str
    title: str
    xlabel: str
    x: list[int] = field(default_factory=list)
    us: dict[str, list[float | None]] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)
    unit: str = "µs / step"


def mlp(d: int, w: int, seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # the caller's RNG state is restored
        torch.manual_seed(seed)
        return nn.Sequential(
            nn.Linear(d, w), nn.SiLU(), nn.Linear(w, w), nn.SiLU(), nn.Linear(w, 1), nn.Flatten(0)
        )


class NetEnergy(ebmflow.Energy):
    """E(x) = f(x) for a network that already returns (B,)."""

    def __init__(self, f: nn.Module) -> None:
        super().__init__()
        self.f = f

    def forward(self, x, sigma=None):
        return self.f(x)


def ladder(n_replicas: int, beta_min: float = 0.05) -> Tensor:
    return torch.logspace(0, torch.log10(torch.tensor(beta_min)).item(), n_replicas)


def runners(kind: str, f: nn.Module, x: Tensor, n_steps: int, n_replicas: int = 4):
    """library -> callable (or the reason it does not run) for ``n_steps`` of ``kind``.

    ebmflow and the hand loops step from a state evaluated beforehand (ebmflow's ``init``,
    the hand loop's starting energy and gradient), so that every library's time is
    ``n_steps`` steps and nothing else: the figure is the steady per-step cost."""
    energy = NetEnergy(f)

    def gen():
        return torch.Generator().manual_seed(1)

    out: dict[str, Callable[[], object] | str] = {}
    if kind == "parallel-tempering":
        try:
            sampler = ebmflow.create(
                "sampler",
                "parallel-tempering",
                n_replicas=n_replicas,
                beta_min=0.05,
                local_sampler={"name": "mala", "step_size": ETA},
            )
        except ebmflow.UnknownComponentError as exc:
            return {"ebmflow": f"ebmflow-tempering is not installed: {exc}"}
        betas = sampler.betas.to(x.dtype)
        x_all = x.repeat(n_replicas, *(1,) * (x.ndim - 1))
        start = loops.energy_grad(f, x_all)
        out["hand-written"] = lambda: loops.parallel_tempering(
            f, x_all, betas, ETA, n_steps, gen(), start
        )
    else:
        extra = {"n_leapfrog": 5} if kind == "hmc" else {}
        sampler = ebmflow.create("sampler", kind, step_size=ETA, **extra)
        betas = None
        start = loops.energy_grad(f, x)
        out["hand-written"] = {
            "langevin": lambda: loops.ula(f, x, ETA, n_steps, gen()),
            "mala": lambda: loops.mala(f, x, ETA, n_steps, gen(), start),
            "hmc": lambda: loops.hmc(f, x, ETA, 5, n_steps, gen(), start),
        }[kind]
    state = sampler.init(energy, x)
    out["ebmflow"] = lambda: sampler.continue_run(energy, state, n_steps, generator=gen())
    for peer in peers.PEERS:
        out[peer] = peers.runner(peer, kind, f, x, ETA, n_steps, betas=betas)
    return {lib: out[lib] for lib in LIBRARIES}


def time_point(fns: dict, n_steps: int, repeats: int) -> dict[str, float]:
    """Per-step µs of each callable: min over ``repeats`` interleaved rounds (the order of
    the libraries rotates every round), after one warm-up call each."""
    live = {k: v for k, v in fns.items() if callable(v)}
    for fn in live.values():
        fn()
    best = {k: float("inf") for k in live}
    names = list(live)
    for r in range(repeats):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            start = time.thread_time()
            live[k]()
            best[k] = min(best[k], time.thread_time() - start)
    return {k: v / n_steps * 1e6 for k, v in best.items()}


def steps_for(chains: int, size: str) -> int:
    """Fewer steps for large batches, so every point costs about the same."""
    return max(2, min(pick(size, 40, 20, 2), 40_000 // chains))


def add_point(curve: Curve, x_value: int, fns: dict, n_steps: int, repeats: int) -> None:
    curve.x.append(x_value)
    times = time_point(fns, n_steps, repeats)
    for lib in LIBRARIES:
        fn = fns.get(lib, "not measured on this curve")
        if not callable(fn):
            curve.notes.setdefault(lib, fn)
        curve.us.setdefault(lib, []).append(times.get(lib))
    print(
        f"{curve.name:28s} {x_value:>7d}  " + "  ".join(f"{k} {v:9.1f}" for k, v in times.items()),
        flush=True,
    )


def build_curves(size: str, repeats: int) -> list[Curve]:
    gen = torch.Generator().manual_seed(0)
    curves = []
    chain_counts = pick(size, [16, 256, 4096, 65536], [16, 1024], [16])
    f64 = mlp(2, 64)
    for kind in ("langevin", "mala", "hmc", "parallel-tempering"):
        curve = Curve(f"chains-{kind}", f"{kind}: per-step time against chains", "chains")
        for n in chain_counts:
            per = n // 4 if kind == "parallel-tempering" else n
            x = torch.randn(max(per, 1), 2, generator=gen)
            steps = steps_for(n * (5 if kind == "hmc" else 1), size)
            add_point(curve, n, runners(kind, f64, x, steps), steps, repeats)
        curves.append(curve)
    curve = Curve(
        "dimension", "langevin: per-step time against dimension (256 chains)", "dimension"
    )
    for d in pick(size, [2, 64, 512, 4096], [2, 512], [2]):
        x = torch.randn(256, d, generator=gen)
        steps = steps_for(256 * max(1, d // 64), size)
        add_point(curve, d, runners("langevin", mlp(d, 128), x, steps), steps, repeats)
    curves.append(curve)
    curve = Curve(
        "replicas",
        "parallel-tempering: per-step time against replicas (256 chains each)",
        "replicas",
    )
    for r in pick(size, [2, 4, 8, 16, 32], [2, 8], [2]):
        x = torch.randn(256, 2, generator=gen)
        steps = steps_for(256 * r, size)
        add_point(curve, r, runners("parallel-tempering", f64, x, steps, r), steps, repeats)
    curves.append(curve)
    curve = Curve("width", "langevin: per-step time against network width (1,024 chains)", "width")
    for w in pick(size, [32, 128, 512, 1024], [32, 512], [32]):
        x = torch.randn(1024, 2, generator=gen)
        steps = steps_for(1024 * max(1, (w // 64) ** 2), size)
        add_point(curve, w, runners("langevin", mlp(2, w), x, steps), steps, repeats)
    curves.append(curve)
    return curves


def memory_per_chain(size: str) -> Curve:
    """Peak resident growth per chain of a ULA run (bytes), ebmflow and the hand loop, each
    in a fresh process (:mod:`benchmarks.scaling_memory`)."""
    from benchmarks.scaling_memory import in_fresh_process

    curve = Curve(
        "memory",
        "langevin: peak resident memory per chain (MLP 2-64-64-1, 5 steps)",
        "chains",
        unit="bytes / chain",
    )
    for n in pick(size, [4096, 65536], [65536], [256]):
        curve.x.append(n)
        for lib in ("ebmflow", "hand-written"):
            curve.us.setdefault(lib, []).append(in_fresh_process(lib, n))
        print(
            f"{curve.name:28s} {n:>7d}  "
            + "  ".join(f"{k} {v[-1]:9.1f}" for k, v in curve.us.items()),
            flush=True,
        )
    for lib in peers.PEERS:
        curve.us[lib] = [None] * len(curve.x)
        curve.notes[lib] = "not measured (peak memory: ebmflow against the hand loop)"
    return curve


def plot(curve: Curve, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for lib, values in curve.us.items():
        points = [(x, v) for x, v in zip(curve.x, values) if v is not None]
        if points:
            ax.plot(*zip(*points), marker="o", label=lib)
    ax.set_xscale("log", base=2)
    if all(
        v is not None and v > 0 for values in curve.us.values() for v in values if v is not None
    ):
        ax.set_yscale("log")
    ax.set_xlabel(curve.xlabel)
    ax.set_ylabel(curve.unit)
    ax.set_title(curve.title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / f"scaling-{curve.name}.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _fmt(v: float | None) -> str:
    return "–" if v is None else (f"{v:.0f}" if v >= 100 else f"{v:.3g}")


def markdown(payload: dict, figure_prefix: str = "") -> str:
    m = payload["machine"]
    lines = [
        f"Generated by `{payload['command']}` ({payload['size']} size, "
        f"{payload['seconds']:.0f} s; {m['processor']}, torch {m['torch']} on "
        f"{m['threads']} thread(s), thread CPU time, minimum of {payload['repeats']} "
        "interleaved repetitions). Ratio: ebmflow / hand-written.",
    ]
    for c in payload["curves"]:
        libs = [lib for lib in c["us"] if any(v is not None for v in c["us"][lib])]
        lines += ["", f"**{c['title']}** ({c['unit']})", ""]
        if figure_prefix is not None and c.get("figure"):
            lines += [f"![{c['title']}]({figure_prefix}{c['figure']})", ""]
        lines += [
            f"| {c['xlabel']} | " + " | ".join(libs) + " | ratio |",
            "|---" * (len(libs) + 2) + "|",
        ]
        for i, x in enumerate(c["x"]):
            ours, hand = c["us"]["ebmflow"][i], c["us"]["hand-written"][i]
            ratio = "–" if not ours or not hand else f"{ours / hand:.2f}"
            cells = " | ".join(_fmt(c["us"][lib][i]) for lib in libs)
            lines.append(f"| {x:,} | {cells} | {ratio} |")
        for lib, note in c["notes"].items():
            lines.append(f"\n{lib}: {note}")
    return "\n".join(lines) + "\n"


def replace_block(text: str, block: str, source: str) -> str:
    if text.count(START) != 1 or text.count(END) != 1:
        raise ValueError(f"{source}: expected {START} and {END} exactly once each")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__)
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="two points per curve")
    sizes.add_argument("--tiny", action="store_true", help="one point per curve, 2 steps")
    parser.add_argument("--repeats", type=int, default=None, help="default 5; quick 3; tiny 1")
    parser.add_argument("--out", type=Path, default=Path("bench-results/scaling"))
    parser.add_argument(
        "--readme", type=Path, default=None, help="rewrite the scaling block of this page"
    )
    parser.add_argument("--no-figures", action="store_true", help="skip the matplotlib PNGs")
    args = parser.parse_args(argv)
    size = "tiny" if args.tiny else "quick" if args.quick else "full"
    repeats = args.repeats or pick(size, 5, 3, 1)
    torch.set_num_threads(1)
    started = time.perf_counter()
    curves = [*build_curves(size, repeats), memory_per_chain(size)]
    args.out.mkdir(parents=True, exist_ok=True)
    payload = {
        "machine": machine("cpu"),
        "size": size,
        "repeats": repeats,
        "command": " ".join(
            ["python -m benchmarks.scaling", *map(shlex.quote, without_readme(argv))]
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "curves": [asdict(c) for c in curves],
    }
    if not args.no_figures:
        for c, entry in zip(curves, payload["curves"]):
            entry["figure"] = plot(c, args.out).name
    (args.out / "scaling.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    (args.out / "scaling.md").write_text(markdown(payload), encoding="utf-8")
    print(f"wrote {args.out}/scaling.json, scaling.md ({payload['seconds']:.0f} s)")
    if args.readme is not None:
        rel = os.path.relpath(args.out, args.readme.parent).replace(os.sep, "/") + "/"
        text = args.readme.read_text(encoding="utf-8")
        args.readme.write_text(
            replace_block(text, markdown(payload, rel), str(args.readme)), encoding="utf-8"
        )
        print(f"updated the scaling block of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
