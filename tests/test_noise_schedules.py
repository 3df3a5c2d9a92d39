"""Tests of the noise schedules: levels, training distributions, VP ↔ VE conversions.

Monte Carlo tolerances: a mean of N independent draws with standard deviation sd has standard
error sd/√N; assertions allow 4 standard errors (a false failure rate of about 6e-5 each).
"""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow.noise_schedules import (
    GeometricSchedule,
    KarrasSchedule,
    NoiseSchedule,
    VPCosineSchedule,
    VPLinearSchedule,
    alpha_bar_from_sigma,
    sigma_from_alpha_bar,
)
from ebmflow.samplers.annealed_langevin import AnnealedLangevin

NAMES = ["geometric", "vp-linear", "vp-cosine", "karras"]


@pytest.fixture(params=NAMES)
def schedule(request) -> NoiseSchedule:
    return ebmflow.create("noise_schedule", request.param)


# -- sigmas(n) -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 10, 1000])
def test_sigmas_decrease_strictly_from_sigma_max_to_sigma_min(schedule, n):
    sigmas = schedule.sigmas(n)
    assert sigmas.dtype == torch.float64 and sigmas.shape == (n,)
    assert (sigmas[1:] < sigmas[:-1]).all()
    assert sigmas[0].item() == schedule.sigma_max
    assert sigmas[-1].item() == schedule.sigma_min
    assert 0 < schedule.sigma_min < schedule.sigma_max < math.inf


def test_one_level_is_sigma_max(schedule):
    assert schedule.sigmas(1).tolist() == [schedule.sigma_max]


@pytest.mark.parametrize("n", [0, -3, 2.0, True])
def test_sigmas_rejects_a_level_count_below_one_naming_the_schedule(schedule, n):
    with pytest.raises(ValueError, match=rf"{schedule.name} schedule: n must be an integer ≥ 1"):
        schedule.sigmas(n)


def test_geometric_levels_are_powers_of_ten_by_hand():
    # σ_i = 1 · (0.01 / 1)^(i / 2) for n = 3
    sigmas = GeometricSchedule(sigma_max=1.0, sigma_min=0.01).sigmas(3)
    torch.testing.assert_close(
        sigmas, torch.tensor([1.0, 0.1, 0.01], dtype=torch.float64), rtol=1e-14, atol=0
    )


def test_karras_middle_level_by_hand():
    # ρ = 2, σ ∈ [1, 16], n = 3: ((√16 + √1) / 2)² = 2.5² = 6.25
    sigmas = KarrasSchedule(sigma_min=1.0, sigma_max=16.0, rho=2.0).sigmas(3)
    assert sigmas.tolist() == pytest.approx([16.0, 6.25, 1.0], rel=1e-14)
    # EDM defaults (ρ = 7, σ ∈ [0.002, 80]): ((80^(1/7) + 0.002^(1/7)) / 2)^7 = 2.5152189761...
    assert KarrasSchedule().sigmas(3)[1].item() == pytest.approx(2.515218976147, rel=1e-12)


def test_vp_linear_sigma_by_hand():
    # β_min = 0, β_max = 2: −log ᾱ(t) = t², so σ(1) = √(e − 1) = 1.3108324944...
    schedule = VPLinearSchedule(beta_min=0.0, beta_max=2.0)
    assert schedule.t_to_sigma(1.0) == pytest.approx(1.3108324944320862, rel=1e-14)
    assert schedule.alpha_bar(1.0) == pytest.approx(math.exp(-1.0), rel=1e-14)
    # defaults: −log ᾱ(1) = ½ · 19.9 + 0.1 = 10.05
    assert VPLinearSchedule().sigma_max == pytest.approx(math.sqrt(math.expm1(10.05)), rel=1e-14)


def test_vp_cosine_sigma_by_hand():
    # s = ½, t = ⅓: θ = 50°, θ₀ = 30°, ᾱ = cos²50° / cos²30° = 0.55090…, σ = 0.90288840…
    schedule = VPCosineSchedule(s=0.5)
    assert schedule.alpha_bar(1 / 3) == pytest.approx(0.5509012, rel=1e-6)
    assert schedule.t_to_sigma(1 / 3) == pytest.approx(0.9028884034563212, rel=1e-12)


def test_vp_cosine_matches_the_naive_nichol_dhariwal_formula():
    schedule = VPCosineSchedule()
    t = torch.linspace(schedule.t_eps, schedule.t_max, 501, dtype=torch.float64)
    f = torch.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
    f0 = math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    naive = torch.sqrt((1 - f / f0) / (f / f0))
    # the naive form loses ~1e-16/σ² relative to cancellation; σ ≥ 0.006 here
    torch.testing.assert_close(schedule.t_to_sigma(t), naive, rtol=1e-9, atol=0)


