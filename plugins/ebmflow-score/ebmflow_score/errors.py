"""The errors this plugin raises (no torch import, so they can be caught cheaply)."""

from __future__ import annotations

import ebmflow


class NonFiniteLossError(ebmflow.EbmflowError, FloatingPointError):
    """A score-matching loss came out NaN or infinite (the energy or its score overflowed)."""
