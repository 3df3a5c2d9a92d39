"""Training runs described by TOML: ``load_run_config(path)`` and ``build(run_config)``.

A run file has five tables, each the dict :func:`ebmflow.create` takes (``name`` plus
arguments; a nested component is an inline table with a ``name``)::

    [data]                      # a registered dataset
    name = "8gaussians"

    [energy]                    # a registered energy
    name = "mlp"
    dim = 2
    widths = [128, 128]

    [objective]                 # a registered objective
    name = "pcd"
    capacity = 10000

    [sampler]                   # optional: passed to the objective as sampler=
    name = "langevin"
    step_size = 0.01

    [train]                     # optional: ebmflow.Trainer's keyword arguments
    steps = 5000
    batch_size = 256
    optimizer = { name = "adam", lr = 1e-3 }
    lr_schedule = { name = "cosine", warmup = 100 }
    ema = 0.999
    checkpoint_every = 500

``[data]``, ``[energy]`` and ``[objective]`` are required; a component table may also be
written as a bare name (``energy = "mlp"`` at the top level). ``[train]`` accepts the keys in
:data:`TRAIN_KEYS`; where checkpoints and metrics go is decided by the caller (``ebmflow
train --out DIR``, or ``build(..., checkpoint_dir=...)``).

Errors name the file, the table and the key: a TOML syntax error gives the file and line;
a missing or unknown table, an unknown [train] key (with the accepted ones), and a component
that does not exist or rejects an argument are re-raised with ``FILE [table]:`` in front.
Values are checked when the run is built, before any training: ``compile`` and
``progress`` are TOML booleans; a component table may carry a ``kind`` key only if it is
the table's own kind; integers have bounds (``seed`` up to 2**64 − 1, step counts up to
2**53, ``batch_size`` below 2**31); the energy's event shape must be the data's (an ``mlp``
with ``dim = 3`` on 2-D data is refused naming both shapes); ``device`` must exist in this
torch and on this machine; and a component whose arguments ask for more memory than there
is gives an error naming its table. A UTF-8 byte-order mark at the start of the file is
ignored.

Resuming after an edit (``ebmflow train --resume`` with a changed run file, or
``Trainer.fit(resume=True)`` with changed arguments) continues the run only under changes
it can honour: the [train] keys ``steps``, ``lr_schedule``, ``grad_clip``,
``checkpoint_every``, ``log_every``, ``progress``, ``compile``, and the optimizer's ``lr``
(applied to the optimizer's parameter groups). Any other change (a component or one of its
arguments, the optimizer or its other arguments, ``seed``, ``batch_size``, ``ema``,
``device``) is refused with one error listing each changed key with its old and new value.
The run record written with every checkpoint is therefore always what the run used. With
no checkpoint yet, a resume starts the run from scratch (see
:meth:`ebmflow.Trainer.load_checkpoint`).

This module itself imports no torch and no Trainer: it parses run files and builds their
components (:func:`build_components`); :func:`ebmflow.training.build` turns a RunConfig into
a Trainer, and :mod:`ebmflow.training.edits` says which edits a resume honours.
"""

from __future__ import annotations

import datetime
import difflib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ebmflow.errors import (
    AmbiguousComponentError,
    ComponentArgumentError,
    ConfigError,
    PluginError,
    UnknownComponentError,
    UnknownKindError,
    first_line,
    is_out_of_memory,
)
from ebmflow.seeding import derive_seed

if TYPE_CHECKING:
    from ebmflow.registry import PluginHost

#: The tables of a run file, in order, and the component kind each builds.
TABLES: dict[str, str | None] = {
    "data": "dataset",
    "energy": "energy",
    "objective": "objective",
    "sampler": "sampler",
    "train": None,
}
#: Tables a run file must have.
REQUIRED_TABLES = ("data", "energy", "objective")
#: The keys ``[train]`` accepts: the Trainer's keyword arguments a run file may set.
TRAIN_KEYS = (
    "optimizer",
    "lr_schedule",
    "batch_size",
    "steps",
    "seed",
    "grad_clip",
    "ema",
    "compile",
    "checkpoint_every",
    "log_every",
    "progress",
    "device",
)

#: The [train] keys that take a boolean (TOML ``true``/``false``; no strings such as "yes").
BOOLEAN_TRAIN_KEYS = ("compile", "progress")