def test_vp_cosine_stops_where_beta_reaches_beta_max():
    schedule = VPCosineSchedule()
    # β(t) = π/(1 + s) · tan θ(t) = 999 at t_max (Nichol & Dhariwal's 0.999 clip, T = 1000)
    theta = (schedule.t_max + 0.008) / 1.008 * math.pi / 2
    assert math.pi / 1.008 * math.tan(theta) == pytest.approx(999.0, rel=1e-9)
    assert schedule.t_max == pytest.approx(0.998, abs=1e-3)
    assert schedule.sigma_max == schedule.t_to_sigma(schedule.t_max)
    assert schedule.sigma_min == schedule.t_to_sigma(schedule.t_eps)


def test_vp_levels_are_evenly_spaced_in_time():
    schedule = VPLinearSchedule()
    t = schedule.sigma_to_t(schedule.sigmas(11))
    expected = torch.linspace(1.0, schedule.t_eps, 11, dtype=torch.float64)
    torch.testing.assert_close(t, expected, rtol=1e-12, atol=0)


# -- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "schedule",
    [
        VPLinearSchedule(),
        VPCosineSchedule(),
        VPLinearSchedule(beta_min=0.0, beta_max=5.0),
        VPLinearSchedule(beta_min=1.0, beta_max=1.0),
        VPCosineSchedule(s=0.1, t_eps=1e-5),
    ],
    ids=repr,
)
def test_time_to_sigma_round_trip_is_exact_in_float64(schedule):
    t = torch.linspace(schedule.t_eps, schedule.t_max, 2001, dtype=torch.float64)
    sigma = schedule.t_to_sigma(t)
    assert (sigma[1:] > sigma[:-1]).all()
    torch.testing.assert_close(schedule.sigma_to_t(sigma), t, rtol=1e-10, atol=0)
    assert schedule.sigma_to_t(schedule.t_to_sigma(0.5)) == pytest.approx(0.5, rel=1e-10)


def test_sigma_alpha_bar_round_trip_is_exact_in_float64():
    sigma = torch.logspace(-3, 3, 601, dtype=torch.float64)
    torch.testing.assert_close(
        sigma_from_alpha_bar(alpha_bar_from_sigma(sigma)), sigma, rtol=1e-10, atol=0
    )
    alpha_bar = torch.linspace(1e-6, 1.0, 601, dtype=torch.float64)
    torch.testing.assert_close(
        alpha_bar_from_sigma(sigma_from_alpha_bar(alpha_bar)), alpha_bar, rtol=1e-12, atol=0
    )
    assert sigma_from_alpha_bar(alpha_bar_from_sigma(0.002)) == pytest.approx(0.002, rel=1e-10)


def test_vp_sigma_matches_the_alpha_bar_conversion():
    for schedule in (VPLinearSchedule(), VPCosineSchedule()):
        t = torch.linspace(schedule.t_eps, schedule.t_max, 101, dtype=torch.float64)
        torch.testing.assert_close(
            sigma_from_alpha_bar(schedule.alpha_bar(t)), schedule.t_to_sigma(t), rtol=1e-9, atol=0
        )


