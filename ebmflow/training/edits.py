"""Which edits of a run a resume honours.

Resuming after an edit (``ebmflow train --resume`` with a changed run file, or
``Trainer.fit(resume=True)`` with changed arguments) compares the run record saved in the
checkpoint with the current one. Changes that shape only the rest of the run are honoured:
the ``[train]`` keys in :data:`RESUMABLE_TRAIN_KEYS` and the optimizer's ``lr``. Any other
change cannot be honoured by the saved state, and :func:`check_resumable` refuses it with one
error listing each changed key with its old and new value. Two spellings of the same run
(``mlp`` and ``ebmflow:mlp``, a table's own ``kind`` key) compare equal.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ebmflow.errors import CheckpointError, ConfigError
from ebmflow.training.arguments import shown

if TYPE_CHECKING:
    from ebmflow.registry import PluginHost
    from ebmflow.training.state import TrainingCheckpoint

#: ``[train]`` keys that a resumed run may change (see :meth:`~ebmflow.Trainer.load_checkpoint`):
#: they shape the rest of the run, not the state saved so far, so the checkpoint continues
#: exactly under the new values. The optimizer's ``lr`` may change too (it is applied to the
#: parameter groups). Any other change is refused, naming the keys.
RESUMABLE_TRAIN_KEYS = (
    "steps",
    "lr_schedule",
    "grad_clip",
    "checkpoint_every",
    "log_every",
    "progress",
    "compile",
)


def json_form(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists), for comparisons."""
    try:
        return json.loads(json.dumps(value, allow_nan=False, default=repr))
    except (TypeError, ValueError):
        return repr(value)


_NOT_SET = object()


def differences(prefix: str, old: Any, new: Any) -> dict[str, str]:
    """``{"a.b": "a.b: OLD → NEW"}`` for each leaf where ``old`` and ``new`` differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: dict[str, str] = {}
        for key in [*old, *(k for k in new if k not in old)]:
            out.update(
                differences(f"{prefix}.{key}", old.get(key, _NOT_SET), new.get(key, _NOT_SET))
            )
        return out
    if old == new and type(old) is type(new):
        return {}

    def show(value: Any) -> str:
        return "(not set)" if value is _NOT_SET else shown(value, 60)

    return {prefix: f"{prefix}: {show(old)} → {show(new)}"}


def _optimizer_table(spec: Any) -> Any:
    """An optimizer spec as a dict without its ``lr`` (which a resume may change)."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if isinstance(spec, dict):
        spec = {k: v for k, v in spec.items() if k != "lr"}
    return spec


def _comparable_table(table: Any, kind: str, host: PluginHost) -> Any:
    """A run table with its name qualified (``mlp`` → ``ebmflow:mlp``) and a ``kind`` key
    equal to the table's kind dropped, so that spellings of the same run compare equal."""
    if not isinstance(table, dict):
        return table
    table = {k: v for k, v in table.items() if not (k == "kind" and v == kind)}
    name = table.get("name")
    if isinstance(name, str):
        with contextlib.suppress(Exception):  # an unresolvable name is compared as written
            table["name"] = host.get(kind, name).qualified_name
    return table


_TABLE_KINDS = {
    "data": "dataset",
    "energy": "energy",
    "objective": "objective",
    "sampler": "sampler",
}


def run_changes(
    saved: Mapping[str, Any], current: Mapping[str, Any], host: PluginHost
) -> dict[str, str]:
    """The changes from the run record ``saved`` to ``current`` that a resume cannot
    honour: every difference except the keys of :data:`RESUMABLE_TRAIN_KEYS` and the
    optimizer's ``lr``."""
    changes: dict[str, str] = {}
    for table, kind in _TABLE_KINDS.items():
        old, new = saved.get(table), current.get(table)
        if isinstance(old, dict) and isinstance(new, dict) and (("kind" in old) != ("kind" in new)):
            # one run was described by a run file, the other by component records (a
            # Trainer built from objects, which lists every argument): not comparable key by
            # key; the energy's arguments are still compared through config.json
            continue
        changes.update(
            differences(
                table,
                json_form(_comparable_table(old, kind, host)),
                json_form(_comparable_table(new, kind, host)),
            )
        )
    old_train = dict(saved.get("train") or {}) if isinstance(saved.get("train"), dict) else {}
    new_train = dict(current.get("train") or {})
    for key in RESUMABLE_TRAIN_KEYS:
        old_train.pop(key, None)
        new_train.pop(key, None)
    old_train["optimizer"] = _optimizer_table(old_train.get("optimizer", "adam"))
    new_train["optimizer"] = _optimizer_table(new_train.get("optimizer", "adam"))
    changes.update(differences("train", json_form(old_train), json_form(new_train)))
    return changes


