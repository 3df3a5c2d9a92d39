"""The tree is lint-clean and formatted, and the core and plugins type-check.

``ruff check`` and ``ruff format --check`` run over the whole repository with the settings
in ``pyproject.toml``; ``mypy`` runs over ``ebmflow`` and every plugin package
(``[tool.mypy]`` in ``pyproject.toml`` names them). Both tools come with the test extra
(``scripts/install.sh --test``); without one the test is skipped, saying which is missing.
A failure shows the tool's own report.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_tool(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m module *args`` in the repository root, with this interpreter (so mypy
    sees the packages of this environment); skip if the tool is not installed."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(
            f"{module} is not installed; install the test extra with "
            "`bash scripts/install.sh --test`"
        )
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_ruff_check_is_clean():
    # no cache: the check is fast, and the test leaves nothing in the tree
    done = _run_tool("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, f"ruff check found problems:\n{done.stdout}{done.stderr}"


def test_ruff_format_leaves_every_file_unchanged():
    done = _run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, (
        f"files are not formatted; run `ruff format .`:\n{done.stdout}{done.stderr}"
    )


def _mypy_cache() -> Path:
    """A cache outside the tree, one per checkout: a rerun re-checks only what changed, and
    two checkouts on one machine never share (or overwrite) each other's results."""
    key = hashlib.sha256(str(ROOT).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"ebmflow-mypy-{key}"


def test_mypy_is_clean_over_core_and_plugins():
    done = _run_tool("mypy", "--cache-dir", str(_mypy_cache()))
    assert done.returncode == 0, f"mypy found type errors:\n{done.stdout}{done.stderr}"
