"""The benchmark harness cannot rot: ``python -m benchmarks --tiny`` runs every group in a
subprocess and writes its JSON and markdown, and the README table is generated from them.

The tiny size takes a step or two per benchmark, so its figures mean nothing; this checks
that every benchmark runs and is reported, not how fast it is. It takes about 40 s on one
shared core (most of it starting Python processes that import torch and diffusers), under
the minute allowed to a test that is not marked slow.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("benchmarks") is None:  # pytest run from elsewhere
    sys.path.insert(0, str(ROOT))

from benchmarks.__main__ import GROUPS  # noqa: E402
from benchmarks.harness import Value, markdown_table, measure_value  # noqa: E402
from benchmarks.readme import END, START, render, replace_block, update_readme  # noqa: E402

#: benchmark names (prefixes) every run must report, per group
EXPECTED = {
    "startup": ["python -c pass", "import ebmflow", "ebmflow --help"],
    "samplers": [
        "langevin, MLP",
        "mala, MLP",
        "langevin, MLP + 1000 no-op",
        "hmc (L=5)",
        "annealed-langevin",
        "langevin, 8-mode GMM",
        "mala, 8-mode GMM",
    ],
    "memory": [
        "peak RSS growth, langevin",
        "peak RSS growth, mala",
        "peak RSS growth, langevin 100 vs 10 steps, thin=1",
    ],
    "compiled": ["compiled sampling"],
    "tempering": ["parallel-tempering (mala), MLP", "parallel-tempering (mala), 8-mode GMM"],
    "score": [
        "dsm, MLP 2-128-128-1 noise-conditional",
        "dsm, MLP 2-128-128-1 clean",
        "multiscale-dsm",
        "ssm (1 projection), MLP",
        "ssm (1 projection) / dsm",
    ],
    "objectives": ["cd, CD-2", "pcd, CD-2", "jem, SGLD-2"],
    "trainer": ["Trainer iteration"],
    "diffusers": [
        "EBMScheduler in DDPMPipeline, tiny UNet2DModel",
        "EBMScheduler in DDPMPipeline, analytic GaussianDenoiser",
    ],
    "ode": ["ode NLL, 2-D MLP", "ode NLL, 16-D MLP"],
    "posterior": [
        "annealed-posterior corrector (mala), MLP",
        "annealed-posterior corrector (mala), convnet",
    ],
    "discrete": ["gibbs (random scan)", "gwg, Ising", "dmala, Ising", "block-gibbs, RBM"],
    "dynamics": [
        "underdamped-langevin (BAOAB), MLP",
        "underdamped-langevin (OBABO), MLP",
        "uha (L=3, damping 0.9), MLP",
        "nuts, 8-mode GMM",
        "nuts, 10-D Gaussian",
        "nuts cost per effective sample, 10-D",
        "nuts time per effective sample, 10-D",
    ],
    "contrastive": ["nce iteration", "drl iteration", "ksd, IMQ"],
    "workloads": [
        "pcd, PCD-2 iteration, convnet 32×32×3",
        "jem, SGLD-2 iteration, conv classifier 32×32×3",
        "multiscale-dsm iteration, UNet 32×32×3",
        "annealed-langevin, UNet 32×32×3",
        "EBMPipeline with a 2-step MALA corrector per level",
        "langevin per-step overhead above a hand-written loop, 4 chains",
        "langevin per-step overhead above a hand-written loop, 16 chains",
        "mala per-step overhead above a hand-written loop, 4 chains",
        "mala per-step overhead above a hand-written loop, 16 chains",
    ],
}

#: groups that may only be skipped when the plugin they need is not installed
NEEDS = {
    "tempering": "ebmflow_tempering",
    "score": "ebmflow_score",
    "objectives": "ebmflow_cd",
    "trainer": "ebmflow_score",
    "diffusers": "ebmflow_diffusers",
    "ode": "ebmflow_ode",
    "discrete": "ebmflow_discrete",
    "dynamics": "ebmflow_dynamics",
    "contrastive": "ebmflow_contrastive",
}

#: skip notes of optional side-by-side comparisons with peer libraries, which the
#: project's own environment never installs
PEER_SKIPS = ("ebmkit is not installed",)


def _env() -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(ROOT) + (os.pathsep + path if path else "")}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    env = {**_env(), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--tiny", "--clock", "cpu", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return out, json.loads((out / "benchmarks.json").read_text(encoding="utf-8")), done.stdout


def test_tiny_run_reports_every_benchmark_of_every_group(tiny_run):
    _, payload, stdout = tiny_run
    assert set(EXPECTED) == set(GROUPS)
    assert payload["size"] == "tiny" and payload["machine"]["clock"] == "cpu"
    assert payload["command"] == f"python -m benchmarks --tiny --clock cpu --out {tiny_run[0]}"
    assert set(payload["group_seconds"]) == set(GROUPS)
    by_group: dict[str, list[dict]] = {}
    for r in payload["results"]:
        by_group.setdefault(r["group"], []).append(r)
        assert r["name"] in stdout
        assert r["passed"] is None  # tiny figures are never judged
        if r["kind"] == "ratio":
            assert r["ratio"] > 0 and math.isfinite(r["ratio"])
            assert r["ours_us"] > 0 and r["reference_us"] > 0
        elif r["kind"] == "value":
            assert math.isfinite(r["value"])
            if r["unit"] == "s":  # start-up times; a memory growth may be slightly negative
                assert r["value"] > 0
        else:
            assert r["kind"] == "skipped" and r["note"]
    for group, names in EXPECTED.items():
        results = by_group.get(group, [])
        for prefix in names:
            assert any(r["name"].startswith(prefix) for r in results), (group, prefix)
        skipped = [r for r in results if r["kind"] == "skipped" and r["note"] not in PEER_SKIPS]
        if group == "compiled":
            assert skipped and "torch.compile" in skipped[0]["note"]
        elif group in NEEDS and importlib.util.find_spec(NEEDS[group]) is None:
            assert skipped, f"{group}: {NEEDS[group]} is missing, so it should be skipped"
        else:
            assert not skipped, skipped


def test_tiny_run_markdown_and_readme_table_come_from_the_json(tiny_run, tmp_path):
    out, payload, _ = tiny_run
    markdown = (out / "benchmarks.md").read_text(encoding="utf-8")
    assert markdown == markdown_table(payload)
    for r in payload["results"]:
        assert r["name"] in markdown
    readme = tmp_path / "README.md"
    readme.write_text(
        f"# Project\n\nintro\n\n{START}\nold table\n{END}\n\n## After\n", encoding="utf-8"
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.readme",
            "--json",
            str(out / "benchmarks.json"),
            "--readme",
            str(readme),
        ],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    text = readme.read_text(encoding="utf-8")
    assert "old table" not in text
    assert text.startswith(f"# Project\n\nintro\n\n{START}\n")
    assert text.endswith(f"\n{END}\n\n## After\n")
    assert f"`{payload['command']} --readme README.md`" in text
    assert markdown.strip() in text


# -- fast: the README generator and the tables, on a hand-made payload -----------------------


PAYLOAD = {
    "machine": {
        "clock": "cpu",
        "python": "3.11.7",
        "torch": "2.13.0",
        "machine": "x86_64",
        "processor": "x86_64",
        "threads": 1,
        "device": "cpu",
    },
    "size": "full",
    "repeats": 11,
    "seconds": 200.0,
    "command": "python -m benchmarks --clock cpu",
    "results": [
        {
            "name": "langevin, MLP",
            "group": "samplers",
            "kind": "ratio",
            "unit": "step",
            "ratio": 1.02,
            "ratio_q1": 1.0,
            "ratio_q3": 1.04,
            "ours_us": 1020.0,
            "reference_us": 1000.0,
            "value": None,
            "value_q1": None,
            "value_q3": None,
            "target": 1.05,
            "passed": True,
            "note": "vs hand-written ULA",
            "samples": [],
        },
        {
            "name": "import ebmflow",
            "group": "startup",
            "kind": "value",
            "unit": "s",
            "ratio": None,
            "ratio_q1": None,
            "ratio_q3": None,
            "ours_us": None,
            "reference_us": None,
            "value": 1.7,
            "value_q1": 1.6,
            "value_q3": 1.8,
            "target": 1.5,
            "passed": False,
            "note": "",
            "samples": [],
        },
        {
            "name": "compiled sampling",
            "group": "compiled",
            "kind": "skipped",
            "unit": "",
            "ratio": None,
            "ratio_q1": None,
            "ratio_q3": None,
            "ours_us": None,
            "reference_us": None,
            "value": None,
            "value_q1": None,
            "value_q3": None,
            "target": None,
            "passed": None,
            "note": "needs a GPU",
            "samples": [],
        },
    ],
}


def test_markdown_table_lists_ratios_values_and_skips_with_their_verdicts():
    table = markdown_table(PAYLOAD)
    assert "cpu-clock time, median of 11 interleaved repetitions, 200 s in all." in table
    assert (
        "| langevin, MLP (vs hand-written ULA) | 1.020 | 1.000–1.040 | 1020 / step | "
        "1000 / step | ≤ 1.05 | yes |"
    ) in table
    assert "| import ebmflow | 1.7 s | 1.6–1.8 s | ≤ 1.5 | **no** |" in table
    assert "- compiled sampling: needs a GPU" in table


def test_update_readme_rewrites_only_the_marked_block_and_is_idempotent(tmp_path):
    readme = tmp_path / "README.md"
    before, after = "# Title\n\ntext\n\n", "\n\n## Next\n\nmore text\n"
    readme.write_text(f"{before}{START}\nstale\n{END}{after}", encoding="utf-8")
    readme.chmod(0o644)
    source = tmp_path / "benchmarks.json"
    source.write_text(json.dumps(PAYLOAD), encoding="utf-8")
    update_readme(readme, source)
    first = readme.read_text(encoding="utf-8")
    assert first == f"{before}{START}\n{render(PAYLOAD).rstrip()}\n{END}{after}"
    assert "`python -m benchmarks --clock cpu --readme README.md`" in first
    assert (readme.stat().st_mode & 0o777) == 0o644
    update_readme(readme, source)
    assert readme.read_text(encoding="utf-8") == first
    # no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", "benchmarks.json"]


@pytest.mark.parametrize(
    "text, found",
    [
        ("no markers at all\n", "found 0 and 0"),
        (f"{START}\n{START}\n{END}\n", "found 2 and 1"),
        (f"{END}\nx\n{START}\n", "comes before"),
    ],
    ids=["missing", "repeated", "reversed"],
)
def test_replace_block_refuses_missing_repeated_or_reversed_markers(text, found):
    with pytest.raises(ValueError, match=found):
        replace_block(text, "table", "README.md")


def test_measure_value_reports_the_median_and_quartiles_and_judges_the_target():
    samples = iter([3.0, 1.0, 2.0, 10.0, 2.5])
    result = measure_value(Value("v", "g", lambda: next(samples), "s", target=2.4), repeats=5)
    assert result.kind == "value" and result.samples == [3.0, 1.0, 2.0, 10.0, 2.5]
    assert result.value == 2.5 and result.passed is False
    assert result.value_q1 < result.value < result.value_q3
