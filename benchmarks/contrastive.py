"""Contrastive benchmarks: one training iteration of the ``nce`` and ``drl`` objectives
(ebmflow-contrastive plugin) and ``ebmflow.evaluate.ksd`` against hand-written PyTorch doing
the same work, and against ebmkit's NCE, DRL and KSD where ebmkit is importable (a
benchmark-only environment; skipped with a note otherwise).

- NCE iteration: ν·B draws of a fitted Gaussian, one batched forward over data and noise,
  the logistic loss with a learnt log Z, backward, an Adam step.
- DRL iteration: a level per example, x_t and y, k Langevin steps on the conditional
  E(x, σ) + ‖x − y‖²/(2δ²) from x_t (the objective's default start), the energy gap,
  backward, an Adam step.
- KSD: the IMQ Stein-kernel U-statistic of n samples with a wild bootstrap (the score
  evaluated once). ebmkit's KSD uses an RBF kernel and has no bootstrap, so its case is
  timed without one (``n_bootstrap=0`` on our side): the same n × n Stein matrix.

Both sides use copies of the same network, the same optimizer settings and the same batch.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

import ebmflow
from benchmarks.harness import Case, Skip, pick
from benchmarks.samplers import NetEnergy, mlp_2_128_128_1

GROUP = "contrastive"


class ConditionalNet(nn.Module):
    """f(x, σ) = MLP([x, log σ]), 3-128-128-1, SiLU."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            self.net = nn.Sequential(
                nn.Linear(3, 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 1)
            )

    def forward(self, x, sigma):
        return self.net(torch.cat([x, sigma.log()[:, None]], 1)).squeeze(-1)


class ConditionalEnergy(ebmflow.Energy):
    noise_conditional = True

    def __init__(self, net: ConditionalNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, x, sigma=None):
        return self.net(x, ebmflow.broadcast_sigma(sigma, x))


def _adam(params):
    return torch.optim.Adam(params, lr=1e-3)


def hand_nce_step(net, log_z, optimizer, batch, mean, tril, nu, gen):
    n, d = batch.shape
    noise = mean + torch.randn(nu * n, d, generator=gen) @ tril.T
    both = torch.cat([batch, noise])
    diff = torch.linalg.solve_triangular(tril, (both - mean).T, upper=False)
    log_q = (
        -0.5 * diff.square().sum(0) - tril.diagonal().log().sum() - d * math.log(2 * math.pi) / 2
    )
    g = -net(both).squeeze(-1) - log_z - log_q - math.log(nu)
    loss = F.softplus(-g[:n]).mean() + nu * F.softplus(g[n:]).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def hand_drl_step(net, optimizer, batch, levels, gaps, k, b, gen):
    n = batch.shape[0]
    index = torch.randint(len(levels), (n,), generator=gen)
    sigma, delta = levels[index], gaps[index]
    x_t = batch + sigma[:, None] * torch.randn(batch.shape, generator=gen)
    y = x_t + delta[:, None] * torch.randn(batch.shape, generator=gen)
    eta = (0.5 * b * b * delta.square())[:, None]
    inv_var = delta.square().reciprocal()[:, None]
    noise = (2 * eta).sqrt()
    x = x_t
    for _ in range(k):
        x = x.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(net(x, sigma).sum(), x)
        x = x - eta * (g + (x - y) * inv_var) + noise * torch.randn(x.shape, generator=gen)
    x = x.detach()
    weight = (gaps.min() / delta).square()
    e = net(torch.cat([x_t, x]), torch.cat([sigma, sigma]))
    loss = (weight * (e[:n] - e[n:])).mean()
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def hand_ksd(x, score, n_bootstrap, gen, c=1.0, beta=-0.5):
    x, s = x.double(), score.double()
    n, d = x.shape
    r2 = torch.cdist(x, x).square()
    q = r2 + c * c
    sx = (s * x).sum(1)
    sxt = s @ x.T
    cross = sxt.T + sxt - sx[None, :] - sx[:, None]
    u = q.pow(beta) * (s @ s.T) + 2 * beta * q.pow(beta - 1) * cross
    u = u - 2 * beta * d * q.pow(beta - 1) - 4 * beta * (beta - 1) * q.pow(beta - 2) * r2
    u.fill_diagonal_(0.0)
    stat = u.sum() / (n * (n - 1))
    if n_bootstrap == 0:
        return float(stat)
    w = torch.randint(0, 2, (n_bootstrap, n), generator=gen).double() * 2 - 1
    draws = ((w @ u) * w).sum(1) / (n * (n - 1))
    return (1 + float((draws >= stat).sum())) / (1 + n_bootstrap)


