"""Benchmarks of ebmflow-dynamics: ``nuts``, ``underdamped-langevin`` and ``uha`` against
hand-written loops of the same algorithms, against ebmkit's versions where ebmkit is
installed, and NUTS's cost per effective sample as the dimension grows.

The hand-written loops are what a careful user writes with plain PyTorch (detach, require
grad, forward, ``torch.autograd.grad``, update) and draw their random numbers in the same
order as ebmflow, so both sides do identical arithmetic: the same trees for NUTS, hence
the same gradient evaluations, so the ratio of times is the ratio per gradient evaluation.
Every repetition steps from the same starting state (warmed up once), as in
:mod:`benchmarks.tempering`: chaining would time different positions.

The ebmkit comparison (ebmkit's ``ebm.samplers``, which a benchmark-only environment may
have; ebmflow's own never does) runs ebmkit's NUTS (warm-up off, the same fixed step size
and maximum depth) and its underdamped Langevin (symplectic Euler, one gradient and one
noise draw per step, like BAOAB) on the same energy and number of chains; its random
numbers come from torch's global generator, so its trees differ from ours but have the
same distribution.
"""

from __future__ import annotations

import math
import time

import torch
from ebmflow_dynamics import NUTS, UHA, UnderdampedLangevin

import ebmflow
from benchmarks.harness import Case, Skip, Value, pick
from benchmarks.samplers import GMMAutograd, NetEnergy, mlp_2_128_128_1


def _grad(f, x):
    x = x.detach().requires_grad_(True)
    e = f(x)
    (g,) = torch.autograd.grad(e.sum(), x)
    return e.detach(), g


def hand_obabo(f, x, p, g, h, gamma, n_steps, gen):
    a = math.exp(-0.5 * gamma * h)
    b = math.sqrt(1 - a * a)
    for _ in range(n_steps):
        p = a * p + b * torch.randn(x.shape, generator=gen)
        p = p - 0.5 * h * g
        x = x + h * p
        _, g = _grad(f, x)
        p = p - 0.5 * h * g
        p = a * p + b * torch.randn(x.shape, generator=gen)
    return x, p


def hand_baoab(f, x, p, g, h, gamma, n_steps, gen):
    a = math.exp(-gamma * h)
    b = math.sqrt(1 - a * a)
    for _ in range(n_steps):
        p = p - 0.5 * h * g
        x = x + 0.5 * h * p
        p = a * p + b * torch.randn(x.shape, generator=gen)
        x = x + 0.5 * h * p
        _, g = _grad(f, x)
        p = p - 0.5 * h * g
    return x, p


def hand_uha(f, x, p, g, eps, n_leapfrog, damping, n_steps, gen):
    b = math.sqrt(1 - damping**2)
    for _ in range(n_steps):
        p = damping * p + b * torch.randn(x.shape, generator=gen)
        for _ in range(n_leapfrog):
            p = p - 0.5 * eps * g
            x = x + eps * p
            _, g = _grad(f, x)
            p = p - 0.5 * eps * g
    return x, p


def _turning(p_minus, p_plus, rho):
    return ((p_minus * rho).sum(1) <= 0) | ((p_plus * rho).sum(1) <= 0)


