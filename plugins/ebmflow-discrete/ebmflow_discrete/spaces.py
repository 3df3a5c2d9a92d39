"""Binary and one-hot categorical event spaces: checking states, flipping and drawing them.

An energy over a discrete space declares it with ``event_space`` (``ebmflow.Energy``):

- ``"binary"``: every number of an event is 0 or 1 (x ∈ {0, 1}^event_shape), stored as
  a floating-point tensor so that gradients ∇ₓE exist (Gibbs-with-Gradients and discrete
  Langevin use them);
- ``"categorical"``: the last axis of an event is a one-hot vector over q categories
  (x ∈ {e₁, …, e_q}^sites), also floating point.

The helpers here check a batch of states (:func:`check_states`), write a state's
flattened view (:func:`flat_sites`) and draw uniform states (:func:`uniform_states`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

import ebmflow

#: the discrete values of ``Energy.event_space``.
DISCRETE_SPACES = ("binary", "categorical")


def check_space(owner: str, space: str) -> str:
    if space not in DISCRETE_SPACES:
        raise ebmflow.ConfigError(
            f"{owner}: event_space must be one of {', '.join(map(repr, DISCRETE_SPACES))}, "
            f"got {space!r}"
        )
    return space


def check_states(owner: str, space: str, x: Tensor) -> None:
    """Raise :class:`~ebmflow.ConfigError` naming ``owner`` unless every event of ``x`` is a
    state of ``space``: all numbers 0 or 1 (``"binary"``), and exactly one 1 along the last
    axis (``"categorical"``). One reduction in the common case."""
    if not isinstance(x, Tensor) or not torch.is_floating_point(x):
        got = x.dtype if isinstance(x, Tensor) else type(x).__name__
        raise ebmflow.ConfigError(
            f"{owner}: expects a floating-point tensor of 0/1 values, got {got}"
        )
    if x.numel() == 0:
        return
    detached = x.detach()
    # x² = x holds exactly for 0 and 1 (and fails for NaN): one product and one comparison
    binary = torch.equal(detached * detached, detached)
    if space == "binary":
        if not binary:
            bad = detached[(detached != 0) & (detached != 1)]
            raise ebmflow.ConfigError(
                f"{owner}: expected binary states (every number 0 or 1), but "
                f"{bad.numel()} of {x.numel()} numbers are not (e.g. {float(bad[0])!r}); "
                "binarise the data (e.g. (x > 0.5).float()) or use a continuous energy"
            )
        return
    if not binary or not bool((detached.sum(dim=-1) == 1).all()):
        raise ebmflow.ConfigError(
            f"{owner}: expected categorical states (the last axis of every event one-hot: "
            "0/1 values summing to 1), but some numbers are not 0 or 1 or some rows do not "
            "sum to 1; encode categories as torch.nn.functional.one_hot(labels, q).float()"
        )


def flat_sites(space: str, x: Tensor) -> Tensor:
    """``x`` (B, *event) as (B, D) binary sites, or (B, N, q) categorical sites (a view)."""
    if space == "binary":
        return x.reshape(x.shape[0], -1)
    return x.reshape(x.shape[0], -1, x.shape[-1])


def n_states(space: str, event_shape: Sequence[int]) -> int:
    """How many states one event has: 2^D, or q^N for N one-hot sites of q categories."""
    if space == "binary":
        return 2 ** math.prod(event_shape)
    return event_shape[-1] ** math.prod(event_shape[:-1])


def uniform_states(
    space: str,
    n: int,
    event_shape: Sequence[int],
    generator: torch.Generator | None = None,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> Tensor:
    """``n`` states drawn uniformly from ``space`` with events of ``event_shape``."""
    shape = (n, *event_shape)
    gen_device = generator.device if generator is not None else torch.device("cpu")
    if space == "binary":
        x = torch.randint(0, 2, shape, generator=generator, device=gen_device)
    else:
        index = torch.randint(0, shape[-1], shape[:-1], generator=generator, device=gen_device)
        x = torch.nn.functional.one_hot(index, shape[-1])
    return x.to(dtype=dtype, device=device)


def gumbel_like(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard Gumbel noise shaped like ``logits``: argmax(logits + G) is a draw of
    softmax(logits) (the Gumbel-max trick), batched over rows without a Python loop."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=logits.dtype)
    tiny = torch.finfo(logits.dtype).tiny
    return -torch.log(-torch.log(u.clamp_(min=tiny)))


def single_site_changes(space: str, x: Tensor) -> Tensor:
    """Every state one site away from each event of ``x``: for binary states the D flips,
    (B, D, *event); for categorical ones every site set to every category (the current
    category included), (B, N·q, *event), ordered site by site."""
    flat = flat_sites(space, x)
    if space == "binary":
        d = flat.shape[1]
        eye = torch.eye(d, dtype=x.dtype, device=x.device)
        flips = flat[:, None, :] + eye - 2.0 * flat[:, None, :] * eye  # x_i → 1 − x_i
        return flips.reshape(x.shape[0], d, *x.shape[1:])
    n, q = flat.shape[1], flat.shape[2]
    states = flat[:, None, None].repeat(1, n, q, 1, 1)  # (B, N, q, N, q)
    sites = torch.arange(n, device=x.device)
    states[:, sites, :, sites, :] = torch.eye(q, dtype=x.dtype, device=x.device)
    return states.reshape(x.shape[0], n * q, *x.shape[1:])


def check_discrete_energy(owner: str, energy: object) -> str:
    """The event space of ``energy``; raise naming ``owner`` unless it is discrete."""
    if not isinstance(energy, ebmflow.Energy):
        raise ebmflow.ComponentArgumentError(
            f"{owner}: expected an ebmflow.Energy, got {type(energy).__name__}"
        )
    space = getattr(energy, "event_space", "continuous")
    if space not in DISCRETE_SPACES:
        raise ebmflow.ConfigError(
            f"{owner} trains energies over discrete states ('binary' or 'categorical'), but "
            f"{type(energy).__name__} is defined on a {space!r} event space; use an energy "
            "such as 'ising', 'potts', 'rbm' or 'binary-mlp', or a continuous objective "
            "('dsm', 'cd', ...)"
        )
    return space
