"""Tests of the example plugin, run in-process: a private ebmflow.PluginHost, no install.

Monte Carlo tolerances: for N independent draws of N(0, 1) the sample variance has standard
error sqrt(2/N) and the mean 1/sqrt(N); assertions allow 4 standard errors.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import ebmflow_example
import pytest
import torch
from ebmflow_example import plugin
from ebmflow_example.energy import DoubleWell

import ebmflow


class StandardGaussian(ebmflow.Energy):
    """E(x) = ½‖x‖², the target whose variance the sampler must preserve."""

    def forward(self, x, sigma=None):
        return 0.5 * x.pow(2).flatten(1).sum(dim=1)


@pytest.fixture
def host():
    host = ebmflow.PluginHost(entry_points=False)
    info = host.register(plugin, name="example")
    assert info.status == "ok", info.error
    return host


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_plugin_registers_one_energy_and_one_sampler(host):
    mine = [c for c in host.components() if c.plugin == "example"]
    assert [(c.kind, c.name) for c in mine] == [("energy", "double-well"), ("sampler", "rwm")]
    assert all(c.summary for c in mine)


def test_components_are_reachable_by_bare_and_qualified_name(host):
    assert host.get("sampler", "rwm") is host.get("sampler", "example:rwm")
    assert host.get("energy", "double-well").plugin == "example"


def test_importing_the_plugin_module_imports_no_torch():
    src = os.path.dirname(os.path.dirname(ebmflow_example.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, ebmflow_example.plugin as p; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'ebmflow_example.sampler' not in sys.modules; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_double_well_returns_one_energy_per_sample_and_its_closed_form_score_matches_autograd(
    host,
):
    energy = host.create("energy", "double-well", a=2.0)
    x = torch.randn(7, 3, generator=seeded(0), dtype=torch.float64)
    e, s = energy.energy_and_score(x)
    assert e.shape == (7,)
    assert s.shape == x.shape
    torch.testing.assert_close(e, 2.0 * (x.pow(2).sum(1) - 1) ** 2)
    # the base class computes the score by autograd from forward
    _, s_autograd = ebmflow.Energy.energy_and_score(energy, x)
    torch.testing.assert_close(s, s_autograd)


def test_double_well_rejects_a_noise_level_and_a_non_positive_depth():
    with pytest.raises(ValueError, match="sigma must be None"):
        DoubleWell()(torch.zeros(2, 2), sigma=0.1)
    with pytest.raises(ValueError, match="a must be a number > 0"):
        DoubleWell(a=0.0)


def test_rwm_preserves_standard_gaussian_variance(host):
    sampler = host.create("sampler", "rwm", step_size=1.0)
    n_chains, dim = 4000, 2
    x0 = torch.zeros(n_chains, dim)  # far from stationary: the variance must come from mixing
    result = sampler.run(StandardGaussian(), x0, 300, generator=seeded(1))
    samples = result.samples
    n = samples.numel()  # independent chains and independent coordinates
    assert abs(float(samples.mean())) < 4 / math.sqrt(n)
    assert abs(float(samples.var()) - 1.0) < 4 * math.sqrt(2 / n)
    # and the chains really moved and sometimes rejected (s = 1 in 2-D accepts about 70%)
    assert 0.5 < result.diagnostics["acceptance_rate"] < 0.9


def test_rwm_on_double_well_matches_the_second_moment_by_quadrature(host):
    a = 1.0
    grid = torch.linspace(-4, 4, 20001, dtype=torch.float64)
    weights = torch.exp(-a * (grid**2 - 1) ** 2)
    second_moment = float((grid**2 * weights).sum() / weights.sum())
    energy = host.create("energy", {"name": "double-well", "a": a, "dim": 1})
    sampler = host.create("sampler", {"name": "example:rwm", "step_size": 1.0})
    result = sampler.run(
        energy, torch.zeros(4000, 1, dtype=torch.float64), 300, generator=seeded(2)
    )
    x2 = result.samples.pow(2).squeeze(1)
    # 4 standard errors of the mean of x² over independent chains
    assert abs(float(x2.mean()) - second_moment) < 4 * float(x2.std()) / math.sqrt(x2.numel())


def test_rwm_runs_are_reproducible_from_a_seeded_generator(host):
    sampler = host.create("sampler", "rwm", step_size=0.7)
    energy = host.create("energy", "double-well")
    x0 = torch.zeros(16, 2)
    first = sampler.run(energy, x0, 20, generator=seeded(3)).samples
    second = sampler.run(energy, x0, 20, generator=seeded(3)).samples
    third = sampler.run(energy, x0, 20, generator=seeded(4)).samples
    assert torch.equal(first, second)
    assert not torch.equal(first, third)


def test_rwm_rejects_a_non_positive_step_size_naming_the_sampler(host):
    with pytest.raises(ValueError, match="rwm: step_size must be a number > 0"):
        host.create("sampler", "rwm", step_size=-1.0)


def test_rwm_records_its_config_for_checkpoints(host):
    assert host.create("sampler", "rwm", step_size=0.3).get_config() == {"step_size": 0.3}
