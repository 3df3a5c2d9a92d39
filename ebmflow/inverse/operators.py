"""Linear measurement operators A for inverse problems y = A x + n.

Each operator maps a batch ``(B, *event_shape)`` to measurements ``(B, *measurement_shape)``
and knows its adjoint Aᵀ (the vector–Jacobian product, exact for a linear map) and its
operator norm ‖A‖ (largest singular value), which the annealed likelihood uses.

- :class:`MaskOperator` (``"mask"``): A x = m ⊙ x, inpainting (m of 0/1 or weights).
- :class:`BlurOperator` (``"blur"``): A x = k ∗ x, a Gaussian blur of images (zero padding).
- :class:`DownsampleOperator` (``"downsample"``): A x = average of ``factor``×``factor``
  pixel blocks.
- :class:`MatrixOperator` (``"matrix"``): A x = M vec(x), any dense matrix.
- :class:`CallableOperator`: any Python callable, checked to be linear on random probes.

:func:`build_operator` turns a spec (a name, a dict ``{"name": "mask", ...}``, an operator
or a callable) into an operator.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ebmflow.errors import ComponentArgumentError, ConfigError
from ebmflow.validation import check_positive, check_positive_int

#: the operators :func:`build_operator` knows by name.
OPERATOR_NAMES = ("identity", "mask", "blur", "downsample", "matrix")


class LinearOperator(nn.Module):
    """Base class: ``forward(x) -> A x`` on a batch; :meth:`adjoint` and :meth:`norm`.

    Subclasses with a closed-form norm set ``self._norm``; otherwise :meth:`norm` runs
    power iteration on AᵀA once and keeps the value.
    """

    name = "linear"

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.event_shape = tuple(event_shape)
        self._norm: float | None = None

    def measurement_shape(self) -> tuple[int, ...]:
        """The shape of one measurement A x."""
        probe = torch.zeros(1, *self.event_shape, dtype=self._dtype(), device=self._device())
        return tuple(self(probe).shape[1:])

    def _tensors(self) -> list[Tensor]:
        return [*self.parameters(), *self.buffers()]

    def _dtype(self) -> torch.dtype:
        floats = [t.dtype for t in self._tensors() if t.is_floating_point()]
        return floats[0] if floats else torch.get_default_dtype()

    def _device(self) -> torch.device:
        tensors = self._tensors()
        return tensors[0].device if tensors else torch.device("cpu")

    def adjoint(self, v: Tensor) -> Tensor:
        """Aᵀ v for measurements ``v`` (B, *measurement_shape): the vector–Jacobian product
        of A, exact because A is linear."""
        with torch.enable_grad():
            x = torch.zeros(
                v.shape[0], *self.event_shape, dtype=v.dtype, device=v.device, requires_grad=True
            )
            (out,) = torch.autograd.grad(self(x), x, v)
        return out

    def norm(self) -> float:
        """‖A‖, the largest singular value (power iteration on AᵀA, 100 rounds, from a
        fixed start so the value is reproducible)."""
        if self._norm is None:
            gen = torch.Generator(device=self._device()).manual_seed(0)
            v = torch.randn(
                1, *self.event_shape, generator=gen, dtype=self._dtype(), device=self._device()
            )
            value = 0.0
            for _ in range(100):
                v = v / v.norm().clamp_min(1e-30)
                w = self.adjoint(self(v))
                value = float(w.flatten().dot(v.flatten()))
                v = w
            self._norm = math.sqrt(max(value, 0.0))
        return self._norm

    def spec(self) -> dict[str, Any]:
        """A config dict that :func:`build_operator` rebuilds this operator from."""
        raise ComponentArgumentError(
            f"a {type(self).__name__} has no config spec; use a registered operator "
            f"({', '.join(OPERATOR_NAMES)}) to save it in a checkpoint"
        )


class IdentityOperator(LinearOperator):
    """A x = x: denoising."""

    name = "identity"

    def __init__(self, event_shape: tuple[int, ...]) -> None:
        super().__init__(event_shape)
        self._norm = 1.0

    def forward(self, x: Tensor) -> Tensor:
        return x

    def adjoint(self, v: Tensor) -> Tensor:
        return v

    def spec(self) -> dict[str, Any]:
        return {"name": "identity"}


class MaskOperator(LinearOperator):
    """A x = m ⊙ x with a mask ``m`` of the event shape (1 = observed, 0 = missing)."""

    name = "mask"
    mask: Tensor

    def __init__(self, event_shape: tuple[int, ...], mask: Any) -> None:
        super().__init__(event_shape)
        m = _as_tensor("mask", mask)
        if tuple(m.shape) != self.event_shape:
            raise ConfigError(
                f"mask operator: the mask has shape {tuple(m.shape)} but the prior's event "
                f"shape is {self.event_shape}; give one mask value per coordinate"
            )
        self.register_buffer("mask", m.to(torch.get_default_dtype()))
        self._norm = float(m.abs().max())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.mask.to(x)

    def adjoint(self, v: Tensor) -> Tensor:
        return v * self.mask.to(v)

    def spec(self) -> dict[str, Any]:
        return {"name": "mask", "mask": self.mask.tolist()}


class BlurOperator(LinearOperator):
    """A x = k ∗ x per channel, k a normalised Gaussian kernel of ``size``×``size`` and
    standard deviation ``std`` pixels, zero padding (output shape = input shape)."""

    name = "blur"
    kernel: Tensor

    def __init__(self, event_shape: tuple[int, ...], size: int = 5, std: float = 1.0) -> None:
        super().__init__(event_shape)
        if len(self.event_shape) != 3:
            raise ConfigError(
                f"blur operator: needs images (C, H, W), but the prior's event shape is "
                f"{self.event_shape}"
            )
        self.size = check_positive_int("blur operator", "size", size)
        if self.size % 2 == 0:
            raise ConfigError(f"blur operator: size must be odd, got {size}")
        self.std = check_positive("blur operator", "std", std)
        r = torch.arange(self.size, dtype=torch.float64) - self.size // 2
        g = torch.exp(-0.5 * (r / self.std) ** 2)
        k = torch.outer(g, g)
        self.register_buffer("kernel", (k / k.sum()).to(torch.get_default_dtype()))

    def forward(self, x: Tensor) -> Tensor:
        c = x.shape[1]
        weight = self.kernel.to(x).expand(c, 1, self.size, self.size)
        return torch.nn.functional.conv2d(x, weight, padding=self.size // 2, groups=c)

    def spec(self) -> dict[str, Any]:
        return {"name": "blur", "size": self.size, "std": self.std}


class DownsampleOperator(LinearOperator):
    """A x = the mean of each ``factor``×``factor`` block of pixels (‖A‖ = 1/factor)."""

    name = "downsample"

    def __init__(self, event_shape: tuple[int, ...], factor: int = 2) -> None:
        super().__init__(event_shape)
        self.factor = check_positive_int("downsample operator", "factor", factor)
        if len(self.event_shape) != 3 or any(n % self.factor for n in self.event_shape[1:]):
            raise ConfigError(
                f"downsample operator: needs images (C, H, W) with H and W divisible by "
                f"factor={self.factor}; the prior's event shape is {self.event_shape}"
            )
        self._norm = 1.0 / self.factor

    def forward(self, x: Tensor) -> Tensor:
        return torch.nn.functional.avg_pool2d(x, self.factor)

    def spec(self) -> dict[str, Any]:
        return {"name": "downsample", "factor": self.factor}


class MatrixOperator(LinearOperator):
    """A x = M vec(x) for a dense matrix M of shape (m, prod(event_shape))."""

    name = "matrix"
    matrix: Tensor

    def __init__(self, event_shape: tuple[int, ...], matrix: Any) -> None:
        super().__init__(event_shape)
        m = _as_tensor("matrix", matrix)
        n = math.prod(self.event_shape)
        if m.ndim != 2 or m.shape[1] != n:
            raise ConfigError(
                f"matrix operator: the matrix has shape {tuple(m.shape)}; it must be (m, {n}) "
                f"to act on the prior's event shape {self.event_shape}"
            )
        self.register_buffer("matrix", m.to(torch.get_default_dtype()))
        self._norm = float(torch.linalg.matrix_norm(m.double(), ord=2))

    def forward(self, x: Tensor) -> Tensor:
        return x.flatten(1) @ self.matrix.to(x).T

    def adjoint(self, v: Tensor) -> Tensor:
        return (v @ self.matrix.to(v)).reshape(v.shape[0], *self.event_shape)

    def spec(self) -> dict[str, Any]:
        return {"name": "matrix", "matrix": self.matrix.tolist()}


class CallableOperator(LinearOperator):
    """A user's callable ``fn(x) -> A x`` on batches, checked linear by :func:`check_linear`."""

    name = "callable"

    def __init__(self, event_shape: tuple[int, ...], fn: Callable[[Tensor], Tensor]) -> None:
        super().__init__(event_shape)
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def check_linear(
    operator: LinearOperator, *, n_probes: int = 3, rtol: float = 1e-4, seed: int = 0
) -> None:
    """Raise :class:`~ebmflow.ConfigError` unless A(a x + b z) = a A x + b A z on random
    probes x, z (standard normal, fixed seed) and coefficients a, b, within ``rtol`` of
    the size of the result, in float64."""
    gen = torch.Generator().manual_seed(seed)
    shape = (n_probes, *operator.event_shape)
    op = operator
    device = op._device()

    def apply(t: Tensor) -> Tensor:
        out = op(t.to(device=device, dtype=op._dtype()))
        if not isinstance(out, Tensor) or out.shape[:1] != t.shape[:1]:
            raise ConfigError(
                f"operator {operator.name}: applied to a batch of {t.shape[0]} it must return "
                f"a tensor with {t.shape[0]} rows, got "
                f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
            )
        return out.double().cpu()

    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    a, b = 1.7, -0.6
    lhs = apply(a * x + b * z)
    rhs = a * apply(x) + b * apply(z)
    error = float((lhs - rhs).abs().max())
    scale = float(rhs.abs().max()) + float(lhs.abs().max())
    if not math.isfinite(error) or error > rtol * max(scale, 1e-12):
        raise ConfigError(
            f"operator {operator.name} is not linear: A(a·x + b·z) differs from a·A(x) + "
            f"b·A(z) by {error:.3g} (relative {error / max(scale, 1e-300):.3g}, tolerance "
            f"{rtol:g}) on random probes; a Gaussian measurement needs a linear A "
            "(for a nonlinear forward model write the likelihood energy yourself)"
        )


