"""examples/jem_digits.py --quick runs end to end: report, checkpoints and sample grid."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import ebmflow

SCRIPT = Path(__file__).resolve().parents[3] / "examples" / "jem_digits.py"


@pytest.mark.slow
def test_example_script_quick_mode(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    for model in ("jem", "ce_only"):
        assert set(report[model]["auroc"]) == {"uniform", "shuffled"}
        assert 0.0 <= report[model]["ece"] <= 1.0
        assert report[model]["n"] == 359
    assert (tmp_path / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the run's checkpoint is an ordinary energy checkpoint
    energy = ebmflow.load(tmp_path / "jem" / "checkpoint")
    assert energy.n_classes == 10
