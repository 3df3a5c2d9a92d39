"""Start-up time: ``import ebmflow`` and ``ebmflow --help``, each in a fresh Python process.

The budget (DESIGN.md) is 1.5 s for each: ``import ebmflow`` loads the registry and no
torch, and ``ebmflow --help`` loads the plugins' entry points but none of their components.
The figures are whole processes, interpreter start included (``python -c pass`` is listed
for scale). With ``--clock wall`` a sample is the elapsed time of the process; with
``--clock cpu`` it is the CPU time (user + system) the process used, which other load on
the machine does not inflate. One unmeasured run first warms the file cache.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from benchmarks.harness import Value, pick

TARGET_S = 1.5

COMMANDS = {
    "python -c pass (interpreter start, for scale)": ["-c", "pass"],
    "import ebmflow (fresh process)": ["-c", "import ebmflow"],
    "ebmflow --help (fresh process)": ["-m", "ebmflow", "--help"],
}


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_seconds(args: list[str], clock: str = "wall") -> float:
    """Seconds one ``python *args`` process takes (elapsed, or CPU time with ``cpu``)."""
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    cpu = clock == "cpu" and sys.platform != "win32"
    start = _children_cpu() if cpu else time.perf_counter()
    done = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, check=False
    )
    end = _children_cpu() if cpu else time.perf_counter()
    if done.returncode != 0:
        raise RuntimeError(
            f"python {' '.join(args)} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        )
    return end - start


def cases(size: str = "full", clock: str = "wall", **_options) -> list[Value]:
    repeats = pick(size, 7, 3, 1)
    out = []
    for name, args in COMMANDS.items():
        run_seconds(args, clock)  # warm the file cache
        out.append(
            Value(
                name,
                "startup",
                lambda args=args: run_seconds(args, clock),
                "s",
                target=None if "pass" in args else TARGET_S,
                note=f"{clock} clock, {repeats} processes",
                repeats=repeats,
            )
        )
    return out
