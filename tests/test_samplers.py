"""Statistical and behavioural tests of the built-in samplers.

Tolerances come from Monte Carlo error: for N independent draws of a N(0, v) variable the
sample variance has standard error v·sqrt(2/N); assertions allow 4 standard errors unless
stated otherwise (a false failure rate of about 6e-5 per assertion).
"""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow.samplers.annealed_langevin import AnnealedLangevin
from ebmflow.samplers.hmc import HMC
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA


class IsoGaussian(ebmflow.Energy):
    """E(x) = ½‖x − μ‖²/s² (unnormalised N(μ, s²I)), by autograd like a user's network."""

    def __init__(self, dim: int = 1, std: float = 1.0, mean: float = 0.0) -> None:
        super().__init__()
        self.event_shape = (dim,)
        self.std, self.mean = std, mean

    def forward(self, x, sigma=None):
        return 0.5 * ((x - self.mean) ** 2).sum(dim=1) / self.std**2


class SmoothedGaussian(ebmflow.Energy):
    """Noise-conditional E(x, σ) of N(μ, s²) convolved with N(0, σ²): ½(x − μ)²/(s² + σ²)."""

    noise_conditional = True

    def __init__(self, std: float, mean: float) -> None:
        super().__init__()
        self.std, self.mean = std, mean

    def forward(self, x, sigma=None):
        var = self.std**2 + sigma.reshape(-1, 1) ** 2
        return 0.5 * (((x - self.mean) ** 2) / var).sum(dim=1)


class Quartic(ebmflow.Energy):
    def forward(self, x, sigma=None):
        return (x**4).sum(dim=1)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def four_se(variance: float, n: int) -> float:
    return 4 * variance * math.sqrt(2.0 / n)


