"""Every example runs: each ``examples/*.py`` as a script in ``--quick`` mode, and each
``examples/configs/*.toml`` through ``ebmflow train`` for a few steps (subprocesses).

Conventions for an example script (checked below): a module docstring saying what it shows
and how to run it, a ``--quick`` option that still runs every stage, a ``__main__`` guard
and a zero exit status when its checks pass. It runs from any working directory (the tests
use a temporary one, so relative output folders land there). A script that needs more than
the core lists the distributions in a module-level ``REQUIRES = ("ebmflow-score", ...)``; the
test skips it, with the reason, when one of them or one of its top-level imports is missing.
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import ebmflow

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "examples").glob("*.py"))
CONFIGS = sorted((ROOT / "examples" / "configs").glob("*.toml"))
#: run files that plugins/ebmflow-cd/tests/test_training.py already trains through the CLI.
TESTED_ELSEWHERE = {"cd_8gaussians", "pcd_8gaussians"}
#: TOML tables that name a component, and the kind each names.
TABLE_KINDS = {
    "data": "dataset",
    "energy": "energy",
    "objective": "objective",
    "sampler": "sampler",
}


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    env.update(OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1")
    return env


def missing_requirements(script: Path) -> list[str]:
    """What ``script`` needs that is not installed: distributions in its ``REQUIRES`` and
    modules it imports at the top level."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    missing = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "REQUIRES" for t in node.targets
        ):
            for distribution in ast.literal_eval(node.value):
                try:
                    importlib.metadata.distribution(distribution)
                except importlib.metadata.PackageNotFoundError:
                    missing.append(f"distribution {distribution}")
        elif isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules = [node.module]
        else:
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for module in modules:
                top = module.split(".")[0]
                if top != "__future__" and importlib.util.find_spec(top) is None:
                    missing.append(f"module {top}")
    return missing


def test_there_are_examples():
    names = {s.name for s in SCRIPTS}
    assert {"install_plugin.py", "mixing.py", "ncsn_digits.py"} <= names
    assert CONFIGS


@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_example_follows_the_conventions(script):
    source = script.read_text(encoding="utf-8")
    tree = ast.parse(source)
    assert ast.get_docstring(tree), f"{script.name} needs a module docstring"
    assert "--quick" in source, f"{script.name} needs a --quick option"
    assert 'if __name__ == "__main__":' in source


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS, ids=[s.name for s in SCRIPTS])
def test_example_runs_in_quick_mode(script, tmp_path):
    missing = missing_requirements(script)
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)}, not installed")
    done = subprocess.run(
        [sys.executable, str(script), "--quick"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout}\n{done.stderr}"


def config_components(config: Path) -> list[tuple[str, str]]:
    tables = tomllib.loads(config.read_text(encoding="utf-8"))
    return [
        (TABLE_KINDS[key], table["name"])
        for key, table in tables.items()
        if key in TABLE_KINDS and isinstance(table, dict) and "name" in table
    ]


@pytest.mark.slow
@pytest.mark.parametrize(
    "config", [c for c in CONFIGS if c.stem not in TESTED_ELSEWHERE], ids=lambda c: c.stem
)
def test_run_file_trains_through_the_cli(config, tmp_path):
    """A few steps of ``ebmflow train CONFIG --steps 2``, then the checkpoint loads as an
    energy that gives finite values on the data."""
    host = ebmflow.default_host()
    for kind, name in config_components(config):
        try:
            host.get(kind, name)
        except ebmflow.UnknownComponentError:
            pytest.skip(f"{config.name} needs the {kind} {name!r}, whose plugin is not installed")
        except ImportError as exc:  # e.g. a dataset whose library is missing
            pytest.skip(f"{config.name}: {exc}")
    out = tmp_path / config.stem
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ebmflow",
            "train",
            str(config),
            "--out",
            str(out),
            "--steps",
            "2",
            "--no-progress",
        ],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0 and "pip install" in done.stderr and "scikit-learn" in done.stderr:
        pytest.skip(f"{config.name} needs scikit-learn")
    assert done.returncode == 0, done.stderr
    assert "step 2 of 2" in done.stdout
    energy = ebmflow.load(out / "checkpoint").eval()
    data_name = dict((k, n) for k, n in config_components(config))["dataset"]
    import torch

    x = host.create("dataset", data_name).sample(8, torch.Generator().manual_seed(0))
    sigma = 0.1 if energy.noise_conditional else None
    with torch.no_grad():
        assert torch.isfinite(energy(x, sigma)).all()
