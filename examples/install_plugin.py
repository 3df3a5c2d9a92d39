"""Install a third-party plugin into a fresh virtual environment and use it through the registry.

    python examples/install_plugin.py [--quick] [--venv DIR]

What a user of a published plugin does, for real, with the example plugin package in
``examples/ebmflow-example-plugin`` (an energy ``double-well`` and a sampler ``rwm``):

1. ``python -m venv --system-site-packages VENV``: a new environment. It reuses this
   interpreter's packages (torch, ebmflow, pip, hatchling) so that nothing is downloaded:
   through ``--system-site-packages`` when this interpreter is a system Python, and through a
   ``.pth`` file naming this interpreter's site-packages when it is itself a virtual
   environment (whose packages ``--system-site-packages`` would not see).
2. ``VENV/bin/python -m pip install --no-deps examples/ebmflow-example-plugin``: a real
   install that builds a wheel and writes the entry point ``example = ebmflow_example.plugin``
   in the group ``ebmflow`` into VENV's site-packages. (With hatchling importable here the
   build runs offline, ``--no-build-isolation``; otherwise pip fetches hatchling.)
3. In a subprocess of VENV's python, nothing but public API: ``ebmflow.plugins()`` lists the
   plugin as ``ok``; ``ebmflow.create`` builds its components by bare and qualified names;
   its sampler runs on its energy, on a core energy and on a composition of both; a core
   sampler runs on its energy; ``python -m ebmflow components`` lists them.
4. This interpreter, where the plugin was not installed, does not see it.

``--quick`` runs the same install and the same calls with fewer sampler steps. ``--venv DIR``
keeps the environment in DIR (default: a temporary folder, removed at the end).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import site
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import ebmflow

PLUGIN = Path(__file__).resolve().parent / "ebmflow-example-plugin"

#: runs inside the new environment; prints one JSON report.
CHILD = textwrap.dedent("""
    import json, sys
    import torch
    import ebmflow

    n_steps = int(sys.argv[1])
    plugins = {p.name: p for p in ebmflow.plugins()}
    example = plugins["example"]
    gen = torch.Generator().manual_seed(0)

    well = ebmflow.create("energy", "double-well", a=2.0, dim=2)       # bare name
    rwm = ebmflow.create("sampler", "example:rwm", step_size=0.5)      # qualified name
    run = rwm.run(well, torch.zeros(512, 2), n_steps, generator=gen)
    radius = run.samples.norm(dim=1)

    # the plugin's sampler on a core energy, and a core sampler on the plugin's energy
    gaussian = ebmflow.create("energy", "gaussian", mean=[0.0, 0.0], std=1.0)
    on_core = rwm.run(gaussian, torch.zeros(2000, 2), n_steps, generator=gen).samples
    mala = ebmflow.create("sampler", "mala", step_size=0.05)
    by_core = mala.run(well, torch.randn(512, 2, generator=gen), n_steps, generator=gen)

    # a composition across plugins: double well tilted by a Gaussian (product of experts)
    tilted = well + ebmflow.create("energy", "gaussian", mean=[1.0, 0.0], std=1.0)
    on_mix = rwm.run(tilted, torch.zeros(2000, 2), n_steps, generator=gen).samples

    print(json.dumps({
        "status": example.status, "distribution": example.distribution,
        "version": example.version, "error": example.error,
        "module": sys.modules["ebmflow_example.plugin"].__file__,
        "components": sorted(c.qualified_name for c in ebmflow.components()
                             if c.plugin == "example"),
        "rwm_acceptance": run.diagnostics["acceptance_rate"],
        "double_well_mean_radius": float(radius.mean()),
        "rwm_on_gaussian_variance": float(on_core.var(dim=0).mean()),
        "mala_on_double_well_acceptance": by_core.diagnostics["acceptance_rate"],
        "tilted_mean_x": float(on_mix[:, 0].mean()),
    }))