def hand_nuts(f, x, eps, max_depth, n_steps, gen, max_error=1000.0):
    """Multinomial NUTS, one tree per chain, the chains still building evaluated together
    (the algorithm of ``ebmflow_dynamics.nuts``, unit mass), written out plainly, with the
    acceptance statistic that a warm-up reads."""
    b = x.shape[0]
    e, g = _grad(f, x)
    stats = []
    for _ in range(n_steps):
        acc, count = torch.zeros(b), torch.zeros(b)
        p0 = torch.randn(x.shape, generator=gen)
        h0 = e + 0.5 * (p0 * p0).sum(1)
        ends = {+1: [x.clone(), p0.clone(), g.clone()], -1: [x.clone(), p0.clone(), g.clone()]}
        rho, log_w = p0.clone(), torch.zeros(b)
        prop = [x.clone(), e.clone(), g.clone()]
        running = torch.arange(b)
        for j in range(max_depth):
            n = running.shape[0]
            fwd = torch.rand(n, generator=gen) < 0.5
            col = fwd.unsqueeze(1)
            y = torch.where(col, ends[1][0][running], ends[-1][0][running])
            q = torch.where(col, ends[1][1][running], ends[-1][1][running])
            gy = torch.where(col, ends[1][2][running], ends[-1][2][running])
            step = torch.where(fwd, eps, -eps).unsqueeze(1)
            chains, hc = running, h0[running]
            ck_p = [None] * (j + 1)
            ck_r = [None] * (j + 1)
            r_sub, lw, a = torch.zeros_like(y), torch.full((n,), -math.inf), torch.zeros(n)
            px, pe, pg = y, torch.empty(n), gy
            for k in range(2**j):
                q = q - 0.5 * step * gy
                y = y + step * q
                ey, gy = _grad(f, y)
                q = q - 0.5 * step * gy
                err = torch.nan_to_num(ey + 0.5 * (q * q).sum(1) - hc, nan=math.inf)
                a = a + torch.exp(-err.clamp(min=0.0))
                lw_new = torch.logaddexp(lw, -err)
                take = torch.rand(chains.shape[0], generator=gen).log() < -err - lw_new
                px = torch.where(take.unsqueeze(1), y, px)
                pg = torch.where(take.unsqueeze(1), gy, pg)
                pe = torch.where(take, ey, pe)
                lw, r_sub = lw_new, r_sub + q
                top = bin(k >> 1).count("1")
                bad = err > max_error
                if k % 2 == 0:
                    ck_p[top], ck_r[top] = q, r_sub
                else:
                    ones = len(bin(k)) - len(bin(k).rstrip("1"))
                    for s in range(top, top - ones, -1):
                        bad = bad | _turning(ck_p[s], q, r_sub - ck_r[s] + ck_p[s])
                if bool(bad.any()):
                    acc[chains[bad]] += a[bad]
                    count[chains[bad]] += k + 1
                    keep = ~bad
                    chains, y, q, gy, hc, step, a = (
                        t[keep] for t in (chains, y, q, gy, hc, step, a)
                    )
                    ck_p = [None if c is None else c[keep] for c in ck_p]
                    ck_r = [None if c is None else c[keep] for c in ck_r]
                    r_sub, lw, px, pe, pg = (t[keep] for t in (r_sub, lw, px, pe, pg))
                    if chains.shape[0] == 0:
                        break
            else:
                acc[chains] += a
                count[chains] += 2**j
            if chains.shape[0] == 0:
                break
            old = log_w[chains]
            take = torch.rand(chains.shape[0], generator=gen).log() < lw - old
            prop[0][chains[take]], prop[1][chains[take]], prop[2][chains[take]] = (
                px[take],
                pe[take],
                pg[take],
            )
            log_w[chains] = torch.logaddexp(old, lw)
            rho[chains] += r_sub
            went = fwd[torch.searchsorted(running, chains)]
            for sign, sel in ((1, went), (-1, ~went)):
                ends[sign][0][chains[sel]] = y[sel]
                ends[sign][1][chains[sel]] = q[sel]
                ends[sign][2][chains[sel]] = gy[sel]
            turned = _turning(ends[-1][1][chains], ends[1][1][chains], rho[chains])
            running = chains[~turned]
            if running.shape[0] == 0:
                break
        x, e, g = prop
        stats.append(acc / count)
    return x, stats


class FnEnergy(ebmflow.Energy):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x, sigma=None):
        return self.f(x)


def _gaussian_fn(std):
    inv_var = 1.0 / std**2

    def f(x):
        return 0.5 * (x * x * inv_var).sum(1)

    return f


def _ebmkit():
    try:
        from ebm.samplers import NUTS as KitNUTS
        from ebm.samplers import UnderdampedLangevin as KitUnderdamped
    except ImportError:
        return None
    return KitNUTS, KitUnderdamped


