"""Discovery through real entry points.

Fast tests write fake installed distributions (``*.dist-info`` + ``entry_points.txt``) into a
folder and run ``ebmflow`` in a subprocess with that folder on ``PYTHONPATH``, so that
``importlib.metadata`` finds them exactly as it finds a pip-installed plugin. The slow test
pip-installs the example plugin (and a broken one beside it) into a fresh virtual
environment.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "ebmflow-example-plugin"


def plugin_source(*, header: str = "", **hooks: str) -> str:
    """A plugin module whose hook ``ebmflow_<kind>`` has the body ``hooks[kind]``."""
    source = f"import ebmflow\nfrom ebmflow import Component\n{textwrap.dedent(header)}\n"
    for kind, body in hooks.items():
        source += f"\n@ebmflow.hookimpl\ndef ebmflow_{kind}():\n    {body}\n"
    source += "\ndef make(**kwargs):\n    return {'module': __name__, **kwargs}\n"
    return source


#: entry-point name -> (plugin module source, or None for a module that does not exist)
BROKEN_SOURCES: dict[str, str | None] = {
    "import-error": "raise RuntimeError('import exploded')\n",
    "missing-module": None,
    "hook-raises": plugin_source(
        energies="return [Component('hook-raises-energy', 'fake_hook_raises:make')]",
        samplers="raise ValueError('hook exploded')",
    ),
    "not-a-list": plugin_source(samplers="return {'x': 'fake_not_a_list:make'}"),
    "not-a-component": plugin_source(samplers="return [('x', 'fake_not_a_component:make')]"),
    "bad-name": plugin_source(samplers="return [Component('Bad Name', 'fake_bad_name:make')]"),
    "non-callable-factory": plugin_source(samplers="return [Component('fine-name', 42)]"),
    "duplicate-names": plugin_source(
        samplers="return [Component('dup', 'fake_duplicate_names:make'), "
        "Component('dup', 'fake_duplicate_names:make')]"
    ),
}

#: entry-point name -> a fragment of the error ``ebmflow plugins`` must show
BROKEN_ERRORS = {
    "import-error": "RuntimeError: import exploded",
    "missing-module": "ModuleNotFoundError",
    "hook-raises": "ValueError: hook exploded",
    "not-a-list": "returned a dict",
    "not-a-component": "expected ebmflow.Component",
    "bad-name": "invalid sampler name 'Bad Name'",
    "non-callable-factory": "factory of type int",
    "duplicate-names": "'dup' is registered twice",
}

#: entry-point name -> the components it provides, as ``plugin.to_dict()["components"]``
HEALTHY = {
    "good": {"energy": ["good-energy"], "sampler": ["good-sampler"]},
    "alpha": {"sampler": ["alpha-only", "shared"]},
    "beta": {"sampler": ["beta-only", "shared"]},
}


def module_name(entry_point: str) -> str:
    return "fake_" + entry_point.replace("-", "_")


@pytest.fixture(scope="module")
def zoo(fake_site_factory):
    """A site with three healthy plugins (two sharing the sampler name ``shared``) and one
    plugin for every way a plugin can be broken."""
    site_ = fake_site_factory("zoo")
    site_.add(
        "fake-good",
        {"good": "fake_good"},
        {
            "fake_good.py": plugin_source(
                energies="return [Component('good-energy', 'fake_good:make', 'a healthy energy')]",
                samplers="return [Component('good-sampler', 'fake_good:make')]",
            )
        },
    )
    for name in ("alpha", "beta"):
        module = module_name(name)
        site_.add(
            f"fake-{name}",
            {name: module},
            {
                f"{module}.py": plugin_source(
                    samplers=f"return [Component('shared', '{module}:make'), "
                    f"Component('{name}-only', '{module}:make')]",
                )
            },
        )
    for name, source in BROKEN_SOURCES.items():
        module = module_name(name)
        files = {} if source is None else {f"{module}.py": source}
        site_.add(f"fake-{name}", {name: module}, files)
    return site_


def plugins_json(result: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert result.returncode == 0, result.stderr
    listed = json.loads(result.stdout)
    by_name = {p["name"]: p for p in listed}
    assert len(by_name) == len(listed), "a plugin is listed twice"
    return by_name


def components_json(result: subprocess.CompletedProcess[str]) -> set[str]:
    assert result.returncode == 0, result.stderr
    return {c["qualified_name"] for c in json.loads(result.stdout)}


@pytest.fixture(scope="module")
def zoo_plugins(zoo):
    result = zoo.run("plugins", "--json")
    return plugins_json(result), result.stderr


@pytest.fixture(scope="module")
def zoo_components(zoo):
    return components_json(zoo.run("components", "--json"))


def healthy_qualified_names() -> set[str]:
    return {
        f"{plugin}:{name}"
        for plugin, kinds in HEALTHY.items()
        for names in kinds.values()
        for name in names
    }


@pytest.mark.parametrize("name", BROKEN_ERRORS)
def test_broken_plugin_is_listed_failed_and_the_others_keep_working(
    zoo_plugins, zoo_components, name
):
    listed, stderr = zoo_plugins
    info = listed[name]
    assert (info["status"], info["distribution"], info["version"]) == (
        "failed",
        f"fake-{name}",
        "1.0",
    )
    assert BROKEN_ERRORS[name] in info["error"]
    assert info["components"] == {}
    # one warning line for it, not a Python warnings traceback
    warned = [line for line in stderr.splitlines() if f"plugin '{name}'" in line]
    assert len(warned) == 1 and warned[0].startswith("ebmflow: warning:"), stderr
    # `ebmflow components` still works, without the broken plugin's components
    assert not any(q.startswith(f"{name}:") for q in zoo_components)
    assert healthy_qualified_names() | {"ebmflow:mala"} <= zoo_components


def test_healthy_plugins_are_listed_ok_with_distribution_version_and_components(zoo_plugins):
    listed, _ = zoo_plugins
    for name, components in HEALTHY.items():
        assert listed[name] == {
            "name": name,
            "distribution": f"fake-{name}",
            "version": "1.0",
            "status": "ok",
            "components": components,
            "error": None,
        }
    assert listed["ebmflow"]["status"] == "ok"


def test_name_shared_by_two_distributions_is_ambiguous_at_lookup_only(zoo):
    result = zoo.python("""
        import json, warnings
        import ebmflow
        warnings.simplefilter("ignore", ebmflow.PluginWarning)  # the zoo's broken plugins
        report = {}
        try:
            ebmflow.create("sampler", "shared")
        except ebmflow.AmbiguousComponentError as exc:
            report["ambiguous"] = str(exc)
        report["alpha"] = ebmflow.create("sampler", "alpha:shared", step=1)
        report["beta"] = ebmflow.create("sampler", "beta:shared")
        report["alpha-only"] = ebmflow.create("sampler", "alpha-only")
        report["good"] = ebmflow.create("energy", "good-energy")
        print(json.dumps(report))
    """)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert "alpha:shared" in report["ambiguous"] and "beta:shared" in report["ambiguous"]
    assert report["alpha"] == {"module": "fake_alpha", "step": 1}
    assert report["beta"] == {"module": "fake_beta"}
    assert report["alpha-only"] == {"module": "fake_alpha"}
    assert report["good"] == {"module": "fake_good"}


def test_ebmflow_plugins_env_loads_only_the_listed_plugins(zoo):
    # one listed by entry-point name, one by distribution name
    env = {"EBMFLOW_PLUGINS": "alpha, fake-good"}
    listed = plugins_json(zoo.run("plugins", "--json", **env))
    status = {name: info["status"] for name, info in listed.items()}
    assert status.pop("ebmflow") == "ok"  # the core's components are always loaded
    assert status.pop("alpha") == "ok"
    assert status.pop("good") == "ok"
    assert set(BROKEN_ERRORS) <= set(status)
    assert set(status.values()) == {"disabled"}
    assert listed["beta"]["error"] == "not listed in EBMFLOW_PLUGINS"
    # with beta disabled, "shared" is no longer ambiguous
    found = components_json(zoo.run("components", "--kind", "sampler", "--json", **env))
    assert {"alpha:shared", "alpha:alpha-only", "good:good-sampler", "ebmflow:mala"} <= found
    assert not any(q.startswith("beta:") for q in found)


def test_empty_ebmflow_plugins_env_loads_no_entry_points(zoo):
    result = zoo.run("plugins", "--json", EBMFLOW_PLUGINS="")
    listed = plugins_json(result)
    assert listed.pop("ebmflow")["status"] == "ok"
    assert listed and {info["status"] for info in listed.values()} == {"disabled"}
    assert result.stderr == ""  # nothing broken was even imported


def test_blocked_plugins_are_disabled_and_not_imported(zoo):
    result = zoo.run("plugins", "--json", EBMFLOW_BLOCK_PLUGINS="import-error,fake-hook-raises")
    listed = plugins_json(result)
    for name in ("import-error", "hook-raises"):
        assert (listed[name]["status"], listed[name]["error"]) == (
            "disabled",
            "blocked by EBMFLOW_BLOCK_PLUGINS",
        )
        assert f"plugin '{name}'" not in result.stderr
    assert listed["good"]["status"] == "ok"
    assert listed["bad-name"]["status"] == "failed"  # the rest is unchanged


@pytest.mark.parametrize(
    ("name", "last_line"),
    [
        ("import-error", "RuntimeError: import exploded"),
        ("missing-module", "ModuleNotFoundError: No module named 'fake_missing_module'"),
        ("hook-raises", "ValueError: hook exploded"),
        (
            "bad-name",
            "ebmflow.errors.PluginError: hook ebmflow_samplers: invalid sampler name 'Bad Name'",
        ),
    ],
)
def test_strict_plugins_reraises_the_original_error(zoo, name, last_line):
    result = zoo.python(
        "import ebmflow; ebmflow.components()", EBMFLOW_STRICT_PLUGINS="1", EBMFLOW_PLUGINS=name
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr
    assert result.stderr.splitlines()[-1].startswith(last_line), result.stderr


def test_strict_plugins_in_the_cli_is_one_line_or_a_traceback_with_debug(zoo):
    env = {"EBMFLOW_STRICT_PLUGINS": "1", "EBMFLOW_PLUGINS": "import-error"}
    plain = zoo.run("plugins", **env)
    assert plain.returncode == 1
    assert plain.stderr.splitlines() == [
        "ebmflow: internal error: RuntimeError: import exploded "
        "(run with --debug for the traceback)"
    ]
    debug = zoo.run("--debug", "plugins", **env)
    assert debug.returncode != 0
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "RuntimeError: import exploded"


# -- a real install into a fresh virtual environment ---------------------------------------


def make_venv(root: Path) -> Path:
    """A virtual environment that sees this interpreter's site-packages (torch, ebmflow,
    pip, hatchling) through a .pth file, so nothing needs reinstalling. Returns its python."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [p for p in site.getsitepackages() if os.path.isdir(p)]
    (Path(purelib) / "_outer_site.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in outer)
    )
    return python


