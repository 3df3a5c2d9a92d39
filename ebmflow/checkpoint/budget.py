"""The allocation budget of building a component from a checkpoint.

A crafted ``config.json`` may ask a constructor for any size (``widths=[40000, 40000]``),
so while ``ebmflow.load`` builds a component, tensor factories may allocate at most
:data:`BUILD_BYTES_PER_FILE_BYTE` times the bytes of the checkpoint's tensor files plus
:data:`MAX_BUILD_EXTRA_BYTES`; the call that would go over raises instead of allocating.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.overrides import TorchFunctionMode

from ebmflow.checkpoint.weights import dtype_name
from ebmflow.errors import CheckpointError

#: While a component is built, its tensors may take at most this many times the bytes of
#: the checkpoint's tensor files, plus MAX_BUILD_EXTRA_BYTES (room for initialisation
#: temporaries, non-persistent buffers and weight-less components).
BUILD_BYTES_PER_FILE_BYTE = 4
MAX_BUILD_EXTRA_BYTES = 64 << 20


class AllocationBudget(TorchFunctionMode):
    """Bounds the bytes that tensor factories may allocate while a checkpoint's component is
    built: at most BUILD_BYTES_PER_FILE_BYTE times the bytes of its tensor files plus
    MAX_BUILD_EXTRA_BYTES.

    Each factory call (``torch.empty`` inside ``nn.Linear``, ``torch.zeros`` for a buffer,
    ``new_zeros``, ``repeat`` ...) is first run on the meta device, which allocates nothing,
    to learn its size; the call that would go over the budget raises instead of allocating.
    So ``widths=[40000, 40000]`` in a crafted config.json fails at once rather than asking
    for 6.4 GB. Allocations outside torch (NumPy, Python lists) are not seen; the bound on
    the number of argument values keeps those small for the built-in components.
    """

    def __init__(self, files_bytes: int, what: str, where: str) -> None:
        super().__init__()
        self.files_bytes = files_bytes
        self.budget = BUILD_BYTES_PER_FILE_BYTE * files_bytes + MAX_BUILD_EXTRA_BYTES
        self.what, self.where = what, where
        self.total = 0
        self.refusal: CheckpointError | None = None

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _FACTORIES or func in _TENSOR_FACTORIES:
            self._charge(func, args, kwargs)
        return func(*args, **kwargs)

    def _charge(self, func: Any, args: Any, kwargs: dict) -> None:
        if self.refusal is None:
            probe = _meta_probe(func, args, kwargs)
            if probe is None:
                return
            self.total += probe.numel() * probe.element_size()
            if self.total <= self.budget:
                return
            self.refusal = CheckpointError(
                f"{self.where}: building {self.what} would allocate {_bytes(self.total)} "
                f"(asked for a {dtype_name(probe.dtype)} tensor of shape "
                f"{tuple(probe.shape)}), but a checkpoint may allocate at most "
                f"{_bytes(self.budget)} while it is built "
                f"({BUILD_BYTES_PER_FILE_BYTE} × its {_bytes(self.files_bytes)} of tensor files "
                f"+ {MAX_BUILD_EXTRA_BYTES >> 20} MiB): config.json's arguments do not fit the "
                f"weights it holds"
            )
        raise self.refusal  # again on every later call, should a constructor catch it


_FACTORIES = {
    torch.empty,
    torch.empty_strided,
    torch.zeros,
    torch.ones,
    torch.full,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.arange,
    torch.linspace,
    torch.logspace,
    torch.eye,
    torch.empty_like,
    torch.zeros_like,
    torch.ones_like,
    torch.full_like,
    torch.rand_like,
    torch.randn_like,
    torch.randint_like,
}
_TENSOR_FACTORIES = {
    Tensor.new_empty,
    Tensor.new_zeros,
    Tensor.new_ones,
    Tensor.new_full,
    Tensor.repeat,
    Tensor.tile,
    Tensor.repeat_interleave,
    torch.tile,
    torch.repeat_interleave,
}
_NOT_ON_META = ("device", "generator", "out", "pin_memory", "requires_grad")


def _meta_probe(func: Any, args: Any, kwargs: dict) -> Tensor | None:
    """What ``func(*args, **kwargs)`` would return, computed on the meta device (shape and
    dtype only, nothing allocated); ``None`` where that cannot be worked out."""
    meta_args = [a.to("meta") if isinstance(a, Tensor) else a for a in args]
    meta_kwargs = {k: v for k, v in kwargs.items() if k not in _NOT_ON_META}
    if func in _FACTORIES and not any(isinstance(a, Tensor) for a in args):
        meta_kwargs["device"] = "meta"
    try:
        out = func(*meta_args, **meta_kwargs)
    except Exception:  # the real call will raise its own error, if any
        return None
    return out if isinstance(out, Tensor) else None


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"
