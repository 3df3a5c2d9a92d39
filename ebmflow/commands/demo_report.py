"""What ``ebmflow demo`` shows a user at the end of a run: its figures and its summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_figures(energy, dataset, data_name, out, s, result, true_nll, history, test, samples):
    """The demo's three figures in ``out`` (landscape beside the true density, samples over
    the data, the training curve); returns their paths."""
    import torch

    from ebmflow import plotting
    from ebmflow.energy import broadcast_sigma

    n = s.landscape_resolution
    (x0, x1), (y0, y1) = dataset.bounds
    xs = torch.linspace(x0, x1, n, dtype=torch.float64)
    ys = torch.linspace(y0, y1, n, dtype=torch.float64)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")  # (n_y, n_x), row i at y_i
    grid = torch.stack([gx.flatten(), gy.flatten()], dim=1)
    dtype = next(energy.parameters()).dtype
    with torch.no_grad():
        points = grid.to(dtype)
        e = energy(points, broadcast_sigma(s.sigma_min, points)).double()
    learned = torch.exp(-e - result.log_z).reshape(n, n)
    shown = {name: x for name, x in samples.items() if x is not None}
    true = dataset.log_prob(grid).exp().reshape(n, n)
    paths = [
        plotting.plot_landscape(
            e.reshape(n, n),
            learned,
            true,
            dataset.bounds,
            out / "landscape.png",
            title=f"{data_name}: the learned energy landscape beside the true density",
            names=(
                f"learned energy E(x, σ={s.sigma_min:g})",
                f"learned density exp(−E)/Z: NLL {result.nll:.3f}",
                f"true density: NLL {true_nll:.3f}",
            ),
        ),
        plotting.plot_samples_over_data(
            shown,
            test[: max(len(v) for v in shown.values())],
            out / "samples.png",
            title=f"{data_name}: samples (red) over data (grey)",
            bounds=dataset.bounds,
        ),
        plotting.plot_training_curve(
            history,
            out / "training.png",
            title=f"multiscale-dsm loss (λ(σ) = σ; means over {min(s.log_every, s.steps)} "
            f"steps), {s.steps} steps",
        ),
    ]
    return [str(p) for p in paths]


def print_summary(summary: dict[str, Any], out: Path) -> None:
    """The summary lines a user reads at the end of ``ebmflow demo`` (``summary.json`` in
    ``out`` holds the same figures)."""
    sigma = f"{summary['sigma_min']:g}"
    lines = [
        "",
        f"summary ({summary['data']}; the five stages took {summary['wall_seconds']:.1f} s "
        f"wall, {summary['cpu_seconds']:.1f} s CPU):",
        f"  exact NLL at σ = {sigma}: {summary['nll']:.4f} ± {summary['nll_stderr']:.4f} "
        f"nats; on the same {summary['n_eval']} samples the floor (the data smoothed at "
        f"σ = {sigma}) is {summary['floor_nll']:.4f} (gap {summary['floor_gap']:+.4f}) and "
        f"the true density {summary['true_nll']:.4f} (gap {summary['nll_gap']:+.4f})",
    ]
    for message in summary["quadrature_warnings"]:
        lines.append(f"  warning: {message}")
    al = summary["annealed_langevin"]
    lines.append(
        f"  annealed Langevin: {al['chains']} chains, {al['steps']} steps, MMD² to "
        f"the data {al['mmd2']:.2e} (two data sets: {summary['mmd2_reference']:.2e})"
    )
    pt = summary["parallel_tempering"]
    if "skipped" in pt:
        lines.append(f"  {pt['skipped']}")
    else:
        rates = ", ".join(f"{r:.2f}" for r in pt["swap_acceptance"])
        lines.append(
            f"  parallel tempering: swap acceptance {pt['swap_acceptance_mean']:.2f} "
            f"(pairs {rates}), MALA acceptance {pt['mala_acceptance']:.2f}, MMD² to "
            f"the data {pt['mmd2']:.2e}"
        )
    if summary["figures"]:
        lines.append(f"  figures: {', '.join(summary['figures'])}")
    else:
        lines.append(f"  {summary['figure_note']}")
    lines.append(
        f"  checkpoint: {summary['checkpoint']}  (try: ebmflow evaluate "
        f"{summary['checkpoint']} --data {summary['data']} --sigma "
        f"{summary['sigma_min']:g}); summary: {out / 'summary.json'}"
    )
    print("\n".join(lines), flush=True)
