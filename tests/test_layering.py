"""The layering of ebmflow and its first-party plugins holds.

``.importlinter`` states three contracts: the core never imports a plugin; plugins import
only the public surface (``ebmflow``, ``ebmflow.extend``, ``ebmflow.testing``); the
interfaces import no CLI, trainer or checkpoint code. The first test runs import-linter on
them; the second is a fast scan of the plugins' sources that names the offending line. The
last checks that no module, core or plugin, imports another module's private names.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
#: the example third-party plugin follows the same rule as the first-party ones.
EXAMPLE_PLUGIN = ROOT / "examples" / "ebmflow-example-plugin"
#: the core modules a plugin may import besides the top-level package.
PUBLIC_MODULES = {"ebmflow.extend", "ebmflow.testing"}


def _lint_imports() -> str:
    script = Path(sys.executable).with_name("lint-imports")
    found = str(script) if script.exists() else shutil.which("lint-imports")
    assert found, (
        "lint-imports (import-linter) is not installed; install the test extras with "
        "`bash scripts/install.sh --test`"
    )
    return found


def test_import_linter_contracts_hold():
    # the plugins' source folders on the path too, for a checkout where they are not installed
    path = [str(ROOT), *(str(p) for p in sorted(PLUGINS.iterdir()) if p.is_dir())]
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join(
            path + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
        ),
    )
    done = subprocess.run(
        [_lint_imports(), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"broken import contracts:\n{done.stdout}{done.stderr}"
    assert "0 broken" in done.stdout, done.stdout


def _plugin_sources() -> list[Path]:
    """Every Python file of the first-party plugins and the example plugin, except tests."""
    return sorted(
        path
        for path in (*PLUGINS.glob("*/**/*.py"), *EXAMPLE_PLUGIN.glob("**/*.py"))
        if "tests" not in path.relative_to(ROOT).parts and path.name != "conftest.py"
    )


def _private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            if name.startswith("ebmflow.") and not any(
                name == public or name.startswith(public + ".") for public in PUBLIC_MODULES
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {name}")
    return found


def test_plugin_sources_import_only_the_public_surface():
    sources = _plugin_sources()
    assert len(sources) > 10, "no plugin sources found: did the plugins move?"
    offending = [line for path in sources for line in _private_imports(path)]
    assert not offending, (
        "plugins may import only `ebmflow`, `ebmflow.extend` and `ebmflow.testing`; make the "
        "helper public (documented, re-exported from ebmflow.extend) instead of importing "
        "the core's internal module:\n  " + "\n  ".join(offending)
    )


def test_extension_helpers_are_documented():
    import ebmflow.extend

    undocumented = [
        name
        for name in ebmflow.extend.__all__
        if callable(helper := getattr(ebmflow.extend, name)) and not (helper.__doc__ or "").strip()
    ]
    assert not undocumented, f"ebmflow.extend helpers without a docstring: {undocumented}"
    assert ebmflow.extend.__doc__ and all(
        name in ebmflow.extend.__doc__ for name in ebmflow.extend.__all__ if name.islower()
    ), "every helper of ebmflow.extend is named in the module's docstring"


def test_no_module_imports_another_modules_private_names():
    sources = [
        *sorted((ROOT / "ebmflow").glob("**/*.py")),
        *(path for path in _plugin_sources() if path.suffix == ".py"),
    ]
    offending = []
    for path in sources:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                offending += [
                    f"{path.relative_to(ROOT)}:{node.lineno} imports {alias.name} from "
                    f"{node.module or '.'}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    assert not offending, (
        "a name another module needs is part of its owner's interface: drop the underscore "
        "(and document it) instead of importing it privately:\n  " + "\n  ".join(offending)
    )
