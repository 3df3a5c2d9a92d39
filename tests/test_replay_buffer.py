"""Tests of ebmflow.ReplayBuffer: capacity, FIFO order, reservoir uniformity, the reinit
fraction, checkpointing and reproducibility.

Monte Carlo tolerances: a fraction estimated from N independent draws with probability p has
standard error sqrt(p(1 − p)/N); assertions allow 4 standard errors (a false failure rate of
about 6e-5 per assertion) unless stated otherwise.
"""

from __future__ import annotations

import math

import pytest
import torch

import ebmflow


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def stream(start: int, stop: int) -> torch.Tensor:
    """Rows (t, −t) for t in [start, stop): a sample's value names its stream position."""
    t = torch.arange(start, stop, dtype=torch.float32)
    return torch.stack([t, -t], dim=1)


def test_buffer_is_public_and_keeps_its_state_as_module_buffers():
    buffer = ebmflow.ReplayBuffer(7, (2,))
    assert isinstance(buffer, torch.nn.Module)
    state = buffer.state_dict()
    assert set(state) == {"samples", "filled", "n_pushed"}
    assert state["samples"].shape == (7, 2) and state["filled"].shape == (7,)
    assert len(buffer) == 0


@pytest.mark.parametrize("replacement", ["fifo", "reservoir"])
def test_push_never_exceeds_capacity(replacement):
    buffer = ebmflow.ReplayBuffer(10, 2, replacement=replacement)
    gen = seeded(0)
    for start in range(0, 95, 19):
        buffer.push(stream(start, start + 19), gen)
        assert len(buffer) == min(start + 19, 10)
        assert buffer.samples.shape == (10, 2)
    assert int(buffer.n_pushed) == 95


def test_fifo_holds_the_most_recent_samples_in_ring_order():
    buffer = ebmflow.ReplayBuffer(8, 2, replacement="fifo")
    for start, stop in [(0, 3), (3, 11), (11, 12), (12, 29)]:
        buffer.push(stream(start, stop))
    # 29 samples pushed: slot t mod 8 holds the latest t, i.e. t = 21 … 28
    expected = torch.zeros(8, 2)
    for t in range(21, 29):
        expected[t % 8] = stream(t, t + 1)[0]
    assert torch.equal(buffer.samples, expected)


def test_fifo_batch_larger_than_capacity_keeps_its_last_rows():
    buffer = ebmflow.ReplayBuffer(4, 2)
    buffer.push(stream(0, 10))
    assert sorted(buffer.samples[:, 0].tolist()) == [6.0, 7.0, 8.0, 9.0]