def venv_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EBMFLOW_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


def pip_install(python: Path, project: Path) -> None:
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            str(project),
        ],
        env=venv_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def run_in(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args], env=venv_env(), capture_output=True, text=True, timeout=120
    )


def write_broken_distribution(root: Path) -> Path:
    project = root / "ebmflow-broken-example"
    package = project / "ebmflow_broken_example"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(
        "raise ImportError('ebmflow-broken-example needs a library that is not installed')\n"
    )
    (project / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["hatchling"]
        build-backend = "hatchling.build"

        [project]
        name = "ebmflow-broken-example"
        version = "0.0.1"

        [project.entry-points.ebmflow]
        broken-example = "ebmflow_broken_example.plugin"

        [tool.hatch.build.targets.wheel]
        packages = ["ebmflow_broken_example"]
    """)
    )
    return project


@pytest.mark.slow
def test_pip_installed_example_plugin_is_discovered_and_a_broken_one_beside_it_is_isolated(
    tmp_path,
):
    python = make_venv(tmp_path)
    example = tmp_path / "src" / EXAMPLE.name  # build from a copy: nothing written to the repo
    shutil.copytree(
        EXAMPLE, example, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    )
    pip_install(python, example)

    listed = plugins_json(run_in(python, "-m", "ebmflow", "plugins", "--json"))
    assert listed["example"] == {
        "name": "example",
        "distribution": "ebmflow-example-plugin",
        "version": "0.1.0",
        "status": "ok",
        "components": {"energy": ["double-well"], "sampler": ["rwm"]},
        "error": None,
    }
    assert [p["distribution"] for p in listed.values()].count("ebmflow-example-plugin") == 1
    found = components_json(run_in(python, "-m", "ebmflow", "components", "--json"))
    assert {"example:double-well", "example:rwm", "ebmflow:mala"} <= found

    sampled = run_in(
        python,
        "-c",
        textwrap.dedent("""
        import json, sys
        import torch
        import ebmflow
        sampler = ebmflow.create("sampler", "example:rwm", step_size=0.5)
        energy = ebmflow.create("energy", {"name": "double-well", "dim": 2})
        result = sampler.run(energy, torch.zeros(64, 2), 50,
                             generator=torch.Generator().manual_seed(0))
        print(json.dumps({
            "module": sys.modules[type(sampler).__module__].__file__,
            "shape": list(result.samples.shape),
            "finite": bool(torch.isfinite(result.samples).all()),
            "acceptance": result.diagnostics["acceptance_rate"],
        }))
    """),
    )
    assert sampled.returncode == 0, sampled.stderr
    report = json.loads(sampled.stdout)
    assert report["module"].startswith(str(tmp_path / "venv"))  # the installed copy
    assert report["shape"] == [64, 2] and report["finite"]
    assert 0.0 < report["acceptance"] < 1.0

    pip_install(python, write_broken_distribution(tmp_path))
    result = run_in(python, "-m", "ebmflow", "plugins", "--json")
    listed = plugins_json(result)
    broken = listed["broken-example"]
    assert (broken["status"], broken["distribution"], broken["version"]) == (
        "failed",
        "ebmflow-broken-example",
        "0.0.1",
    )
    assert broken["error"] == (
        "ImportError: ebmflow-broken-example needs a library that is not installed"
    )
    assert "ebmflow: warning: ebmflow plugin 'broken-example' failed" in result.stderr
    assert listed["example"]["status"] == "ok"
    found = components_json(run_in(python, "-m", "ebmflow", "components", "--json"))
    assert {"example:double-well", "example:rwm", "ebmflow:mala"} <= found