@pytest.mark.parametrize("eta", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("s", [1.0, 2.0])
def test_ula_matches_stationary_variance_formula(eta, s):
    # On N(0, s²), x' = (1 − η/s²) x + √(2η) ε is AR(1) with stationary variance
    # 2η / (1 − (1 − η/s²)²) = s² / (1 − η/(2s²)). A √η noise bug would give half of it.
    n = 40_000
    expected = s**2 / (1 - eta / (2 * s**2))
    x0 = torch.zeros(n, 1)
    steps = math.ceil(30 / (eta / s**2))  # contraction (1 − η/s²)^steps < e^−30
    result = Langevin(step_size=eta).run(IsoGaussian(std=s), x0, steps, generator=seeded(0))
    var = result.samples.var().item()
    assert abs(var - expected) < four_se(expected, n), (var, expected)


@pytest.mark.parametrize(
    "sampler", [MALA(step_size=0.5), HMC(step_size=0.4, n_leapfrog=4)], ids=["mala", "hmc"]
)
def test_mh_samplers_give_unit_variance_on_10d_gaussian(sampler):
    # 4000 chains × 10 dims = 40 000 draws (independent across chains and dimensions);
    # 4·SE of the variance is 0.028 < the 0.03 DESIGN.md allows. Chains start far away
    # (x0 ~ N(0, 9 I)) and run long enough to forget it.
    n_chains, dim = 4000, 10
    gen = seeded(1)
    x0 = 3.0 * torch.randn(n_chains, dim, generator=gen)
    result = sampler.run(IsoGaussian(dim=dim), x0, 300, generator=gen)
    var = result.samples.var(dim=0).mean().item()
    mean = result.samples.mean().item()
    assert abs(var - 1.0) < 0.03
    assert abs(mean) < 4 / math.sqrt(n_chains * dim)  # SE of the mean: 1/√N
    assert 0.3 < result.diagnostics["acceptance_rate"] <= 1.0


def test_mala_acceptance_tends_to_one_as_step_size_shrinks():
    gen = seeded(2)
    x0 = torch.randn(2000, 10, generator=gen)
    rates = [
        MALA(step_size=eta)
        .run(IsoGaussian(dim=10), x0, 20, generator=gen)
        .diagnostics["acceptance_rate"]
        for eta in (0.5, 0.1, 0.01, 1e-4)
    ]
    assert rates == sorted(rates), rates
    # MALA's rejection rate is O(η^{3/2}) per step: at η = 1e-4 essentially every move is accepted
    assert rates[-1] > 0.999


@pytest.mark.parametrize(
    "sampler",
    [MALA(step_size=0.8), HMC(step_size=0.5, n_leapfrog=3)],
    ids=["mala", "hmc"],
)
def test_one_step_from_exact_samples_preserves_the_target(sampler):
    # Invariance: if x ~ p then one MH step leaves x ~ p. With 100 000 2-D exact draws the
    # variance moves by at most 4·SE = 0.025 and the mean by 4/√N = 0.009.
    n, dim = 50_000, 2
    gen = seeded(3)
    x0 = torch.randn(n, dim, generator=gen)
    x1 = sampler.run(IsoGaussian(dim=dim), x0, 1, generator=gen).samples
    assert abs(x1.var(dim=0).mean().item() - 1.0) < four_se(1.0, n * dim)
    assert x1.mean(dim=0).abs().max().item() < 4 / math.sqrt(n)


def test_one_ula_step_from_exact_samples_inflates_variance_by_eta_squared():
    # x' = (1 − η)x + √(2η)ε with x ~ N(0, 1): Var x' = (1 − η)² + 2η = 1 + η².
    n, eta = 100_000, 0.5
    gen = seeded(4)
    x1 = (
        Langevin(step_size=eta)
        .run(IsoGaussian(), torch.randn(n, 1, generator=gen), 1, generator=gen)
        .samples
    )
    assert abs(x1.var().item() - (1 + eta**2)) < four_se(1 + eta**2, n)


def test_clipped_ula_step_piles_the_gaussian_tails_on_the_faces_of_the_box():
    # x' = clamp((1 − η)x + √(2η)ε, low, high) with x ~ N(0, 1): before the clamp
    # x' ~ N(0, 1 + η²), so the faces hold P(N(0, 1 + η²) ≤ low) and P(… ≥ high) of the
    # chains; 100 000 chains give each fraction to within 4·SE ≈ 0.005.
    n, eta, low, high = 100_000, 0.5, -1.0, 1.5
    gen = seeded(4)
    energy = IsoGaussian()
    sampler = Langevin(step_size=eta, clip=(low, high))
    result = sampler.run(energy, torch.randn(n, 1, generator=gen), 1, generator=gen)
    x1 = result.samples
    assert bool(((x1 >= low) & (x1 <= high)).all())
    sd = math.sqrt(1 + eta**2)
    normal = torch.distributions.Normal(0.0, sd)
    for at_face, p in (
        (x1 == low, float(normal.cdf(torch.tensor(low)))),
        (x1 == high, 1.0 - float(normal.cdf(torch.tensor(high)))),
    ):
        assert abs(at_face.double().mean().item() - p) < 4 * math.sqrt(p * (1 - p) / n)
    # the cached energy and score are those of the clamped positions
    e, s = energy.energy_and_score(x1)
    assert torch.equal(result.state.energy, e) and torch.equal(result.state.score, s)
    assert sampler.get_config()["clip"] == (low, high)


def test_hmc_warmup_adapts_step_size_to_target_acceptance():
    gen = seeded(5)
    x0 = torch.randn(1000, 10, generator=gen)
    sampler = HMC(step_size=2.0, n_leapfrog=5, adapt_steps=200, target_accept=0.75)
    warm = sampler.run(IsoGaussian(dim=10), x0, 200, generator=gen)
    assert warm.diagnostics["step_size"] < 2.0
    after = sampler.continue_run(IsoGaussian(dim=10), warm.state, 100, generator=gen)
    assert after.diagnostics["step_size"] == warm.diagnostics["step_size"]  # frozen after warm-up
    assert abs(after.diagnostics["acceptance_rate"] - 0.75) < 0.1


def test_hmc_step_is_a_fixed_kernel_and_warmup_is_a_separate_routine():
    # step never changes ε; adapt (step_and_adapt in runs) does, during warm-up only (the
    # initial search is off, so that dual averaging starts from ε₀ = 2 itself)
    gen = seeded(6)
    sampler = HMC(
        step_size=2.0, n_leapfrog=3, adapt_steps=2, target_accept=0.75, search_step_size=False
    )
    energy = IsoGaussian(dim=4)
    state = sampler.init(energy, torch.randn(50, 4, generator=gen))
    stepped = sampler.step(energy, state, gen)
    assert sampler.diagnostics(stepped)["step_size"] == 2.0
    adapted = sampler.adapt(stepped)
    # dual averaging, m = 1: H̄ = (δ − ᾱ)/(1 + t₀), log ε = log(10 ε₀) − (√1/γ) H̄
    h_bar = (0.75 - float(stepped.accept_prob.mean())) / 11.0
    expected = math.log(20.0) - h_bar / 0.05
    assert math.log(sampler.diagnostics(adapted)["step_size"]) == pytest.approx(expected)
    late = sampler.step_and_adapt(energy, sampler.step_and_adapt(energy, adapted, gen), gen)
    assert late.step == 3
    assert late.extras["log_step_size"] is not adapted.extras["log_step_size"]  # t = 1
    assert sampler.adapt(late) is late  # t = 2 ≥ adapt_steps: frozen


def test_annealed_langevin_recovers_gaussian_after_denoising():
    # Target N(2, 0.5²), levels σ geometric from 5 to σ_L = 0.1, α_i = ε σ_i²/σ_L², ULA step
    # η_i = α_i/2. At the last level the chain is ULA on N(2, v_L), v_L = s² + σ_L², with
    # stationary variance v_L/(1 − η_L/(2 v_L)); 200 steps shrink the remainder of the
    # previous level by (1 − η_L/v_L)^400 < 1e-3. Denoising x + σ_L² s(x, σ_L) maps x − 2 to
    # (x − 2)·s²/v_L, so the variance is multiplied by (s²/v_L)².
    n, s2, sigma_l, eps = 20_000, 0.25, 0.1, 0.01
    sigmas = torch.logspace(math.log10(5.0), math.log10(sigma_l), 10).tolist()
    sampler = AnnealedLangevin(noise_schedule=sigmas, steps_per_level=200, epsilon=eps)
    energy = SmoothedGaussian(std=0.5, mean=2.0)
    gen = seeded(6)
    result = sampler.run(energy, 5.0 * torch.randn(n, 1, generator=gen), generator=gen)
    assert result.state.step == 2000
    v_l, eta_l = s2 + sigma_l**2, eps / 2
    expected = v_l / (1 - eta_l / (2 * v_l)) * (s2 / v_l) ** 2
    assert abs(result.samples.var().item() - expected) < four_se(expected, n)
    assert abs(result.samples.mean().item() - 2.0) < 4 * math.sqrt(expected / n)
    # without the denoising step the spread is that of the σ_L-smoothed chain
    raw = result.state.x.var().item()
    assert abs(raw - v_l / (1 - eta_l / (2 * v_l))) < four_se(v_l, n)


def test_annealed_langevin_refuses_clean_energy_and_explicit_sigma():
    sampler = AnnealedLangevin(noise_schedule=[1.0, 0.1], steps_per_level=2)
    with pytest.raises(ValueError, match="noise-conditional"):
        sampler.run(IsoGaussian(), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="do not pass sigma"):
        sampler.run(SmoothedGaussian(1.0, 0.0), torch.zeros(3, 1), sigma=0.5)


class NaNOutsideUnitBall(ebmflow.Energy):
    """x² inside |x| < 1, NaN outside (log of a negative number): a buggy energy."""

    def forward(self, x, sigma=None):
        return (x**2 + 0.0 * torch.log(1 - x.abs())).sum(dim=1)


@pytest.mark.parametrize("name", ["langevin", "mala", "hmc"])
def test_nan_energy_raises_with_step_and_chain_count(name):
    sampler = ebmflow.create("sampler", name, step_size=0.5)
    x0 = torch.tensor([[0.1], [0.9], [0.2]])
    with pytest.raises(ebmflow.SamplerDivergedError) as info:
        sampler.run(NaNOutsideUnitBall(), x0, 50, generator=seeded(7))
    assert "diverged at step" in str(info.value)
    assert info.value.n_chains >= 1
    assert 0 <= info.value.step < 50


@pytest.mark.parametrize("name", ["langevin", "hmc"])
def test_exploding_chain_raises_instead_of_returning_inf(name):
    sampler = ebmflow.create("sampler", name, step_size=5.0)
    with pytest.raises(ebmflow.SamplerDivergedError, match=r"non-finite|NaN"):
        sampler.run(Quartic(), torch.tensor([[0.1], [3.0]]), 50, generator=seeded(7))


def test_mala_rejects_infinite_energy_proposals_without_diverging():
    # +∞ energy is zero density: MH rejects such proposals, which is correct, not divergence
    result = MALA(step_size=5.0).run(
        Quartic(), torch.tensor([[0.1], [3.0]]), 20, generator=seeded(7)
    )
    assert torch.isfinite(result.samples).all()


@pytest.mark.parametrize("name", ["langevin", "mala", "hmc"])
def test_seeded_runs_are_reproducible_and_leave_global_rng_alone(name):
    sampler = ebmflow.create("sampler", name, step_size=0.1)
    x0 = torch.randn(16, 3, generator=seeded(8))
    before = torch.get_rng_state()
    a = sampler.run(IsoGaussian(dim=3), x0, 10, generator=seeded(9)).samples
    b = sampler.run(IsoGaussian(dim=3), x0, 10, generator=seeded(9)).samples
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a, b)