@pytest.mark.parametrize("capacity", [1, 5])
def test_reservoir_keeps_a_uniform_sample_of_the_stream(capacity):
    """Algorithm R keeps each of N stream items with probability p = C/N.

    Over R runs the count O_j of runs keeping item j is Binomial(R, p), so
    X = Σ_j (O_j − Rp)² / (Rp(1 − p)) has mean N (the counts are slightly negatively
    correlated, which only lowers the spread) and standard deviation ≈ sqrt(2N); the bound
    N + 5·sqrt(2N) fails a correct implementation with probability well under 1e-4, and
    keeping the last C items gives X in the thousands. Drawing r from {0 … t − 1} instead
    of {0 … t} keeps the first C items with probability (C − 1)/(N − 1) instead of C/N
    (never, for C = 1), which the second check catches.
    """
    n_items, runs = 40, 1000
    gen = seeded(1)
    counts = torch.zeros(n_items)
    buffer = ebmflow.ReplayBuffer(capacity, 2, replacement="reservoir")
    for _ in range(runs):
        buffer.filled.zero_()
        buffer.n_pushed.zero_()
        buffer.push(stream(0, n_items // 2), gen)
        buffer.push(stream(n_items // 2, n_items), gen)
        kept = buffer.samples[:, 0].long()
        assert len(set(kept.tolist())) == capacity
        counts[kept] += 1
    p = capacity / n_items
    statistic = float(((counts - runs * p) ** 2).sum() / (runs * p * (1 - p)))
    assert statistic < n_items + 5 * math.sqrt(2 * n_items), statistic
    # the mean count of the first C items has standard error sqrt(Rp(1 − p)/C)
    first = float(counts[:capacity].mean())
    assert abs(first - runs * p) < 4 * math.sqrt(runs * p * (1 - p) / capacity), first


def test_reservoir_batched_pushes_equal_one_at_a_time():
    batched = ebmflow.ReplayBuffer(6, 2, replacement="reservoir")
    single = ebmflow.ReplayBuffer(6, 2, replacement="reservoir")
    gen_a, gen_b = seeded(2), seeded(2)
    batched.push(stream(0, 4), gen_a)
    batched.push(stream(4, 40), gen_a)
    for t in range(40):
        single.push(stream(t, t + 1), gen_b)
    assert torch.equal(batched.samples, single.samples)


def test_reinit_fraction_matches_reinit_prob():
    capacity, n, rho = 1000, 100_000, 0.05
    buffer = ebmflow.ReplayBuffer(capacity, 2, reinit_prob=rho)  # p0 = U[-1, 1]²
    buffer.push(torch.full((capacity, 2), 100.0))  # stored samples lie far outside p0
    x, _ = buffer.sample(n, seeded(3))
    fresh = float((x[:, 0] < 50).float().mean())
    assert abs(fresh - rho) < 4 * math.sqrt(rho * (1 - rho) / n)  # 4 SE = 0.0028
    assert float(x[x[:, 0] < 50].abs().max()) <= 1.0


def test_filling_buffer_draws_the_initial_distribution_for_empty_slots():
    rho, n = 0.2, 50_000
    buffer = ebmflow.ReplayBuffer(100, 2, reinit_prob=rho)
    x, _ = buffer.sample(n, seeded(4))
    assert float(x.abs().max()) <= 1.0  # an empty buffer draws only from p0
    buffer.push(torch.full((50, 2), 100.0))  # half the slots filled
    x, _ = buffer.sample(n, seeded(5))
    fresh = float((x[:, 0] < 50).float().mean())
    expected = 0.5 + 0.5 * rho  # an empty slot, or a filled one re-initialised
    assert abs(fresh - expected) < 4 * math.sqrt(expected * (1 - expected) / n)  # 0.0088


@pytest.mark.parametrize("candidates", [2, 8])
def test_resampled_restarts_follow_the_sampling_importance_resampling_law(candidates):
    """p₀ = U[−1, 1], weight 3 on x > 0 and 1 below: with M candidates and K ~ Bin(M, ½) of
    them positive, a restart is positive with probability E[3K / (3K + M − K)]; inside
    each half it stays uniform."""
    n = 40_000
    buffer = ebmflow.ReplayBuffer(10, 1, reinit_prob=1.0)
    calls = []

    def log_weight(x):
        calls.append(len(x))
        return torch.where(x[:, 0] > 0, math.log(3.0), 0.0)

    x, _ = buffer.sample(n, seeded(6), log_weight=log_weight, candidates=candidates)
    m = candidates
    expected = sum(math.comb(m, k) * 0.5**m * (3 * k / (3 * k + m - k)) for k in range(1, m + 1))
    positive = float((x[:, 0] > 0).float().mean())
    assert abs(positive - expected) < 4 * math.sqrt(expected * (1 - expected) / n)  # ≤ 0.01
    right = x[x[:, 0] > 0, 0]
    assert abs(float(right.mean()) - 0.5) < 4 * math.sqrt(1 / 12 / len(right))  # U(0, 1]
    assert calls == [n * m]  # every row is fresh: each candidate weighed once


def test_resampling_weighs_only_the_restarted_chains():
    buffer = ebmflow.ReplayBuffer(100, 2, reinit_prob=0.0)
    buffer.push(torch.full((100, 2), 7.0))
    calls = []

    def log_weight(x):
        calls.append(len(x))
        return -x.sum(1)

    x, _ = buffer.sample(64, seeded(7), log_weight=log_weight, candidates=4)
    assert calls == [] and torch.equal(x, torch.full((64, 2), 7.0))
    with pytest.raises(ebmflow.ConfigError, match=r"log_weight gave a non-finite value"):
        ebmflow.ReplayBuffer(5, 2, reinit_prob=1.0).sample(
            4, seeded(8), log_weight=lambda x: torch.full((len(x),), math.nan), candidates=3
        )
    with pytest.raises(ebmflow.ConfigError, match=r"candidates"):
        buffer.sample(4, seeded(8), log_weight=log_weight, candidates=0)


def test_update_writes_chains_back_to_the_slots_they_came_from():
    buffer = ebmflow.ReplayBuffer(50, 3, reinit_prob=0.0)
    gen = seeded(6)
    x, indices = buffer.sample(20, gen)
    assert indices.dtype == torch.int64 and indices.shape == (20,)
    moved = x + 10.0
    buffer.update(indices, moved)
    assert torch.equal(buffer.samples[indices], moved[_last_occurrence(indices)])
    assert int(buffer.filled.sum()) == len(set(indices.tolist()))
    again, again_indices = buffer.sample(1000, gen)
    stored = buffer.filled[again_indices]
    assert torch.equal(again[stored], buffer.samples[again_indices[stored]])
    again[:] = 0.0
    assert float(buffer.samples[indices].min()) > 8.0  # sample() returns a copy


def _last_occurrence(indices: torch.Tensor) -> torch.Tensor:
    """For each position, the row of the last occurrence of its index."""
    last = {int(i): row for row, i in enumerate(indices.tolist())}
    return torch.tensor([last[int(i)] for i in indices])


def test_update_with_repeated_slots_keeps_the_last_row():
    buffer = ebmflow.ReplayBuffer(4, 1)
    buffer.update(torch.tensor([2, 0, 2, 2]), torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    assert buffer.samples[:, 0].tolist() == [2.0, 0.0, 4.0, 0.0]
    assert buffer.filled.tolist() == [True, False, True, False]


@pytest.mark.parametrize("replacement", ["fifo", "reservoir"])
def test_state_dict_round_trip_restores_identical_behaviour(replacement):
    original = ebmflow.ReplayBuffer(30, 2, reinit_prob=0.1, replacement=replacement)
    gen = seeded(7)
    for _ in range(5):
        x, indices = original.sample(16, gen)
        original.update(indices, x * 0.5 + 1)
        original.push(x - 1, gen)
    restored = ebmflow.ReplayBuffer(30, 2, reinit_prob=0.1, replacement=replacement)
    restored.load_state_dict(original.state_dict())
    gen_a, gen_b = seeded(8), seeded(8)
    for _ in range(4):
        xa, ia = original.sample(16, gen_a)
        xb, ib = restored.sample(16, gen_b)
        assert torch.equal(xa, xb) and torch.equal(ia, ib)
        original.push(xa + 3, gen_a)
        restored.push(xb + 3, gen_b)
        original.update(ia, xa * 2)
        restored.update(ib, xb * 2)
    for key, value in original.state_dict().items():
        assert torch.equal(value, restored.state_dict()[key]), key


@pytest.mark.parametrize("init", ["uniform", "gaussian"])
def test_seeded_generator_reproduces_draws_and_leaves_global_rng_alone(init):
    def run(seed):
        buffer = ebmflow.ReplayBuffer(40, (2, 2), init=init, replacement="reservoir")
        gen = seeded(seed)
        out = []
        for _ in range(6):
            x, indices = buffer.sample(12, gen)
            buffer.push(x + 1, gen)
            buffer.update(indices, x)
            out.append(x)
        return torch.cat(out), buffer.samples.clone()

    before = torch.get_rng_state()
    a, b, c = run(9), run(9), run(10)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_initial_distributions_have_their_documented_moments():
    n = 40_000
    uniform = ebmflow.ReplayBuffer(1, 1, init="uniform", init_low=-2.0, init_high=4.0)
    x = uniform.initial(n, seeded(11))
    assert float(x.min()) >= -2.0 and float(x.max()) <= 4.0
    # U[−2, 4]: mean 1, sd sqrt(3); 4 SE of the mean = 4·sqrt(3/n) = 0.035
    assert abs(float(x.mean()) - 1.0) < 4 * math.sqrt(3.0 / n)
    gaussian = ebmflow.ReplayBuffer(1, 1, init="gaussian", init_std=0.5)
    x = gaussian.initial(n, seeded(12))
    # sample sd of N(0, 0.25): SE of the variance 0.25·sqrt(2/n)
    assert abs(float(x.var()) - 0.25) < 4 * 0.25 * math.sqrt(2.0 / n)


def test_callable_init_is_used_and_its_shape_checked():
    buffer = ebmflow.ReplayBuffer(
        5, 3, init=lambda n, generator: torch.full((n, 3), 7.0), reinit_prob=1.0
    )
    x, _ = buffer.sample(4, seeded(13))
    assert torch.equal(x, torch.full((4, 3), 7.0))
    bad = ebmflow.ReplayBuffer(5, 3, init=lambda n, generator: torch.zeros(n, 2))
    with pytest.raises(ValueError, match=r"init\(4, generator\) must return .*\(4, 3\)"):
        bad.sample(4, seeded(13))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be an integer ≥ 1, got 0"),
        ({"capacity": 2.5}, "capacity must be an integer ≥ 1"),
        ({"event_shape": ()}, "event_shape must have at least one dimension"),
        ({"event_shape": (2, 0)}, "event_shape must be a positive integer"),
        ({"reinit_prob": 1.5}, r"reinit_prob must be a probability in \[0, 1\], got 1.5"),
        ({"reinit_prob": -0.1}, "reinit_prob must be a probability"),
        ({"replacement": "lru"}, "unknown replacement 'lru'; accepted: 'fifo', 'reservoir'"),
        ({"init": "normal"}, "unknown init 'normal'; accepted: 'uniform', 'gaussian'"),
        ({"init_low": 1.0, "init_high": 1.0}, "init_low must be < init_high"),
        ({"init_std": 0.0}, "init_std must be a number > 0"),
        ({"dtype": torch.int64}, "dtype must be a floating-point torch.dtype"),
    ],
)
def test_invalid_arguments_raise_errors_naming_the_value_and_what_is_accepted(kwargs, message):
    arguments = {"capacity": 10, "event_shape": (2,), **kwargs}
    capacity, event_shape = arguments.pop("capacity"), arguments.pop("event_shape")
    with pytest.raises(ValueError, match=message):
        ebmflow.ReplayBuffer(capacity, event_shape, **arguments)


def test_writes_with_the_wrong_shape_or_indices_raise():
    buffer = ebmflow.ReplayBuffer(10, 2)
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(n, \*\(2,\)\)"):
        buffer.push(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        buffer.update(torch.tensor([0, 10]), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"integer tensor of shape \(2,\)"):
        buffer.update(torch.tensor([0.0, 1.0]), torch.zeros(2, 2))


def test_buffer_follows_the_module_to_another_dtype():
    buffer = ebmflow.ReplayBuffer(10, 2).to(torch.float64)
    x, _ = buffer.sample(5, seeded(14))
    assert x.dtype == torch.float64
    buffer.push(x)
    assert buffer.samples.dtype == torch.float64