def _ebmkit():
    try:
        import ebm
    except ImportError:
        return None
    import ebm.eval.goodness_of_fit
    import ebm.losses.drl
    import ebm.losses.nce

    return ebm


def cases(size: str = "full", **_options) -> list[Case | Skip]:
    iterations = pick(size, 5, 2, 1)
    batch_size, nu, k = pick(size, 512, 512, 32), 4, pick(size, 10, 10, 2)
    n_ksd, n_boot = pick(size, 1000, 500, 50), pick(size, 1000, 200, 10)
    data = ebmflow.create("dataset", "8gaussians").sample(
        batch_size, torch.Generator().manual_seed(0)
    )

    def seeded():
        return torch.Generator().manual_seed(1)

    out: list[Case | Skip] = []
    ebmkit = _ebmkit()

    # -- nce -------------------------------------------------------------------------------
    net = mlp_2_128_128_1()
    ours_net, ref_net = copy.deepcopy(net), copy.deepcopy(net)
    energy = NetEnergy(ours_net)
    nce = ebmflow.create("objective", "nce", noise_ratio=nu)
    nce(energy, data, generator=seeded())  # fits the noise on the batch
    mean, tril = nce.noise.mean.clone(), nce.noise.scale_tril.clone()
    log_z = nn.Parameter(torch.zeros(()))
    ours_opt = _adam([*ours_net.parameters(), *nce.parameters()])
    ref_opt = _adam([*ref_net.parameters(), log_z])

    def ours_nce():
        gen = seeded()
        for _ in range(iterations):
            o = nce(energy, data, generator=gen)
            ours_opt.zero_grad(set_to_none=True)
            o.loss.backward()
            ours_opt.step()

    def hand_nce():
        gen = seeded()
        for _ in range(iterations):
            hand_nce_step(ref_net, log_z, ref_opt, data, mean, tril, nu, gen)

    name = f"nce iteration (ν={nu}), MLP 2-128-128-1, batch {batch_size}"
    out.append(
        Case(
            name,
            GROUP,
            ours_nce,
            hand_nce,
            iterations,
            "iteration",
            1.05,
            "nce objective + Adam vs hand-written NCE loop",
        )
    )
    if ebmkit is None:
        out.append(Skip(f"{name} vs ebmkit", GROUP, "ebmkit is not installed"))
    else:
        kit_net = copy.deepcopy(net)
        kit_nce = ebmkit.losses.nce.NoiseContrastiveEstimation(
            torch.distributions.MultivariateNormal(mean, scale_tril=tril), noise_ratio=nu
        )
        kit_opt = _adam([*kit_net.parameters(), *kit_nce.parameters()])

        def kit_energy(x, net=kit_net):
            return net(x).squeeze(-1)

        def ebmkit_nce():
            for _ in range(iterations):
                o = kit_nce(kit_energy, data)
                kit_opt.zero_grad(set_to_none=True)
                o.loss.backward()
                kit_opt.step()

        out.append(
            Case(
                f"{name} vs ebmkit",
                GROUP,
                ours_nce,
                ebmkit_nce,
                iterations,
                "iteration",
                None,
                "ours / ebmkit's NoiseContrastiveEstimation, same noise and network",
            )
        )

    # -- drl -------------------------------------------------------------------------------
    cnet = ConditionalNet()
    ours_cnet, ref_cnet = copy.deepcopy(cnet), copy.deepcopy(cnet)
    cenergy = ConditionalEnergy(ours_cnet)
    schedule = {"name": "geometric", "sigma_min": 0.1, "sigma_max": 3.0}
    drl = ebmflow.create("objective", "drl", noise_schedule=schedule, n_levels=8, k=k)
    levels, gaps = drl.levels.float(), drl.gaps.float()
    ours_opt, ref_opt = _adam(ours_cnet.parameters()), _adam(ref_cnet.parameters())

    def ours_drl():
        gen = seeded()
        for _ in range(iterations):
            o = drl(cenergy, data, generator=gen)
            ours_opt.zero_grad(set_to_none=True)
            o.loss.backward()
            ours_opt.step()

    def hand_drl():
        gen = seeded()
        for _ in range(iterations):
            hand_drl_step(ref_cnet, ref_opt, data, levels, gaps, k, drl.step_factor, gen)

    name = f"drl iteration (k={k}), MLP 3-128-128-1, batch {batch_size}"
    out.append(
        Case(
            name,
            GROUP,
            ours_drl,
            hand_drl,
            iterations,
            "iteration",
            1.05,
            "drl objective + Adam vs hand-written recovery-likelihood loop",
        )
    )
    if ebmkit is None:
        out.append(Skip(f"{name} vs ebmkit", GROUP, "ebmkit is not installed"))
    else:
        kit_cnet = copy.deepcopy(cnet)
        ladder = torch.cat([levels.flip(0), levels[:1] * 0.5])  # 9 levels: 8 adjacent pairs
        kit_drl = ebmkit.losses.drl.DiffusionRecoveryLikelihood(
            ladder, mcmc_steps=k, step_scale=drl.step_factor**2
        )
        kit_opt = _adam(kit_cnet.parameters())

        def ebmkit_drl():
            for _ in range(iterations):
                o = kit_drl(kit_cnet, data)
                kit_opt.zero_grad(set_to_none=True)
                o.loss.backward()
                kit_opt.step()

        out.append(
            Case(
                f"{name} vs ebmkit",
                GROUP,
                ours_drl,
                ebmkit_drl,
                iterations,
                "iteration",
                None,
                "ours / ebmkit's DiffusionRecoveryLikelihood, same k, step and network",
            )
        )

    # -- ksd -------------------------------------------------------------------------------
    angles = torch.arange(8, dtype=torch.float32) * (math.pi / 4)
    means = 2.0 * torch.stack([angles.cos(), angles.sin()], 1)
    gmm = ebmflow.create("energy", "gmm", means=means.tolist(), stds=0.5)
    g = torch.Generator().manual_seed(4)
    x = means[torch.randint(8, (n_ksd,), generator=g)] + 0.5 * torch.randn(n_ksd, 2, generator=g)

    def ours_ksd():
        ebmflow.evaluate.ksd(x, gmm, n_bootstrap=n_boot, generator=seeded())

    def hand():
        hand_ksd(x, gmm.score(x), n_boot, seeded())

    name = f"ksd, IMQ, n = {n_ksd}, {n_boot} bootstrap draws, 2-D GMM score"
    out.append(
        Case(
            name,
            GROUP,
            ours_ksd,
            hand,
            1,
            "test",
            1.05,
            "ebmflow.evaluate.ksd vs hand-written U-statistic + wild bootstrap",
        )
    )
    if ebmkit is None:
        out.append(Skip("ksd vs ebmkit", GROUP, "ebmkit is not installed"))
    else:

        def ours_stat():
            ebmflow.evaluate.ksd(x, gmm, n_bootstrap=0)

        def ebmkit_ksd():
            ebmkit.eval.goodness_of_fit.kernel_stein_discrepancy(gmm, x)

        out.append(
            Case(
                f"ksd statistic, n = {n_ksd}, vs ebmkit",
                GROUP,
                ours_stat,
                ebmkit_ksd,
                1,
                "statistic",
                None,
                "ours (IMQ) / ebmkit's kernel_stein_discrepancy (RBF)",
            )
        )
    return out
