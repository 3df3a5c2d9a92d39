"""Probability-flow ODE benchmarks: one NLL evaluation by ``ebmflow_ode.ode_log_likelihood``
against a hand-written torchdiffeq loop with the same solver, grid and probes.

The hand-written loop is what a careful user writes: a drift function that detaches x,
requires grad, evaluates the energy, takes the score by ``torch.autograd.grad`` with
``create_graph=True`` and the divergence by one more backward pass per dimension (exact) or
per probe (Hutchinson), and hands it to ``torchdiffeq.odeint`` with Euler steps uniform in
log σ; then log N(x_T; 0, σ_max² I) plus the integral. Both sides evaluate the same network
on the same points with the same Rademacher probes, so they do identical arithmetic; the
unit is one drift evaluation (one Euler step). Needs the ebmflow-ode distribution.
"""

from __future__ import annotations

import math

import torch
from ebmflow_ode import ode_log_likelihood
from torchdiffeq import odeint

import ebmflow
from benchmarks.harness import Case, pick

SIGMA_MIN, SIGMA_MAX = 0.1, 3.0


def hand_ode_nll(energy, x, n_steps, probes):
    """−mean log p_σmin(x) by Euler steps in u = log σ, written out by hand."""
    u0, u1 = math.log(SIGMA_MIN), math.log(SIGMA_MAX)
    grid = torch.linspace(u0, u1, n_steps + 1, dtype=torch.float64)

    def drift(u, state):
        sigma = math.exp(float(u))
        with torch.enable_grad():
            y = state[0].detach().requires_grad_(True)
            e = energy(y, torch.full((y.shape[0],), sigma, dtype=y.dtype))
            (grad,) = torch.autograd.grad(e.sum(), y, create_graph=True)
            f = grad * (sigma * sigma)  # −σ² s with s = −∇E
            div = torch.zeros(y.shape[0], dtype=y.dtype)
            if probes is None:
                for i in range(y.shape[1]):
                    (g,) = torch.autograd.grad(f[:, i].sum(), y, retain_graph=True)
                    div = div + g[:, i]
            else:
                for v in probes:
                    (g,) = torch.autograd.grad(f, y, v, retain_graph=True)
                    div = div + (g * v).sum(1)
                div = div / probes.shape[0]
        return f.detach(), div.detach()

    start = (x, torch.zeros(x.shape[0], dtype=x.dtype))
    times = torch.tensor([u0, u1], dtype=torch.float64)
    options = {"grid_constructor": lambda f, y, t: grid}
    x_end, integral = (p[-1] for p in odeint(drift, start, times, method="euler", options=options))
    d = x.shape[1]
    log_prior = -0.5 * (
        x_end.square().sum(1) / SIGMA_MAX**2 + d * math.log(2 * math.pi * SIGMA_MAX**2)
    )
    return float(-(log_prior + integral).mean())


def cases(size: str = "full", **_options) -> list[Case]:
    n_points = pick(size, 1024, 256, 16)
    n_steps = pick(size, 20, 10, 2)
    out = []
    for label, dim, widths, divergence, n_probes in (
        ("2-D MLP 128-128, exact divergence", 2, [128, 128], "exact", 1),
        ("16-D MLP 256-256, Hutchinson 2 probes", 16, [256, 256], "hutchinson", 2),
    ):
        energy = ebmflow.create(
            "energy", "mlp", dim=dim, widths=widths, activation="silu", noise_conditional=True
        )
        x = torch.randn(n_points, dim, generator=torch.Generator().manual_seed(0))
        probes = None
        if divergence == "hutchinson":
            # the draw ebmflow_ode makes from the same seed: int8 bits mapped to ±1
            gen = torch.Generator().manual_seed(1)
            bits = torch.randint(0, 2, (n_probes, n_points, dim), generator=gen, dtype=torch.int8)
            probes = bits.to(x.dtype) * 2 - 1

        def ours(energy=energy, x=x, divergence=divergence, n_probes=n_probes):
            ode_log_likelihood(
                energy,
                x,
                sigma_min=SIGMA_MIN,
                sigma_max=SIGMA_MAX,
                solver="euler",
                n_steps=n_steps,
                divergence=divergence,
                n_probes=n_probes,
                batch_size=n_points,
                generator=torch.Generator().manual_seed(1),
            )

        def reference(energy=energy, x=x, probes=probes):
            hand_ode_nll(energy, x, n_steps, probes)

        out.append(
            Case(
                f"ode NLL, {label}, {n_points} points",
                "ode",
                ours,
                reference,
                n_steps,
                unit="evaluation",
                target=1.05,
                note="vs a hand-written torchdiffeq Euler loop, same probes",
            )
        )
    return out
