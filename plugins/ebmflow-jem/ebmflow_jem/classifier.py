"""Classifiers as energies (Grathwohl et al. 2020, "Your Classifier is Secretly an Energy
Based Model").

A classifier network f maps x to K logits f(x) ∈ ℝᴷ. Read as a joint energy-based model,

    p(x, y) ∝ exp(f(x)[y])           E(x, y) = −f(x)[y]
    p(x)    ∝ Σ_y exp(f(x)[y])       E(x)    = −logsumexp_y f(x)[y]
    p(y|x)  = softmax(f(x))[y]       (the classifier itself; Z cancels)

:class:`ClassifierEnergy` wraps any network this way: ``energy(x)`` is E(x), ``energy(x,
y=y)`` is E(x, y), so ``ebmflow.condition(energy, y)`` is the class-conditional energy
E(x | y) = −f(x)[y] (p(x | y) ∝ exp(f(x)[y])) that any sampler can draw from, and
:meth:`~ClassifierEnergy.predict` / :meth:`~ClassifierEnergy.predict_proba` are the
classifier. :class:`ConvClassifierEnergy` (``classifier-convnet``) and
:class:`MLPClassifierEnergy` (``classifier-mlp``) build their own network from JSON
arguments, so they can be saved with ``ebmflow.save`` and trained from run files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

import ebmflow
from ebmflow.extend import check_widths, make_activation, resolve_sigma


def _shape(owner: str, event_shape: Any) -> tuple[int, ...] | None:
    if event_shape is None:
        return None
    shape = (event_shape,) if isinstance(event_shape, int) else event_shape
    try:
        return tuple(ebmflow.check_positive_int(owner, "event_shape", d) for d in shape)
    except (TypeError, ValueError):
        raise ebmflow.ConfigError(
            f"{owner}: event_shape must be None or a sequence of positive integers such as "
            f"[1, 8, 8]; got {event_shape!r}"
        ) from None


class ClassifierEnergy(ebmflow.Energy):
    """Any classifier network as a joint energy: E(x) = −logsumexp f(x), E(x, y) = −f(x)[y].

    Args:
        network: an ``nn.Module`` mapping ``(B, *event_shape)`` to logits ``(B, K)``.
            Avoid batch normalisation: its statistics mix the chains of a sampler.
        n_classes: K, checked against the network's output (default: whatever it returns).
        event_shape: the shape of one input, used by samplers and composition checks
            (default ``None``: any shape).

    To save one with ``ebmflow.save`` (or train it with checkpoints) the network itself must
    be a registered component; otherwise use :class:`ConvClassifierEnergy` /
    :class:`MLPClassifierEnergy`, or save ``state_dict()`` yourself.
    """

    def __init__(
        self,
        network: nn.Module,
        n_classes: int | None = None,
        event_shape: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        owner = type(self).__name__
        if not isinstance(network, nn.Module):
            raise ebmflow.ComponentArgumentError(
                f"{owner}: network must be a torch.nn.Module returning logits (B, n_classes), "
                f"got {type(network).__name__}"
            )
        self.network = network
        self.n_classes = (
            None
            if n_classes is None
            else ebmflow.check_positive_int(owner, "n_classes", n_classes, minimum=2)
        )
        self.event_shape = _shape(owner, event_shape)

    # -- the classifier --------------------------------------------------------------------

    def logits(self, x: Tensor) -> Tensor:
        """f(x), shape ``(B, K)`` (differentiable)."""
        out = self.network(x)
        k = self.n_classes
        if (
            not isinstance(out, Tensor)
            or out.ndim != 2
            or out.shape[0] != x.shape[0]
            or (k is not None and out.shape[1] != k)
        ):
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            want = f"({x.shape[0]}, {k if k is not None else 'n_classes'})"
            raise ebmflow.ConfigError(
                f"{type(self).__name__}: the network must return logits of shape {want} for a "
                f"batch of {x.shape[0]}; got {got}"
            )
        return out

    @torch.no_grad()
    def predict_log_proba(self, x: Tensor) -> Tensor:
        """log p(y|x) = log_softmax f(x), ``(B, K)``, without gradients."""
        return torch.log_softmax(self.logits(x), dim=-1)

    @torch.no_grad()
    def predict_proba(self, x: Tensor) -> Tensor:
        """p(y|x) = softmax f(x), ``(B, K)``, without gradients."""
        return torch.softmax(self.logits(x), dim=-1)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The most probable class argmax_y f(x)[y], ``(B,)`` int64."""
        return self.logits(x).argmax(dim=-1)

    # -- the energy -------------------------------------------------------------------------

    def forward(self, x: Tensor, sigma: Any = None, y: Tensor | int | None = None) -> Tensor:
        """E(x) = −logsumexp_y f(x)[y], or E(x, y) = −f(x)[y] for labels ``y`` (an int or
        ``(B,)`` integers in [0, K)). A clean energy: ``sigma`` must be ``None``."""
        resolve_sigma(self, sigma, x)
        logits = self.logits(x)
        if y is None:
            return -torch.logsumexp(logits, dim=-1)
        return -logits.gather(1, self._labels(y, logits).unsqueeze(1)).squeeze(1)

    def _labels(self, y: Tensor | int, logits: Tensor) -> Tensor:
        owner = type(self).__name__
        batch, k = logits.shape
        y = torch.as_tensor(y, device=logits.device)
        if (
            y.is_floating_point()
            or y.dtype == torch.bool
            or y.ndim > 1
            or (y.ndim == 1 and y.shape[0] != batch)
        ):
            raise ebmflow.ConfigError(
                f"{owner}: y must be an integer class or ({batch},) integer labels, got "
                f"{y.dtype} {tuple(y.shape)}"
            )
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= k):
            raise ebmflow.ConfigError(
                f"{owner}: labels must lie in [0, {k}) for {k} classes, got values from "
                f"{int(y.min())} to {int(y.max())}"
            )
        return y.long().expand(batch) if y.ndim == 0 else y.long()


