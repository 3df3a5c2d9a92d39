"""The ODE samplers: the exact flow map of a Gaussian, registry and CLI use, bad input."""

from __future__ import annotations

import json
import math

import pytest
import torch

import ebmflow
from ebmflow.cli import main as cli_main

MU, S = 1.0, 0.5
SCHEDULE = {"name": "karras", "sigma_min": 0.02, "sigma_max": 20.0}


def gaussian():
    return ebmflow.create("energy", "gmm", means=[[MU]], stds=S, noise_conditional=True).double()


def exact_flow(x_t, sigma_hi, sigma_lo):
    """The probability-flow map of N(μ, s²): x(σ) − μ scales with √(s² + σ²)."""
    return MU + (x_t - MU) * math.sqrt((S**2 + sigma_lo**2) / (S**2 + sigma_hi**2))


@pytest.mark.parametrize(
    "name, kwargs, tolerance",
    [
        # fixed steps on the default level counts: Euler 50 levels leave 0.06, Heun 18
        # levels 0.04 (orders checked below)
        ("ode-euler", {}, 0.1),
        ("ode-heun", {}, 0.06),
        # dopri5 at rtol = atol = 1e-5
        ("ode", {}, 1e-4),
        ("ode", {"solver": "rk4", "n_steps": 50}, 1e-4),
    ],
)
def test_ode_samplers_follow_the_exact_flow_of_a_gaussian(name, kwargs, tolerance):
    sampler = ebmflow.create("sampler", name, noise_schedule=SCHEDULE, denoise=False, **kwargs)
    assert sampler.init_scale == pytest.approx(20.0)
    x0 = sampler.init_scale * torch.randn(
        256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64
    )
    result = sampler.run(gaussian(), x0)
    expected = exact_flow(x0, 20.0, 0.02)
    # relative to the spread at σ_min, √(s² + σ_min²) ≈ 0.5
    assert (result.samples - expected).abs().max().item() < tolerance
    assert result.state.step == sampler.total_steps


@pytest.mark.parametrize("name, order", [("ode-euler", 1), ("ode-heun", 2)])
def test_fixed_step_error_falls_with_the_order_of_the_method(name, order):
    x0 = 20.0 * torch.randn(64, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    expected = exact_flow(x0, 20.0, 0.02)
    errors = []
    for n_levels in (36, 71):  # 35 and 70 steps: the step halves
        sampler = ebmflow.create(
            "sampler", name, noise_schedule=SCHEDULE, n_levels=n_levels, denoise=False
        )
        errors.append((sampler.run(gaussian(), x0).samples - expected).abs().max().item())
    # halving the step divides the global error by 2^order (to within 15 % at these sizes)
    assert errors[0] / errors[1] == pytest.approx(2**order, rel=0.15)


def test_denoise_is_the_final_step_to_sigma_zero():
    sampler = ebmflow.create("sampler", "ode-heun", noise_schedule=SCHEDULE)
    energy = gaussian()
    x0 = 20.0 * torch.randn(8, 1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    result = sampler.run(energy, x0)
    x = result.state.x
    assert torch.allclose(result.samples, x + 0.02**2 * energy.score(x, 0.02))


def test_corrector_runs_before_each_ode_step_and_changes_the_samples():
    energy = gaussian()
    x0 = 20.0 * torch.randn(64, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    plain = ebmflow.create("sampler", "ode-euler", noise_schedule=SCHEDULE, n_levels=10)
    corrected = ebmflow.create(
        "sampler",
        "ode-euler",
        noise_schedule=SCHEDULE,
        n_levels=10,
        corrector={"name": "langevin", "step_size": 1e-3},
        corrector_steps=2,
    )
    a = plain.run(energy, x0).samples
    b = corrected.run(energy, x0, generator=torch.Generator().manual_seed(0)).samples
    c = corrected.run(energy, x0, generator=torch.Generator().manual_seed(0)).samples
    assert not torch.equal(a, b) and torch.equal(b, c)  # seeded: reproducible


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"noise_schedule": [1.0, 2.0]}, ebmflow.ConfigError, ["strictly decreasing", "2.0"]),
        ({"noise_schedule": [1.0, 0.0]}, ebmflow.ConfigError, ["positive", "0.0"]),
        ({"noise_schedule": 3}, ebmflow.ComponentArgumentError, ["noise_schedule", "int"]),
        ({"n_levels": 1}, ebmflow.ConfigError, ["n_levels"]),
        ({"corrector_steps": 2}, ebmflow.ConfigError, ["corrector_steps=2", "corrector=None"]),
    ],
)
def test_bad_settings_name_the_value(kwargs, error, words):
    with pytest.raises(error) as info:
        ebmflow.create("sampler", "ode-heun", **kwargs)
    for word in words:
        assert word in str(info.value)


def test_adaptive_sampler_bad_settings_and_step_budget():
    with pytest.raises(ebmflow.ConfigError, match="'rk45'"):
        ebmflow.create("sampler", "ode", solver="rk45")
    from ebmflow_ode import ODEConvergenceError

    sampler = ebmflow.create("sampler", "ode", noise_schedule=SCHEDULE, max_steps=2, rtol=1e-9)
    with pytest.raises(ODEConvergenceError, match="max_steps=2"):
        sampler.run(gaussian(), torch.zeros(4, 1, dtype=torch.float64))


def test_runs_refuse_a_sigma_a_clean_energy_and_steps_past_the_schedule():
    sampler = ebmflow.create("sampler", "ode-euler", noise_schedule=SCHEDULE, n_levels=3)
    x0 = torch.zeros(2, 1, dtype=torch.float64)
    with pytest.raises(ebmflow.ConfigError, match="do not pass sigma"):
        sampler.run(gaussian(), x0, sigma=0.5)
    clean = ebmflow.create("energy", "gmm", means=[[0.0]]).double()
    with pytest.raises(ebmflow.ConfigError, match="noise_conditional=False"):
        sampler.run(clean, x0)
    with pytest.raises(ebmflow.ConfigError, match="ends after 2 steps"):
        sampler.run(gaussian(), x0, 3)


def test_ebmflow_sample_starts_at_sigma_max_without_sigma(tmp_path, capsys):
    ebmflow.save(ebmflow.GMMEnergy.ring(noise_conditional=True), tmp_path / "gmm")
    out = tmp_path / "s.safetensors"
    schedule = json.dumps({"name": "karras", "sigma_min": 0.01, "sigma_max": 40.0})
    argv = ["sample", str(tmp_path / "gmm"), "--sampler", "ode-heun"]
    argv += ["--sampler-arg", f"noise_schedule={schedule}", "--n", "1000", "--out", str(out)]
    assert cli_main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 17
    from safetensors.torch import load_file

    samples = load_file(out)["samples"]
    # the ring's radius is 4/1.414 ≈ 2.83; the modes' spread (0.35) and 17 Heun steps move
    # the mean radius by a few hundredths, while a start at N(0, 1) instead of
    # N(0, σ_max² I) would pull the samples towards the origin (mean radius below 1)
    assert samples.norm(dim=1).mean().item() == pytest.approx(4 / 1.414, abs=0.1)
