"""Seeds for the independent random streams of one run.

A run has one integer ``seed``; each consumer of randomness (the data batches, the
objective's generator on each rank, the initial weights) draws from its own stream, seeded
by :func:`derive_seed` from the run's seed and the stream's labels. Streams with different
labels are independent (the labels are hashed with SHA-256), and the same labels give the
same seed in every process and on every platform, so a run and its resume agree.
"""

from __future__ import annotations

from typing import Any


def derive_seed(seed: int, *labels: Any) -> int:
    """A 63-bit seed for the stream ``labels`` of run ``seed``, e.g.
    ``derive_seed(seed, "objective", rank)``; labels are compared by their ``repr``."""
    import hashlib  # here, not at import: the CLI imports this module for every command

    digest = hashlib.sha256(repr((seed, *labels)).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
