"""The registry's names: component kinds and their spellings, and the rules that component
and plugin names follow."""

from __future__ import annotations

import re

from ebmflow.errors import UnknownKindError

#: Component kinds and the hook that supplies each.
KINDS: dict[str, str] = {
    "energy": "ebmflow_energies",
    "objective": "ebmflow_objectives",
    "sampler": "ebmflow_samplers",
    "dataset": "ebmflow_datasets",
    "noise_schedule": "ebmflow_noise_schedules",
    "converter": "ebmflow_converters",
    "scheduler": "ebmflow_schedulers",
    "log_z_estimator": "ebmflow_log_z_estimators",
    "evaluator": "ebmflow_evaluators",
}

#: what a component name may look like.
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
#: what a plugin (entry-point) name may look like.
PLUGIN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
#: a factory given as a string: ``"module:attr"``.
FACTORY_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


def _kind_spellings() -> dict[str, str]:
    spellings = {}
    for kind, hook in KINDS.items():
        plural = hook.removeprefix("ebmflow_")
        for spelling in (kind, plural):
            spellings[spelling] = kind
            spellings[spelling.replace("_", "-")] = kind
    return spellings


_KIND_SPELLINGS = _kind_spellings()


def normalize_kind(kind: str) -> str:
    """Return the canonical kind for ``kind`` (``"samplers"`` and ``"noise-schedule"`` work too)."""
    if isinstance(kind, str) and kind.lower() in _KIND_SPELLINGS:
        return _KIND_SPELLINGS[kind.lower()]
    raise UnknownKindError(f"unknown component kind {kind!r}; accepted kinds: {', '.join(KINDS)}")


def normalize_plugin_name(name: str) -> str:
    """PEP 503 normalisation, so ``Foo_Bar`` matches distribution ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def kind_of_argument(key: str) -> str | None:
    """The kind a constructor argument named ``key`` holds, if its name says (``sampler``,
    ``energies``, ``base_energy``, ``local_sampler`` ...), else None."""
    key = key.lower()
    for spelling, kind in _KIND_SPELLINGS.items():
        if key == spelling or key.endswith("_" + spelling):
            return kind
    return None
