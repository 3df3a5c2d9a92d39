"""The component registry: plugins found through entry points, looked up by kind and name.

Every energy, objective, sampler, dataset, noise schedule and converter reaches ebmflow
through the hooks in :mod:`ebmflow.hookspecs`. The core registers its own components the
same way, through the default plugin modules in :data:`DEFAULT_PLUGINS`.

Loading is lazy and isolated. Nothing is imported until the first lookup; then the default
plugins and every entry point in the group ``ebmflow`` are loaded and their component hooks
called once. A plugin that fails to import, raises inside a hook or returns malformed
records is recorded as ``failed`` (one :class:`~ebmflow.errors.PluginWarning`), and the
others keep working. Environment variables, read at load time:

``EBMFLOW_PLUGINS=a,b``
    load only these entry-point plugins (by entry-point or distribution name, compared
    after PEP 503 normalisation); set but empty loads none. The core's own components
    are always loaded.
``EBMFLOW_BLOCK_PLUGINS=x,y``
    never load these.
``EBMFLOW_STRICT_PLUGINS=1``
    re-raise the first load error instead of recording it (for plugin authors).

Plugin code is contained
------------------------
Importing a plugin and calling its hooks runs someone else's code inside the caller's
process, so the registry runs it inside :class:`_PluginCall`, which keeps what it can of the
caller's state:

- **Exits and interrupts are failures.** ``SystemExit`` (``sys.exit``), ``KeyboardInterrupt``
  and every other ``BaseException`` raised by plugin code make that plugin ``failed``, like
  an ``Exception`` does; a plugin cannot end the process or make ``ebmflow train`` exit 0
  without training. The one exception is a real Ctrl-C: when SIGINT arrives while plugin
  code runs (watched in the main thread), the ``KeyboardInterrupt`` is the user's and is
  re-raised, and a half-finished load is started again on the next lookup. A
  ``KeyboardInterrupt`` that plugin code raises itself, with no signal, is the plugin's.
- **Standard output belongs to the caller.** While plugin code runs, ``sys.stdout`` is
  redirected to ``sys.stderr``, so a plugin's ``print`` cannot corrupt the JSON that
  ``ebmflow sample``, ``convert`` or ``components --json`` write (output written straight to
  file descriptor 1 is not caught).
- **The global torch RNG is restored.** If torch is already imported when plugin code
  runs, the CPU generator's state (and the CUDA generators', where CUDA is initialised) is
  saved before and restored after, so a plugin's ``torch.manual_seed`` at import cannot
  change a seeded ``ebmflow.create``. If torch was not imported yet, the caller cannot have
  seeded it, and nothing is restored.

Plugin names are claimed, not taken: when two distributions register an entry point under
the same name, neither is loaded (both are ``failed``, with an error naming both), whatever
the order in which ``importlib.metadata`` finds them; ``EBMFLOW_BLOCK_PLUGINS`` with one of
the distribution names resolves it. The core's own plugin name ``ebmflow`` is never given up.

Nested components use the caller's host
---------------------------------------
A component given another component by name (a sampler's ``noise_schedule="geometric"``,
an objective's ``sampler="mala"``) builds it while its own constructor runs. While
:meth:`PluginHost.create` (or ``ebmflow.load``) calls a factory, :func:`current_host` is
that host, so ``current_host().create(...)`` inside the constructor finds the components of
an isolated ``PluginHost`` too; outside any construction it is :func:`default_host`. The
host is carried in a :class:`contextvars.ContextVar`, so threads building components
through different hosts do not see each other's.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import importlib
import importlib.metadata
import inspect
import os
import re
import signal
import sys
import threading
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pluggy

from ebmflow import hookspecs
from ebmflow.errors import (
    AmbiguousComponentError,
    ComponentArgumentError,
    ConfigError,
    EbmflowError,
    PluginError,
    PluginWarning,
    UnknownComponentError,
    UnknownKindError,
)

ENTRY_POINT_GROUP = "ebmflow"

#: Default plugin modules of the core: plugin name -> module registered under that name.
DEFAULT_PLUGINS: dict[str, str] = {"ebmflow": "ebmflow.builtins"}

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

NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_-]*")
_PLUGIN_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_FACTORY_PATTERN = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
_TRUE = {"1", "true", "yes", "on"}


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
    raise UnknownKindError(
        f"unknown component kind {kind!r}; accepted kinds: {', '.join(KINDS)}"
    )


@dataclass(frozen=True)
class Component:
    """A record a plugin hands over: a name, a factory and a one-line summary.

    ``factory`` is a callable or a ``"module:attr"`` string imported on first use. ``kind``
    and ``plugin`` are filled in by the registry; plugins leave them out.
    """

    name: str
    factory: Callable[..., Any] | str
    summary: str = ""
    kind: str | None = None
    plugin: str | None = None

    @property
    def qualified_name(self) -> str:
        """``plugin:name``, unique across all installed plugins."""
        return f"{self.plugin}:{self.name}"

    def load(self) -> Callable[..., Any]:
        """Return the factory, importing it if it was given as ``"module:attr"``."""
        if not isinstance(self.factory, str):
            return self.factory
        module_name, _, attr_path = self.factory.partition(":")
        call = _PluginCall()
        try:
            obj: Any = sys.modules.get(module_name)
            if obj is None:  # importing runs the plugin's module code: contain it
                with call:
                    obj = importlib.import_module(module_name)
            for attr in attr_path.split("."):
                obj = getattr(obj, attr)
        except BaseException as exc:
            if not call.failed_by(exc):
                raise
            raise PluginError(
                f"{self.kind} {self.qualified_name!r}: cannot import its factory "
                f"{self.factory!r} ({type(exc).__name__}: {exc})"
            ) from exc
        if not callable(obj):
            raise PluginError(
                f"{self.kind} {self.qualified_name!r}: factory {self.factory!r} is a "
                f"{type(obj).__name__}, not a callable"
            )
        return obj

    def to_dict(self) -> dict[str, str | None]:
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "qualified_name": self.qualified_name,
            "summary": self.summary,
        }


@dataclass(frozen=True)
class PluginInfo:
    """What the registry knows about one plugin: where it came from and whether it works."""

    name: str
    distribution: str | None
    version: str | None
    status: str  # "ok" | "failed" | "disabled"
    error: str | None = None
    components: tuple[Component, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        grouped: dict[str, list[str]] = {}
        for component in self.components:
            grouped.setdefault(component.kind or "", []).append(component.name)
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "components": grouped,
            "error": self.error,
        }


@dataclass
class _Plugin:
    name: str
    obj: Any = None
    distribution: str | None = None
    version: str | None = None
    status: str = "ok"
    error: str | None = None
    components: list[Component] = field(default_factory=list)

    def info(self) -> PluginInfo:
        return PluginInfo(
            self.name, self.distribution, self.version, self.status, self.error,
            tuple(self.components),
        )


def normalize_plugin_name(name: str) -> str:
    """PEP 503 normalisation, so ``Foo_Bar`` matches distribution ``foo-bar``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _env_list(value: str | None) -> set[str] | None:
    if value is None:
        return None
    return {normalize_plugin_name(item.strip()) for item in value.split(",") if item.strip()}


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _PluginCall:
    """A context in which plugin code (an import, a hook, a factory import) runs contained:
    standard output goes to standard error, the global torch RNG state is restored, and
    SIGINT is watched so that :meth:`failed_by` can tell a user's Ctrl-C from a
    ``KeyboardInterrupt`` the plugin raised itself. See the module docstring for why."""

    def __init__(self) -> None:
        self.interrupted = False
        self._raised: BaseException | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> _PluginCall:
        with contextlib.ExitStack() as stack:
            stack.enter_context(contextlib.redirect_stdout(sys.stderr))
            stack.enter_context(_torch_rng_kept())
            stack.enter_context(self._watching_sigint())
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._raised = exc_info[1]
        self._stack.__exit__(*exc_info)

    def failed_by(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a failure to record rather than something to propagate: any
        ``Exception``, and any other ``BaseException`` (``SystemExit`` included) that came out
        of the plugin code run in this call, except a ``KeyboardInterrupt`` that a real
        SIGINT caused (the user's Ctrl-C)."""
        if isinstance(exc, Exception):
            return True
        if exc is not self._raised:
            return False
        return not (isinstance(exc, KeyboardInterrupt) and self.interrupted)

    @contextlib.contextmanager
    def _watching_sigint(self) -> Iterator[None]:
        # Only the main thread receives signals; elsewhere, and where Python's handler is
        # not in charge (SIG_IGN, SIG_DFL), a KeyboardInterrupt can only come from code.
        previous = signal.getsignal(signal.SIGINT)
        if threading.current_thread() is not threading.main_thread() or not callable(previous):
            yield
            return

        def handler(signum: int, frame: types.FrameType | None) -> Any:
            self.interrupted = True
            return previous(signum, frame)

        try:
            signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main interpreter
            yield
            return
        try:
            yield
        finally:
            if signal.getsignal(signal.SIGINT) is handler:  # unless the plugin set its own
                signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _torch_rng_kept() -> Iterator[None]:
    """Restore torch's global generator states afterwards, if torch is already imported
    (if it is not, the caller cannot have seeded it)."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "get_rng_state"):
        yield
        return
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)


class PluginHost:
    """A set of plugins and the components they provide.

    ``ebmflow.create`` and friends use one default host (:func:`default_host`). Tests and
    applications that need isolation make their own::

        host = PluginHost(entry_points=False)   # the core's components only
        host.register(my_plugin_module)          # in-process, no install needed
        sampler = host.create("sampler", "my-sampler", step_size=0.1)

    Args:
        builtins: register the core's default plugins.
        entry_points: load installed plugins from the entry-point group ``ebmflow``.
        environ: where to read ``EBMFLOW_*`` variables (default ``os.environ``).
    """

    def __init__(
        self,
        *,
        builtins: bool = True,
        entry_points: bool = True,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._builtins = builtins
        self._entry_points = entry_points
        self._environ = environ
        self._pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self._pm.add_hookspecs(hookspecs)
        self._plugins: dict[str, _Plugin] = {}
        self._index: dict[str, dict[str, list[Component]]] | None = None
        self._loaded = False
        self._lock = threading.RLock()

    # -- loading -----------------------------------------------------------------------

    @property
    def environ(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    @property
    def strict(self) -> bool:
        return self.environ.get("EBMFLOW_STRICT_PLUGINS", "").strip().lower() in _TRUE

    def load(self) -> None:
        """Load the default plugins and the installed entry points (once; idempotent)."""
        with self._lock:
            if self._loaded:
                return
            self._loaded = True
            try:
                if self._builtins:
                    for name, module_name in DEFAULT_PLUGINS.items():
                        from ebmflow import __version__

                        self._add(name, lambda m=module_name: importlib.import_module(m),
                                  distribution="ebmflow", version=__version__)
                if self._entry_points:
                    self._load_entry_points()
            except BaseException:  # the user's Ctrl-C: start over on the next lookup
                self._forget_all()
                raise

    def _forget_all(self) -> None:
        for plugin in self._plugins.values():
            if plugin.obj is not None and self._pm.is_registered(plugin.obj):
                self._pm.unregister(plugin.obj)
        self._plugins.clear()
        self._index = None
        self._loaded = False

    def _load_entry_points(self) -> None:
        only = _env_list(self.environ.get("EBMFLOW_PLUGINS"))
        blocked = _env_list(self.environ.get("EBMFLOW_BLOCK_PLUGINS")) or set()
        claims: dict[str, list[tuple[Any, str | None, str | None]]] = {}
        disabled = []
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            dist = getattr(ep, "dist", None)
            dist_name = dist.metadata["Name"] if dist is not None else None
            version = dist.version if dist is not None else None
            names = {normalize_plugin_name(n) for n in (ep.name, dist_name) if n}
            if names & blocked:
                disabled.append(_Plugin(ep.name, None, dist_name, version, "disabled",
                                        "blocked by EBMFLOW_BLOCK_PLUGINS"))
            elif only is not None and not names & only:
                disabled.append(_Plugin(ep.name, None, dist_name, version, "disabled",
                                        "not listed in EBMFLOW_PLUGINS"))
            else:
                claims.setdefault(ep.name, []).append((ep, dist_name, version))
        for name, claimants in claims.items():
            if len({normalize_plugin_name(dist or "") for _, dist, _ in claimants}) > 1:
                self._refuse_shared_name(name, claimants)
            else:
                ep, dist_name, version = claimants[0]
                self._add(name, ep.load, distribution=dist_name, version=version)
        for plugin in disabled:  # after the enabled ones: a disabled plugin claims no name
            self._plugins[self._free_key(plugin.name, plugin.distribution)] = plugin

    def _refuse_shared_name(
        self, name: str, claimants: list[tuple[Any, str | None, str | None]]
    ) -> None:
        """Two distributions register the same plugin name. Which one importlib.metadata
        finds first depends on sys.path and directory order, and a checkpoint naming the
        plugin must never be served by the wrong one, so neither is imported."""
        listed = ", ".join(sorted(f"{dist} {version}" for _, dist, version in claimants))
        error = (f"the plugin name {name!r} is claimed by {len(claimants)} distributions: "
                 f"{listed}; none of them is loaded. Uninstall one, or disable it with "
                 f"EBMFLOW_BLOCK_PLUGINS=<its distribution>")
        for _, dist_name, version in claimants:
            plugin = _Plugin(name, None, dist_name, version, "failed", error)
            self._plugins[self._free_key(name, dist_name)] = plugin
            self._report(plugin, None)

    def _free_key(self, name: str, distribution: str | None) -> str:
        return name if name not in self._plugins else f"{name} ({distribution})"

    def _add(
        self,
        name: str,
        load: Callable[[], Any],
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> _Plugin:
        plugin = _Plugin(name, None, distribution, version)
        if name in self._plugins:
            existing = self._plugins[name]
            plugin.status = "failed"
            plugin.error = (
                f"a plugin named {name!r} is already registered "
                f"(distribution {existing.distribution!r})"
            )
            self._plugins[f"{name} ({distribution})"] = plugin
            self._report(plugin, None)
            return plugin
        self._plugins[name] = plugin
        call = _PluginCall()
        try:
            if not _PLUGIN_NAME_PATTERN.fullmatch(name):
                raise PluginError(
                    f"invalid plugin name {name!r}: plugin names match "
                    f"{_PLUGIN_NAME_PATTERN.pattern}"
                )
            with call:
                plugin.obj = load()
                self._pm.register(plugin.obj, name=name)
        except BaseException as exc:
            if not call.failed_by(exc):  # the user's Ctrl-C: as if never added
                if plugin.obj is not None and self._pm.is_registered(plugin.obj):
                    self._pm.unregister(plugin.obj)
                del self._plugins[name]
                raise
            plugin.obj = None
            self._fail(plugin, exc)
        self._index = None
        return plugin

    def register(
        self,
        plugin: Any,
        name: str | None = None,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> PluginInfo:
        """Register a plugin object (a module, class or instance with hook implementations).

        The plugin goes through the same validation as an installed one: a failure is
        recorded (and warned about) unless ``EBMFLOW_STRICT_PLUGINS`` is set.
        """
        with self._lock:
            self.load()
            name = name or getattr(plugin, "__name__", None) or type(plugin).__name__
            added = self._add(name, lambda: plugin, distribution=distribution, version=version)
            self._ensure_index()
            return added.info()

    def unregister(self, name: str) -> None:
        """Remove a plugin and its components."""
        with self._lock:
            plugin = self._plugins.pop(name, None)
            if plugin is None:
                raise PluginError(
                    f"no plugin named {name!r}; registered: {', '.join(self._plugins)}"
                )
            if plugin.obj is not None and self._pm.is_registered(plugin.obj):
                self._pm.unregister(plugin.obj)
            self._index = None

    def _fail(self, plugin: _Plugin, exc: BaseException) -> None:
        plugin.status = "failed"
        plugin.error = _describe(exc)
        plugin.components = []
        if plugin.obj is not None and self._pm.is_registered(plugin.obj):
            self._pm.unregister(plugin.obj)
        self._report(plugin, exc)

    def _report(self, plugin: _Plugin, exc: BaseException | None) -> None:
        if self.strict:
            if isinstance(exc, Exception):
                raise exc
            if exc is not None:  # SystemExit(0) re-raised would end the process "successfully"
                raise PluginError(f"plugin {plugin.name!r} raised {plugin.error}") from exc
            raise PluginError(f"plugin {plugin.name!r}: {plugin.error}")
        warnings.warn(
            f"ebmflow plugin {plugin.name!r} failed and is disabled: {plugin.error}",
            PluginWarning,
            stacklevel=4,
        )

    def _ensure_index(self) -> dict[str, dict[str, list[Component]]]:
        with self._lock:
            self.load()
            if self._index is not None:
                return self._index
            collected: dict[str, list[Component]] = {}
            for kind, hook_name in KINDS.items():
                for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                    plugin = self._plugins[impl.plugin_name]
                    if plugin.status != "ok":
                        continue
                    call = _PluginCall()
                    try:
                        with call:
                            records = impl.function()
                            new = self._validate(plugin.name, kind, hook_name, records)
                    except BaseException as exc:
                        if not call.failed_by(exc):
                            raise
                        self._fail(plugin, exc)
                        collected.pop(plugin.name, None)
                        continue
                    collected.setdefault(plugin.name, []).extend(new)
            index: dict[str, dict[str, list[Component]]] = {kind: {} for kind in KINDS}
            for plugin in self._plugins.values():
                if plugin.status != "ok":
                    continue
                plugin.components = sorted(
                    collected.get(plugin.name, []), key=lambda c: (c.kind, c.name)
                )
                for component in plugin.components:
                    index[component.kind].setdefault(component.name, []).append(component)
            self._index = index
            return index

    @staticmethod
    def _validate(plugin: str, kind: str, hook_name: str, records: Any) -> list[Component]:
        where = f"hook {hook_name}"
        if records is None:
            return []
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise PluginError(
                f"{where} returned a {type(records).__name__}; expected a list of "
                f"ebmflow.Component"
            )
        seen: set[str] = set()
        out = []
        for record in records:
            if not isinstance(record, Component):
                raise PluginError(
                    f"{where} returned {record!r}; expected ebmflow.Component(name, factory, "
                    f"summary)"
                )
            if not isinstance(record.name, str) or not NAME_PATTERN.fullmatch(record.name):
                raise PluginError(
                    f"{where}: invalid {kind} name {record.name!r}; names match "
                    f"{NAME_PATTERN.pattern} (lower case, digits, '-' and '_')"
                )
            if record.name in seen:
                raise PluginError(f"{where}: {kind} {record.name!r} is registered twice")
            seen.add(record.name)
            if isinstance(record.factory, str):
                if not _FACTORY_PATTERN.fullmatch(record.factory):
                    raise PluginError(
                        f"{where}: {kind} {record.name!r} has factory {record.factory!r}; "
                        f"expected a callable or a 'module:attr' string"
                    )
            elif not callable(record.factory):
                raise PluginError(
                    f"{where}: {kind} {record.name!r} has a factory of type "
                    f"{type(record.factory).__name__}; expected a callable or 'module:attr'"
                )
            if not isinstance(record.summary, str):
                raise PluginError(f"{where}: {kind} {record.name!r} summary is not a string")
            out.append(replace(record, kind=kind, plugin=plugin))
        return out

    # -- queries -----------------------------------------------------------------------

    @property
    def hook(self) -> Any:
        """pluggy's hook caller, for hooks that are not component lists (CLI commands)."""
        self._ensure_index()
        return self._pm.hook

    def plugin_objects(self) -> dict[str, Any]:
        """Working plugins by name (for calling non-component hooks one plugin at a time)."""
        self._ensure_index()
        return {p.name: p.obj for p in self._plugins.values() if p.status == "ok"}

    def call_hook(self, name: str, hook: Callable[..., Any], /, **kwargs: Any) -> Any:
        """Call plugin ``name``'s ``hook`` (one that is not a component list, e.g.
        ``ebmflow_commands``) contained like its import: anything it raises, ``SystemExit``
        included, marks the plugin failed and gives None; a user's Ctrl-C propagates."""
        call = _PluginCall()
        try:
            with call:
                return hook(**kwargs)
        except BaseException as exc:
            if not call.failed_by(exc):
                raise
            self.mark_failed(name, exc)
            return None

    def mark_failed(self, name: str, exc: BaseException) -> None:
        """Record that plugin ``name`` broke while being used (e.g. in its CLI hook)."""
        with self._lock:
            self._fail(self._plugins[name], exc)
            self._index = None

    def plugins(self) -> list[PluginInfo]:
        """Every plugin seen, with status ``ok``, ``failed`` or ``disabled``."""
        self._ensure_index()
        return [plugin.info() for plugin in self._plugins.values()]

    def components(self, kind: str | None = None) -> list[Component]:
        """Every working component (of one kind, if given), sorted by kind and name."""
        index = self._ensure_index()
        kinds = list(KINDS) if kind is None else [normalize_kind(kind)]
        return [
            component
            for k in kinds
            for name in sorted(index[k])
            for component in sorted(index[k][name], key=lambda c: c.plugin or "")
        ]

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` (bare or ``plugin:name``) of ``kind``."""
        kind = normalize_kind(kind)
        index = self._ensure_index()
        if not isinstance(name, str):
            raise ConfigError(f"a {kind} name must be a string, got {name!r}")
        plugin_name, _, bare = name.rpartition(":")
        candidates = index[kind].get(bare, [])
        if plugin_name:
            candidates = [c for c in candidates if c.plugin == plugin_name]
        if len(candidates) == 1:
            return candidates[0]
        if candidates:
            listed = ", ".join(sorted(c.qualified_name for c in candidates))
            raise AmbiguousComponentError(
                f"{kind} name {name!r} is registered by {len(candidates)} plugins: {listed}; "
                f"use one of the qualified names"
            )
        raise UnknownComponentError(self._unknown_message(kind, name, index[kind]))

    def _unknown_message(self, kind: str, name: str, by_name: dict[str, list[Component]]) -> str:
        known = sorted(by_name)
        qualified = sorted(c.qualified_name for cs in by_name.values() for c in cs)
        close = difflib.get_close_matches(name, known + qualified, n=3, cutoff=0.6)
        message = f"unknown {kind} {name!r}"
        if close:
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?"
        else:
            message += "."
        message += f" Available {KINDS[kind].removeprefix('ebmflow_')}: "
        message += ", ".join(known) if known else "none"
        broken = [p.name for p in self._plugins.values() if p.status == "failed"]
        if broken:
            message += f". Plugins that failed to load: {', '.join(broken)} (see `ebmflow plugins`)"
        plugin_name = name.rpartition(":")[0]
        if plugin_name and plugin_name not in self._plugins:
            message += f". No plugin named {plugin_name!r} is installed"
        return message

    # -- construction ------------------------------------------------------------------

    def create(self, kind: str, name_or_config: str | Mapping[str, Any], /, **kwargs: Any) -> Any:
        """Build a component from a name or a config dict, plus keyword arguments.

        ``name_or_config`` is ``"name"``, ``"plugin:name"`` or ``{"name": ..., **arguments}``;
        ``kwargs`` override the config. An argument that is itself a component is given as a
        nested config: a dict with ``"name"`` under a key that names a kind (``sampler``,
        ``energy``, ``energies``, ``base_energy`` ...), or any dict with both ``"kind"`` and
        ``"name"``. Lists of such dicts are built element by element.

        Errors are ebmflow errors: an unknown name or argument as below, and a value the
        component rejects (a ``ValueError`` or ``TypeError`` from its constructor) as a
        :class:`~ebmflow.ConfigError` or :class:`~ebmflow.ComponentArgumentError` (still a
        ``ValueError`` or ``TypeError``). Any other exception from the factory keeps its
        type and gets a note naming the component, its plugin and distribution.
        """
        kind = normalize_kind(kind)
        if isinstance(name_or_config, str):
            name, arguments = name_or_config, {}
        elif isinstance(name_or_config, Mapping):
            arguments = dict(name_or_config)
            arguments.pop("kind", None)
            if "name" not in arguments:
                raise ConfigError(
                    f"a {kind} config needs a 'name' key; got keys {sorted(arguments)}"
                )
            name = arguments.pop("name")
        else:
            raise ConfigError(
                f"expected a {kind} name or a config dict with a 'name' key, "
                f"got {type(name_or_config).__name__} {name_or_config!r}"
            )
        arguments.update(kwargs)
        return self._construct(kind, name, arguments, nested=True)

    def construct(self, kind: str, name: str, arguments: Mapping[str, Any], /) -> Any:
        """Build ``name`` from exactly ``arguments``: unlike :meth:`create`, no dict or list
        argument is read as a nested component config, so a dict that happens to have
        ``kind`` and ``name`` keys stays a dict. For callers that build nested components
        themselves (``ebmflow.load`` rebuilds the ones a checkpoint tags explicitly).
        Errors are those of :meth:`create`."""
        return self._construct(kind, name, dict(arguments), nested=False)

    def _construct(self, kind: str, name: str, arguments: dict[str, Any], *,
                   nested: bool) -> Any:
        """Build ``name`` from ``arguments``; with ``nested=False`` no dict or list argument
        is read as a nested component config. ``ebmflow.load`` builds that way: a
        checkpoint tags its nested components explicitly, so a plain dict argument that
        happens to have ``kind`` and ``name`` keys stays a dict."""
        kind = normalize_kind(kind)
        component = self.get(kind, name)
        factory = component.load()
        if nested:
            arguments = {key: self._build_nested(key, value) for key, value in arguments.items()}
        _check_arguments(component, factory, arguments)
        building = _BUILDING_HOST.set(self)
        try:
            return factory(**arguments)
        except EbmflowError:
            raise
        except SystemExit as exc:  # a constructor never ends the process on purpose
            raise PluginError(
                f"{component.kind} {component.qualified_name!r} ({self._provenance(component)}) "
                f"raised {_describe(exc)} while being built"
            ) from exc
        except (TypeError, ValueError) as exc:
            # a component rejecting an argument value: an ebmflow error of the same family
            raise _construction_error(component, factory, exc) from exc
        except Exception as exc:
            # anything else is the component's own failure: keep its type, say where it was
            exc.add_note(f"while building {component.kind} {component.qualified_name!r} "
                         f"({self._provenance(component)})")
            raise
        finally:
            _BUILDING_HOST.reset(building)

    def _provenance(self, component: Component) -> str:
        plugin = self._plugins.get(component.plugin or "")
        if plugin is None or plugin.distribution is None:
            return f"plugin {component.plugin!r}"
        version = f" {plugin.version}" if plugin.version else ""
        return f"plugin {component.plugin!r}, distribution {plugin.distribution}{version}"

    def _build_nested(self, key: str, value: Any) -> Any:
        if isinstance(value, Mapping) and "name" in value:
            if "kind" in value:
                return self.create(value["kind"], value)
            kind = _kind_of_argument(key)
            if kind is not None:
                return self.create(kind, value)
        if isinstance(value, list):
            return [self._build_nested(key, item) for item in value]
        return value


def _kind_of_argument(key: str) -> str | None:
    key = key.lower()
    for spelling, kind in _KIND_SPELLINGS.items():
        if key == spelling or key.endswith("_" + spelling):
            return kind
    return None


def _check_arguments(component: Component, factory: Callable[..., Any], arguments: dict) -> None:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):  # some builtins have no signature; let the call decide
        return
    try:
        signature.bind(**arguments)
    except TypeError as exc:
        params = [
            p for p in signature.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        accepted = ", ".join(
            p.name if p.default is p.empty else f"{p.name}={p.default!r}" for p in params
        ) or "none"
        names = [p.name for p in params]
        hints = []
        for key in arguments:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                if close:
                    hints.append(f"{close[0]!r} instead of {key!r}")
        hint = f" (did you mean {', '.join(hints)}?)" if hints else ""
        raise ComponentArgumentError(
            f"{component.kind} {component.qualified_name!r}: {exc}{hint}. "
            f"Accepted arguments: {accepted}"
        ) from None


def _construction_error(
    component: Component, factory: Callable[..., Any], exc: TypeError | ValueError
) -> EbmflowError:
    """The ebmflow error for a ``TypeError``/``ValueError`` a factory raised: a
    :class:`ComponentArgumentError` (still a ``TypeError``) or a :class:`ConfigError` (still
    a ``ValueError``), with the message kept, prefixed by the component unless it names it."""
    message = str(exc)
    names = {component.name, getattr(factory, "__name__", None),
             getattr(factory, "__qualname__", None)}
    if not any(name and name in message for name in names):
        message = f"{component.kind} {component.qualified_name!r}: {message}"
    error_type = ComponentArgumentError if isinstance(exc, TypeError) else ConfigError
    return error_type(message)


_default_host: PluginHost | None = None
_default_lock = threading.Lock()
#: the host whose ``create`` is calling a factory right now (see :func:`current_host`).
_BUILDING_HOST: contextvars.ContextVar[PluginHost | None] = contextvars.ContextVar(
    "ebmflow_building_host", default=None
)


def default_host() -> PluginHost:
    """The process-wide host behind :func:`ebmflow.create` (builtins + entry points)."""
    global _default_host
    with _default_lock:
        if _default_host is None:
            _default_host = PluginHost()
        return _default_host


def current_host() -> PluginHost:
    """The host to build a nested component with: inside a component's constructor called
    by :meth:`PluginHost.create` (or ``ebmflow.load``), that host; anywhere else
    :func:`default_host`. A component that accepts another component by name or config dict
    builds it with ``current_host().create(kind, spec)``, so that a component built through an
    isolated ``PluginHost`` finds the components registered with that host, not only the
    installed ones."""
    host = _BUILDING_HOST.get()
    return default_host() if host is None else host


def create(kind: str, name_or_config: str | Mapping[str, Any], /, **kwargs: Any) -> Any:
    """Build a component: ``ebmflow.create("sampler", "mala", step_size=0.01)``.

    See :meth:`PluginHost.create` for nested configs.
    """
    return default_host().create(kind, name_or_config, **kwargs)


def components(kind: str | None = None) -> list[Component]:
    """The components of the default host (of one kind, if given)."""
    return default_host().components(kind)


def plugins() -> list[PluginInfo]:
    """The plugins of the default host, with their status and errors."""
    return default_host().plugins()
