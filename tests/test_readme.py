"""The README is documentation that runs: its set-up commands exist where CI reads them,
and every ```python block executes as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL)


def test_readme_has_exactly_two_setup_commands_for_ci():
    text = README.read_text(encoding="utf-8")
    for tag in ("setup-main", "setup-test"):
        match = re.search(rf"<!-- {tag} -->\n```bash\n(.+)\n```", text)
        assert match, f"README lacks the {tag} command block"
        assert "scripts/install.sh" in match.group(1)
    assert text.count("<!-- setup-") == 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_snippet_runs(code, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(README), "exec"), {"__name__": "__readme__"})
