"""examples/jem_digits.py --quick runs end to end on two splits: report, pooled figures,
checkpoints and sample grid."""

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
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--splits", "2", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    splits = report["splits"]
    assert [split["data_seed"] for split in splits] == [0, 1]
    for model in ("jem", "ce_only"):
        assert report[model] == splits[0][model]  # the top level is the run file's split
        for split in splits:
            assert set(split[model]["auroc"]) == {"uniform", "shuffled"}
            assert 0.0 <= split[model]["ece"] <= 1.0
            assert split[model]["n"] == 359
    # split s trains on the run file's data and training seeds + s
    for split in (0, 1):
        for model in ("jem", "ce_only"):
            folder = tmp_path / (f"split{split}" if split else "") / model / "checkpoint"
            run = json.loads((folder / "training.json").read_text())["run"]
            assert run["data"]["seed"] == run["train"]["seed"] == split
    pooled = report["pooled"]
    assert pooled["n"] == 718 and pooled["splits"] == 2
    for model in ("jem", "ce_only"):
        # equal-sized splits: pooled accuracy and NLL are the means over the splits
        for metric in ("accuracy", "nll"):
            mean = (splits[0][model][metric] + splits[1][model][metric]) / 2
            assert abs(pooled[model][metric] - mean) < 1e-9
        assert 0.0 <= pooled[model]["ece"] <= 1.0
    difference = pooled["ece_difference"]
    assert difference["jem_minus_ce_only"] == pytest.approx(
        pooled["jem"]["ece"] - pooled["ce_only"]["ece"]
    )
    per_split = [split["jem"]["ece"] - split["ce_only"]["ece"] for split in splits]
    assert difference["per_split"] == pytest.approx(per_split)
    assert difference["per_split_mean"] == pytest.approx(sum(per_split) / 2)
    assert difference["per_split_se"] == pytest.approx(abs(per_split[0] - per_split[1]) / 2)
    low, high = difference["bootstrap_95"]
    assert -1.0 <= low <= high <= 1.0 and difference["bootstrap_sd"] > 0
    assert ebmflow.load(tmp_path / "split1" / "ce_only" / "checkpoint").n_classes == 10
    assert (tmp_path / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the run's checkpoint is an ordinary energy checkpoint
    energy = ebmflow.load(tmp_path / "jem" / "checkpoint")
    assert energy.n_classes == 10
