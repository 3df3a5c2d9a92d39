"""examples/convert_diffusers.py runs in quick mode and its checks hold."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "convert_diffusers.py"


@pytest.mark.slow  # ~5 s: the example converts, saves, loads and samples three times
@pytest.mark.skipif(not EXAMPLE.exists(), reason="needs the ebmflow source tree (examples/)")
def test_convert_diffusers_example_runs_quick(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("convert_diffusers_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "loaded scores identical: True" in out
    assert (tmp_path / "ddpm-tiny-ebmflow" / "model.safetensors").is_file()
