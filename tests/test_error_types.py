"""Input checks raise ebmflow errors: every bad argument to a public sampler, energy,
composition, evaluation function, dataset, schedule, replay buffer or first-party plugin is an
:class:`ebmflow.EbmflowError` subclass (:class:`~ebmflow.ConfigError`, still a ``ValueError``;
:class:`~ebmflow.ComponentArgumentError`, still a ``TypeError``), as the README promises, so
``except ebmflow.EbmflowError`` catches them and the CLI shows them as one ``ebmflow: error:``
line. A static scan keeps a plain ``ValueError``/``TypeError`` from coming back."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import ebmflow
from ebmflow.evaluate import (
    accuracy,
    auroc,
    ess,
    expected_calibration_error,
    grid_log_z,
    mmd,
    nll,
    split_rhat,
)

ROOT = Path(__file__).resolve().parents[1]
#: the sources whose input checks this file covers (the checkpoint, registry, trainer, run
#: file and CLI code keep their own error tests).
SCANNED = [
    "ebmflow/samplers",
    "ebmflow/evaluate",
    "ebmflow/energies",
    "ebmflow/energy.py",
    "ebmflow/compose.py",
    "ebmflow/datasets",
    "ebmflow/noise_schedules",
    "ebmflow/validation.py",
    "ebmflow/replay_buffer.py",
    *(str(p.relative_to(ROOT)) for p in sorted((ROOT / "plugins").glob("*/ebmflow_*"))),
]
#: plain ValueError/TypeError constructions that are allowed to stay: none. (An entry would be
#: "path:function" with a comment saying why the error is a programming error, not input.)
ALLOWED: set[str] = set()


def gaussian(dim=2):
    return ebmflow.create("energy", "gaussian", mean=[0.0] * dim)


def plain_errors(path: Path) -> list[str]:
    """``file:line function`` of every ``ValueError(...)``/``TypeError(...)`` built in
    ``path`` (raised, returned or stored), by its syntax tree."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for function in [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))),
    ]:
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("ValueError", "TypeError")
            ):
                name = getattr(function, "name", "<module>")
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    # a call inside a function is also inside the module: keep the innermost name
    innermost = {}
    for entry in found:
        where, name = entry.split(" ")
        if where not in innermost or innermost[where] == "<module>":
            innermost[where] = name
    return sorted(f"{where} {name}" for where, name in innermost.items())


def test_no_plain_value_or_type_error_is_built_in_the_input_checks():
    files = []
    for entry in SCANNED:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    assert len(files) > 40  # the scan sees the sources, not an empty glob
    offenders = [
        e
        for f in files
        for e in plain_errors(f)
        if f"{e.split(':')[0]}:{e.split(' ')[1]}" not in ALLOWED
    ]
    assert not offenders, (
        f"{len(offenders)} plain ValueError/TypeError; raise "
        f"ebmflow.ConfigError or ebmflow.ComponentArgumentError:\n" + "\n".join(offenders)
    )


def _sampler_run(**bad):
    def call():
        arguments = {"energy": gaussian(), "x0": torch.zeros(4, 2), "n_steps": 2, **bad}
        ebmflow.create("sampler", "langevin", step_size=0.1).run(
            arguments.pop("energy"), arguments.pop("x0"), arguments.pop("n_steps"), **arguments
        )

    return call


def _buffer(**bad):
    return lambda: ebmflow.ReplayBuffer(**{"capacity": 8, "event_shape": (2,), **bad})


def _pcd():
    from ebmflow_cd.pcd import PersistentContrastiveDivergence

    return PersistentContrastiveDivergence(
        ebmflow.create("sampler", "langevin", step_size=0.1), init="zeros"
    )


def _ssm():
    from ebmflow_score.sliced import SlicedScoreMatching

    return SlicedScoreMatching(projection="uniform")


def _shuffle_pixels():
    from ebmflow_jem.metrics import shuffle_pixels

    return shuffle_pixels


def _jem():
    from ebmflow_jem.objective import JEM

    return JEM(mode="joint-ish")


def _unet_energy():
    from ebmflow_diffusers.energies import NetworkEnergy

    return NetworkEnergy(gaussian())


def _digits():
    from ebmflow.datasets.digits import Digits

    return Digits(split="validation")


def _scheduler():
    from ebmflow_diffusers import EBMScheduler

    return EBMScheduler(corrector_steps=-1)


def _line_integral():
    from ebmflow_diffusers.segment import quadrature_weights

    return quadrature_weights(1, "trapezoid")


def _parallel_tempering():
    from ebmflow_tempering import ParallelTempering

    return ParallelTempering(betas=[1.0, 0.5], swap="sideways")