class ConvClassifierEnergy(ClassifierEnergy):
    """A small convolutional classifier on ``(channels, image_size, image_size)`` images,
    as a JEM energy.

    One 3×3 convolution per entry of ``widths`` (the first with stride 1, the others with
    stride 2, each followed by the activation), global average pooling and a linear layer
    to ``n_classes`` logits. No batch normalisation (it would couple the chains of a
    sampler). On 8×8 digits the default ``widths=(32, 64, 128)`` ends on a 2×2 map.

    Args:
        channels: image channels.
        image_size: height = width of the images.
        n_classes: number of classes K ≥ 2.
        widths: output channels of each convolution.
        activation: a name from ``ebmflow.energies.ACTIVATIONS`` (smooth ones give smooth
            scores for SGLD).
    """

    def __init__(
        self,
        channels: int = 1,
        image_size: int = 8,
        n_classes: int = 10,
        widths: Sequence[int] = (32, 64, 128),
        activation: str = "silu",
    ) -> None:
        owner = "ConvClassifierEnergy"
        channels = ebmflow.check_positive_int(owner, "channels", channels)
        image_size = ebmflow.check_positive_int(owner, "image_size", image_size)
        n_classes = ebmflow.check_positive_int(owner, "n_classes", n_classes, minimum=2)
        widths = check_widths(owner, widths)
        layers: list[nn.Module] = []
        for i, (c_in, c_out) in enumerate(zip([channels, *widths[:-1]], widths)):
            layers += [
                nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1),
                make_activation(owner, activation),
            ]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[-1], n_classes)]
        super().__init__(nn.Sequential(*layers), n_classes, (channels, image_size, image_size))


class MLPClassifierEnergy(ClassifierEnergy):
    """An MLP classifier on vectors of size ``dim``, as a JEM energy: hidden layers of
    ``widths`` with the activation, then a linear layer to ``n_classes`` logits.

    Args:
        dim: input dimension.
        n_classes: number of classes K ≥ 2.
        widths: hidden layer widths.
        activation: a name from ``ebmflow.energies.ACTIVATIONS``.
    """

    def __init__(
        self,
        dim: int = 2,
        n_classes: int = 2,
        widths: Sequence[int] = (128, 128),
        activation: str = "silu",
    ) -> None:
        owner = "MLPClassifierEnergy"
        dim = ebmflow.check_positive_int(owner, "dim", dim)
        n_classes = ebmflow.check_positive_int(owner, "n_classes", n_classes, minimum=2)
        widths = check_widths(owner, widths)
        layers: list[nn.Module] = []
        for w_in, w_out in zip([dim, *widths[:-1]], widths):
            layers += [nn.Linear(w_in, w_out), make_activation(owner, activation)]
        layers.append(nn.Linear(widths[-1], n_classes))
        super().__init__(nn.Sequential(*layers), n_classes, (dim,))
