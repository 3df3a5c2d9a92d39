"""The energy's parameters frozen while chains run.

A sampler needs the gradient in x only. While the parameters require gradients, autograd
keeps every layer's input for their weight gradients through each forward, which holds
all the activations until the backward pass; frozen, the forward keeps only what the
gradient in x needs, so each step holds fewer activation-sized buffers at once and the
allocator neither grows nor returns them from step to step. The values computed are the
same.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from torch import nn


@contextlib.contextmanager
def frozen_parameters(module: object) -> Iterator[None]:
    """Turn off ``requires_grad`` on ``module``'s parameters that have it, and turn it back
    on for exactly those on exit (also after an error), so nested uses and parameters that
    were frozen already are left as they were. Anything not an ``nn.Module`` is left alone."""
    if not isinstance(module, nn.Module):
        yield
        return
    thawed = [p for p in module.parameters() if p.requires_grad]
    for p in thawed:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in thawed:
            p.requires_grad_(True)