""")


def make_venv(root: Path) -> Path:
    """``python -m venv --system-site-packages`` that also sees this interpreter's packages
    when this interpreter is itself a virtual environment. Returns the new python."""
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if sys.prefix != sys.base_prefix:  # we run in a venv: make its packages visible there
        outer = [p for p in site.getsitepackages() if os.path.isdir(p)]
        (Path(purelib) / "_ebmflow_outer_site.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in outer)
        )
    return python


def clean_env() -> dict[str, str]:
    """The environment for the new venv's processes: no EBMFLOW_* filters, no PYTHONPATH."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EBMFLOW_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
    }


def pip_install(python: Path, project: Path) -> None:
    offline = importlib.util.find_spec("hatchling") is not None
    command = [
        str(python),
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--quiet",
        "--disable-pip-version-check",
    ]
    if offline:
        command += ["--no-build-isolation", "--no-index"]
    done = subprocess.run(
        [*command, str(project)], env=clean_env(), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        hint = (
            ""
            if offline
            else (
                " (hatchling is not installed here, so pip had to fetch "
                "it: pip install hatchling, then rerun)"
            )
        )
        raise SystemExit(f"pip install failed{hint}:\n{done.stdout}{done.stderr}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer sampler steps; the install is the same (default: off)",
    )
    parser.add_argument(
        "--venv",
        default=None,
        metavar="DIR",
        help="keep the environment in DIR (default: a temporary folder)",
    )
    parser.add_argument(
        "--threads",
        default=None,
        help="torch CPU threads, a number or 'auto' (default: OMP_NUM_THREADS when set, else 1)",
    )
    args = parser.parse_args(argv)
    threads = ebmflow.set_threads(args.threads)  # one unless asked: see docs/guide/cli.md
    n_steps = 100 if args.quick else 2000
    with tempfile.TemporaryDirectory(prefix="ebmflow-plugin-") as tmp:
        root = Path(args.venv) if args.venv else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        print(f"1. python -m venv --system-site-packages {root / 'venv'}")
        python = make_venv(root)
        print(f"2. pip install --no-deps {PLUGIN}")
        pip_install(python, PLUGIN)
        print(f"   done in {time.perf_counter() - start:.1f} s")

        print("3. using it through the registry, in the new environment:")
        done = subprocess.run(
            [str(python), "-c", CHILD, str(n_steps)],
            env={**clean_env(), "OMP_NUM_THREADS": str(threads)},  # the same thread rule
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode != 0:
            raise SystemExit(f"the plugin does not work in the new environment:\n{done.stderr}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        listing = subprocess.run(
            [str(python), "-m", "ebmflow", "components", "--kind", "sampler"],
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        print(textwrap.indent(listing.stdout.rstrip(), "   | "))
        print(
            f"   plugin 'example': {report['status']}, distribution "
            f"{report['distribution']} {report['version']}, from {report['module']}"
        )
        print(f"   components: {', '.join(report['components'])}")
        print(
            f"   rwm on double-well: acceptance {report['rwm_acceptance']:.2f}, mean radius "
            f"{report['double_well_mean_radius']:.3f} (the well's minimum is at radius 1)"
        )
        print(
            f"   rwm on the core gaussian: variance {report['rwm_on_gaussian_variance']:.3f} "
            "(target 1)"
        )
        print(
            f"   core mala on double-well: acceptance "
            f"{report['mala_on_double_well_acceptance']:.2f}"
        )
        print(
            f"   double-well + gaussian at (1, 0): mean x {report['tilted_mean_x']:.3f} "
            "(pulled toward +1)"
        )

        checks = {
            "plugin loaded": report["status"] == "ok" and report["error"] is None,
            "installed into the new environment": report["module"].startswith(str(root)),
            "components listed": {"example:double-well", "example:rwm"} <= set(report["components"])
            and "rwm" in listing.stdout,
            "rwm samples the double well": abs(report["double_well_mean_radius"] - 1) < 0.2,
            "rwm samples a core energy": abs(report["rwm_on_gaussian_variance"] - 1) < 0.25,
            "the composition is tilted": report["tilted_mean_x"] > 0.1,
        }
        here = {p.name for p in ebmflow.plugins()}
        print(
            f"4. this interpreter ({sys.executable}) sees the plugin: {'example' in here}"
            + (" (it was installed here too)" if "example" in here else "")
        )
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
            return 1
        print(f"all checks passed in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
