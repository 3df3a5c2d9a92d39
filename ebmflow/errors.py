"""The exceptions ebmflow raises, all under :class:`EbmflowError`.

Each error is meant to be read by a person: it names the component, the value that was
wrong and what would have been accepted. The CLI prints these as one line (no traceback).
:func:`first_line` and :func:`is_out_of_memory` help word an ebmflow error around a
foreign exception (a torch allocation failure, a constructor's message).
"""

from __future__ import annotations


class EbmflowError(Exception):
    """Base class of every error ebmflow raises on purpose."""


class PluginError(EbmflowError):
    """A plugin could not be loaded, validated or used."""


class PluginWarning(UserWarning):
    """Emitted once per plugin that failed to load; the rest of ebmflow keeps working."""


class UnknownKindError(EbmflowError, ValueError):
    """A component kind that no hook provides (e.g. ``"samplr"``)."""


class UnknownComponentError(EbmflowError, LookupError):
    """No installed plugin registers a component under that name."""


class AmbiguousComponentError(EbmflowError, LookupError):
    """A bare name that two or more plugins register; use ``plugin:name``."""


class ComponentArgumentError(EbmflowError, TypeError):
    """Keyword arguments that a component's factory does not accept."""


class ConfigError(EbmflowError, ValueError):
    """A malformed configuration (dict or TOML) for a component or a run."""


class EnergyUnavailableError(EbmflowError, NotImplementedError):
    """A score-only model (``has_energy = False``) was asked for an energy value."""


class SamplerDivergedError(EbmflowError, FloatingPointError):
    """A sampler produced a non-finite energy or position.

    ``step`` is the 0-based index of the step that produced it, ``n_chains`` how many
    chains are affected.
    """

    def __init__(self, message: str, *, step: int, n_chains: int) -> None:
        super().__init__(message)
        self.step = step
        self.n_chains = n_chains


class CheckpointError(EbmflowError):
    """A checkpoint folder that is missing, truncated, tampered or needs a missing plugin."""


class NonFiniteLossError(EbmflowError, FloatingPointError):
    """An objective's loss came out NaN or infinite (the energy, its score or the samples
    overflowed). Objectives raise it instead of returning the value; the Trainer adds the
    step (``training step i of n: ...``)."""


class TrainingDivergedError(EbmflowError, FloatingPointError):
    """The loss or a gradient became NaN or infinite.

    ``step`` is the 1-based number of the step that produced it (the update was not applied
    when the check runs every step, as it does on the CPU).
    """

    def __init__(self, message: str, *, step: int) -> None:
        super().__init__(message)
        self.step = step


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, for ebmflow errors that quote a foreign
    one (torch appends C++ frames to some messages)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is a failed allocation (CPU or accelerator)."""
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text.lower()
    )