def test_thin_keeps_trajectory_and_callback_sees_every_state():
    seen = []
    result = Langevin(0.1).run(
        IsoGaussian(),
        torch.zeros(4, 1),
        10,
        thin=3,
        generator=seeded(10),
        callback=lambda state: seen.append(state.step),
    )
    assert result.trajectory.shape == (3, 4, 1)
    assert torch.equal(result.trajectory[-1], result.trajectory[-1])
    assert seen == list(range(1, 11))
    assert result.diagnostics["energy_trace"].shape == (10,)
    no_trajectory = Langevin(0.1).run(IsoGaussian(), torch.zeros(4, 1), 10)
    assert no_trajectory.trajectory is None


def test_continue_run_from_a_state_matches_one_long_run():
    x0 = torch.randn(8, 2, generator=seeded(11))
    sampler = MALA(0.3)
    long = sampler.run(IsoGaussian(dim=2), x0, 10, generator=seeded(12))
    gen = seeded(12)
    first = sampler.run(IsoGaussian(dim=2), x0, 4, generator=gen)
    second = sampler.continue_run(IsoGaussian(dim=2), first.state, 6, generator=gen)
    assert torch.equal(long.samples, second.samples)
    assert second.state.step == 10


@pytest.mark.parametrize(
    ("factory", "message"),
    [
        (lambda: Langevin(step_size=0), "step_size must be a number > 0, got 0"),
        (lambda: Langevin(step_size=-1.0), "got -1.0"),
        (lambda: MALA(step_size=float("nan")), "step_size"),
        # beyond float32 it would overflow inside the first step with no word of which
        # argument did it
        (lambda: Langevin(step_size=1e300), "step_size must be at most 3.403e.38 (the largest"),
        (lambda: HMC(step_size=1e39), "step_size must be at most .* float32"),
        (lambda: HMC(n_leapfrog=0), "n_leapfrog must be an integer ≥ 1, got 0"),
        (lambda: HMC(target_accept=1.5), "target_accept must lie in"),
        (lambda: AnnealedLangevin(noise_schedule=[0.1, 1.0]), "strictly decreasing"),
        (lambda: AnnealedLangevin(noise_schedule=[1.0, 0.1], steps_per_level=0), "steps_per_level"),
    ],
)
def test_bad_hyperparameters_are_rejected_at_construction(factory, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        factory()


def test_bad_run_arguments_name_the_problem():
    with pytest.raises(ValueError, match="n_steps must be an integer"):
        Langevin(0.1).run(IsoGaussian(), torch.zeros(2, 1), -1)
    with pytest.raises(ValueError, match=r"event shape \(2,\).*expects \(1,\)"):
        Langevin(0.1).run(IsoGaussian(dim=1), torch.zeros(2, 2), 1)
    with pytest.raises(TypeError, match="floating-point"):
        Langevin(0.1).run(IsoGaussian(), torch.zeros(2, 1, dtype=torch.long), 1)


def test_dtype_mismatch_between_energy_and_samples_is_reported():
    class Linear(ebmflow.Energy):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1, dtype=torch.float64))

        def forward(self, x, sigma=None):
            return (x * self.w).sum(1)

    with pytest.raises(ValueError, match=r"x is torch.float32 .* but Linear is torch.float64"):
        MALA(0.1).run(Linear(), torch.zeros(2, 1), 1)


