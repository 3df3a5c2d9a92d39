"""The documentation is documentation that runs: the site under ``docs/`` builds with
``mkdocs build --strict`` (no broken link, no missing API object), the README's set-up
commands exist where CI reads them, and every ```python block of every docs page and every
README executes as written.

A file's blocks run in order in one fresh namespace (a later block may use what an earlier
one defined), in a subprocess started in an empty temporary folder, offline
(``HF_HUB_OFFLINE=1``) and on one thread, so a block can neither rely on the repository as
its working folder nor leak state into another file's blocks. The README of an example
package under ``examples/`` runs as it would once that package is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)

# Runs one file's blocks: argv[1] is the file, the blocks come as (line, code) pairs on stdin.
_RUNNER = """
import json, sys
namespace = {"__name__": "__docs__"}
for line, code in json.load(sys.stdin):
    exec(compile("\\n" * (line - 1) + code, sys.argv[1], "exec"), namespace)
"""


def _documents() -> list[Path]:
    pages = sorted((ROOT / "docs").rglob("*.md"))
    readmes = [
        README,
        *sorted(ROOT.glob("plugins/*/README.md")),
        *sorted(ROOT.glob("examples/*/README.md")),
    ]
    return readmes + pages


def _python_blocks(path: Path) -> list[tuple[int, str]]:
    """Each ```python block of ``path`` with the line its code starts on."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start(1)) + 1, match.group(1))
        for match in PYTHON_BLOCK.finditer(text)
    ]


DOCUMENTS = [path for path in _documents() if _python_blocks(path)]


def _env(path: tuple[Path, ...] = ()) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("PYTHONPATH", None)
    if path:
        env["PYTHONPATH"] = os.pathsep.join(str(folder) for folder in path)
    return env


def _installed_without_pip(readme: Path, site: Path) -> tuple[Path, ...]:
    """The import path on which the distribution that ``readme`` documents counts as
    installed, for the example packages under ``examples/`` (the first-party plugins are
    installed by ``scripts/install.sh``): its ``src`` folder, and in ``site`` the
    ``.dist-info`` metadata with its entry points, which is what an install adds and all
    that ebmflow reads to discover a plugin."""
    project = readme.parent / "pyproject.toml"
    if readme.parent.parent != ROOT / "examples" or not project.is_file():
        return ()
    meta = tomllib.loads(project.read_text(encoding="utf-8"))["project"]
    info = site / f"{meta['name'].replace('-', '_')}-{meta['version']}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {meta['name']}\nVersion: {meta['version']}\n",
        encoding="utf-8",
    )
    (info / "entry_points.txt").write_text(
        "".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in points.items())
            for group, points in meta.get("entry-points", {}).items()
        ),
        encoding="utf-8",
    )
    return (site, readme.parent / "src")


def test_readme_has_exactly_two_setup_commands_for_ci():
    text = README.read_text(encoding="utf-8")
    for tag in ("setup-main", "setup-test"):
        match = re.search(rf"<!-- {tag} -->\n```bash\n(.+)\n```", text)
        assert match, f"README lacks the {tag} command block"
        assert "scripts/install.sh" in match.group(1)
    assert text.count("<!-- setup-") == 2


def test_readme_stays_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= 200, f"README.md has {lines} lines; longer material belongs under docs/"


def test_every_readme_and_the_guide_have_python_blocks_to_run():
    names = {path.relative_to(ROOT).as_posix() for path in DOCUMENTS}
    assert "README.md" in names
    assert "plugins/ebmflow-diffusers/README.md" in names
    assert "examples/ebmflow-example-plugin/README.md" in names
    assert any(name.startswith("docs/guide/") for name in names)


@pytest.mark.parametrize(
    "path", DOCUMENTS, ids=[path.relative_to(ROOT).as_posix() for path in DOCUMENTS]
)
def test_python_blocks_run_in_order(path, tmp_path):
    import json

    blocks = _python_blocks(path)
    (tmp_path / "work").mkdir()
    path_entries = _installed_without_pip(path, tmp_path / "site")
    done = subprocess.run(
        [sys.executable, "-c", _RUNNER, str(path)],
        input=json.dumps(blocks),
        cwd=tmp_path / "work",
        env=_env(path_entries),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, (
        f"a python block of {path.relative_to(ROOT)} failed:\n{done.stderr[-4000:]}"
    )


def test_mkdocs_build_strict_passes(tmp_path):
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent))
    if mkdocs is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [
            mkdocs,
            "build",
            "--strict",
            "--config-file",
            str(ROOT / "mkdocs.yml"),
            "--site-dir",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        env=dict(_env(), NO_MKDOCS_2_WARNING="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stderr[-4000:]}"
    assert (tmp_path / "site" / "reference" / "evaluate" / "index.html").is_file()