CASES = {
    # samplers: the run/init input checks
    "sampler-x-not-a-tensor": (_sampler_run(x0=[[0.0, 0.0]]), ValueError),
    "sampler-integer-x": (_sampler_run(x0=torch.zeros(4, 2, dtype=torch.int64)), TypeError),
    "sampler-wrong-event-shape": (_sampler_run(x0=torch.zeros(4, 3)), ValueError),
    "sampler-not-an-energy": (_sampler_run(energy=lambda x: x), TypeError),
    "sampler-bad-thin": (_sampler_run(thin=0), ValueError),
    "compile-energy-not-an-energy": (lambda: ebmflow.compile_energy(3), TypeError),
    "hmc-target-accept": (lambda: ebmflow.HMC(step_size=0.1, target_accept=1.5), ValueError),
    # evaluation
    "nll-not-an-energy": (lambda: nll(3, torch.zeros(4, 2), [(-1, 1), (-1, 1)]), TypeError),
    "nll-bad-bounds": (lambda: nll(gaussian(), torch.zeros(4, 2), [(1, -1)]), ValueError),
    "nll-nan-data": (
        lambda: nll(gaussian(), torch.full((4, 2), float("nan")), [(-4, 4), (-4, 4)], 16),
        ValueError,
    ),
    "grid-log-z-resolution": (lambda: grid_log_z(gaussian(), [(-4, 4), (-4, 4)], 0), ValueError),
    "mmd-shapes": (lambda: mmd(torch.zeros(4, 2), torch.zeros(4, 3)), ValueError),
    "mmd-kernel": (lambda: mmd(torch.zeros(4, 2), torch.ones(4, 2), kernel="cosine"), ValueError),
    "mmd-nan": (lambda: mmd(torch.full((4, 2), float("nan")), torch.zeros(4, 2)), ValueError),
    "ess-too-short": (lambda: ess(torch.zeros(2, 2, 1)), ValueError),
    "rhat-nan": (lambda: split_rhat(torch.full((40, 2, 1), float("nan"))), ValueError),
    "accuracy-labels": (lambda: accuracy(torch.zeros(4, 3), torch.zeros(5)), ValueError),
    "ece-probs": (
        lambda: expected_calibration_error(
            torch.full((4, 3), float("nan")), torch.zeros(4, dtype=torch.long)
        ),
        ValueError,
    ),
    "auroc-empty": (lambda: auroc(torch.zeros(0), torch.zeros(3)), ValueError),
    "shuffle-pixels": (lambda: _shuffle_pixels()(torch.zeros(())), ValueError),
    "ais-generator": (lambda: ebmflow.evaluate.ais_log_z(gaussian(), generator=1), TypeError),
    # energies and compositions
    "gaussian-std": (lambda: ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=-1.0), ValueError),
    "gmm-weights": (
        lambda: ebmflow.GMMEnergy(means=[[0.0, 0.0], [1.0, 1.0]], weights=[0.5, -0.5]),
        ValueError,
    ),
    "temperature": (lambda: gaussian() / 0.0, ValueError),
    "scaled-by-nan": (lambda: float("nan") * gaussian(), ValueError),
    "mixture-of-one": (lambda: ebmflow.mixture([gaussian()]), ValueError),
    "shapes-differ": (lambda: gaussian(2) + gaussian(3), ValueError),
    "condition-not-an-energy": (lambda: ebmflow.condition(3, 1), TypeError),
    # datasets, schedules, replay buffers
    "digits-split": (_digits, ValueError),
    "vp-t-eps": (
        lambda: ebmflow.create("noise_schedule", "vp-linear").__class__(t_eps=2.0),
        ValueError,
    ),
    "buffer-event-shape": (_buffer(event_shape=()), ValueError),
    "buffer-dtype": (_buffer(dtype=torch.int64), ValueError),
    # first-party plugins
    "pcd-init": (_pcd, ValueError),
    "parallel-tempering-swap": (_parallel_tempering, ValueError),
    "ssm-projection": (_ssm, ValueError),
    "jem-mode": (_jem, ValueError),
    "unet-energy-model": (_unet_energy, TypeError),
    "ebm-scheduler-corrector-steps": (_scheduler, ValueError),
    "line-integral-points": (_line_integral, ValueError),
}


@pytest.mark.parametrize("call,legacy", list(CASES.values()), ids=list(CASES))
def test_bad_input_to_public_entry_points_raises_an_ebmflow_error(call, legacy):
    with pytest.raises(ebmflow.EbmflowError) as info:
        call()
    # still the built-in family, so existing `except ValueError` / `except TypeError` works
    assert isinstance(info.value, legacy), type(info.value).__mro__
    assert str(info.value)