def build_operator(spec: Any, event_shape: tuple[int, ...]) -> LinearOperator:
    """An operator from ``spec``: a :class:`LinearOperator`, a callable (checked linear), a
    name of :data:`OPERATOR_NAMES` or a dict ``{"name": ..., **arguments}``."""
    event_shape = tuple(event_shape)
    if isinstance(spec, LinearOperator):
        if spec.event_shape != event_shape:
            raise ConfigError(
                f"operator {spec.name} acts on event shape {spec.event_shape}, but the prior's "
                f"event shape is {event_shape}"
            )
        return spec
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, Mapping):
        args = dict(spec)
        name = args.pop("name", None)
        builders: dict[str, Callable[..., LinearOperator]] = {
            "identity": IdentityOperator,
            "mask": MaskOperator,
            "blur": BlurOperator,
            "downsample": DownsampleOperator,
            "matrix": MatrixOperator,
        }
        if name not in builders:
            raise ConfigError(
                f"unknown measurement operator {name!r}; accepted: {', '.join(OPERATOR_NAMES)} "
                f"(as {{'name': ..., arguments}}) or a linear callable"
            )
        try:
            return builders[name](event_shape, **args)
        except TypeError as exc:
            raise ComponentArgumentError(f"operator {name!r}: {exc}") from None
    if callable(spec):
        op = CallableOperator(event_shape, spec)
        check_linear(op)
        return op
    raise ComponentArgumentError(
        f"a measurement operator must be a name ({', '.join(OPERATOR_NAMES)}), a dict "
        f"{{'name': ..., arguments}}, a LinearOperator or a linear callable; got "
        f"{type(spec).__name__}"
    )


def _as_tensor(name: str, value: Any) -> Tensor:
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise ConfigError(f"{name} operator: {name} must be numbers, got {value!r}") from None
    if not bool(torch.isfinite(t).all()):
        raise ConfigError(f"{name} operator: {name} must be finite")
    return t
