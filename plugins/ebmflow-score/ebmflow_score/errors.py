"""The errors this plugin raises (no torch import, so they can be caught cheaply).

``NonFiniteLossError`` is the core's :class:`ebmflow.NonFiniteLossError`, which every
objective raises for a NaN or infinite loss; the name is kept here for existing imports.
"""

from __future__ import annotations

from ebmflow import NonFiniteLossError

__all__ = ["NonFiniteLossError"]
