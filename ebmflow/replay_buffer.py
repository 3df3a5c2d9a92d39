"""A replay buffer of MCMC chain states, for persistent contrastive divergence.

Persistent CD (Tieleman 2008, "Training Restricted Boltzmann Machines using Approximations
to the Likelihood Gradient") keeps its negative chains alive between parameter updates;
IGEBM (Du & Mordatch 2019, "Implicit Generation and Generalization in Energy-Based
Models") and JEM (Grathwohl et al. 2020, "Your Classifier is Secretly an Energy Based
Model") keep them in a buffer of C samples, start each batch of chains from stored samples,
and restart a fraction ρ = ``reinit_prob`` (5% in both papers) of them from the initial
distribution p₀ so that the buffer keeps exploring.

The buffer has ``capacity`` = C slots. A draw (:meth:`ReplayBuffer.sample`) of n chains:

    slot_i ~ U{0, …, C − 1},   r_i ~ U[0, 1),   z_i ~ p₀
    x_i = z_i                  if r_i < ρ or slot_i is empty
    x_i = samples[slot_i]      otherwise

so an empty slot acts as if it held a fresh sample of p₀ (a buffer that is still filling
draws from the initial distribution in proportion to its empty slots, exactly as JEM's
buffer pre-filled with p₀ samples would, without storing them). Chains go back either to
the slots they came from (:meth:`ReplayBuffer.update`, JEM's persistent chains), or as a
stream (:meth:`ReplayBuffer.push`, IGEBM) under a ``replacement`` policy:

- ``"fifo"``: a ring; the t-th pushed sample (t = 0, 1, …) goes to slot t mod C, so the
  buffer holds the C most recent samples.
- ``"reservoir"``: Vitter's algorithm R ("Random Sampling with a Reservoir", 1985): the
  t-th sample goes to slot t while t < C; after that r ~ U{0, …, t} is drawn and the sample
  replaces slot r if r < C, else is dropped. The buffer is then a uniform sample without
  replacement of everything ever pushed.

Samples, the filled-slot mask and the stream counter are module buffers, so the buffer is
saved with any module that holds it (``state_dict``, ``ebmflow.save``) and a restored
buffer continues exactly as the original would. All randomness comes from the ``generator``
passed to each call; draws happen on the generator's device (the CPU for ``None``, torch's
default generator) and are then moved to the buffer's device.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import torch
from torch import Tensor, nn

from ebmflow.datasets.base import generator_device
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive, check_positive_int

#: accepted ``replacement`` policies for :meth:`ReplayBuffer.push`.
REPLACEMENTS = ("fifo", "reservoir")
#: accepted names of the initial distribution p₀ (a callable is accepted too).
INITS = ("uniform", "gaussian", "bernoulli", "one-hot")

InitFn = Callable[[int, "torch.Generator | None"], Tensor]


def _event_shape(owner: str, event_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = (event_shape,) if isinstance(event_shape, int) else event_shape
    try:
        shape = tuple(check_positive_int(owner, "event_shape", d) for d in shape)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{owner}: event_shape must be a positive integer or a sequence of them, "
            f"e.g. (2,) or (1, 8, 8); got {event_shape!r}"
        ) from None
    if not shape:
        raise ConfigError(f"{owner}: event_shape must have at least one dimension, got ()")
    return shape


class ReplayBuffer(nn.Module):
    """A buffer of C = ``capacity`` chain states of shape ``event_shape``.

    Args:
        capacity: number of slots C ≥ 1.
        event_shape: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``.
        reinit_prob: ρ ∈ [0, 1], the probability that a drawn sample is replaced by a fresh
            sample of p₀ (IGEBM and JEM use 0.05).
        replacement: ``"fifo"`` or ``"reservoir"``, how :meth:`push` chooses slots.
        init: the initial distribution p₀: ``"uniform"`` on the box
            [init_low, init_high]^d, ``"gaussian"`` N(0, init_std² I), for discrete
            energies ``"bernoulli"`` (every number 0 or 1 with probability ½) or
            ``"one-hot"`` (a uniform category per one-hot vector along the last axis),
            or a callable
            ``init(n, generator) -> Tensor`` of shape ``(n, *event_shape)`` (such a buffer
            holds a Python function and cannot be rebuilt from a config file).
        init_low, init_high: the uniform box, init_low < init_high.
        init_std: the Gaussian's standard deviation, > 0.
        dtype: dtype of the stored samples.

    Buffers (saved in ``state_dict``): ``samples`` ``(C, *event_shape)``, ``filled``
    ``(C,)`` bool and ``n_pushed`` (0-d int64, the number of samples ever pushed, which
    drives both replacement policies).
    """

    samples: Tensor
    filled: Tensor
    n_pushed: Tensor

    def __init__(
        self,
        capacity: int,
        event_shape: int | Sequence[int],
        *,
        reinit_prob: float = 0.05,
        replacement: str = "fifo",
        init: str | InitFn = "uniform",
        init_low: float = -1.0,
        init_high: float = 1.0,
        init_std: float = 1.0,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        owner = "ReplayBuffer"
        self.capacity = check_positive_int(owner, "capacity", capacity)
        self.event_shape = _event_shape(owner, event_shape)
        ok = isinstance(reinit_prob, (int, float)) and not isinstance(reinit_prob, bool)
        if not ok or not 0.0 <= reinit_prob <= 1.0:
            raise ConfigError(
                f"{owner}: reinit_prob must be a probability in [0, 1], got {reinit_prob!r}"
            )
        self.reinit_prob = float(reinit_prob)
        if replacement not in REPLACEMENTS:
            raise ConfigError(
                f"{owner}: unknown replacement {replacement!r}; accepted: "
                f"{', '.join(map(repr, REPLACEMENTS))}"
            )
        self.replacement = replacement
        if not callable(init) and init not in INITS:
            raise ConfigError(
                f"{owner}: unknown init {init!r}; accepted: {', '.join(map(repr, INITS))} "
                "or a callable init(n, generator) -> Tensor"
            )
        self.init = init
        for name, value in (("init_low", init_low), ("init_high", init_high)):
            if not (
                isinstance(value, (int, float))
                and not isinstance(value, bool)
                and math.isfinite(value)
            ):
                raise ConfigError(f"{owner}: {name} must be a finite number, got {value!r}")
        if not init_low < init_high:
            raise ConfigError(
                f"{owner}: init_low must be < init_high, got init_low={init_low!r}, "
                f"init_high={init_high!r}"
            )
        self.init_low, self.init_high = float(init_low), float(init_high)
        self.init_std = check_positive(owner, "init_std", init_std)
        if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
            raise ConfigError(f"{owner}: dtype must be a floating-point torch.dtype, got {dtype!r}")
        self.register_buffer("samples", torch.zeros(self.capacity, *self.event_shape, dtype=dtype))
        self.register_buffer("filled", torch.zeros(self.capacity, dtype=torch.bool))
        self.register_buffer("n_pushed", torch.zeros((), dtype=torch.int64))

    def extra_repr(self) -> str:
        init = (
            self.init
            if isinstance(self.init, str)
            else getattr(self.init, "__qualname__", repr(self.init))
        )
        return (
            f"capacity={self.capacity}, event_shape={self.event_shape}, "
            f"reinit_prob={self.reinit_prob}, replacement={self.replacement!r}, "
            f"init={init!r}"
        )

    def __len__(self) -> int:
        """The number of filled slots."""
        return int(self.filled.sum())

    # -- drawing ---------------------------------------------------------------------------

    def initial(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` fresh samples of the initial distribution p₀, ``(n, *event_shape)``."""
        n = check_positive_int("ReplayBuffer", "n", n, minimum=0)
        shape = (n, *self.event_shape)
        device = generator_device(generator)
        dtype = self.samples.dtype
        if self.init == "uniform":
            z = torch.rand(shape, generator=generator, device=device, dtype=dtype)
            z = z.mul_(self.init_high - self.init_low).add_(self.init_low)
        elif self.init == "gaussian":
            z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
            z = z.mul_(self.init_std)
        elif self.init == "bernoulli":
            z = torch.randint(0, 2, shape, generator=generator, device=device).to(dtype)
        elif self.init == "one-hot":
            q = shape[-1]
            index = torch.randint(0, q, shape[:-1], generator=generator, device=device)
            z = torch.nn.functional.one_hot(index, q).to(dtype)
        else:
            # __init__ accepts one of INITS or a callable: here it is the callable
            z = cast(InitFn, self.init)(n, generator)
            if not isinstance(z, Tensor) or tuple(z.shape) != shape:
                got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
                raise ConfigError(
                    f"ReplayBuffer: init({n}, generator) must return a tensor of shape "
                    f"{shape}, got {got}"
                )
        return z.to(device=self.samples.device, dtype=dtype)

    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        log_weight: Callable[[Tensor], Tensor] | None = None,
        candidates: int = 1,
    ) -> tuple[Tensor, Tensor]:
        """Draw ``n`` chain starts: ``(x, indices)``.

        ``x`` is ``(n, *event_shape)``, a copy (writing to it leaves the buffer alone);
        ``indices`` ``(n,)`` int64 are the slots drawn (uniformly, with replacement), to be
        given back to :meth:`update` with the chains' new states. Each sample is a fresh
        draw of p₀ with probability ρ, and always when its slot is still empty (see the
        module docstring). Every call consumes the same amount of randomness whatever the
        buffer holds: n slots, n uniforms and n samples of p₀, in that order.

        With ``log_weight`` (log w(x), e.g. −E(x)) and ``candidates`` = M > 1, a fresh start
        is instead one of M draws of p₀ picked with probability ∝ w (sampling-importance-
        resampling): fresh chains then start in the model's modes in proportion to their
        mass under p₀·w rather than to the volume of their basins under p₀. The randomness
        is then n slots, n uniforms, n·M samples of p₀ and n more uniforms; ``log_weight``
        is evaluated on the fresh rows' candidates only.
        """
        n = check_positive_int("ReplayBuffer", "n", n, minimum=0)
        candidates = check_positive_int("ReplayBuffer", "candidates", candidates)
        device = generator_device(generator)
        indices = torch.randint(self.capacity, (n,), generator=generator, device=device)
        fresh = torch.rand(n, generator=generator, device=device) < self.reinit_prob
        if log_weight is None or candidates == 1:
            z = self.initial(n, generator)
        else:
            pool = self.initial(n * candidates, generator).view(n, candidates, *self.event_shape)
            u = torch.rand(n, generator=generator, device=device).to(self.samples.device)
        indices = indices.to(self.samples.device)
        fresh = fresh.to(self.samples.device) | ~self.filled[indices]
        if log_weight is not None and candidates > 1:
            z = pool[:, 0].clone()
            rows = fresh.nonzero().squeeze(1)
            if len(rows):
                with torch.no_grad():
                    logw = log_weight(pool[rows].flatten(0, 1)).reshape(len(rows), candidates)
                if not torch.isfinite(logw).all():
                    raise ConfigError(
                        "ReplayBuffer.sample: log_weight gave a non-finite value on a draw "
                        "of p₀; the energy is not finite on the initial distribution"
                    )
                cdf = torch.softmax(logw.double(), 1).cumsum(1)
                pick = (cdf < u[rows, None]).sum(1).clamp(max=candidates - 1)
                z[rows] = pool[rows, pick]
        mask = fresh.view(n, *([1] * len(self.event_shape)))
        return torch.where(mask, z, self.samples[indices]), indices

    # -- writing ---------------------------------------------------------------------------

    def _check_batch(self, what: str, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor) or tuple(x.shape[1:]) != self.event_shape:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ConfigError(
                f"ReplayBuffer.{what}: expected a tensor of shape (n, *{self.event_shape}), "
                f"got {got}"
            )
        return x.detach().to(device=self.samples.device, dtype=self.samples.dtype)

    @torch.no_grad()
    def update(self, indices: Tensor, x: Tensor) -> None:
        """Write ``x[i]`` into slot ``indices[i]`` (the slots :meth:`sample` returned).

        Where ``indices`` repeats a slot, the last of the repeated rows is kept.
        """
        x = self._check_batch("update", x)
        indices = torch.as_tensor(indices, device=self.samples.device)
        if indices.shape != (x.shape[0],) or indices.dtype not in (torch.int64, torch.int32):
            raise ConfigError(
                f"ReplayBuffer.update: indices must be an integer tensor of shape "
                f"({x.shape[0]},), got {indices.dtype} {tuple(indices.shape)}"
            )
        if not indices.numel():
            return
        low, high = (int(v) for v in torch.aminmax(indices))  # one read for both bounds
        if low < 0 or high >= self.capacity:
            raise ConfigError(
                f"ReplayBuffer.update: indices must lie in [0, {self.capacity}), got values "
                f"from {low} to {high}"
            )
        # index_copy_ with repeated indices keeps an unspecified row, so every row bound for
        # a slot carries the last one: in a stable sort of the slots, the last row of its
        # run of equal slots (no data-dependent shapes, so no synchronisation)
        indices = indices.long()
        order = torch.argsort(indices, stable=True)
        ordered = indices.index_select(0, order)
        end = torch.searchsorted(ordered, ordered, right=True).sub_(1)
        self.samples.index_copy_(0, ordered, x.index_select(0, order.index_select(0, end)))
        self.filled.index_fill_(0, ordered, True)

    @torch.no_grad()
    def push(self, x: Tensor, generator: torch.Generator | None = None) -> None:
        """Append the samples ``x`` to the stream, placed by the ``replacement`` policy.

        ``"fifo"`` needs no randomness; ``"reservoir"`` draws one integer per sample that
        arrives once the buffer is full (from ``generator``).
        """
        x = self._check_batch("push", x)
        m = x.shape[0]
        start = int(self.n_pushed)
        t = torch.arange(start, start + m, dtype=torch.int64)  # stream positions
        if self.replacement == "fifo":
            slots, rows = t % self.capacity, torch.arange(m)
            if m > self.capacity:  # only the last C of this batch survive the ring
                slots, rows = slots[-self.capacity :], rows[-self.capacity :]
        else:
            # Algorithm R: position t < C goes to slot t; later ones draw r ~ U{0..t}.
            n_full = int((t >= self.capacity).sum())
            device = generator_device(generator)
            u = torch.rand(n_full, generator=generator, device=device, dtype=torch.float64)
            r = torch.empty(m, dtype=torch.int64)
            r[: m - n_full] = t[: m - n_full]
            t_full = t[m - n_full :]
            # floor(u · (t + 1)) is uniform on {0..t}; float64 is exact for t < 2**52
            r[m - n_full :] = (u.cpu() * (t_full + 1).double()).floor().long().clamp_(max=t_full)
            keep = r < self.capacity
            slots, rows = r[keep], torch.arange(m)[keep]
            # sequential semantics: a later sample overwrites an earlier one in the same slot
            last = torch.full((self.capacity,), -1, dtype=torch.int64)
            last.scatter_reduce_(0, slots, rows, reduce="amax")
            slots = torch.nonzero(last >= 0).squeeze(1)
            rows = last[slots]
        device = self.samples.device
        slots, rows = slots.to(device), rows.to(device)
        self.samples[slots] = x[rows]
        self.filled[slots] = True
        self.n_pushed += m
