"""Shared test helpers for the registry, CLI and entry-point tests.

``make_plugin`` builds an in-process plugin object; ``fake_site`` builds a folder of fake
installed distributions (``*.dist-info`` with ``entry_points.txt``) that a subprocess finds
through ``importlib.metadata`` once the folder is on ``PYTHONPATH``; ``tinyobj_plugin`` is
the test plugin of ``tinyobj_plugin.py`` (objective ``tiny-pcd``) for the training tests.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import ebmflow

HOOK_NAMES = (
    "energies",
    "objectives",
    "samplers",
    "datasets",
    "noise_schedules",
    "converters",
    "schedulers",
    "log_z_estimators",
    "evaluators",
)


def _hook(value: Any) -> Callable[[], Any]:
    def hook():
        if isinstance(value, BaseException):
            raise value
        return value

    return ebmflow.hookimpl(hook)


@pytest.fixture
def make_plugin() -> Callable[..., types.SimpleNamespace]:
    """``make_plugin(samplers=[Component(...)], commands=fn)``: a plugin object whose
    component hooks return the given value (or raise it, if it is an exception) and whose
    ``ebmflow_commands`` is ``fn``."""

    def make(**hooks: Any) -> types.SimpleNamespace:
        plugin = types.SimpleNamespace()
        for key, value in hooks.items():
            if key == "commands":
                plugin.ebmflow_commands = ebmflow.hookimpl(value)
            elif key in HOOK_NAMES:
                setattr(plugin, f"ebmflow_{key}", _hook(value))
            else:
                raise TypeError(f"make_plugin: unknown hook {key!r}")
        return plugin

    return make


class FakeSite:
    """A folder of fake installed distributions, and subprocesses that see them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)

    def add(
        self,
        distribution: str,
        entry_points: dict[str, str],
        files: dict[str, str],
        version: str = "1.0",
    ) -> None:
        """Install ``distribution``: its modules (``files``: relative path -> source) and a
        dist-info folder whose ``entry_points.txt`` lists ``entry_points`` in group ebmflow."""
        for relative, source in files.items():
            target = self.path / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(textwrap.dedent(source))
        info = self.path / f"{distribution.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: {version}\n"
        )
        lines = ["[ebmflow]", *(f"{name} = {value}" for name, value in entry_points.items())]
        (info / "entry_points.txt").write_text("\n".join(lines) + "\n")

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment for a subprocess: this site on PYTHONPATH, no inherited
        ``EBMFLOW_*`` variables, plus ``overrides``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(self.path), os.environ.get("PYTHONPATH", "")) if p
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(overrides)
        return env

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``ebmflow ARGS`` (the installed console script) in a subprocess."""
        script = Path(sys.executable).with_name("ebmflow")
        command = [str(script)] if script.exists() else [sys.executable, "-m", "ebmflow"]
        return subprocess.run(
            [*command, *args], env=self.env(**env), capture_output=True, text=True, timeout=60
        )

    def python(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        """``python -c CODE`` in a subprocess."""
        return subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )


@pytest.fixture(scope="session")
def fake_site_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], FakeSite]:
    """``fake_site_factory(name)``: a new, empty :class:`FakeSite` (for module-scoped sites)."""
    return lambda name="site": FakeSite(tmp_path_factory.mktemp(name))


@pytest.fixture
def fake_site(tmp_path: Path) -> FakeSite:
    """An empty :class:`FakeSite` for one test."""
    return FakeSite(tmp_path / "site")


@pytest.fixture(scope="session")
def tinyobj_plugin() -> types.ModuleType:
    """The plugin module ``tinyobj_plugin.py`` (objective ``tiny-pcd``), imported under that
    name so that its ``"tinyobj_plugin:TinyPCD"`` factory resolves in this process too."""
    if "tinyobj_plugin" not in sys.modules:
        path = Path(__file__).with_name("tinyobj_plugin.py")
        spec = importlib.util.spec_from_file_location("tinyobj_plugin", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["tinyobj_plugin"] = module
        spec.loader.exec_module(module)
    return sys.modules["tinyobj_plugin"]