def test_metropolis_samplers_refuse_score_only_models():
    class Score(ebmflow.ScoreModel):
        def score(self, x, sigma=None):
            return -x

    with pytest.raises(ValueError, match="score-only"):
        MALA(0.1).run(Score(), torch.zeros(2, 1), 1)
    # ULA only needs the score
    result = Langevin(0.1).run(Score(), torch.zeros(2, 1), 3, generator=seeded(13))
    assert result.samples.shape == (2, 1)


def test_energy_with_wrong_output_shape_is_named():
    class Bad(ebmflow.Energy):
        def forward(self, x, sigma=None):
            return x  # (B, 2) instead of (B,)

    with pytest.raises(ValueError, match=r"Bad.forward returned shape \(3, 2\)"):
        Langevin(0.1).run(Bad(), torch.zeros(3, 2), 1)


def test_sampling_accumulates_no_parameter_gradients():
    net = torch.nn.Linear(2, 1)

    class Net(ebmflow.Energy):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x, sigma=None):
            return self.net(x).squeeze(-1) + (x**2).sum(1)

    MALA(0.1).run(Net(), torch.zeros(5, 2), 3, generator=seeded(14))
    assert net.weight.grad is None


def test_samplers_are_created_from_registry_with_config_recorded():
    sampler = ebmflow.create("sampler", {"name": "hmc", "step_size": 0.2}, n_leapfrog=3)
    assert isinstance(sampler, HMC)
    assert sampler.get_config() == {
        "step_size": 0.2,
        "n_leapfrog": 3,
        "adapt_steps": 0,
        "target_accept": 0.8,
        "adapt_mass": False,
        "search_step_size": True,
    }
