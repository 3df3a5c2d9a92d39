"""Whole-step compilation (``ebmflow.compile_step``).

The step functions take their noise from outside, drawn with the eager sampler's calls in
its order, so run eagerly (``mode=None``) they must reproduce ``Sampler.run`` bit for bit,
and compiled they must agree with it up to float rounding (the tolerance of
tests/test_compiled.py, whose docstring gives the reasoning). Compiling takes 10-60 s on a
CPU, so the compiled comparison is marked slow.
"""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA
from ebmflow.samplers.whole_step import CompiledStep, compile_step

ATOL = 1e-5


class Well(ebmflow.Energy):
    """An MLP plus a quadratic well (curved enough that MALA rejects proposals)."""

    event_shape = (2,)

    def __init__(self, noise_conditional: bool = False) -> None:
        super().__init__()
        self.noise_conditional = noise_conditional
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.f = ebmflow.create(
                "energy", "mlp", dim=2, widths=[32, 32], noise_conditional=noise_conditional
            )

    def forward(self, x, sigma=None):
        return self.f(x, sigma) + 2.0 * x.square().sum(1)


def seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


SAMPLERS = {
    "langevin": lambda: Langevin(0.05),
    "langevin-clip": lambda: Langevin(0.05, noise_scale=0.3, clip=(-0.5, 0.5)),
    "mala": lambda: MALA(0.1),
}


def _run(sampler, energy, sigma=None, steps=15):
    x0 = torch.randn(64, 2, generator=seeded(0))
    return sampler.run(energy, x0, steps, sigma=sigma, generator=seeded())


@pytest.mark.parametrize("name", sorted(SAMPLERS))
@pytest.mark.parametrize("sigma", [None, 0.3])
def test_eager_step_functions_reproduce_the_sampler_bit_for_bit(name, sigma):
    energy = Well(noise_conditional=sigma is not None)
    eager = _run(SAMPLERS[name](), energy, sigma)
    whole = _run(compile_step(SAMPLERS[name](), mode=None), energy, sigma)
    assert torch.equal(whole.samples, eager.samples)
    assert torch.equal(whole.state.score, eager.state.score)
    assert torch.equal(whole.diagnostics["energy_trace"], eager.diagnostics["energy_trace"])
    if name == "mala":
        assert whole.diagnostics["acceptance_rate"] == eager.diagnostics["acceptance_rate"]
        assert 0.05 < eager.diagnostics["acceptance_rate"] < 0.99  # the test means something
    assert whole.diagnostics["step_size"] == eager.diagnostics["step_size"]


def test_compile_step_is_a_sampler_and_refuses_what_it_cannot_compile():
    stepper = compile_step(MALA(0.1))
    assert isinstance(stepper, CompiledStep) and isinstance(stepper, ebmflow.Sampler)
    assert stepper.name == "mala" and stepper.needs_energy and stepper.mode == "default"
    assert ebmflow.compile_step is compile_step
    with pytest.raises(ebmflow.ComponentArgumentError, match=r"langevin and mala.*HMC"):
        compile_step(ebmflow.HMC(0.1))
    with pytest.raises(ebmflow.ConfigError, match="compile_step: compile must be"):
        compile_step(MALA(0.1), mode="fast")
    stepper = compile_step(Langevin(0.1), mode="reduce-overhead")
    with pytest.raises(ebmflow.ConfigError, match="CUDA graphs"):
        stepper.run(Well(), torch.zeros(4, 2), 1)


class Cliff(ebmflow.Energy):
    """Finite at the start, NaN beyond |x| > 1: the first proposals that leave diverge."""

    event_shape = (2,)

    def forward(self, x, sigma=None):
        e = x.square().sum(1)
        return torch.where(x.abs().amax(1) > 1, torch.full_like(e, math.nan), e)


@pytest.mark.parametrize("name", ["langevin", "mala"])
def test_divergence_raises_like_the_eager_sampler(name):
    sampler = Langevin(1.0) if name == "langevin" else MALA(1.0)
    x0 = torch.zeros(32, 2)
    with pytest.raises(ebmflow.SamplerDivergedError, match=f"{name} diverged at step") as eager:
        sampler.run(Cliff(), x0, 5, generator=seeded())
    with pytest.raises(ebmflow.SamplerDivergedError, match=f"{name} diverged at step") as whole:
        compile_step(sampler, mode=None).run(Cliff(), x0, 5, generator=seeded())
    assert str(whole.value) == str(eager.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["langevin", "mala"])
def test_compiled_whole_step_matches_the_eager_sampler(name):
    energy = Well()
    eager = _run(SAMPLERS[name](), energy)
    try:
        whole = _run(compile_step(SAMPLERS[name]()), energy)
    except Exception as exc:  # any compiler failure means "cannot test here"
        pytest.skip(f"torch.compile does not work here: {type(exc).__name__}: {exc}")
    torch.testing.assert_close(whole.samples, eager.samples, atol=ATOL, rtol=0)
    if name == "mala":
        # the mean of 15 × 64 float32 acceptance probabilities, which fused kernels round
        # differently (a few 1e-8 each); a flipped decision would have moved a sample by far
        # more than ATOL above
        rate = eager.diagnostics["acceptance_rate"]
        assert whole.diagnostics["acceptance_rate"] == pytest.approx(rate, abs=1e-6)