def group_changes(saved_groups: list[Any], optimizer: Any) -> dict[str, str]:
    """Differences in the optimizer's hyperparameters (other than ``lr``) between the saved
    parameter groups and ``optimizer``'s: catches a changed optimizer that the run record
    cannot describe (an optimizer factory). Keys only one side has (another torch version)
    are not compared, but a different set of keys means another optimizer class."""
    changes: dict[str, str] = {}
    for i, (old, new) in enumerate(zip(saved_groups, optimizer.param_groups)):
        if not isinstance(old, dict):
            continue
        skip = ("params", "lr", "initial_lr")
        old_keys = {k for k in old if k not in skip}
        new_keys = {k for k in new if k not in skip}
        if old_keys and not (old_keys <= new_keys or new_keys <= old_keys):
            changes["optimizer"] = (
                f"optimizer: the saved state is for an optimizer with the hyperparameters "
                f"{sorted(old_keys)}, this Trainer's {type(optimizer).__name__} has "
                f"{sorted(new_keys)}"
            )
            return changes
        for key in sorted(old_keys & new_keys):
            changes.update(
                differences(
                    f"optimizer.param_groups[{i}].{key}", json_form(old[key]), json_form(new[key])
                )
            )
    return changes


def check_resumable(
    folder: Any,
    saved_run: Mapping[str, Any],
    current_run: Mapping[str, Any],
    host: PluginHost,
    saved_energy: Any,
    current_energy: Any,
    saved_optimizer: Any,
    optimizer: Any,
) -> None:
    """Raise :class:`~ebmflow.ConfigError` listing every change from the checkpoint's run
    to the current one that a resume cannot honour: the run records ``saved_run`` and
    ``current_run``, the energy's arguments as config.json records them (``None`` when
    unknown) and the optimizer's saved state against ``optimizer``."""
    changes = run_changes(saved_run, current_run, host)
    # the energy's own arguments, as config.json records them: compared however the
    # runs were described (a run file, or a Trainer built from objects)
    if saved_energy is not None and current_energy is not None:
        changes.update(differences("energy", json_form(saved_energy), json_form(current_energy)))
    if (
        not any(k.startswith("train.optimizer") for k in changes)
        and isinstance(saved_optimizer, dict)
        and isinstance(saved_optimizer.get("param_groups"), list)
    ):
        changes.update(group_changes(saved_optimizer["param_groups"], optimizer))
    if changes:
        raise ConfigError(
            f"{folder}: the run was changed in ways a resume cannot honour: "
            f"{'; '.join(changes.values())}. A resume may change [train] "
            f"{', '.join(RESUMABLE_TRAIN_KEYS)} and the optimizer's lr; undo the other "
            f"changes, or start a new run (e.g. a new --out) from the checkpoint's weights"
        )


def check_resumable_checkpoint(
    saved: TrainingCheckpoint,
    current_run: Mapping[str, Any],
    host: PluginHost,
    current_energy: Any,
    optimizer: Any,
) -> None:
    """:func:`check_resumable` for the checkpoint ``saved``: its run record, its energy's
    arguments from config.json and its optimizer state, each checked to be of the right
    kind first."""
    saved_run = saved.state.get("run")
    if not isinstance(saved_run, dict):
        raise CheckpointError(
            f"{saved.where}: run must be an object (the run's tables), got {shown(saved_run)}"
        )
    saved_arguments = saved.config.get("arguments")
    check_resumable(
        saved.folder,
        saved_run,
        current_run,
        host,
        saved_arguments if isinstance(saved_arguments, dict) else None,
        current_energy,
        saved.state.get("optimizer"),
        optimizer,
    )