@dataclass(frozen=True)
class RunConfig:
    """A parsed run: one dict per table (``None`` for an absent optional table).

    Attributes:
        source: the file it was read from (or a description), used in error messages.
        text: the TOML source, when read from a file (``ebmflow train`` copies it).
    """

    source: str
    data: dict[str, Any] | None
    energy: dict[str, Any] | None
    objective: dict[str, Any] | None
    sampler: dict[str, Any] | None = None
    train: dict[str, Any] = field(default_factory=dict)
    text: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The tables as a JSON-friendly dict (absent tables left out)."""
        tables = {
            "data": self.data,
            "energy": self.energy,
            "objective": self.objective,
            "sampler": self.sampler,
            "train": self.train,
        }
        return {k: v for k, v in tables.items() if v is not None}

    @classmethod
    def from_dict(
        cls,
        tables: Mapping[str, Any],
        *,
        source: str = "<run config>",
        require: tuple[str, ...] = (),
    ) -> RunConfig:
        """Validate ``tables`` (what TOML parsing gives) into a RunConfig; ``require`` lists
        the tables that must be present."""
        if not isinstance(tables, Mapping):
            raise ConfigError(
                f"{source}: a run config is a set of tables, got {type(tables).__name__}"
            )
        for key, value in tables.items():
            if key not in TABLES:
                close = difflib.get_close_matches(key, list(TABLES), n=1)
                hint = f" (did you mean [{close[0]}]?)" if close else ""
                what = "table" if isinstance(value, Mapping) else "key"
                raise ConfigError(
                    f"{source}: unknown {what} {key!r}{hint}; a run file has the tables "
                    f"{', '.join(f'[{t}]' for t in TABLES)}"
                )
        for name in require:
            if tables.get(name) is None:
                raise ConfigError(
                    f"{source}: missing table [{name}] (a run file needs "
                    f"{', '.join(f'[{t}]' for t in REQUIRED_TABLES)}; [sampler] and [train] "
                    f"are optional)"
                )
        parsed: dict[str, Any] = {}
        for name in ("data", "energy", "objective", "sampler"):
            parsed[name] = _component_table(tables.get(name), name, source)
        train = tables.get("train")
        if train is None:
            train = {}
        if not isinstance(train, Mapping):
            raise ConfigError(
                f"{source}: [train] must be a table of Trainer arguments, got "
                f"{type(train).__name__} {train!r}"
            )
        train = dict(train)
        for key in train:
            if key not in TRAIN_KEYS:
                close = difflib.get_close_matches(key, list(TRAIN_KEYS), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                extra = (
                    "; checkpoints and metrics go where the caller says (ebmflow train --out DIR)"
                    if key in ("checkpoint_dir", "metrics_file")
                    else ""
                )
                raise ConfigError(
                    f"{source} [train]: unknown key {key!r}{hint}; accepted: "
                    f"{', '.join(TRAIN_KEYS)}{extra}"
                )
        for key in BOOLEAN_TRAIN_KEYS:  # checked here too: --no-progress replaces the value
            if key in train and not isinstance(train[key], bool):
                raise ConfigError(
                    f"{source} [train]: {key} must be true or false, got {train[key]!r}"
                )
        _check_json(train, "train", source)
        if (
            parsed["sampler"] is not None
            and parsed["objective"] is not None
            and "sampler" in parsed["objective"]
        ):
            raise ConfigError(
                f"{source}: the sampler is given twice, as [sampler] and as [objective] "
                f"sampler; keep one"
            )
        return cls(source=source, train=train, **parsed)


def _component_table(value: Any, table: str, source: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, str):  # energy = "mlp"
        value = {"name": value}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"{source}: [{table}] must be a table with a 'name' key (or a bare name), got "
            f"{type(value).__name__} {value!r}"
        )
    if not isinstance(value.get("name"), str):
        kind = TABLES[table]
        raise ConfigError(
            f"{source} [{table}]: needs a key 'name' = a registered {kind} name (`ebmflow "
            f"components --kind {kind}` lists them); got "
            f"{'no name' if 'name' not in value else repr(value['name'])}"
        )
    kind = TABLES[table]
    if "kind" in value and value["kind"] != kind:
        # the table decides the kind; a different one is a mistake, not something to drop
        raise ConfigError(
            f"{source} [{table}]: kind {value['kind']!r} does not match the table: [{table}] "
            f"builds a {kind!r}; leave 'kind' out (or set it to {kind!r})"
        )
    _check_json(value, table, source)
    return dict(value)


def _check_json(value: Any, table: str, source: str, key: str = "") -> None:
    """TOML dates and times have no JSON form (run configs are stored in checkpoints)."""
    if isinstance(value, (datetime.date, datetime.time)):
        raise ConfigError(
            f"{source} [{table}] {key}: dates and times are not accepted, got {value!r}"
        )
    if isinstance(value, Mapping):
        for k, v in value.items():
            _check_json(v, table, source, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_json(v, table, source, f"{key}[{i}]")


#: The largest run file read (the examples are about 2 kB): a bound, so that a path to
#: /dev/zero or a huge file is an error rather than memory exhaustion.
MAX_RUN_FILE_BYTES = 1 << 20


def load_run_config(path: str | os.PathLike) -> RunConfig:
    """Read and validate the TOML run file at ``path``: a regular file (not a FIFO or a
    device, whose reads block or never end) of at most :data:`MAX_RUN_FILE_BYTES`."""
    from ebmflow.files import read_regular_file

    path = Path(path)
    try:
        data = read_regular_file(
            path, max_bytes=MAX_RUN_FILE_BYTES, follow_symlinks=True, error=ConfigError
        )
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"run config {path} does not exist") from None
    except ConfigError as exc:  # a FIFO, a device, a folder, too large
        raise ConfigError(f"run config {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read run config {path}: {exc}") from None
    return parse_run_config(text, source=str(path))


def parse_run_config(text: str, *, source: str = "<string>") -> RunConfig:
    """Parse TOML ``text`` as a run config; ``source`` names it in errors.

    A leading UTF-8 byte-order mark (which some Windows editors write) is ignored: TOML
    itself does not allow one, but it carries no meaning.
    """
    text = text.removeprefix("\ufeff")
    import tomllib

    try:
        tables = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        if "line " not in message:  # "(at end of document)": name the last line
            last = len(text.splitlines())
            message += f" (the file ends at line {last} without closing it)"
        raise ConfigError(f"{source}: TOML syntax error: {message}") from None
    config = RunConfig.from_dict(tables, source=source, require=REQUIRED_TABLES)
    return RunConfig(
        source=config.source,
        data=config.data,
        energy=config.energy,
        objective=config.objective,
        sampler=config.sampler,
        train=config.train,
        text=text,
    )


_REPREFIXED = (
    ComponentArgumentError,
    UnknownComponentError,
    AmbiguousComponentError,
    UnknownKindError,
    PluginError,
    ConfigError,
)


def create_from_table(
    host: PluginHost, table: str, config: Mapping[str, Any], source: str, **extra: Any
) -> Any:
    """``host.create(kind of table, config, **extra)`` with errors prefixed by
    ``SOURCE [table]:``."""
    kind = TABLES[table]
    assert kind is not None  # [train] holds the Trainer's own arguments, not a component
    try:
        return host.create(kind, config, **extra)
    except _REPREFIXED as exc:
        message = f"{source} [{table}]: {exc}"
        if (
            table == "objective"
            and "sampler" in extra
            and isinstance(exc, ComponentArgumentError)
            and "sampler" in str(exc)
        ):
            message += " ([sampler] is passed to the objective as its sampler= argument)"
        raise type(exc)(message) from None
    except (ValueError, TypeError, OverflowError, MemoryError, RuntimeError) as exc:
        if is_out_of_memory(exc):  # e.g. widths = [10**11]
            raise ConfigError(
                f"{source} [{table}]: building the {kind} needs more memory than there is "
                f"({first_line(exc)}); are its sizes what you meant?"
            ) from None
        if isinstance(exc, (RuntimeError, MemoryError)):
            raise
        # first line only: torch appends C++ frames to some messages
        raise ConfigError(f"{source} [{table}]: {first_line(exc)}") from None


def build_components(
    run_config: RunConfig,
    host: PluginHost,
    *,
    energy: Any = None,
    objective: Any = None,
    data: Any = None,
    **overrides: Any,
) -> tuple[Any, Any, Any, dict[str, Any]]:
    """``(energy, objective, data, arguments)`` for ``run_config``: the components and the
    Trainer's keyword arguments that :func:`ebmflow.training.build` passes to the Trainer.

    Components are built with ``host.create`` from their tables; ``[sampler]`` is built
    first and passed to the objective as ``sampler=``. ``energy``, ``objective`` and
    ``data`` replace the corresponding tables with ready objects; ``overrides`` are Trainer
    keyword arguments that replace ``[train]`` keys or add others (``checkpoint_dir``,
    ``metrics_file``, ``progress``).

    Components are built with torch's global RNG seeded from the run's ``seed`` (inside
    ``torch.random.fork_rng``, which restores the caller's state afterwards), so the same
    run file gives the same initial weights.
    """
    import torch

    from ebmflow.training.batches import event_shape_mismatch

    source = run_config.source

    def table(name: str) -> dict[str, Any]:
        value = getattr(run_config, name)
        if value is None:
            raise ConfigError(
                f"{source}: no [{name}] table to build the {TABLES[name]} from; pass "
                f"{name}= (the component itself)"
            )
        return value

    arguments = {**run_config.train, **overrides}
    seed = arguments.get("seed", 0)
    # Initial weights come from torch's global RNG (nn.init); seed it from the run's seed
    # inside fork_rng, so a run file is reproducible and the caller's RNG state is restored.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed if isinstance(seed, int) else 0, "init"))
        if data is None:
            data = create_from_table(host, "data", table("data"), source)
        if energy is None:
            energy = create_from_table(host, "energy", table("energy"), source)
        if objective is None:
            extra = {}
            if run_config.sampler is not None:
                extra["sampler"] = create_from_table(host, "sampler", run_config.sampler, source)
            objective = create_from_table(host, "objective", table("objective"), source, **extra)
    mismatch = event_shape_mismatch(energy, data)
    if mismatch is not None:
        energy_name = (run_config.energy or {}).get("name", type(energy).__name__)
        data_name = (run_config.data or {}).get("name", type(data).__name__)
        raise ConfigError(
            f"{source} [energy]: the energy {energy_name!r} takes samples of shape "
            f"{mismatch[0]}, but [data] {data_name!r} gives samples of shape {mismatch[1]}; "
            f"set the [energy] arguments (e.g. dim) to the data's shape, or use an energy "
            f"for it (images need e.g. 'convnet')"
        )
    return energy, objective, data, arguments
