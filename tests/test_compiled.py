"""Compiled sampling (``Sampler.run(..., compile=...)``, ``compile_energy``).

The compiled path evaluates energy and score through one ``torch.compile`` graph while the
sampler's noise, update and Metropolis test stay eager, so a compiled run with the same
generator must reproduce the eager run up to float rounding: the compiled score differs
from autograd's by reassociated float32 sums (observed ≤ 3e-7 absolute at |score| ≈ 1), and
over 20 steps of size η = 0.01 such differences move a chain by far less than 1e-5. MALA's
accept/reject decisions compare u ~ U(0, 1) with α; a decision could flip only if u fell
within ~1e-6 of α, which with these fixed seeds does not happen, so the samples agree to the
same tolerance and the acceptance rates agree exactly.

Compiling takes 10-60 s on a CPU the first time, so those tests are marked slow; if
torch.compile cannot run here (no C compiler, an unsupported Python), they are skipped
with the reason. CUDA graphs (``compile="reduce-overhead"``) need a GPU and are only
checked for their refusal on the CPU.
"""

from __future__ import annotations

import pytest
import torch

import ebmflow
from ebmflow.samplers.annealed_langevin import AnnealedLangevin
from ebmflow.samplers.base import CompiledEnergy, compile_energy
from ebmflow.samplers.langevin import Langevin
from ebmflow.samplers.mala import MALA

ATOL = 1e-5  # see the module docstring


def mlp(noise_conditional: bool = False, seed: int = 0) -> ebmflow.Energy:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ebmflow.create(
            "energy", "mlp", dim=2, widths=[32, 32], noise_conditional=noise_conditional
        )