def test_conversions_return_floats_for_floats_and_keep_tensor_dtype():
    assert isinstance(alpha_bar_from_sigma(1.0), float)
    assert alpha_bar_from_sigma(1.0) == 0.5
    assert sigma_from_alpha_bar(0.5) == 1.0
    assert alpha_bar_from_sigma(torch.tensor([1.0])).dtype == torch.float32
    schedule = VPLinearSchedule()
    assert isinstance(schedule.t_to_sigma(0.5), float)
    assert schedule.sigma_to_t(torch.tensor([1.0], dtype=torch.float32)).dtype == torch.float32


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: sigma_from_alpha_bar(0.0), "alpha_bar must be a number in \\(0, 1\\], got 0"),
        (lambda: sigma_from_alpha_bar(1.5), "alpha_bar must be a number in \\(0, 1\\], got 1.5"),
        (lambda: alpha_bar_from_sigma(-1.0), "sigma must be a number ≥ 0, got -1.0"),
    ],
)
def test_conversions_reject_out_of_domain_numbers(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# -- sample() ----------------------------------------------------------------------------------


def test_sample_stays_within_sigma_range(schedule):
    sigma = schedule.sample(10_000, torch.Generator().manual_seed(0))
    assert sigma.shape == (10_000,) and sigma.dtype == torch.float32
    lo, hi = torch.tensor([schedule.sigma_min, schedule.sigma_max], dtype=torch.float32)
    assert (sigma >= lo).all() and (sigma <= hi).all()
    assert schedule.sample(3, torch.Generator(), dtype=torch.float64).dtype == torch.float64
    assert schedule.sample(0, torch.Generator()).shape == (0,)


def test_sample_is_reproducible_with_a_seeded_generator(schedule):
    a = schedule.sample(100, torch.Generator().manual_seed(7))
    b = schedule.sample(100, torch.Generator().manual_seed(7))
    c = schedule.sample(100, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sample_and_sigmas_leave_the_global_rng_untouched(schedule):
    state = torch.get_rng_state()
    schedule.sample(100, torch.Generator().manual_seed(0))
    schedule.sigmas(10)
    assert torch.equal(torch.get_rng_state(), state)


def test_geometric_sample_is_log_uniform():
    schedule = GeometricSchedule(sigma_max=1.0, sigma_min=0.01)
    log_sigma = schedule.sample(40_000, torch.Generator().manual_seed(1), dtype=torch.float64).log()
    # U[log 0.01, 0]: mean −2.3026, sd 4.6052/√12 = 1.3294; SE of the mean 1.3294/200 = 0.0066
    assert abs(log_sigma.mean().item() - math.log(0.1)) < 4 * 0.0066


def test_vp_sample_is_uniform_in_time():
    schedule = VPLinearSchedule()
    t = schedule.sigma_to_t(
        schedule.sample(40_000, torch.Generator().manual_seed(2), dtype=torch.float64)
    )
    # U(0.001, 1): mean 0.5005, sd 0.999/√12 = 0.2884; SE 0.2884/200 = 0.00144
    assert abs(t.mean().item() - 0.5005) < 4 * 0.00144


def test_karras_sample_is_edm_log_normal():
    log_sigma = (
        KarrasSchedule().sample(40_000, torch.Generator().manual_seed(3), dtype=torch.float64).log()
    )
    # N(−1.2, 1.2²) (clipped mass < 2e-5): SE of the mean 1.2/200 = 0.006; SE of the sd
    # 1.2/√(2N) = 0.0042
    assert abs(log_sigma.mean().item() + 1.2) < 4 * 0.006
    assert abs(log_sigma.std().item() - 1.2) < 4 * 0.0042


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "fragments"),
    [
        (
            lambda: GeometricSchedule(sigma_max=0.5, sigma_min=1.0),
            ["geometric schedule", "sigma_min must be smaller than sigma_max", "1.0", "0.5"],
        ),
        (
            lambda: GeometricSchedule(sigma_min=0.0),
            ["geometric schedule", "sigma_min", "> 0", "0.0"],
        ),
        (lambda: GeometricSchedule(sigma_max=float("nan")), ["geometric schedule", "sigma_max"]),
        (lambda: KarrasSchedule(rho=0), ["karras schedule", "rho must be a number > 0", "got 0"]),
        (lambda: KarrasSchedule(sigma_min=80.0, sigma_max=80.0), ["karras schedule", "sigma_min"]),
        (lambda: KarrasSchedule(p_std=-1.0), ["karras schedule", "p_std", "-1.0"]),
        (lambda: KarrasSchedule(p_mean="a"), ["karras schedule", "p_mean", "finite number"]),
        (
            lambda: VPLinearSchedule(beta_max=0.05),
            ["vp-linear schedule", "beta_max must be ≥ beta_min", "0.05"],
        ),
        (
            lambda: VPLinearSchedule(beta_min=-0.1),
            ["vp-linear schedule", "beta_min", "≥ 0", "-0.1"],
        ),
        (lambda: VPLinearSchedule(t_eps=1.0), ["vp-linear schedule", "t_eps", "(0, 1)", "1.0"]),
        (lambda: VPCosineSchedule(s=-1), ["vp-cosine schedule", "s must be a number > 0", "-1"]),
        (
            lambda: VPCosineSchedule(beta_max=0.04),
            ["vp-cosine schedule", "beta_max=0.04", "β(t_eps)"],
        ),
    ],
)
def test_bad_arguments_raise_errors_naming_schedule_value_and_accepted(factory, fragments):
    with pytest.raises(ValueError) as info:
        factory()
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("name", NAMES)
def test_create_builds_every_schedule_by_name(name):
    schedule = ebmflow.create("noise_schedule", name)
    assert isinstance(schedule, ebmflow.NoiseSchedule) and schedule.name == name
    rebuilt = ebmflow.create("noise_schedule", {"name": name, **schedule.get_config()})
    assert torch.equal(rebuilt.sigmas(7), schedule.sigmas(7))
    assert repr(schedule).startswith(type(schedule).__name__ + "(")


def test_create_passes_arguments_through_a_config():
    schedule = ebmflow.create("noise-schedule", {"name": "karras", "rho": 5.0})
    assert schedule.rho == 5.0 and schedule.get_config()["rho"] == 5.0


@pytest.mark.parametrize("name", NAMES)
def test_annealed_langevin_takes_its_levels_from_each_schedule(name):
    sampler = AnnealedLangevin(noise_schedule=name, n_levels=6, steps_per_level=1)
    assert sampler.sigmas == ebmflow.create("noise_schedule", name).sigmas(6).tolist()
