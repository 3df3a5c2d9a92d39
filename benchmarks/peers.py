"""Side-by-side runners for the peer libraries ebmkit (``import ebm``) and torchebm, for the
scaling curves. Both are optional benchmark extras, never dependencies of ebmflow: where
one is not importable, or has no such sampler, :func:`runner` returns the reason instead.

Neither peer takes a ``torch.Generator`` per step the way ebmflow does (ebmkit draws from
the global RNG), so the peers' runs seed the global RNG inside ``torch.random.fork_rng``,
which restores the caller's state.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable

import torch
from torch import Tensor, nn

PEERS = ("ebmkit", "torchebm")
_MODULE = {"ebmkit": "ebm", "torchebm": "torchebm"}


def available(peer: str) -> str | None:
    """``None`` when ``peer`` can be imported, else the reason it cannot."""
    if importlib.util.find_spec(_MODULE[peer]) is None:
        return f"{peer} is not installed (pip install {peer}; an optional benchmark extra)"
    return None


def _seeded(fn: Callable[[], Tensor]) -> Callable[[], Tensor]:
    def run() -> Tensor:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1)
            return fn()

    return run


def runner(
    peer: str,
    kind: str,
    f: nn.Module,
    x: Tensor,
    eta: float,
    n_steps: int,
    *,
    n_leapfrog: int = 5,
    betas: Tensor | None = None,
) -> Callable[[], Tensor] | str:
    """A callable running ``n_steps`` of sampler ``kind`` (``langevin``, ``mala``, ``hmc``,
    ``parallel-tempering``) of ``peer`` on E = ``f`` from ``x``, or why there is none.
    For parallel tempering ``x`` holds the chains of one replica and ``betas`` the ladder."""
    reason = available(peer)
    if reason is not None:
        return reason
    if peer == "ebmkit":
        return _ebmkit(kind, f, x, eta, n_steps, n_leapfrog, betas)
    return _torchebm(kind, f, x, eta, n_steps, n_leapfrog)


def _ebmkit(kind, f, x, eta, n_steps, n_leapfrog, betas):
    from ebm import samplers

    if kind == "langevin":
        sampler = samplers.LangevinDynamics(step_size=eta, steps=n_steps)
    elif kind == "mala":
        sampler = samplers.MALA(step_size=eta, steps=n_steps)
    elif kind == "hmc":
        sampler = samplers.HMC(step_size=eta, leapfrog_steps=n_leapfrog, steps=n_steps)
    elif kind == "parallel-tempering" and betas is not None:
        temperatures = tuple(float(1.0 / b) for b in betas)
        sampler = samplers.ParallelTempering(
            samplers.MALA(step_size=eta, steps=1), temperatures=temperatures, steps=n_steps
        )
    else:
        return f"ebmkit has no {kind} sampler"
    return _seeded(lambda: sampler.sample(f, x, steps=n_steps))


class _TorchebmModel:
    """Built lazily: torchebm's BaseModel is only importable where torchebm is installed."""

    cls: type | None = None

    @classmethod
    def wrap(cls, f: nn.Module):
        if cls.cls is None:
            from torchebm.core import BaseModel

            class Wrapped(BaseModel):
                def __init__(self, net):
                    super().__init__()
                    self.net = net

                def forward(self, x):
                    return self.net(x)

            cls.cls = Wrapped
        return cls.cls(f)


def _torchebm(kind, f, x, eta, n_steps, n_leapfrog):
    from torchebm import samplers

    model = _TorchebmModel.wrap(f)
    if kind == "langevin":
        sampler = samplers.LangevinDynamics(model, step_size=eta, noise_scale=1.0)
    elif kind == "hmc":
        sampler = samplers.HamiltonianMonteCarlo(model, step_size=eta, n_leapfrog_steps=n_leapfrog)
    else:
        return f"torchebm has no {kind} sampler"
    return _seeded(lambda: sampler.sample(x=x.clone(), n_steps=n_steps))
