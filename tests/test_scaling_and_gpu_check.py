"""The scaling command and the prepared GPU check cannot rot: both run here at tiny size.

``python -m benchmarks.scaling --tiny`` takes one point per curve and two steps (a few
seconds) and must write its JSON, markdown and figures; ``python -m benchmarks --device cpu
--gpu-check --tiny`` is the GPU check's dry run on the CPU: every correctness check runs
(without its statistical bounds, which need the full size) and must pass, and every timing
and workload is reported. The figures of either mean nothing at this size.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("benchmarks") is None:  # pytest run from elsewhere
    sys.path.insert(0, str(ROOT))

from benchmarks.scaling import END, START, replace_block  # noqa: E402


def _run(*args: str) -> subprocess.CompletedProcess:
    path = os.environ.get("PYTHONPATH")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else ""),
    }
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_scaling_tiny_writes_every_curve_table_and_figure(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(f"# Benchmarks\n\n{START}\nold\n{END}\n\nafter\n", encoding="utf-8")
    out = tmp_path / "scaling"
    done = _run("benchmarks.scaling", "--tiny", "--out", str(out), "--readme", str(page))
    assert done.returncode == 0, done.stderr[-3000:]
    payload = json.loads((out / "scaling.json").read_text(encoding="utf-8"))
    assert payload["command"] == f"python -m benchmarks.scaling --tiny --out {out}"
    names = [c["name"] for c in payload["curves"]]
    assert names == [
        "chains-langevin",
        "chains-mala",
        "chains-hmc",
        "chains-parallel-tempering",
        "dimension",
        "replicas",
        "width",
        "memory",
    ]
    for curve in payload["curves"]:
        assert curve["x"] and (out / curve["figure"]).is_file()
        for lib in ("ebmflow", "hand-written"):
            assert all(v is not None and v == v for v in curve["us"][lib]), (curve["name"], lib)
        for lib in ("ebmkit", "torchebm"):  # measured, or skipped with the reason
            assert all(v is not None for v in curve["us"][lib]) or curve["notes"][lib]
    text = page.read_text(encoding="utf-8")
    assert "old" not in text and text.endswith(f"{END}\n\nafter\n")
    assert "![langevin: per-step time against chains](scaling/scaling-chains-langevin.png)" in text
    assert (out / "scaling.md").read_text(encoding="utf-8").split("\n")[0] in text


def test_replace_block_needs_both_markers_once():
    with pytest.raises(ValueError, match="exactly once"):
        replace_block("no markers", "x", "page.md")


def test_gpu_check_dry_run_on_the_cpu(tmp_path):
    done = _run("benchmarks", "--device", "cpu", "--gpu-check", "--tiny", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    payload = json.loads((tmp_path / "benchmarks.json").read_text(encoding="utf-8"))
    assert payload["gpu_check"] and payload["machine"]["device"] == "cpu"
    checks = [r for r in payload["results"] if r["group"] == "gpu-check" and r["kind"] == "value"]
    names = " / ".join(r["name"] for r in checks)
    for part in ("langevin", "mala", "hmc", "annealed-langevin", "parallel-tempering", "Trainer"):
        assert part in names
    for objective in ("cd", "pcd", "sm", "ssm", "dsm", "multiscale-dsm", "jem"):
        assert f"objective {objective}:" in names
    assert all(r["passed"] for r in checks), [r for r in checks if not r["passed"]]
    timed = {r["name"] for r in payload["results"] if r["kind"] == "ratio"}
    assert any(n.startswith("langevin eager") for n in timed)
    assert any(n.startswith("pcd, PCD-2 iteration") for n in timed)
    assert "0 correctness check(s) failed" in done.stdout