class Well(ebmflow.Energy):
    """A user's energy: an MLP plus a quadratic well, E(x, σ) = f(x, σ) + 2‖x‖², curved
    enough that MALA rejects proposals (a random MLP alone is almost linear)."""

    event_shape = (2,)

    def __init__(self, noise_conditional: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.noise_conditional = noise_conditional
        self.f = mlp(noise_conditional, seed)

    def forward(self, x, sigma=None):
        return self.f(x, sigma) + 2.0 * x.square().sum(1)


def seeded(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def compiler_works():
    """Skip (with the reason) when torch.compile cannot build a graph on this machine."""
    energy = Well()
    x = torch.randn(256, 2, generator=seeded(0))  # the shape the tests use: one compilation
    try:
        compile_energy(energy).energy_and_score(x)
    except Exception as exc:  # any compiler failure means "cannot test here"
        pytest.skip(f"torch.compile does not work here: {type(exc).__name__}: {exc}")
    return True


# -- fast: the option's checks, no compilation ---------------------------------------------


@pytest.mark.parametrize("bad", ["fast", 1, "cudagraphs"])
def test_run_rejects_unknown_compile_values_naming_the_accepted_ones(bad):
    with pytest.raises(ValueError, match=r"langevin: compile must be .*'reduce-overhead'"):
        Langevin(0.01).run(mlp(), torch.zeros(4, 2), 2, compile=bad)


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_are_refused_on_the_cpu(mode):
    with pytest.raises(ValueError, match=r"captures CUDA graphs and needs CUDA tensors.*cpu"):
        MALA(0.01).run(mlp(), torch.zeros(4, 2), 2, compile=mode)
    with pytest.raises(ValueError, match=r"compile_energy: .*CUDA graphs"):
        compile_energy(mlp(), mode)


def test_compile_energy_false_returns_the_energy_and_compiled_energies_are_reused():
    energy = mlp()
    assert compile_energy(energy, False) is energy
    compiled = compile_energy(energy)
    assert isinstance(compiled, CompiledEnergy) and compiled.energy is energy
    assert compile_energy(compiled) is compiled
    # the wrapper owns no parameters of its own: training the energy changes the compiled one
    assert [p.data_ptr() for p in compiled.parameters()] == [
        p.data_ptr() for p in energy.parameters()
    ]
    assert compiled.event_shape == energy.event_shape
    assert compiled.noise_conditional is energy.noise_conditional
    with pytest.raises(TypeError, match=r"compile_energy: expected an ebmflow\.Energy"):
        compile_energy(torch.nn.Linear(2, 1))


def test_compiled_energy_forward_and_differentiable_score_use_the_eager_energy():
    # neither path calls torch.compile, so this runs in milliseconds
    energy = mlp()
    compiled = compile_energy(energy)
    x = torch.randn(5, 2, generator=seeded(0), requires_grad=True)
    torch.testing.assert_close(compiled(x), energy(x), rtol=0, atol=0)
    e, s = compiled.energy_and_score(x, create_graph=True)
    e_ref, s_ref = energy.energy_and_score(x, create_graph=True)
    torch.testing.assert_close(e, e_ref, rtol=0, atol=0)
    torch.testing.assert_close(s, s_ref, rtol=0, atol=0)
    assert s.requires_grad  # differentiable in the parameters, as score matching needs
    s.square().sum().backward()
    first_layer = energy.net[0].weight
    assert first_layer.grad is not None and first_layer.grad.abs().sum() > 0


# -- slow: compiled = eager ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("sampler", [Langevin(0.01), MALA(0.1)], ids=["langevin", "mala"])
def test_compiled_run_reproduces_the_eager_run_with_the_same_generator(sampler, compiler_works):
    energy = Well()
    x0 = 2 * torch.randn(256, 2, generator=seeded(0))
    eager = sampler.run(energy, x0, 20, generator=seeded(1))
    compiled = sampler.run(energy, x0, 20, generator=seeded(1), compile=True)
    # a flipped MALA decision would move a chain by about √(2η)|ξ| ≈ 0.4, far above ATOL
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=0, atol=ATOL)
    torch.testing.assert_close(
        compiled.diagnostics["energy_trace"],
        eager.diagnostics["energy_trace"],
        rtol=1e-5,
        atol=ATOL,
    )
    if "acceptance_per_chain" in eager.diagnostics:
        assert 0.3 < eager.diagnostics["acceptance_rate"] < 0.97  # proposals were rejected
        torch.testing.assert_close(
            compiled.diagnostics["acceptance_per_chain"],
            eager.diagnostics["acceptance_per_chain"],
            rtol=0,
            atol=ATOL,
        )
    # a different generator seed gives different samples: the comparison can fail
    other = sampler.run(energy, x0, 20, generator=seeded(2), compile=True)
    assert (other.samples - eager.samples).abs().max() > 1e-2


@pytest.mark.slow
def test_compiled_energy_follows_parameter_updates_and_new_instances(compiler_works):
    energy = Well()
    compiled = compile_energy(energy)
    x = torch.randn(256, 2, generator=seeded(0))
    with torch.no_grad():
        for p in energy.parameters():
            p.mul_(1.5)  # as an optimizer step would, in place
    e, s = compiled.energy_and_score(x)
    e_ref, s_ref = energy.energy_and_score(x)
    torch.testing.assert_close(e, e_ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(s, s_ref, rtol=1e-5, atol=1e-5)
    other = Well(seed=1)  # same class, other weights: must not reuse the first one's values
    _, s2 = compile_energy(other).energy_and_score(x)
    torch.testing.assert_close(s2, other.energy_and_score(x)[1], rtol=1e-5, atol=1e-5)
    assert (s2 - s).abs().max() > 1e-2


@pytest.mark.slow
def test_compiled_annealed_langevin_matches_eager_across_noise_levels(compiler_works):
    energy = Well(noise_conditional=True)
    sampler = AnnealedLangevin([1.0, 0.3, 0.1], steps_per_level=5, epsilon=1e-3)
    x0 = torch.randn(256, 2, generator=seeded(0))
    eager = sampler.run(energy, x0, generator=seeded(1))
    compiled = sampler.run(energy, x0, generator=seeded(1), compile=True)
    torch.testing.assert_close(compiled.samples, eager.samples, rtol=0, atol=ATOL)
