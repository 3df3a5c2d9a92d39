"""Property-based tests (hypothesis) of ``ebmflow.create`` configs and energy composition.

- Random *valid* configs of the core samplers, energies and noise schedules build, work on a
  small input, and round-trip through ``get_config()``: building again from the recorded
  config records the same config.
- Random *invalid* configs (one argument given a bad value, or an unknown keyword) raise an
  :class:`ebmflow.EbmflowError` whose message names the argument — never a bare
  ``TypeError``, ``ValueError`` or ``KeyError`` from deep inside a constructor.
- Random compositions (sums, scalings, tempering, negation, mixtures, conditioning,
  guidance) of Gaussian, MLP and arbitrary-shaped energies return ``(B,)`` energies and
  ``x``-shaped scores equal to autograd's −∇E, for random batch sizes and event shapes;
  composing parts with different event shapes raises at composition time.
"""

from __future__ import annotations

import contextlib
import json
import math
import string

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import ebmflow
from ebmflow import EbmflowError

HOST = ebmflow.PluginHost(entry_points=False)  # the core's components only

SETTINGS = settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@contextlib.contextmanager
def float64_and_seeded(seed: int = 0):
    """Build in float64 with the global RNG (network initialisation) fixed, then restore."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_default_dtype(previous)


# == valid configs =============================================================================

positive = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False, allow_infinity=False)
ACTIVATIONS = [
    "celu",
    "elu",
    "gelu",
    "leaky_relu",
    "relu",
    "sigmoid",
    "silu",
    "softplus",
    "swish",
    "tanh",
]
SCHEDULES = ["geometric", "karras", "vp-linear", "vp-cosine"]


@st.composite
def decreasing_sigmas(draw, min_size=1, max_size=6):
    values = draw(
        st.lists(
            st.floats(min_value=1e-3, max_value=50.0),
            min_size=min_size,
            max_size=max_size,
            unique=True,
        )
    )
    return sorted(values, reverse=True)


@st.composite
def sampler_configs(draw):
    name = draw(st.sampled_from(["langevin", "mala", "hmc", "annealed-langevin"]))
    config: dict = {}
    if name in ("langevin", "mala", "hmc"):
        config["step_size"] = draw(positive)
    if name == "langevin" and draw(st.booleans()):
        config["noise_scale"] = draw(st.one_of(st.none(), st.floats(0.0, 2.0)))
    if name == "langevin" and draw(st.booleans()):
        low = draw(st.floats(-5.0, 4.0))
        config["clip"] = [low, draw(st.floats(low + 0.01, 5.0))]
    if name == "hmc":
        config["n_leapfrog"] = draw(st.integers(1, 8))
        config["adapt_steps"] = draw(st.integers(0, 20))
        config["target_accept"] = draw(st.floats(0.05, 0.95))
    if name == "annealed-langevin":
        config["noise_schedule"] = draw(st.one_of(st.sampled_from(SCHEDULES), decreasing_sigmas()))
        config["n_levels"] = draw(st.integers(1, 5))
        config["steps_per_level"] = draw(st.integers(1, 3))
        config["epsilon"] = draw(st.floats(1e-5, 1e-2))
        config["denoise"] = draw(st.booleans())
    return name, config


@st.composite
def energy_configs(draw):
    name = draw(st.sampled_from(["mlp", "gaussian", "gmm"]))
    d = draw(st.integers(1, 4))
    number = st.floats(-5.0, 5.0)
    spread = st.floats(0.1, 3.0)
    config: dict = {"noise_conditional": draw(st.booleans())}
    if name == "mlp":
        config["dim"] = d
        config["widths"] = draw(st.lists(st.integers(1, 12), min_size=0, max_size=3))
        config["activation"] = draw(st.sampled_from(ACTIVATIONS))
        if config["noise_conditional"]:
            config["sigma_embedding"] = draw(st.sampled_from(["log", "fourier", "none"]))
            config["scale_by_sigma"] = (config["sigma_embedding"] == "none") or draw(st.booleans())
    elif name == "gaussian":
        config["mean"] = draw(st.lists(number, min_size=d, max_size=d))
        config["std"] = draw(st.one_of(st.none(), spread, st.lists(spread, min_size=d, max_size=d)))
    else:
        k = draw(st.integers(1, 4))
        config["means"] = draw(
            st.lists(st.lists(number, min_size=d, max_size=d), min_size=k, max_size=k)
        )
        config["stds"] = draw(
            st.one_of(st.none(), spread, st.lists(spread, min_size=k, max_size=k))
        )
        config["weights"] = draw(
            st.one_of(st.none(), st.lists(st.floats(0.01, 10.0), min_size=k, max_size=k))
        )
    return name, config, d


@st.composite
def schedule_configs(draw):
    name = draw(st.sampled_from(SCHEDULES))
    if name in ("geometric", "karras"):
        sigma_min = draw(st.floats(1e-3, 1.0))
        config = {"sigma_min": sigma_min, "sigma_max": sigma_min * draw(st.floats(1.01, 1000.0))}
        if name == "karras":
            config.update(
                rho=draw(st.floats(0.5, 10.0)),
                p_mean=draw(st.floats(-3.0, 3.0)),
                p_std=draw(st.floats(0.1, 3.0)),
            )
    elif name == "vp-linear":
        beta_min = draw(st.floats(0.0, 1.0))
        config = {
            "beta_min": beta_min,
            "beta_max": beta_min + draw(st.floats(0.5, 30.0)),
            "t_eps": draw(st.floats(1e-5, 1e-2)),
        }
    else:
        config = {
            "s": draw(st.floats(1e-4, 0.05)),
            "t_eps": draw(st.floats(1e-5, 1e-2)),
            "beta_max": draw(st.floats(10.0, 999.0)),
        }
    return name, config


def assert_round_trips(kind: str, name: str, given: dict, obj) -> None:
    config = obj.get_config()
    assert {k: config[k] for k in given} == given  # what was asked for is what is recorded
    json.dumps(config, allow_nan=False)  # and it is JSON, as checkpoints store it
    again = HOST.create(kind, {"name": name, **config})
    assert type(again) is type(obj) and again.get_config() == config


@SETTINGS
@given(case=sampler_configs(), batch=st.integers(1, 5), dim=st.integers(1, 3))
@example(
    case=(
        "annealed-langevin",
        {
            "noise_schedule": [3.0, 2.0, 1.0, 0.001],
            "n_levels": 1,
            "steps_per_level": 2,
            "epsilon": 0.0078125,
            "denoise": False,
        },
    ),
    batch=1,
    dim=1,
)  # diverges
def test_valid_sampler_configs_build_sample_and_round_trip(case, batch, dim):
    name, config = case
    sampler = HOST.create("sampler", {"name": name, **config})
    assert_round_trips("sampler", name, config, sampler)
    annealed = name == "annealed-langevin"
    target = ebmflow.GaussianEnergy(mean=[0.0] * dim, noise_conditional=annealed)
    x0 = torch.randn(batch, dim, generator=torch.Generator().manual_seed(0))
    steps = None if annealed else 2
    try:
        result = sampler.run(target, x0, steps, generator=torch.Generator().manual_seed(1))
    except ebmflow.SamplerDivergedError:
        # a valid schedule can still be unstable on this target: annealed ULA steps η_i on
        # N(0, 1 + σ_i²) (x' = (1 − η_i / (1 + σ_i²)) x + noise) blow up only where some
        # η_i > 2 (1 + σ_i²), e.g. ε = 0.008 with σ from 3 down to 0.001 (η_1 ≈ 3.5·10⁴)
        assert annealed
        assert any(
            float(eta) > 2 * (1 + float(sigma) ** 2)
            for eta, sigma in zip(sampler.step_sizes, sampler.sigmas)
        )
        return
    assert result.samples.shape == (batch, dim) and torch.isfinite(result.samples).all()
    if config.get("clip") is not None:
        low, high = config["clip"]
        assert bool(((result.samples >= low) & (result.samples <= high)).all())


@SETTINGS
@given(case=energy_configs(), batch=st.integers(1, 5))
def test_valid_energy_configs_build_give_one_energy_per_sample_and_round_trip(case, batch):
    name, config, d = case
    with float64_and_seeded():
        energy = HOST.create("energy", {"name": name, **config})
    assert_round_trips("energy", name, config, energy)
    assert energy.event_shape == (d,)
    x = torch.randn(batch, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    sigma = 0.5 if config["noise_conditional"] else None
    e, s = energy.energy_and_score(x, sigma)
    assert e.shape == (batch,) and s.shape == x.shape
    assert torch.isfinite(e).all() and torch.isfinite(s).all()


@SETTINGS
@given(case=schedule_configs(), n=st.integers(1, 12))
def test_valid_noise_schedule_configs_give_decreasing_levels_and_round_trip(case, n):
    name, config = case
    schedule = HOST.create("noise_schedule", {"name": name, **config})
    assert_round_trips("noise_schedule", name, config, schedule)
    sigmas = schedule.sigmas(n)
    assert sigmas.shape == (n,) and bool((sigmas > 0).all()) and bool(torch.isfinite(sigmas).all())
    assert bool((sigmas[1:] < sigmas[:-1]).all())  # noise levels go down


# == invalid configs ============================================================================

not_a_number = st.one_of(
    st.text(max_size=3),
    st.none(),
    st.booleans(),
    st.lists(st.integers(0, 3), max_size=2),
    st.dictionaries(st.sampled_from("ab"), st.integers(), max_size=1),
)
nonfinite = st.sampled_from([math.nan, math.inf, -math.inf])
nonpositive = st.one_of(st.floats(max_value=0.0, allow_nan=False), st.integers(max_value=0))
negative = st.one_of(st.floats(max_value=-1e-6, allow_nan=False), st.integers(max_value=-1))
bad_positive = st.one_of(not_a_number, nonfinite, nonpositive)
bad_nonnegative = st.one_of(
    st.text(max_size=3), st.booleans(), nonfinite, negative, st.lists(st.integers(0, 3), max_size=2)
)
#: not a box (low, high): reversed or empty, non-finite, one number, three, text
bad_box = st.one_of(
    st.floats(-3.0, 3.0).map(lambda v: [v, v]),
    st.just([1.0, -1.0]),
    st.just([0.0, math.inf]),
    st.just([math.nan, 1.0]),
    st.just([0.5]),
    st.just([0.0, 1.0, 2.0]),
    st.text(max_size=3),
    st.just([True, 2.0]),
)


def bad_count(minimum: int):
    return st.one_of(
        st.integers(max_value=minimum - 1),
        st.floats(allow_nan=True),
        st.text(max_size=3),
        st.none(),
        st.booleans(),
    )


bad_bool = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats())


def bad_choice(accepted):
    return st.one_of(
        st.text(max_size=8).filter(lambda s: s not in accepted), st.integers(), st.none()
    )


bad_probability = st.one_of(
    not_a_number, nonfinite, st.floats(max_value=0.0), st.floats(min_value=1.0)
)
bad_sigmas = st.one_of(
    st.lists(st.floats(1e-3, 10.0), min_size=2, max_size=4, unique=True).map(sorted),
    st.just([]),
    st.lists(nonpositive, min_size=1, max_size=3),
    st.text(max_size=6).filter(lambda s: s not in SCHEDULES),
    st.integers(),
    st.just({"sigma_max": 1.0}),
    st.just([["x"]]),
)
bad_widths = st.one_of(
    st.text(max_size=3),
    st.none(),
    st.integers(),
    st.lists(
        st.one_of(
            st.integers(max_value=0), st.floats(0.5, 3.5), st.booleans(), st.text(max_size=2)
        ),
        min_size=1,
        max_size=3,
    ),
)
bad_vector_2 = st.one_of(
    st.just([]),
    st.text(max_size=3),
    st.none(),
    st.just([[0.0, 1.0]]),
    st.just([math.nan, 0.0]),
    st.just(["a", "b"]),
)
bad_stds_2 = st.one_of(
    nonpositive,
    nonfinite,
    st.text(max_size=3),
    st.just([1.0, 1.0, 1.0]),
    st.just([1.0, -1.0]),
    st.just([0.0, 1.0]),
)
bad_covariance_2 = st.one_of(
    st.just([[1.0, 2.0], [2.0, 1.0]]),
    st.just([[1.0]]),
    st.just([[1.0, 0.0], [0.0, -1.0]]),
    st.text(max_size=3),
    st.just([[math.nan, 0.0], [0.0, 1.0]]),
)
bad_weights_2 = st.one_of(
    st.just([1.0]),
    st.just([1.0, 1.0, 1.0]),
    st.just([1.0, -1.0]),
    st.just([0.0, 1.0]),
    st.just([math.nan, 1.0]),
    st.text(max_size=3),
)
bad_means = st.one_of(
    st.just([]),
    st.just([[0.0, 0.0], [1.0]]),
    st.text(max_size=3),
    st.just([[math.inf, 0.0]]),
    st.none(),
)

#: (kind, name) -> (required arguments, {argument: strategy of values it must refuse})
INVALID = {
    ("sampler", "langevin"): (
        {},
        {"step_size": bad_positive, "noise_scale": bad_nonnegative, "clip": bad_box},
    ),
    ("sampler", "mala"): ({}, {"step_size": bad_positive}),
    ("sampler", "hmc"): (
        {},
        {
            "step_size": bad_positive,
            "n_leapfrog": bad_count(1),
            "adapt_steps": bad_count(0),
            "target_accept": bad_probability,
        },
    ),
    ("sampler", "annealed-langevin"): (
        {},
        {
            "noise_schedule": bad_sigmas,
            "n_levels": bad_count(1),
            "steps_per_level": bad_count(1),
            "epsilon": bad_positive,
            "denoise": bad_bool,
        },
    ),
    ("energy", "mlp"): (
        {},
        {
            "dim": bad_count(1),
            "widths": bad_widths,
            "activation": bad_choice(ACTIVATIONS),
            "noise_conditional": bad_bool,
            "sigma_embedding": bad_choice(["log", "fourier", "none"]),
            "scale_by_sigma": bad_bool,
        },
    ),
    ("energy", "gaussian"): (
        {"mean": [0.0, 1.0]},
        {
            "mean": bad_vector_2,
            "std": bad_stds_2,
            "covariance": bad_covariance_2,
            "noise_conditional": bad_bool,
        },
    ),
    ("energy", "gmm"): (
        {"means": [[0.0, 0.0], [2.0, 2.0]]},
        {
            "means": bad_means,
            "stds": bad_stds_2,
            "weights": bad_weights_2,
            "noise_conditional": bad_bool,
        },
    ),
    ("noise_schedule", "geometric"): ({}, {"sigma_min": bad_positive, "sigma_max": bad_positive}),
    ("noise_schedule", "karras"): (
        {},
        {
            "sigma_min": bad_positive,
            "sigma_max": bad_positive,
            "rho": bad_positive,
            "p_mean": st.one_of(not_a_number, nonfinite),
            "p_std": bad_positive,
        },
    ),
    ("noise_schedule", "vp-linear"): (
        {},
        {
            "beta_min": bad_nonnegative,
            "beta_max": bad_positive,
            "t_eps": st.one_of(bad_positive, st.floats(1.0, 10.0)),
        },
    ),
    ("noise_schedule", "vp-cosine"): (
        {},
        {
            "s": bad_positive,
            "beta_max": bad_positive,
            "t_eps": st.one_of(bad_positive, st.floats(1.0, 10.0)),
        },
    ),
}


@st.composite
def invalid_configs(draw):
    kind, name = draw(st.sampled_from(sorted(INVALID)))
    required, arguments = INVALID[kind, name]
    argument = draw(st.sampled_from(sorted(arguments)))
    value = draw(arguments[argument])
    return kind, name, {**required, argument: value}, argument


def assert_ebmflow_error_naming(exc: BaseException, *names: str) -> None:
    assert isinstance(exc, EbmflowError), f"{type(exc).__name__}: {exc}"
    for name in names:
        assert name in str(exc), f"{name!r} not named in: {exc}"


@SETTINGS
@given(case=invalid_configs())
def test_invalid_argument_values_raise_an_ebmflow_error_naming_the_argument(case):
    kind, name, config, argument = case
    with float64_and_seeded(), pytest.raises(Exception) as caught:
        HOST.create(kind, {"name": name, **config})
    assert_ebmflow_error_naming(caught.value, argument)


@SETTINGS
@given(
    kind_name=st.sampled_from(sorted(INVALID)),
    keyword=st.text(string.ascii_lowercase + "_", min_size=1, max_size=12),
)
def test_unknown_keywords_raise_an_error_listing_the_accepted_ones(kind_name, keyword):
    kind, name = kind_name
    required, arguments = INVALID[kind, name]
    if keyword in arguments or keyword in ("name", "kind"):
        return  # a real argument (or the config's own keys), not an unknown one
    with pytest.raises(ebmflow.ComponentArgumentError) as caught:
        HOST.create(kind, {"name": name, **required, keyword: 1})
    assert_ebmflow_error_naming(caught.value, repr(keyword), "Accepted arguments: ", *arguments)


@SETTINGS
@given(kind_name=st.sampled_from(sorted(INVALID)))
def test_a_config_without_a_name_or_of_the_wrong_type_is_a_config_error(kind_name):
    kind, name = kind_name
    for config in ({"nom": name}, 42, [name], None):
        with pytest.raises(ebmflow.ConfigError, match="name"):
            HOST.create(kind, config)


# == composition ================================================================================


class Bowl(ebmflow.Energy):
    """E(x) = ½ a ‖x − c‖² over an event of any shape; with ``labelled``, c = y·1."""

    def __init__(self, event_shape, a: float = 1.0, labelled: bool = False) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self.a, self.labelled = a, labelled
        self.register_buffer(
            "c", torch.linspace(-1.0, 1.0, math.prod(event_shape)).reshape(event_shape)
        )

    def forward(self, x, sigma=None, y=None):
        centre = self.c if y is None else y.to(x.dtype).reshape(-1, *[1] * len(self.event_shape))
        return 0.5 * self.a * (x - centre).flatten(1).square().sum(1)


@st.composite
def leaves(draw, event_shape, batch):
    """A random energy for events of ``event_shape``: Gaussian or MLP (flat events only),
    or a Bowl (any shape), possibly conditioned on a label."""
    flat = len(event_shape) == 1
    choice = draw(st.sampled_from(["bowl", "labelled"] + (["gaussian", "mlp"] if flat else [])))
    d = event_shape[0]
    if choice == "gaussian":
        mean = draw(st.lists(st.floats(-2.0, 2.0), min_size=d, max_size=d))
        return ebmflow.GaussianEnergy(mean=mean, std=draw(st.floats(0.3, 2.0)))
    if choice == "mlp":
        widths = draw(st.lists(st.integers(1, 8), min_size=1, max_size=2))
        return ebmflow.MLPEnergy(dim=d, widths=widths, activation="tanh")
    if choice == "bowl":
        return Bowl(event_shape, a=draw(st.floats(0.2, 3.0)))
    label = draw(
        st.one_of(st.integers(0, 3), st.lists(st.integers(0, 3), min_size=batch, max_size=batch))
    )
    return ebmflow.condition(Bowl(event_shape, labelled=True), torch.tensor(label))


def composed(draw, event_shape, batch, depth):
    """A random composition tree of leaves."""
    if depth == 0 or draw(st.integers(0, 3)) == 0:
        return draw(leaves(event_shape, batch))
    op = draw(
        st.sampled_from(["sum", "scale", "temper", "negate", "difference", "mixture", "guidance"])
    )

    def sub():
        return composed(draw, event_shape, batch, depth - 1)

    if op == "sum":
        return sub() + sub()
    if op == "scale":
        return draw(st.floats(-3.0, 3.0)) * sub()
    if op == "temper":
        return sub() / draw(st.floats(0.2, 5.0))
    if op == "negate":
        return -sub()
    if op == "difference":
        return sub() - draw(st.floats(0.1, 2.0)) * sub()
    if op == "guidance":
        return ebmflow.guidance(sub(), sub(), draw(st.floats(0.0, 5.0)))
    parts = [sub() for _ in range(draw(st.integers(2, 3)))]
    weights = draw(
        st.one_of(
            st.none(), st.lists(st.floats(0.1, 5.0), min_size=len(parts), max_size=len(parts))
        )
    )
    return ebmflow.mixture(parts, weights)


event_shapes = st.lists(st.integers(1, 3), min_size=1, max_size=3).map(tuple)


@SETTINGS
@given(data=st.data(), event_shape=event_shapes, batch=st.integers(1, 6))
def test_compositions_give_one_energy_per_sample_and_the_autograd_score(data, event_shape, batch):
    with float64_and_seeded():
        energy = composed(data.draw, event_shape, batch, depth=3)
        x = torch.randn(batch, *event_shape, generator=torch.Generator().manual_seed(3))
    assert energy.event_shape == event_shape
    e, s = energy.energy_and_score(x)
    assert e.shape == (batch,) and s.shape == x.shape
    torch.testing.assert_close(energy(x), e, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(energy.score(x), s, rtol=1e-12, atol=1e-12)
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(energy(xr).sum(), xr)
    # float64: parts' scores composed vs autograd through the composite, rounding only
    torch.testing.assert_close(s, -grad, rtol=1e-9, atol=1e-9)


@SETTINGS
@given(data=st.data(), first=event_shapes, second=event_shapes)
def test_composing_energies_with_different_event_shapes_raises_at_composition(data, first, second):
    if first == second:
        return
    with float64_and_seeded():
        a = data.draw(leaves(first, 1))
        b = data.draw(leaves(second, 1))
    combine = data.draw(
        st.sampled_from(
            [
                lambda a, b: a + b,
                lambda a, b: a - 0.5 * b,
                lambda a, b: ebmflow.mixture([a, b]),
                lambda a, b: ebmflow.guidance(a, b, 2.0),
            ]
        )
    )
    with pytest.raises(ValueError, match="different event shapes"):
        combine(a, b)


@SETTINGS
@given(event_shape=event_shapes, batch=st.integers(1, 4), extra=st.integers(1, 3))
def test_samples_of_the_wrong_event_shape_are_refused_by_samplers(event_shape, batch, extra):
    energy = Bowl(event_shape) + Bowl(event_shape, a=2.0)
    wrong = (*event_shape[:-1], event_shape[-1] + extra)
    with pytest.raises(ValueError, match=r"event shape .* expects"):
        ebmflow.Langevin(0.1).run(energy, torch.zeros(batch, *wrong), 1)
