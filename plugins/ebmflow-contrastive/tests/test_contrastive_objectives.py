"""Tests of the objectives nce and drl: gradients against closed forms on Gaussian models,
training through the Trainer, checkpoints, and bad input.

Monte Carlo tolerances allow 4 standard errors, the standard error estimated from the
per-sample terms (sd/√N).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch
from ebmflow_contrastive import plugin
from torch import nn

import ebmflow
from ebmflow.testing import check_plugin


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def host():
    return check_plugin(plugin, name="contrastive")


class Quadratic(ebmflow.Energy):
    """E(x) = ½ θ‖x‖² with one learnable θ (float64)."""

    def __init__(self, theta: float = 1.0) -> None:
        super().__init__()
        self.event_shape = (2,)
        self.theta = nn.Parameter(torch.tensor(theta, dtype=torch.float64))

    def forward(self, x, sigma=None):
        return 0.5 * self.theta * x.square().sum(1)


class SmoothedQuadratic(ebmflow.Energy):
    """E(x, σ) = ½‖x‖² / (v + σ²), the data N(0, vI) smoothed at σ, with learnable v."""

    noise_conditional = True

    def __init__(self, v: float = 1.0) -> None:
        super().__init__()
        self.event_shape = (2,)
        self.v = nn.Parameter(torch.tensor(v, dtype=torch.float64))

    def forward(self, x, sigma=None):
        sigma = ebmflow.broadcast_sigma(sigma, x)
        return 0.5 * x.square().sum(1) / (self.v + sigma.square())


# -- the plugin ----------------------------------------------------------------------------


def test_plugin_registers_nce_and_drl_and_every_factory_imports(host):
    mine = [c for c in host.components("objective") if c.plugin == "contrastive"]
    assert sorted(c.name for c in mine) == ["drl", "nce"]
    assert all(c.summary for c in mine)
    assert host.get("objective", "contrastive:nce") is host.get("objective", "nce")


def test_importing_the_plugin_module_imports_no_torch():
    import ebmflow_contrastive

    root = os.path.dirname(os.path.dirname(ebmflow_contrastive.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, ebmflow_contrastive.plugin as p; p.ebmflow_objectives(); "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


# -- nce ---------------------------------------------------------------------------------


def test_nce_gradient_matches_the_closed_form(host):
    # fixed noise q = N(0, I): G(u) = −½θ‖u‖² − c + ½‖u‖² + log 2π − log ν, and
    # ∂J/∂θ = mean_x σ(−G)·½‖x‖² − ν mean_y σ(G)·½‖y‖², ∂J/∂c = mean_x σ(−G) − ν mean_y σ(G)
    nu, n = 3, 64
    objective = host.create("objective", "nce", noise_ratio=nu, noise_mean=0.0, noise_std=1.0)
    objective.double()
    energy = Quadratic(0.7)
    x = 1.5 * torch.randn(n, 2, generator=seeded(0), dtype=torch.float64)
    out = objective(energy, x, generator=seeded(1))
    out.loss.backward()
    y = torch.randn(nu * n, 2, generator=seeded(1), dtype=torch.float64)
    theta, c = 0.7, float(objective.log_z.detach())

    def g(u):
        r2 = u.square().sum(1)
        return -0.5 * theta * r2 - c + 0.5 * r2 + math.log(2 * math.pi) - math.log(nu)

    gx, gy = g(x), g(y)
    d_theta = (torch.sigmoid(-gx) * 0.5 * x.square().sum(1)).mean() - nu * (
        torch.sigmoid(gy) * 0.5 * y.square().sum(1)
    ).mean()
    d_c = torch.sigmoid(-gx).mean() - nu * torch.sigmoid(gy).mean()
    assert float(energy.theta.grad) == pytest.approx(float(d_theta), rel=1e-10)
    assert float(objective.log_z.grad) == pytest.approx(float(d_c), rel=1e-10)
    loss = torch.nn.functional.softplus(-gx).mean() + nu * torch.nn.functional.softplus(gy).mean()
    assert out.metrics["loss"] == pytest.approx(float(loss), rel=1e-10)


def test_nce_fits_the_gaussian_noise_on_the_first_batch_and_checkpoints_it(host, tmp_path):
    objective = host.create("objective", "nce", noise_scale=2.0)
    x = torch.randn(4000, 2, generator=seeded(2)) * torch.tensor([1.0, 3.0]) + 5.0
    objective(Quadratic(), x.double().float(), generator=seeded(3))
    assert objective.noise.mean.tolist() == pytest.approx([5.0, 5.0], abs=0.15)
    cov = objective.noise.scale_tril @ objective.noise.scale_tril.T
    assert cov.diagonal().tolist() == pytest.approx([4.0, 36.0], rel=0.1)
    ebmflow.save(objective, tmp_path / "nce")
    loaded = ebmflow.load(tmp_path / "nce")
    assert torch.equal(loaded.noise.scale_tril, objective.noise.scale_tril)
    assert torch.equal(loaded.noise.mean, objective.noise.mean)


@pytest.mark.slow
def test_nce_learns_a_gaussian_and_its_log_z(host):
    # data N(0, 4I): θ → ¼ and c → log(2π·4)
    objective = host.create("objective", "nce", noise_ratio=2, noise_scale=1.5).double()
    energy = Quadratic(1.0)
    opt = torch.optim.Adam([*energy.parameters(), *objective.parameters()], lr=0.05)
    g = seeded(4)
    for _ in range(300):
        x = 2.0 * torch.randn(512, 2, generator=g, dtype=torch.float64)
        opt.zero_grad()
        objective(energy, x, generator=g).loss.backward()
        opt.step()
    assert float(energy.theta.detach()) == pytest.approx(0.25, abs=0.03)
    assert float(objective.log_z) == pytest.approx(math.log(8 * math.pi), abs=0.1)


# -- drl ---------------------------------------------------------------------------------


@pytest.mark.parametrize("start", ["data", "noisy"])
def test_drl_gradient_matches_the_closed_form_of_short_run_langevin(host, start):
    # model E(x, σ) = ½‖x‖²/w, w = v + σ²: the conditional p(x | y) is N(m, s²I) with
    # m = y w/(w + δ²), s² = wδ²/(w + δ²); k ULA steps of size η from x₀ (x_t or y) give
    # x̃ − m = ρ^k (x₀ − m) + noise of variance 2η(1 − ρ^{2k})/(1 − ρ²), ρ = 1 − η/s², so
    # E[‖x̃‖² | x₀, y] in closed form and ∂L/∂v = −½ mean (‖x_t‖² − E[‖x̃‖² | x₀, y]) / w².
    objective = host.create(
        "objective",
        "drl",
        noise_schedule={"name": "geometric", "sigma_min": 0.1, "sigma_max": 1.0},
        n_levels=3,
        k=4,
        step_factor=0.7,
        start=start,
    )
    v0, n, d = 1.5, 4000, 2
    energy = SmoothedQuadratic(v0)
    x = torch.randn(n, d, generator=seeded(5), dtype=torch.float64)
    out = objective(energy, x, generator=seeded(6))
    out.loss.backward()
    sigma, delta, x_t, y = objective.draw(x, seeded(6))  # the same draws as the loss's
    w = v0 + sigma.square()
    m = y * (w / (w + delta.square()))[:, None]
    s2 = w * delta.square() / (w + delta.square())
    eta = 0.5 * 0.7**2 * delta.square()
    rho = 1 - eta / s2
    var_k = 2 * eta * (1 - rho ** (2 * 4)) / (1 - rho.square())
    x0 = x_t if start == "data" else y
    expected_sq = d * var_k + (m + rho[:, None] ** 4 * (x0 - m)).square().sum(1)
    weight = (objective.delta_min / delta).square()
    terms = -0.5 * weight * (x_t.square().sum(1) - expected_sq) / w.square()
    se = float(terms.std()) / math.sqrt(n)
    assert float(energy.v.grad) == pytest.approx(float(terms.mean()), abs=4 * se + 1e-12)


@pytest.mark.parametrize(("v0", "start"), [(1.0, "data"), (0.5, "data"), (0.5, "noisy")])
def test_drl_with_metropolis_samples_the_exact_conditional(host, v0, start):
    # with MALA steps the chains target p(x | y) = N(m, s²I) exactly (no ULA bias), so after
    # enough steps E[‖x̃‖² | y] = d s² + ‖m‖²; data N(0, I): the expected gradient is zero
    # at v = 1 and the closed form below elsewhere
    objective = host.create(
        "objective",
        "drl",
        noise_schedule={"name": "geometric", "sigma_min": 0.2, "sigma_max": 0.5},
        n_levels=2,
        k=40,
        step_factor=1.0,
        weighting=0.0,
        metropolis=True,
        start=start,
    )
    n, d = 4000, 2
    energy = SmoothedQuadratic(v0)
    x = torch.randn(n, d, generator=seeded(15), dtype=torch.float64)
    out = objective(energy, x, generator=seeded(16))
    out.loss.backward()
    assert 0.5 < out.metrics["acceptance_rate"] < 1.0
    sigma, delta, x_t, y = objective.draw(x, seeded(16))
    w = v0 + sigma.square()
    m = y * (w / (w + delta.square()))[:, None]
    s2 = w * delta.square() / (w + delta.square())
    terms = -0.5 * (x_t.square().sum(1) - d * s2 - m.square().sum(1)) / w.square()
    se = float(terms.std()) / math.sqrt(n)
    assert float(energy.v.grad) == pytest.approx(float(terms.mean()), abs=4 * se)
    if v0 == 1.0:
        assert abs(float(energy.v.grad)) < 4 * se


def test_drl_negatives_carry_no_gradient_and_the_loss_is_the_energy_gap(host):
    objective = host.create("objective", "drl", n_levels=4, k=3)
    energy = SmoothedQuadratic(0.8)
    x = torch.randn(256, 2, generator=seeded(7), dtype=torch.float64)
    out = objective(energy, x, generator=seeded(8))
    sigma, delta, x_t, y = objective.draw(x, seeded(8))
    g = seeded(8)
    objective.draw(x, g)  # advance the generator past the draws
    x_neg = objective.recover(energy, y, sigma, delta, g, start=x_t)
    weight = (objective.delta_min / delta).square()
    gap = (weight * (energy(x_t, sigma) - energy(x_neg, sigma))).mean()
    assert out.metrics["loss"] == pytest.approx(float(gap), rel=1e-10)
    (grad,) = torch.autograd.grad(out.loss, energy.v)
    (expect,) = torch.autograd.grad(gap, energy.v)
    assert float(grad) == pytest.approx(float(expect), rel=1e-10)


def test_drl_levels_and_gaps(host):
    objective = host.create(
        "objective",
        "drl",
        noise_schedule={"name": "geometric", "sigma_min": 0.1, "sigma_max": 0.4},
        n_levels=3,
    )
    assert objective.levels.tolist() == pytest.approx([0.1, 0.2, 0.4])
    assert objective.gaps.tolist() == pytest.approx(
        [math.sqrt(0.03), math.sqrt(0.12), math.sqrt(0.12) * 2]
    )
    assert (objective.sigma_min, objective.sigma_max) == pytest.approx((0.1, 0.4))


@pytest.mark.parametrize("step_factor", [0.3, 3.0])
def test_drl_adapts_each_levels_step_toward_the_target_acceptance(host, step_factor):
    # the exact model of N(0, I) data: its conditionals are Gaussian, MALA's acceptance falls
    # as the step grows, so from a step far too small (0.3) or too large (3.0) each level's
    # adapted factor must move the mean acceptance to the target. After 300 calls of 512
    # chains the per-level mean over 5 steps has sd ≈ 0.02; 0.05 is the tolerance.
    objective = host.create(
        "objective",
        "drl",
        noise_schedule={"name": "geometric", "sigma_min": 0.2, "sigma_max": 0.8},
        n_levels=3,
        k=5,
        step_factor=step_factor,
        metropolis=True,
        target_acceptance=0.6,
    )
    energy = SmoothedQuadratic(1.0)
    g = seeded(21)
    for _ in range(300):
        x = torch.randn(512, 2, generator=g, dtype=torch.float64)
        objective(energy, x, generator=g)
    scale = objective.log_step_scale.exp()
    assert (scale > 1).all() if step_factor == 0.3 else (scale < 1).all()
    rates = []
    for _ in range(20):
        x = torch.randn(512, 2, generator=g, dtype=torch.float64)
        rates.append(objective(energy, x, generator=g).metrics["acceptance_rate"])
    assert sum(rates) / len(rates) == pytest.approx(0.6, abs=0.05)
    assert "log_step_scale" in objective.state_dict()


def test_drl_without_adaptation_has_no_step_state(host):
    assert "log_step_scale" not in host.create("objective", "drl").state_dict()


# -- both: the Trainer, reproducibility, bad input -----------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "conditional"),
    [("nce", {}, False), ("drl", {"n_levels": 4, "k": 3}, True)],
)
def test_trainer_runs_the_objective_and_is_reproducible(host, name, kwargs, conditional, tmp_path):
    def train(out):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            energy = ebmflow.create(
                "energy", "mlp", dim=2, widths=[16, 16], noise_conditional=conditional
            )
        trainer = ebmflow.Trainer(
            energy,
            host.create("objective", name, **kwargs),
            data=host.create("dataset", "8gaussians"),
            steps=6,
            batch_size=64,
            progress=False,
            host=host,
            checkpoint_dir=out,
        )
        log = trainer.fit()
        return energy, log

    e1, log1 = train(tmp_path / "a")
    e2, _ = train(tmp_path / "b")
    assert log1[-1]["step"] == 6 and all(math.isfinite(v["loss"]) for v in log1)
    for p, q in zip(e1.parameters(), e2.parameters()):
        assert torch.equal(p, q)


def test_objectives_leave_the_global_rng_alone(host):
    state = torch.get_rng_state()
    x = torch.randn(32, 2, generator=seeded(9))
    host.create("objective", "nce")(Quadratic(), x.double(), generator=seeded(1))
    host.create("objective", "drl", k=2)(SmoothedQuadratic(), x.double(), generator=seeded(1))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("nce", {"noise_ratio": 0}, "nce: noise_ratio must be an integer ≥ 1, got 0"),
        ("nce", {"noise_scale": -1.0}, "nce: noise_scale must be a number > 0, got -1.0"),
        (
            "nce",
            {"noise_std": [1.0, 0.0]},
            "nce: noise_std must be a number or a list of numbers > 0",
        ),
        ("nce", {"log_z_init": float("nan")}, "nce: log_z_init must be a finite number"),
        ("drl", {"n_levels": 1}, "drl: n_levels must be an integer ≥ 2, got 1"),
        ("drl", {"k": 0}, "drl: k must be an integer ≥ 1, got 0"),
        ("drl", {"step_factor": 0}, "drl: step_factor must be a number > 0, got 0"),
        ("drl", {"ratio": 1.0}, "drl: ratio must be a number > 1, got 1.0"),
        ("drl", {"weighting": -1}, "drl: weighting must be a number ≥ 0, got -1"),
        ("drl", {"metropolis": "yes"}, "drl: metropolis must be true or false, got 'yes'"),
        ("drl", {"start": "y"}, "drl: start must be 'data' .* or 'noisy' .*, got 'y'"),
        (
            "drl",
            {"target_acceptance": 0.6},
            "drl: target_acceptance needs metropolis = true",
        ),
        (
            "drl",
            {"target_acceptance": 1.0, "metropolis": True},
            r"drl: target_acceptance must lie in \(0, 1\), got 1.0",
        ),
    ],
)
def test_bad_arguments_name_the_objective_the_value_and_what_is_accepted(host, name, kwargs, match):
    with pytest.raises(ebmflow.ConfigError, match=match):
        host.create("objective", name, **kwargs)


def test_energies_that_do_not_fit_are_refused_with_a_way_out(host):
    x = torch.randn(16, 2, dtype=torch.float64)
    with pytest.raises(ebmflow.ConfigError, match=r"nce: .*noise-conditional.*'drl'"):
        host.create("objective", "nce")(SmoothedQuadratic(), x)
    with pytest.raises(ebmflow.ConfigError, match="drl: Quadratic must be a noise-conditional"):
        host.create("objective", "drl")(Quadratic(), x)
    with pytest.raises(ebmflow.ConfigError, match="nce: noise_mean has 3 values; the data has 2"):
        host.create("objective", "nce", noise_mean=[0.0, 0.0, 0.0])(Quadratic(), x)
