"""Tests of the cd and pcd objectives, run in-process on a private ebmflow.PluginHost.

Monte Carlo tolerances are derived next to each assertion; they allow 4 standard errors
(a false failure rate of about 6e-5 per assertion) unless stated otherwise.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import ebmflow_cd
import pytest
import torch
from ebmflow_cd import plugin
from ebmflow_cd.cd import ContrastiveDivergence
from ebmflow_cd.pcd import PersistentContrastiveDivergence

import ebmflow


@pytest.fixture
def host():
    host = ebmflow.PluginHost(entry_points=False)
    info = host.register(plugin, name="cd")
    assert info.status == "ok", info.error
    return host


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def mlp(seed: int = 0, widths=(32, 32)) -> ebmflow.Energy:
    with torch.random.fork_rng():  # seeded initial weights; the caller's RNG is restored
        torch.manual_seed(seed)
        return ebmflow.create("energy", "mlp", dim=2, widths=list(widths))


def batch(n: int = 64, seed: int = 100) -> torch.Tensor:
    return ebmflow.create("dataset", "8gaussians").sample(n, seeded(seed))


def grads(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.grad.clone() for p in module.parameters()]


def loss_grads(energy: ebmflow.Energy, loss: torch.Tensor) -> list[torch.Tensor]:
    """d loss / dθ for every parameter (zeros for parameters the loss does not reach)."""
    params = list(energy.parameters())
    found = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, found)]


class LearnableMeanGaussian(ebmflow.Energy):
    """E(x) = ½‖x − μ‖² with a learnable mean μ."""

    event_shape = (2,)

    def __init__(self) -> None:
        super().__init__()
        self.mean = torch.nn.Parameter(torch.zeros(2))

    def forward(self, x, sigma=None):
        return 0.5 * (x - self.mean).square().sum(dim=1)


class ScaledQuadratic(ebmflow.Energy):
    """E(x) = c·(1 + ½‖x‖²) with a learnable scale c."""

    event_shape = (2,)

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = torch.nn.Parameter(torch.tensor(c))

    def forward(self, x, sigma=None):
        return self.c * (1 + 0.5 * x.square().sum(dim=1))


# -- registration ----------------------------------------------------------------------------


def test_plugin_registers_the_cd_and_pcd_objectives(host):
    mine = [c for c in host.components() if c.plugin == "cd"]
    assert [(c.kind, c.name) for c in mine] == [("objective", "cd"), ("objective", "pcd")]
    assert all(c.summary for c in mine)
    assert isinstance(host.create("objective", "cd"), ContrastiveDivergence)
    assert isinstance(host.create("objective", "cd:pcd"), PersistentContrastiveDivergence)


def test_importing_the_plugin_module_imports_no_torch():
    root = os.path.dirname(os.path.dirname(ebmflow_cd.__file__))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    code = (
        "import sys, ebmflow_cd.plugin; "
        "assert 'torch' not in sys.modules, 'torch imported'; print('ok')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_sampler_config_dict_builds_a_registered_sampler(host):
    objective = host.create(
        "objective", {"name": "cd", "sampler": {"name": "mala", "step_size": 0.03}}
    )
    assert isinstance(objective.sampler, ebmflow.MALA) and objective.sampler.step_size == 0.03
    direct = ContrastiveDivergence(sampler={"name": "hmc", "n_leapfrog": 3})
    assert isinstance(direct.sampler, ebmflow.HMC) and direct.sampler.n_leapfrog == 3
    assert isinstance(ContrastiveDivergence().sampler, ebmflow.Langevin)


# -- the CD estimate -------------------------------------------------------------------------


def test_cd1_moves_a_gaussian_mean_to_the_data_mean():
    """CD-1 with ULA from the data: x⁻ = x⁺ + η(μ − x⁺) + √(2η)ξ, so the gradient of
    mean E(x⁺) − mean E(x⁻) in μ is η(μ − x̄⁺) − √(2η)ξ̄, and SGD with rate r moves μ by
    −rη(μ − x̄⁺) + noise. With r = 1, η = 0.2 and B = 256, μ is an AR(1) process with
    coefficient 0.8 around the data mean m and innovation variance (η² + 2η)/B per
    coordinate (x̄⁺ has variance 1/B), so its stationary s.d. is
    sqrt(0.44/256 / (1 − 0.64)) = 0.069; after 100 steps the start (‖m‖ = 2.2) is forgotten
    (0.8¹⁰⁰ ≈ 2e-10). 4 s.d. = 0.28.
    """
    energy = LearnableMeanGaussian()
    objective = ContrastiveDivergence(sampler=ebmflow.Langevin(0.2), k=1)
    optimizer = torch.optim.SGD(energy.parameters(), lr=1.0)
    target = torch.tensor([2.0, -1.0])
    gen = seeded(0)
    for _ in range(100):
        x = target + torch.randn(256, 2, generator=gen)
        optimizer.zero_grad()
        objective(energy, x, generator=gen).loss.backward()
        optimizer.step()
    assert float((energy.mean.detach() - target).abs().max()) < 4 * 0.069


@pytest.mark.parametrize("name", ["cd", "pcd"])
def test_loss_gradient_is_the_cd_gradient_for_fixed_negatives(host, name):
    """With α = λ = 0 the θ-gradient is ∇θ[mean E(x⁺) − mean E(x⁻)] with x⁻ held fixed."""
    energy = mlp()
    data = batch()
    box = {"init_low": -3.0, "init_high": 3.0} if name == "pcd" else {}
    objective = host.create(
        "objective", name, sampler={"name": "langevin", "step_size": 0.05}, k=5, **box
    )
    starts = None
    if name == "pcd":
        starts, _ = objective.buffer.sample(64, seeded(1))  # the same draw forward makes
    out = objective(energy, data, generator=seeded(1))
    got = loss_grads(energy, out.loss)

    gen = seeded(1)
    if name == "pcd":
        objective.buffer.sample(64, gen)  # consume the same random numbers
        x0 = starts
    else:
        x0 = data
    negatives = ebmflow.Langevin(0.05).run(energy, x0, 5, generator=gen).samples
    reference = energy(data).mean() - energy(negatives).mean()
    for a, b in zip(got, loss_grads(energy, reference)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert math.isclose(out.metrics["energy_gap"], reference.item(), rel_tol=1e-5, abs_tol=1e-6)
    assert out.metrics["energy_gap"] == pytest.approx(out.metrics["e_data"] - out.metrics["e_neg"])


@pytest.mark.parametrize("sampler", ["langevin", "mala", "hmc"])
def test_sampling_leaves_the_energys_parameter_gradients_alone(sampler):
    """The sampler differentiates only in x: after forward no parameter has a .grad, and
    after backward the gradient is the loss's own (nothing accumulated by the chain)."""
    energy = mlp()
    objective = ContrastiveDivergence(sampler=sampler, k=3)
    out = objective(energy, batch(), generator=seeded(2))
    assert all(p.grad is None for p in energy.parameters())
    expected = loss_grads(energy, out.loss)
    out.loss.backward()
    for a, b in zip(grads(energy), expected):
        torch.testing.assert_close(a, b)


