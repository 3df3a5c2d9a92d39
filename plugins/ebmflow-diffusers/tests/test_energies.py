"""Energy parameterisations E = ½‖f(x, σ)‖² and E = ‖x − f(x, σ)‖² of a diffusers UNet:
real energies (exact MALA, no line integral), trainable with multiscale-dsm, saved and
loaded as ebmflow checkpoints."""

from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler
from ebmflow_diffusers import NetworkEnergy, convert, tiny

import ebmflow


def network(unet):
    return convert(unet=unet, scheduler=DDPMScheduler())


@pytest.mark.parametrize("form", ["half-norm", "residual"])
def test_energy_forms_and_their_scores(form, make_unet):
    model = network(make_unet()).to(torch.float64)
    energy = ebmflow.create("energy", "unet-energy", model=model, form=form)
    assert isinstance(energy, NetworkEnergy) and energy.has_energy and energy.noise_conditional
    x = torch.randn(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    sigma = 0.8
    e, s = energy.energy_and_score(x, sigma)
    f = model.network_output(x, sigma).detach()
    want = 0.5 * f.pow(2).sum((1, 2, 3)) if form == "half-norm" else (x - f).pow(2).sum((1, 2, 3))
    assert torch.allclose(e, want)
    # the score is −∇E: check a directional derivative by central differences
    d = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    h = 1e-5
    with torch.no_grad():
        fd = (energy(x + h * d, sigma) - energy(x - h * d, sigma)) / (2 * h)
    assert torch.allclose(fd, -(s * d).sum((1, 2, 3)), rtol=1e-6, atol=1e-8)


def test_energy_needs_a_network_output():
    gaussian = ebmflow.create("energy", "gaussian", mean=[0.0], std=1.0)
    with pytest.raises(TypeError, match="network_output"):
        NetworkEnergy(gaussian)
    with pytest.raises(ValueError, match="form must be one of half-norm, residual"):
        NetworkEnergy(network(tiny.unet()), form="square")


@pytest.mark.slow
def test_multiscale_dsm_trains_the_energy_and_mala_samples_it(make_unet):
    """Training through the input gradient (create_graph) lowers the multiscale-dsm loss on
    a fixed batch of images; MALA then runs on exact energies of the trained model."""
    # no attention block: CPU flash attention has no double backward
    energy = NetworkEnergy(network(make_unet(add_attention=False)), form="residual")
    objective = ebmflow.create(
        "objective",
        "multiscale-dsm",
        noise_schedule={"name": "geometric", "sigma_max": 1.0, "sigma_min": 0.05},
    )
    gen = torch.Generator().manual_seed(0)
    grid = torch.linspace(-1, 1, 8)
    images = (grid[None, :] * grid[:, None]).expand(64, 1, 8, 8)  # one smooth image
    data = images + 0.05 * torch.randn(images.shape, generator=gen)
    optimizer = torch.optim.Adam(energy.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = objective(energy, data, generator=gen).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.7 * first, losses
    mala = ebmflow.create("sampler", "mala", step_size=1e-3)
    result = mala.run(energy, data[:8].clone(), 5, sigma=0.1, generator=gen)
    assert 0.0 < result.diagnostics["acceptance_rate"] <= 1.0


def test_saves_and_loads_with_its_network(make_unet, tmp_path):
    energy = NetworkEnergy(network(make_unet()), form="half-norm")
    ebmflow.save(energy, tmp_path / "energy")
    loaded = ebmflow.load(tmp_path / "energy")
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded(x, 0.5), energy(x, 0.5))