def cases(size: str = "full", **_options) -> list:
    steps = pick(size, 50, 20, 2)
    nuts_steps = pick(size, 10, 5, 1)
    chains_mlp, chains_nuts = pick(size, 1024, 1024, 64), pick(size, 256, 256, 16)
    gen_x = torch.Generator().manual_seed(0)
    net = mlp_2_128_128_1()
    mlp = NetEnergy(net)
    f_mlp = lambda x: net(x).squeeze(-1)  # noqa: E731
    gmm = GMMAutograd()
    f_gmm = gmm.forward
    dim = pick(size, 100, 100, 10)
    std = torch.logspace(-1, 0, dim)
    f_gauss = _gaussian_fn(std)

    def seeded(seed: int = 1) -> torch.Generator:
        return torch.Generator().manual_seed(seed)

    out: list = []
    # momentum samplers: both sides start from the same warmed state, momentum included
    x_mlp = torch.randn(chains_mlp, 2, generator=gen_x)
    for label, sampler, hand in (
        (
            "underdamped-langevin (BAOAB)",
            UnderdampedLangevin(0.05, friction=1.0),
            lambda x, p, g: hand_baoab(f_mlp, x, p, g, 0.05, 1.0, steps, seeded()),
        ),
        (
            "underdamped-langevin (OBABO)",
            UnderdampedLangevin(0.05, friction=1.0, splitting="obabo"),
            lambda x, p, g: hand_obabo(f_mlp, x, p, g, 0.05, 1.0, steps, seeded()),
        ),
        (
            "uha (L=3, damping 0.9)",
            UHA(0.05, n_leapfrog=3, damping=0.9),
            lambda x, p, g: hand_uha(f_mlp, x, p, g, 0.05, 3, 0.9, steps // 3 or 1, seeded()),
        ),
    ):
        state = sampler.run(mlp, x_mlp, 5, generator=seeded(2)).state
        n = steps if isinstance(sampler, UnderdampedLangevin) else steps // 3 or 1

        def ours(sampler=sampler, state=state, n=n):
            return sampler.continue_run(mlp, state, n, generator=seeded())

        out.append(
            Case(
                f"{label}, MLP 2-128-128-1, {chains_mlp} chains",
                "dynamics",
                ours,
                lambda hand=hand, state=state: hand(
                    state.x, state.extras["momentum"], -state.score
                ),
                n,
                target=1.05,
                note="vs hand-written loop, same noise",
            )
        )
    # NUTS against the same algorithm by hand: identical trees, so the time ratio is the
    # ratio per gradient evaluation
    for label, f, x0, eps in (
        ("8-mode GMM", f_gmm, 4 * torch.randn(chains_nuts, 2, generator=gen_x), 0.3),
        (
            f"{dim}-D Gaussian, condition number 100",
            f_gauss,
            std * torch.randn(chains_nuts // 4, dim, generator=gen_x),
            0.05,
        ),
    ):
        energy = FnEnergy(f)
        nuts = NUTS(step_size=eps, max_tree_depth=8)
        state = nuts.run(energy, x0, 3, generator=seeded(2)).state
        check = nuts.continue_run(energy, state, 1, generator=seeded()).samples
        if not torch.allclose(check, hand_nuts(f, state.x, eps, 8, 1, seeded())[0], atol=1e-5):
            raise AssertionError(f"hand-written NUTS and ebmflow's differ on the {label}")
        out.append(
            Case(
                f"nuts, {label}, {x0.shape[0]} chains",
                "dynamics",
                lambda nuts=nuts, energy=energy, state=state: nuts.continue_run(
                    energy, state, nuts_steps, generator=seeded()
                ),
                lambda f=f, state=state, eps=eps: hand_nuts(
                    f, state.x, eps, 8, nuts_steps, seeded()
                ),
                nuts_steps,
                target=1.15,
                note="vs hand-written NUTS, identical trees (per gradient evaluation)",
            )
        )
    out.extend(_ebmkit_cases(size, mlp, f_mlp, x_mlp, f_gmm, chains_nuts, steps, nuts_steps))
    out.extend(_scaling(size))
    return out


def _ebmkit_cases(size, mlp, f_mlp, x_mlp, f_gmm, chains, steps, nuts_steps) -> list:
    kit = _ebmkit()
    if kit is None:
        return [Skip("vs ebmkit", "dynamics", "ebmkit is not installed")]
    KitNUTS, KitUnderdamped = kit
    gen = torch.Generator().manual_seed(3)
    x_gmm = 4 * torch.randn(chains, 2, generator=gen)
    energy = FnEnergy(f_gmm)
    nuts = NUTS(step_size=0.3, max_tree_depth=8)
    state = nuts.run(energy, x_gmm, 3, generator=torch.Generator().manual_seed(2)).state
    kit_nuts = KitNUTS(step_size=0.3, steps=nuts_steps, warmup=0, max_depth=8)
    kit_ul = KitUnderdamped(step_size=0.05, friction=1.0, steps=steps)
    ul = UnderdampedLangevin(0.05, friction=1.0)
    return [
        Case(
            f"nuts vs ebmkit NUTS, 8-mode GMM, {chains} chains",
            "dynamics",
            lambda: nuts.continue_run(energy, state, nuts_steps, generator=torch.Generator()),
            lambda: kit_nuts.sample(f_gmm, state.x),
            nuts_steps,
            note="ebmkit 0.16 (lockstep, masked); same ε and max depth, no warm-up",
        ),
        Case(
            f"underdamped-langevin vs ebmkit UnderdampedLangevin, MLP, {x_mlp.shape[0]} chains",
            "dynamics",
            lambda: ul.run(mlp, x_mlp, steps, generator=torch.Generator()),
            lambda: kit_ul.sample(f_mlp, x_mlp),
            steps,
            note="ebmkit 0.16 (symplectic Euler); one gradient, one noise draw per step",
        ),
    ]


def _scaling(size: str) -> list:
    """NUTS's cost per effective sample on Gaussians with condition number 100 (standard
    deviations log-spaced from 0.1 to 1) at dimension 10, 100, 1000: gradient evaluations
    and CPU milliseconds per effective sample (the smallest ESS over the coordinates),
    after a warm-up with the mass matrix."""
    dims = pick(size, (10, 100, 1000), (10, 100), (10,))
    warm, draws, chains = pick(size, 300, 150, 30), pick(size, 300, 150, 20), 16
    out = []
    for dim in dims:
        figures: dict[str, float] = {}

        def measure(dim=dim, figures=figures):
            if figures:
                return
            std = torch.logspace(-1, 0, dim, dtype=torch.float64)
            energy = FnEnergy(_gaussian_fn(std))
            gen = torch.Generator().manual_seed(dim)
            x0 = std * torch.randn(chains, dim, generator=gen, dtype=torch.float64)
            sampler = NUTS(step_size=0.05, adapt_steps=warm)
            state = sampler.run(energy, x0, warm, generator=gen).state
            start, before = time.thread_time(), float(state.extras["leapfrog_steps"].sum())
            run = sampler.continue_run(energy, state, draws, generator=gen, thin=1)
            seconds = time.thread_time() - start
            grads = float(run.state.extras["leapfrog_steps"].sum()) - before
            ess = float(ebmflow.evaluate.ess(run.trajectory).min())
            figures.update(grads=grads / ess, ms=1e3 * seconds / ess)

        def grads(measure=measure, figures=figures):
            measure()
            return figures["grads"]

        def ms(measure=measure, figures=figures):
            measure()
            return figures["ms"]

        out.append(
            Value(
                f"nuts cost per effective sample, {dim}-D Gaussian",
                "dynamics",
                grads,
                "gradients/ESS",
                repeats=1,
                note=f"{chains} chains, min ESS over coordinates",
            )
        )
        out.append(
            Value(
                f"nuts time per effective sample, {dim}-D Gaussian",
                "dynamics",
                ms,
                "ms/ESS",
                repeats=1,
                note="CPU time of the sampling phase",
            )
        )
    return out