def test_negatives_are_detached_from_the_chain():
    """The loss's graph holds one plain, batched evaluation of the 3-layer network on data
    and negatives (3 matrix products) and no double-backward node, which a gradient
    through the chain's score terms would need."""
    energy = mlp()
    for init_noise, products in ((0.0, 3), (0.1, 3)):
        objective = ContrastiveDivergence(
            sampler=ebmflow.Langevin(0.05), k=4, init_noise=init_noise
        )
        out = objective(energy, batch(), generator=seeded(3))
        seen, stack, names = set(), [out.loss.grad_fn], []
        while stack:
            node = stack.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            names.append(type(node).__name__)
            stack.extend(next_fn for next_fn, _ in node.next_functions)
        assert sum(name.startswith("AddmmBackward") for name in names) == products
        assert not any("BackwardBackward" in name for name in names), names


# -- regulariser and KL term ---------------------------------------------------------------


def test_l2_regulariser_adds_alpha_times_mean_squared_energies():
    energy = mlp()
    data = batch()
    plain = ContrastiveDivergence(sampler=ebmflow.Langevin(0.05), k=3)
    regularised = ContrastiveDivergence(sampler=ebmflow.Langevin(0.05), k=3, alpha=0.5)
    out0 = plain(energy, data, generator=seeded(4))
    out1 = regularised(energy, data, generator=seeded(4))
    negatives = ebmflow.Langevin(0.05).run(energy, data, 3, generator=seeded(4)).samples
    e_data, e_neg = energy(data), energy(negatives)
    l2 = e_data.square().mean() + e_neg.square().mean()
    torch.testing.assert_close(out1.loss, out0.loss + 0.5 * l2)
    assert out1.metrics["l2"] == pytest.approx(float(l2.detach()), rel=1e-5)
    for a, b in zip(
        loss_grads(energy, out1.loss), loss_grads(energy, e_data.mean() - e_neg.mean() + 0.5 * l2)
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_kl_term_is_the_last_langevin_step_differentiated_with_frozen_energy():
    """Du et al. 2021: λ · mean E_θ̄(x_k) with x_k = x_{k−1} − η∇E_θ(x_{k−1}) + √(2η)ξ
    differentiated in θ through the step only (θ̄: parameters frozen in the evaluation).
    Here that is computed independently with torch.func.functional_call on detached
    parameters, and compared with the objective's straight-through form."""
    eta, k, lam = 0.05, 4, 0.7
    energy = mlp()
    data = batch()
    plain = ContrastiveDivergence(sampler=ebmflow.Langevin(eta), k=k)
    with_kl = ContrastiveDivergence(sampler=ebmflow.Langevin(eta), k=k, kl_weight=lam)
    out0 = plain(energy, data, generator=seeded(5))
    out1 = with_kl(energy, data, generator=seeded(5))
    # the value changes by λ · mean E(x⁻) exactly
    torch.testing.assert_close(out1.loss, out0.loss + lam * out0.metrics["e_neg"])
    assert out1.metrics["kl"] == pytest.approx(out0.metrics["e_neg"], rel=1e-6)

    gen = seeded(5)
    x_prev = ebmflow.Langevin(eta).run(energy, data, k - 1, generator=gen).samples
    xi = torch.randn(x_prev.shape, generator=gen)
    x_in = x_prev.detach().requires_grad_(True)
    (grad_e,) = torch.autograd.grad(energy(x_in).sum(), x_in, create_graph=True)
    x_k = x_prev - eta * grad_e + math.sqrt(2 * eta) * xi
    frozen = {name: p.detach() for name, p in energy.named_parameters()}
    kl = torch.func.functional_call(energy, frozen, (x_k,)).mean()
    expected = [a + lam * b for a, b in zip(loss_grads(energy, out0.loss), loss_grads(energy, kl))]
    for a, b in zip(loss_grads(energy, out1.loss), expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_kl_term_needs_a_step_size_from_the_sampler_or_the_arguments():
    annealed = {"name": "annealed-langevin", "noise_schedule": {"name": "geometric"}}
    with pytest.raises(ValueError, match=r"cd: kl_weight=0\.5 needs kl_step_size"):
        ContrastiveDivergence(sampler=annealed, kl_weight=0.5)
    assert (
        ContrastiveDivergence(sampler=annealed, kl_weight=0.5, kl_step_size=0.01).kl_step_size
        == 0.01
    )
    assert ContrastiveDivergence(sampler=ebmflow.MALA(0.02), kl_weight=1.0).kl_step_size == 0.02


# -- samplers, errors, reproducibility -------------------------------------------------------


@pytest.mark.parametrize("name", ["cd", "pcd"])
@pytest.mark.parametrize(
    "sampler",
    [
        {"name": "langevin", "step_size": 0.02},
        {"name": "mala", "step_size": 0.02},
        {"name": "hmc", "step_size": 0.05, "n_leapfrog": 3},
    ],
)
def test_any_registered_sampler_runs_inside(host, name, sampler):
    energy = mlp()
    objective = host.create("objective", name, sampler=sampler, k=3, alpha=0.1, kl_weight=0.5)
    out = objective(energy, batch(), generator=seeded(6))
    out.loss.backward()
    assert math.isfinite(out.loss.item())
    assert all(torch.isfinite(p.grad).all() for p in energy.parameters())
    assert {"energy_gap", "e_data", "e_neg", "l2", "kl"} <= set(out.metrics)
    if sampler["name"] == "langevin":
        assert "acceptance_rate" not in out.metrics
    else:
        assert 0.0 < out.metrics["acceptance_rate"] <= 1.0


class RecordingHMC(ebmflow.HMC):
    """HMC that records the step size each of its steps uses."""

    def step(self, energy, state, generator=None):
        self.used = [*getattr(self, "used", []), self.adaptation.step_size(state)]
        return super().step(energy, state, generator)


@pytest.mark.parametrize("name", ["cd", "pcd"])
def test_hmc_warm_up_adapts_the_step_size_during_the_objectives_chains(host, name):
    """The chains run through step_and_adapt: HMC's warm-up grows a step size so small that
    every proposal is accepted (acceptance above the 0.8 target) within one training
    step's k steps (the initial search, which would move it first, is off)."""
    sampler = RecordingHMC(step_size=1e-3, n_leapfrog=2, adapt_steps=8, search_step_size=False)
    extra = {"event_shape": [2], "capacity": 64} if name == "pcd" else {}
    objective = host.create("objective", name, sampler=sampler, k=8, **extra)
    objective(mlp(), batch(), generator=seeded(0))
    assert len(sampler.used) == 8
    assert sampler.used[0] == pytest.approx(1e-3) and sampler.used[-1] > 1.1e-3


@pytest.mark.parametrize("name", ["cd", "pcd"])
def test_non_finite_loss_raises_instead_of_being_replaced(host, name):
    # E ≈ 1e20 is finite while sampling (tiny steps), but α·E² overflows float32 in the loss
    energy = ScaledQuadratic(1e20)
    objective = host.create(
        "objective", name, sampler={"name": "langevin", "step_size": 1e-30}, k=2, alpha=1.0
    )
    with pytest.raises(ebmflow.NonFiniteLossError, match=rf"{name}: the loss is not finite \(inf"):
        objective(energy, batch(), generator=seeded(7))


@pytest.mark.parametrize("name", ["cd", "pcd"])
def test_seeded_generator_makes_training_steps_reproducible(host, name):
    def train(seed):
        energy = mlp()
        objective = host.create(
            "objective",
            name,
            sampler={"name": "mala", "step_size": 0.05},
            k=3,
            alpha=0.1,
            kl_weight=0.2,
        )
        optimizer = torch.optim.Adam(energy.parameters(), lr=1e-2)
        gen = seeded(seed)
        losses = []
        for _ in range(3):
            out = objective(energy, batch(), generator=gen)
            optimizer.zero_grad()
            out.loss.backward()
            optimizer.step()
            losses.append(out.metrics)
        return losses, [p.detach().clone() for p in energy.parameters()], objective.state_dict()

    before = torch.get_rng_state()
    a, b, c = train(8), train(8), train(9)
    assert torch.equal(torch.get_rng_state(), before)
    assert a[0] == b[0] and a[0] != c[0]
    assert all(torch.equal(p, q) for p, q in zip(a[1], b[1]))
    assert all(torch.equal(a[2][key], b[2][key]) for key in a[2])


def test_noise_conditional_energy_is_refused_with_a_pointer_to_dsm():
    energy = ebmflow.create("energy", "mlp", dim=2, widths=[8], noise_conditional=True)
    with pytest.raises(ValueError, match=r"cd: MLPEnergy is noise-conditional.*'dsm'"):
        ContrastiveDivergence()(energy, batch(), generator=seeded(0))


@pytest.mark.parametrize(
    ("name", "kwargs", "message"),
    [
        ("cd", {"k": 0}, "cd: k must be an integer ≥ 1, got 0"),
        ("cd", {"alpha": -0.1}, "cd: alpha must be a number ≥ 0, got -0.1"),
        ("cd", {"kl_weight": float("nan")}, "cd: kl_weight must be a number ≥ 0"),
        ("cd", {"init_noise": -1}, "cd: init_noise must be a number ≥ 0, got -1"),
        ("cd", {"sampler": 3}, "cd: sampler must be an ebmflow.Sampler, a registered sampler"),
        ("pcd", {"k": 1.5}, "pcd: k must be an integer ≥ 1, got 1.5"),
        ("pcd", {"capacity": 0}, "pcd: capacity must be an integer ≥ 1, got 0"),
        ("pcd", {"reinit_prob": 2.0}, r"pcd: reinit_prob must be a probability in \[0, 1\]"),
        ("pcd", {"replacement": "lifo"}, "pcd: unknown replacement 'lifo'; accepted: 'fifo'"),
        ("pcd", {"init": "data"}, "pcd: unknown init 'data'; accepted: 'uniform', 'gaussian'"),
        ("pcd", {"init_low": 2.0, "init_high": 1.0}, "pcd: init_low must be < init_high"),
        ("pcd", {"write_back": "append"}, "pcd: unknown write_back 'append'; accepted: 'slots'"),
        ("pcd", {"event_shape": [0]}, "pcd: event_shape must be a positive integer"),
    ],
)
def test_invalid_arguments_name_the_objective_the_value_and_what_is_accepted(
    host, name, kwargs, message
):
    with pytest.raises((ValueError, TypeError), match=message):
        host.create("objective", name, **kwargs)


def test_unknown_sampler_name_lists_what_exists():
    with pytest.raises(ebmflow.UnknownComponentError, match="langevin"):
        ContrastiveDivergence(sampler="langevine")


# -- PCD's buffer ----------------------------------------------------------------------------


def test_pcd_chains_persist_in_the_buffer_across_steps():
    energy = mlp()
    objective = PersistentContrastiveDivergence(k=2, capacity=100, init_low=-3.0, init_high=3.0)
    gen = seeded(10)
    snapshots = []
    for _ in range(3):
        objective(energy, batch(), generator=gen)
        snapshots.append(objective.buffer.samples.clone())
    assert int(objective.buffer.filled.sum()) > 64  # distinct slots drawn over 3 × 64 draws
    assert not torch.equal(snapshots[0], snapshots[1])
    assert not torch.equal(snapshots[1], snapshots[2])


def test_pcd_push_write_back_fills_the_buffer_as_a_stream():
    objective = PersistentContrastiveDivergence(
        k=1, capacity=100, write_back="push", replacement="fifo"
    )
    energy = mlp()
    for step in range(1, 3):
        objective(energy, batch(), generator=seeded(step))
        assert int(objective.buffer.n_pushed) == 64 * step
    assert int(objective.buffer.filled.sum()) == 100


def test_pcd_event_shape_mismatch_names_the_fix():
    objective = PersistentContrastiveDivergence(event_shape=3)
    with pytest.raises(
        ValueError,
        match=r"pcd: the batch has event shape \(2,\).*"
        r"event_shape=\[2\]",
    ):
        objective(mlp(), batch(), generator=seeded(0))


def _continue(objective, energy, seed, steps=2):
    gen = seeded(seed)
    return [objective(energy, batch(), generator=gen).metrics for _ in range(steps)]


def test_pcd_state_dict_round_trip_continues_identically():
    energy = mlp()
    original = PersistentContrastiveDivergence(
        sampler={"name": "mala", "step_size": 0.05}, k=3, capacity=200, init_low=-4.0, init_high=4.0
    )
    _continue(original, energy, 11, steps=3)
    state = original.state_dict()
    assert set(state) == {"buffer.samples", "buffer.filled", "buffer.n_pushed"}
    restored = PersistentContrastiveDivergence(
        sampler={"name": "mala", "step_size": 0.05}, k=3, capacity=200, init_low=-4.0, init_high=4.0
    )
    restored.load_state_dict(state)
    assert _continue(original, energy, 12) == _continue(restored, energy, 12)


def test_pcd_saves_and_loads_with_its_buffer_and_nested_sampler(host, tmp_path):
    energy = mlp()
    original = host.create(
        "objective",
        "pcd",
        sampler={"name": "hmc", "step_size": 0.04, "n_leapfrog": 2},
        k=2,
        capacity=150,
        init="gaussian",
        init_std=2.0,
        alpha=0.1,
        replacement="reservoir",
        write_back="push",
    )
    _continue(original, energy, 13, steps=3)
    ebmflow.save(original, tmp_path / "pcd", host=host)
    loaded = ebmflow.load(tmp_path / "pcd", host=host)
    assert isinstance(loaded, PersistentContrastiveDivergence)
    assert isinstance(loaded.sampler, ebmflow.HMC)
    assert (loaded.sampler.step_size, loaded.sampler.n_leapfrog) == (0.04, 2)
    assert loaded.get_config()["alpha"] == 0.1 and loaded.buffer.replacement == "reservoir"
    for key, value in original.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert _continue(original, energy, 14) == _continue(loaded, energy, 14)


def test_cd_saves_and_loads_with_its_nested_sampler(host, tmp_path):
    original = host.create(
        "objective",
        "cd",
        sampler={"name": "mala", "step_size": 0.03},
        k=7,
        init_noise=0.01,
        kl_weight=0.5,
    )
    ebmflow.save(original, tmp_path / "cd", host=host)
    loaded = ebmflow.load(tmp_path / "cd", host=host)
    assert isinstance(loaded.sampler, ebmflow.MALA) and loaded.sampler.step_size == 0.03
    assert (loaded.k, loaded.init_noise, loaded.kl_weight) == (7, 0.01, 0.5)
    energy = mlp()
    assert _continue(original, energy, 15) == _continue(loaded, energy, 15)


def test_readme_python_example_runs():
    readme = Path(__file__).resolve().parents[1] / "README.md"
    blocks = re.findall(r"```python\n(.*?)```", readme.read_text(encoding="utf-8"), re.DOTALL)
    assert blocks, "the plugin README has no python example"
    for code in blocks:
        exec(compile(code, str(readme), "exec"), {"__name__": "__readme__"})


def test_pcd_restarts_chains_where_the_model_puts_its_mass_with_init_candidates(host):
    """A well N((2, 2), 0.5² I) and p₀ uniform on [−4, 4]²: plain restarts spread over the
    box (mean 0), resampled ones (64 candidates, weights exp(−E)) start near the well."""
    energy = ebmflow.GaussianEnergy(mean=[2.0, 2.0], std=0.5)
    batch = torch.zeros(512, 2)
    means = {}
    for m in (1, 64):
        objective = host.create(
            "objective", "pcd", k=1, capacity=512, reinit_prob=1.0, init_low=-4.0,
            init_high=4.0, init_candidates=m, sampler={"name": "langevin", "step_size": 1e-6},
        )  # fmt: skip
        objective(energy, batch, generator=torch.Generator().manual_seed(0))
        buffer = objective.buffer
        means[m] = buffer.samples[buffer.filled].mean(0)  # the slots this batch wrote
        assert f"init_candidates={m}" in repr(objective)
    # 512 uniform draws on [−4, 4]: standard error of the mean 8 / √(12 · 512) ≈ 0.10
    assert means[1].abs().max() < 0.5
    assert (means[64] - 2.0).abs().max() < 0.3, means[64]
    with pytest.raises(ebmflow.ConfigError, match=r"pcd: init_candidates"):
        host.create("objective", "pcd", init_candidates=0)
