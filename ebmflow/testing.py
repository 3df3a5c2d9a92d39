"""Test support for plugin authors — an opt-in pytest plugin.

Enable it in your plugin's ``conftest.py``::

    pytest_plugins = ["ebmflow.testing"]

or with ``pytest -p ebmflow.testing``. It provides fixtures

``ebmflow_host``
    an isolated :class:`ebmflow.PluginHost` with the core's components and no installed
    plugins; ``ebmflow_host.register(my_plugin_module)`` adds yours in-process.
``ebmflow_bare_host``
    the same without the core's components.

and conformance checks, plain functions that raise ``AssertionError`` with a message:

- :func:`check_plugin`: the plugin registers, validates, and every factory imports;
- :func:`check_energy`: an energy returns ``(B,)`` and a score equal to −∇ₓE;
- :func:`check_sampler_preserves_gaussian`: a sampler started from exact N(0, I) draws keeps
  mean 0 and variance 1 (or a stated variance for biased samplers);
- :func:`check_seeded_reproducible`: the same generator seed gives the same samples, and the
  global RNG is not touched.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest

from ebmflow.errors import PluginWarning
from ebmflow.registry import PluginHost


@pytest.fixture
def ebmflow_host() -> PluginHost:
    """An isolated host: the core's components, no entry points."""
    return PluginHost(entry_points=False)


@pytest.fixture
def ebmflow_bare_host() -> PluginHost:
    """An isolated host with no components at all."""
    return PluginHost(builtins=False, entry_points=False)


def check_plugin(plugin: Any, name: str = "plugin-under-test") -> PluginHost:
    """Register ``plugin`` in a fresh host; assert it loads and every factory imports.

    Returns the host so further checks can ``create`` the plugin's components.
    """
    host = PluginHost(entry_points=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PluginWarning)
        try:
            info = host.register(plugin, name=name)
        except PluginWarning as exc:
            raise AssertionError(f"plugin {name!r} failed to load: {exc}") from None
    assert info.status == "ok", f"plugin {name!r} has status {info.status}: {info.error}"
    assert info.components, f"plugin {name!r} registers no components"
    for component in info.components:
        component.load()
    return host


def check_energy(energy: Any, x: Any, sigma: Any = None, *, atol: float = 1e-5) -> None:
    """Assert ``energy(x, sigma)`` has shape ``(B,)`` and its score equals −∇ₓE (autograd)."""
    import torch

    e = energy(x, sigma)
    assert e.shape == (x.shape[0],), (
        f"{type(energy).__name__} returned shape {tuple(e.shape)}, expected ({x.shape[0]},)"
    )
    e2, score = energy.energy_and_score(x, sigma)
    assert score.shape == x.shape, f"score shape {tuple(score.shape)} != x shape {tuple(x.shape)}"
    torch.testing.assert_close(e2, e.detach(), atol=atol, rtol=1e-5)
    xg = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(xg, sigma).sum(), xg)
    torch.testing.assert_close(score, -grad, atol=atol, rtol=1e-4, msg="score is not −∇ₓE")


def _standard_gaussian(dim: int) -> Any:
    from ebmflow.energies.gaussian import GaussianEnergy

    return GaussianEnergy(mean=[0.0] * dim, std=1.0)


def check_sampler_preserves_gaussian(
    sampler: Any,
    *,
    dim: int = 4,
    n_chains: int = 20_000,
    n_steps: int = 5,
    expected_variance: float = 1.0,
    seed: int = 0,
) -> None:
    """Start from exact N(0, I) draws, run ``n_steps``, and check the first two moments.

    The tolerance is 4 Monte Carlo standard errors: 4/√N for the mean and
    4·v·√(2/N) for the variance, with N = n_chains·dim independent values. For a biased
    sampler pass the variance it is known to keep (ULA after one step: 1 + η²).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n_chains, dim, generator=gen)
    result = sampler.run(_standard_gaussian(dim), x0, n_steps, generator=gen)
    n = n_chains * dim
    mean = result.samples.mean().item()
    var = result.samples.var(dim=0).mean().item()
    mean_tol = 4 / math.sqrt(n)
    assert abs(mean) < mean_tol, f"mean {mean:.4f} drifted from 0 (4·SE = {mean_tol:.4f})"
    tol = 4 * expected_variance * math.sqrt(2 / n)
    assert abs(var - expected_variance) < tol, (
        f"variance {var:.4f} != {expected_variance} (4·SE = {tol:.4f})"
    )


def check_seeded_reproducible(sampler: Any, energy: Any, x0: Any, n_steps: int = 5) -> None:
    """The same seed gives identical samples; the global RNG state is left unchanged."""
    import torch

    before = torch.get_rng_state()
    a = sampler.run(energy, x0, n_steps, generator=torch.Generator().manual_seed(1)).samples
    b = sampler.run(energy, x0, n_steps, generator=torch.Generator().manual_seed(1)).samples
    assert torch.equal(torch.get_rng_state(), before), "the sampler used the global RNG"
    assert torch.equal(a, b), "two runs with the same generator seed differ"
