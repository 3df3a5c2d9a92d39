"""The fault matrix (README, "Reliability"): the rows that have no natural home elsewhere.

Each test injects one fault for real — a plugin factory that raises, a NaN row in the data, an
energy whose chains run away in the middle of training, a float64 batch for a float32
network, a pickle where a safetensors file should be, a SIGKILL during ``ebmflow train`` —
and checks what the user sees: an ebmflow error naming what is wrong (one line in the CLI),
and nothing else broken. Rows covered by other files are listed in the README table.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import math
import os
import pickletools
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import ebmflow
from ebmflow import Component
from ebmflow.cli import main
from ebmflow.errors import CheckpointError, ConfigError, EbmflowError

REPO = Path(__file__).resolve().parents[1]


# -- components the faults are injected into -------------------------------------------------


class Quadratic(ebmflow.Energy):
    """E(x) = ½ c ‖x‖² with one trainable curvature c (starts at 1)."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.event_shape = (dim,)
        self.c = nn.Parameter(torch.ones(()))

    def forward(self, x, sigma=None):
        return 0.5 * self.c * x.square().sum(-1)


class MeanEnergy(ebmflow.Objective):
    """loss = mean E(batch) — nothing else, so a fault in the batch is the only fault."""

    def forward(self, energy, batch, *, generator=None):
        loss = energy(batch).mean()
        return ebmflow.ObjectiveOutput(loss, {"mean_energy": float(loss.detach())})


class PushDown(ebmflow.Objective):
    """loss = mean E(batch), plus ``k`` steps of a real sampler on persistent chains.

    On data with ‖x‖² = 2, SGD with learning rate η lowers c by η per step, so c turns
    negative after 1/η steps: E is then unbounded below and the chains, moved by
    x' = (1 − η_s c) x + noise, grow geometrically until E(x) overflows and the sampler
    raises SamplerDivergedError.
    """

    def __init__(self, sampler=None, n_chains: int = 8, k: int = 10) -> None:
        super().__init__()
        self.sampler, self.k = sampler, k
        self.register_buffer("chains", torch.zeros(n_chains, 2))

    def forward(self, energy, batch, *, generator=None):
        result = self.sampler.run(energy, self.chains, self.k, generator=generator)
        self.chains.copy_(result.samples)
        loss = energy(batch).mean()
        return ebmflow.ObjectiveOutput(loss, {"chain_energy": float(result.state.energy.mean())})


class Spoiled(ebmflow.Dataset):
    """Standard normal 2-D batches; draw number ``bad_draw`` (1-based) has ``value`` in one
    coordinate of one row."""

    name = "spoiled"
    event_shape = (2,)

    def __init__(self, bad_draw: int = 3, value: float = math.nan) -> None:
        self.bad_draw, self.value, self.draws = bad_draw, value, 0

    def _sample(self, n, generator):
        self.draws += 1
        x = torch.randn(n, 2, generator=generator)
        if self.draws == self.bad_draw:
            x[n // 2, 1] = self.value
        return x


class WrongShape(ebmflow.Energy):
    """Forgets to reduce: returns (B, 1) — the usual bug — instead of (B,)."""

    event_shape = (2,)

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(2, 1)

    def forward(self, x, sigma=None):
        return self.net(x)


class Plugin:
    @ebmflow.hookimpl
    def ebmflow_energies(self):
        return [Component("quadratic", Quadratic), Component("wrong-shape", WrongShape)]

    @ebmflow.hookimpl
    def ebmflow_objectives(self):
        return [Component("mean-energy", MeanEnergy), Component("push-down", PushDown)]

    @ebmflow.hookimpl
    def ebmflow_datasets(self):
        return [Component("spoiled", Spoiled)]


@pytest.fixture(scope="module")
def host() -> ebmflow.PluginHost:
    """The core's components plus this file's, as the pretend distribution ebmflow-rel."""
    host = ebmflow.PluginHost(entry_points=False)
    host.register(Plugin(), name="rel", distribution="ebmflow-rel", version="0.3")
    return host


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def one_error_line(capsys) -> str:
    """The single stderr line of a failed CLI call (and no traceback)."""
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


# == 1. plugins =================================================================================


def crashing_factory(**kwargs):
    raise RuntimeError("the GPU kernel library is missing")


def picky_factory(level: int = 1):
    if level > 3:  # a str gets TypeError: '>' not supported between 'str' and 'int'
        raise ValueError(f"level must be at most 3, got {level}")  # names no component
    return {"level": level}


@pytest.fixture
def fragile_host(make_plugin):
    host = ebmflow.PluginHost(entry_points=False)
    host.register(
        make_plugin(
            samplers=[Component("crashy", crashing_factory), Component("picky", picky_factory)]
        ),
        name="fragile",
        distribution="ebmflow-fragile",
        version="2.0",
    )
    return host


def test_a_factory_that_raises_keeps_its_error_names_the_component_and_breaks_nothing(fragile_host):
    with pytest.raises(RuntimeError, match="kernel library is missing") as caught:
        fragile_host.create("sampler", "crashy")
    assert caught.value.__notes__ == [
        "while building sampler 'fragile:crashy' (plugin 'fragile', distribution "
        "ebmflow-fragile 2.0)"
    ]
    # a value the component rejects becomes an ebmflow error of the same family, naming it
    with pytest.raises(ConfigError, match=r"^sampler 'fragile:picky': level must be at most 3"):
        fragile_host.create("sampler", "picky", level=7)
    with pytest.raises(
        ebmflow.ComponentArgumentError,
        match=r"^sampler 'fragile:picky': '>' not "
        r"supported",
    ):
        fragile_host.create("sampler", "picky", level="2")
    # the plugin is still ok (one component's construction failed), and everything works
    status = {p.name: p.status for p in fragile_host.plugins()}
    assert status == {"ebmflow": "ok", "fragile": "ok"}
    assert fragile_host.create("sampler", "picky", level=2) == {"level": 2}
    assert fragile_host.create("sampler", "mala", step_size=0.1).step_size == 0.1


def test_cli_reports_a_crashing_factory_on_one_line_naming_its_distribution(
    fragile_host, tmp_path, capsys
):
    ebmflow.save(ebmflow.GMMEnergy.ring(), tmp_path / "gmm")
    argv = [
        "sample",
        str(tmp_path / "gmm"),
        "--sampler",
        "fragile:crashy",
        "--n",
        "4",
        "--out",
        str(tmp_path / "s.safetensors"),
    ]
    assert main(argv, host=fragile_host) == 1
    line = one_error_line(capsys)
    assert line.startswith("ebmflow: internal error: RuntimeError: the GPU kernel library")
    assert (
        "sampler 'fragile:crashy' (plugin 'fragile', distribution ebmflow-fragile 2.0)" in line
        and line.endswith("(run with --debug for the traceback)")
    )
    with pytest.raises(RuntimeError, match="kernel library"):
        main([*argv, "--debug"], host=fragile_host)


def _first_party_plugin_modules() -> dict[str, str]:
    """entry-point module -> distribution, read from every first-party pyproject.toml."""
    modules = {}
    for pyproject in sorted(
        [
            *REPO.glob("plugins/*/pyproject.toml"),
            REPO / "examples" / "ebmflow-example-plugin" / "pyproject.toml",
        ]
    ):
        project = tomllib.loads(pyproject.read_text())["project"]
        for target in project.get("entry-points", {}).get("ebmflow", {}).values():
            modules[target.partition(":")[0]] = project["name"]
    return modules


IMPORT_PROBE = """
import argparse, importlib, importlib.util, json, sys, time
import ebmflow

HEAVY = {"torch", "numpy", "scipy", "diffusers", "transformers", "matplotlib", "sklearn",
         "safetensors", "tqdm", "einops", "PIL", "huggingface_hub"}
report = {}
for module in sys.argv[1:]:
    if importlib.util.find_spec(module.partition(".")[0]) is None:
        continue  # not installed in this interpreter (found only on the test's sys.path)
    before = set(sys.modules)
    start = time.perf_counter()
    plugin = importlib.import_module(module)
    seconds = time.perf_counter() - start
    factories = []
    for name in sorted(dir(plugin)):
        hook = getattr(plugin, name)
        if name == "ebmflow_commands":
            hook(subparsers=argparse.ArgumentParser().add_subparsers())
        elif name.startswith("ebmflow_") and callable(hook):
            factories += [type(c.factory).__name__ for c in hook() or []]
    loaded = {m.split(".")[0] for m in set(sys.modules) - before}
    report[module] = {"seconds": seconds, "heavy": sorted(loaded & HEAVY),
                      "factories": sorted(set(factories)), "n": len(factories)}
print(json.dumps(report))
"""


def test_first_party_plugin_modules_import_fast_and_load_nothing_heavy():
    # A plugin's entry-point module is imported by every `ebmflow` command and every first
    # lookup: it must hand over "module:attr" strings and import no torch (the 1.5 s
    # budget of `ebmflow --help` is shared by all installed plugins).
    modules = _first_party_plugin_modules()
    assert {"ebmflow_cd.plugin", "ebmflow_score.plugin", "ebmflow_tempering.plugin"} <= set(modules)
    installed = [m for m in modules if importlib.util.find_spec(m.partition(".")[0])]
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_PROBE, *installed],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    for module, facts in report.items():
        where = f"{module} ({modules[module]})"
        assert facts["heavy"] == [], f"{where} imports {facts['heavy']} at import time"
        assert facts["factories"] == ["str"], f"{where} hands over callables, not 'module:attr'"
        assert facts["n"] > 0, f"{where} registers no component"
        # a module of hook functions imports in milliseconds; 0.5 s leaves room for a
        # loaded test machine and still catches real work (a torch import takes seconds)
        assert facts["seconds"] < 0.5, f"{where} took {facts['seconds']:.2f} s to import"


# == 2. configs and arguments ===================================================================


NONPOSITIVE = [
    ("sampler", "langevin", {"step_size": 0.0}, "step_size"),
    ("sampler", "langevin", {"step_size": -0.1}, "step_size"),
    ("sampler", "langevin", {"noise_scale": -1.0}, "noise_scale"),
    ("sampler", "langevin", {"clip": [1.0, -1.0]}, "clip"),
    ("sampler", "mala", {"step_size": 0}, "step_size"),
    ("sampler", "hmc", {"step_size": -1.0}, "step_size"),
    ("sampler", "hmc", {"n_leapfrog": 0}, "n_leapfrog"),
    ("sampler", "annealed-langevin", {"epsilon": 0.0}, "epsilon"),
    ("sampler", "annealed-langevin", {"n_levels": 0}, "n_levels"),
    ("sampler", "annealed-langevin", {"steps_per_level": 0}, "steps_per_level"),
    ("sampler", "annealed-langevin", {"noise_schedule": [1.0, 0.0]}, "noise_schedule"),
    ("sampler", "parallel-tempering", {"n_replicas": 1}, "n_replicas"),
    ("sampler", "parallel-tempering", {"betas": [1.0, 0.0]}, "betas"),
    ("objective", "pcd", {"capacity": 0}, "capacity"),
    ("objective", "pcd", {"k": 0}, "k"),
    ("objective", "cd", {"k": -1}, "k"),
    ("objective", "dsm", {"sigma": 0.0}, "sigma"),
    ("objective", "dsm", {"sigma": -0.1}, "sigma"),
    ("objective", "multiscale-dsm", {"n_levels": 0}, "n_levels"),
    ("noise_schedule", "geometric", {"sigma_min": 0.0}, "sigma_min"),
    ("noise_schedule", "geometric", {"sigma_max": -1.0}, "sigma_max"),
    ("noise_schedule", "karras", {"sigma_min": -0.002}, "sigma_min"),
    ("noise_schedule", "vp-linear", {"beta_max": 0.0}, "beta_max"),
]


@pytest.mark.parametrize(
    ("kind", "name", "kwargs", "argument"),
    NONPOSITIVE,
    ids=[f"{n}-{a}={v}" for _, n, kw, a in NONPOSITIVE for v in [kw[a]]],
)
def test_zero_or_negative_step_sizes_chain_counts_and_noise_levels_fail_at_construction(
    kind, name, kwargs, argument
):
    host = ebmflow.default_host()  # the installed plugins: pcd, dsm and PT are first-party
    if not any(c.name == name for c in host.components(kind)):
        pytest.skip(f"{kind} {name!r} is not installed")
    with pytest.raises(EbmflowError) as caught:
        host.create(kind, name, **kwargs)
    assert isinstance(caught.value, ValueError)  # ConfigError: also a ValueError
    message = str(caught.value)
    assert argument in message and repr(kwargs[argument]) in message, message


# == 3. tensors =================================================================================


def test_an_energy_returning_the_wrong_shape_is_named_wherever_it_is_called(host):
    x = torch.randn(4, 2, generator=seeded(0))
    message = r"WrongShape\.forward returned shape \(4, 1\); .* shape \(4,\)"
    energy = WrongShape()
    with pytest.raises(ValueError, match=message):
        energy(x)
    with pytest.raises(ValueError, match=message):
        energy.score(x)
    with pytest.raises(ValueError, match=message):  # in a composition, before broadcasting
        (energy + ebmflow.GaussianEnergy(mean=[0.0, 0.0]))(x)
    trainer = ebmflow.Trainer(
        energy, MeanEnergy(), x.repeat(4, 1), batch_size=4, steps=2, progress=False, host=host
    )
    with pytest.raises(ValueError, match=message):
        trainer.fit()


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_nan_or_inf_in_a_data_batch_stops_training_at_that_step_and_never_reaches_the_weights(
    host, value
):
    def run(data, steps=5):
        with torch.random.fork_rng():
            torch.manual_seed(0)
            energy = host.create("energy", "mlp", dim=2, widths=[8])
        trainer = ebmflow.Trainer(
            energy, MeanEnergy(), data, batch_size=16, steps=steps, progress=False, host=host
        )
        return trainer

    spoiled = run(Spoiled(bad_draw=3, value=value))
    with pytest.raises(EbmflowError, match=r"step 3 of 5") as caught:
        spoiled.fit()
    assert getattr(caught.value, "step", 3) == 3
    clean = run(Spoiled(bad_draw=0), steps=2)  # the same first two batches
    clean.fit()
    assert spoiled.step == 2
    for p, q in zip(spoiled.energy.parameters(), clean.energy.parameters()):
        assert torch.equal(p, q)  # finite, and exactly the weights after the good steps


def test_a_nonfinite_data_batch_is_diagnosed_as_the_data(host):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        energy = host.create("energy", "mlp", dim=2, widths=[8])
    trainer = ebmflow.Trainer(
        energy, MeanEnergy(), Spoiled(bad_draw=3), batch_size=16, steps=5, progress=False, host=host
    )
    with pytest.raises(EbmflowError, match=r"step 3 of 5.*batch.*(non-finite|NaN)"):
        trainer.fit()


def test_tensor_data_with_nonfinite_rows_is_refused_when_the_trainer_is_built(host):
    data = torch.randn(64, 2, generator=seeded(1))
    data[5, 0] = math.nan
    data[40, 1] = -math.inf
    with pytest.raises(ConfigError, match=r"non-finite.* 2 of 64 rows.*row 5"):
        ebmflow.Trainer(
            host.create("energy", "mlp", dim=2, widths=[8]),
            MeanEnergy(),
            data,
            batch_size=16,
            steps=2,
            progress=False,
            host=host,
        )


def test_an_energy_diverging_mid_run_stops_the_trainer_and_the_last_checkpoint_loads(
    host, tmp_path
):
    data = torch.ones(16, 2)  # ‖x‖² = 2: each SGD step (lr 0.5) lowers c by exactly 0.5
    sampler = host.create("sampler", "langevin", step_size=0.5)
    trainer = ebmflow.Trainer(
        Quadratic(),
        PushDown(sampler),
        data,
        optimizer={"name": "sgd", "lr": 0.5},
        batch_size=16,
        steps=40,
        seed=0,
        checkpoint_dir=tmp_path / "ckpt",
        checkpoint_every=2,
        progress=False,
        host=host,
    )
    with pytest.raises(ebmflow.SamplerDivergedError) as caught:
        trainer.fit()
    message = str(caught.value)
    found = re.match(
        r"training step (\d+) of 40: langevin diverged at step (\d+): non-finite "
        r"energy in (\d+) of 8 chains",
        message,
    )
    assert found, message
    step = int(found.group(1))
    assert caught.value.step == int(found.group(2)) and caught.value.n_chains == int(found.group(3))
    # c < 0 from step 3 on; the chains need a few steps to overflow, then they do
    assert 4 <= step < 40 and trainer.step == step - 1
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    last_good = saved["metadata"]["training"]["step"]
    assert last_good == 2 * ((step - 1) // 2)  # the last even step before the failure
    loaded = ebmflow.load(tmp_path / "ckpt", host=host)
    assert loaded.c.item() == 1.0 - 0.5 * last_good  # its weights, exactly
    resumed = ebmflow.Trainer(
        Quadratic(),
        PushDown(sampler),
        data,
        optimizer={"name": "sgd", "lr": 0.5},
        batch_size=16,
        steps=40,
        progress=False,
        host=host,
    )
    assert resumed.load_checkpoint(tmp_path / "ckpt") == last_good  # and it resumes


def test_float64_batches_for_a_float32_energy_are_named_not_cast(host):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        energy = host.create("energy", "mlp", dim=2, widths=[8])
    x = torch.randn(8, 2, generator=seeded(2), dtype=torch.float64)
    message = r"MLPEnergy: x is torch.float64 on cpu but the energy's weights are torch.float32"
    with pytest.raises(ConfigError, match=message):
        energy(x)
    with pytest.raises(ConfigError, match=message):
        energy.energy_and_score(x)
    with pytest.raises(ValueError, match=r"x is torch.float64 .* MLPEnergy is torch.float32"):
        host.create("sampler", "langevin").run(energy, x, 1)
    trainer = ebmflow.Trainer(
        energy, MeanEnergy(), x.repeat(4, 1), batch_size=8, steps=2, progress=False, host=host
    )
    with pytest.raises(ConfigError, match=r"training step 1 of 2: " + message):
        trainer.fit()
    assert all(p.dtype == torch.float32 for p in energy.parameters())  # nothing was cast


def test_samples_on_another_device_than_the_energy_are_named():
    # the meta device stands in for a GPU: same placement check, no accelerator needed
    energy = ebmflow.MLPEnergy(dim=2, widths=[8])
    x = torch.zeros(3, 2, device="meta")
    with pytest.raises(
        ConfigError,
        match=r"x is torch.float32 on meta but the energy's "
        r"weights are torch.float32 on cpu",
    ):
        energy(x)
    with pytest.raises(ValueError, match=r"on meta but MLPEnergy is .* on cpu"):
        ebmflow.MALA(0.1).run(energy, x, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_samples_on_the_gpu_for_an_energy_on_the_cpu_are_named():
    energy = ebmflow.MLPEnergy(dim=2, widths=[8])
    with pytest.raises(ConfigError, match=r"on cuda:0 but the energy's weights .* on cpu"):
        energy(torch.zeros(3, 2, device="cuda"))


def test_cli_samples_a_float64_checkpoint(tmp_path):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        ebmflow.save(ebmflow.MLPEnergy(dim=2, widths=[8]).double(), tmp_path / "f64")
    out = tmp_path / "s.safetensors"
    assert (
        main(["sample", str(tmp_path / "f64"), "--steps", "3", "--n", "4", "--out", str(out)]) == 0
    )
    assert load_file(str(out))["samples"].dtype == torch.float64


def test_condition_refuses_an_energy_without_labels_and_a_wrong_number_of_labels():
    class Labelled(ebmflow.Energy):
        event_shape = (2,)

        def forward(self, x, sigma=None, y=None):
            return x.square().sum(-1) + y.to(x.dtype)

    with pytest.raises(TypeError, match=r"MLPEnergy\.forward takes no label argument y="):
        ebmflow.condition(ebmflow.MLPEnergy(dim=2, widths=[4]), 1)
    conditioned = ebmflow.condition(Labelled(), torch.tensor([0, 1, 2]))
    assert conditioned(torch.zeros(3, 2)).tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(ValueError, match=r"3 labels for a batch of 5 samples"):
        conditioned(torch.zeros(5, 2))


# == 4. checkpoints =============================================================================


def pickle_payload(marker: Path) -> bytes:
    """A protocol-0 pickle that creates ``marker`` when unpickled (builtins.open(marker,
    'w')): proof, if the file appears, that something unpickled it."""
    payload = f"cbuiltins\nopen\n(S'{marker}'\nS'w'\ntR.".encode()
    ops = [op.name for op, _, _ in pickletools.genops(payload)]
    assert ops[:2] == ["GLOBAL", "MARK"] and ops[-2:] == ["REDUCE", "STOP"]
    return payload


def test_load_never_unpickles_a_torch_pickle_in_place_of_safetensors(host, tmp_path):
    marker = tmp_path / "UNPICKLED"
    payload = pickle_payload(marker)
    # a folder of pickles only (what torch.save / save_pretrained(safe_serialization=False)
    # write): refused, it has no config.json
    (tmp_path / "pt").mkdir()
    for name in ("pytorch_model.bin", "model.pt", "model.ckpt"):
        (tmp_path / "pt" / name).write_bytes(payload)
    with pytest.raises(CheckpointError, match=r"config\.json is missing"):
        ebmflow.load(tmp_path / "pt", host=host)
    # a pickle in place of model.safetensors, with the hash in config.json updated to match
    ebmflow.save(Quadratic(), tmp_path / "c", host=host)
    (tmp_path / "c" / "model.safetensors").write_bytes(payload)
    config = json.loads((tmp_path / "c" / "config.json").read_text())
    config["files"]["model.safetensors"] = {
        "sha256": hashlib.sha256(payload).hexdigest(),
        "size": len(payload),
    }
    (tmp_path / "c" / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors is not a readable "
        r"safetensors file",
    ):
        ebmflow.load(tmp_path / "c", host=host)
    assert not marker.exists()


@pytest.fixture
def no_unpickling(monkeypatch):
    """Every way to unpickle through the standard library and torch raises."""
    import pickle

    def refuse(*args, **kwargs):
        raise AssertionError("something tried to unpickle")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(torch, "load", refuse)
    monkeypatch.setattr(torch.serialization, "load", refuse)


def test_checkpoints_and_training_state_round_trip_with_unpickling_disabled(
    host, tmp_path, no_unpickling
):
    data = torch.randn(32, 2, generator=seeded(3))
    kwargs = {
        "batch_size": 8,
        "steps": 4,
        "ema": 0.5,
        "progress": False,
        "host": host,
        "checkpoint_dir": tmp_path / "run",
    }
    with torch.random.fork_rng():
        torch.manual_seed(0)
        energy = host.create("energy", "mlp", dim=2, widths=[8])
    ebmflow.Trainer(energy, MeanEnergy(), data, **kwargs).fit(until=2)
    assert isinstance(ebmflow.load(tmp_path / "run", host=host), ebmflow.MLPEnergy)
    resumed = ebmflow.Trainer.resume(
        tmp_path / "run", host=host, objective=MeanEnergy(), data=data, progress=False
    )
    assert resumed.step == 2 and resumed.fit()[-1]["step"] == 4


def test_no_shipped_module_uses_another_route_to_unpickling():
    # test_checkpoint.py scans for torch.load, `import pickle` and weights_only=False; these
    # are the other ways in: pickle-based libraries, TorchScript archives, pandas pickles,
    # pickle imported by name.
    forbidden = re.compile(
        r"\b(cloudpickle|dill|joblib|shelve|marshal)\b|torch\.jit\.load|read_pickle"
        r"|__import__\(\s*['\"]c?pickle|import_module\(\s*['\"]c?pickle|\bUnpickler\b"
    )
    sources = [
        path
        for folder in ("ebmflow", "plugins", "examples", "benchmarks", "scripts")
        for path in sorted((REPO / folder).rglob("*.py"))
        if "tests" not in path.relative_to(REPO).parts
    ]
    assert len(sources) > 30
    offenders = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in sources
        for match in forbidden.finditer(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []


RUN = """
[data]
name = "8gaussians"

[energy]
name = "mlp"
dim = 2
widths = [16]

[objective]
name = "pcd"
k = 3
capacity = 256

[sampler]
name = "langevin"
step_size = 0.01

[train]
steps = {steps}
batch_size = 32
seed = 3
log_every = 3
checkpoint_every = 5
optimizer = {{ name = "adam", lr = 1e-3 }}
ema = 0.9
"""


def _ebmflow() -> list[str]:
    """The installed console script (or ``python -m ebmflow``)."""
    script = Path(sys.executable).with_name("ebmflow")
    return [str(script)] if script.exists() else [sys.executable, "-m", "ebmflow"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_resume_after_sigkill_continues_bit_identically(tmp_path):
    if not any(c.name == "pcd" for c in ebmflow.components("objective")):
        pytest.skip("ebmflow-cd (objective pcd) is not installed")
    steps = 60
    config = tmp_path / "run.toml"
    config.write_text(RUN.format(steps=steps))
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    env["OMP_NUM_THREADS"] = "1"  # float reductions depend on the thread count
    command = [*_ebmflow(), "train", str(config), "--no-progress", "--out"]

    # the uninterrupted run
    straight = subprocess.run(
        [*command, str(tmp_path / "a")], env=env, capture_output=True, text=True, timeout=300
    )
    assert straight.returncode == 0, straight.stderr[-3000:]

    # the same run, SIGKILLed between checkpoints once it has one at step ≥ 10
    process = subprocess.Popen(
        [*command, str(tmp_path / "b")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    saved = tmp_path / "b" / "checkpoint" / "config.json"
    step, deadline = 0, time.monotonic() + 240
    while step < 10 and process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError, KeyError):  # not written yet, or
            step = json.loads(saved.read_text())["metadata"]["training"]["step"]  # replaced
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGKILL, stderr[-3000:]
    killed_at = json.loads(saved.read_text())["metadata"]["training"]["step"]
    assert 10 <= killed_at < steps

    resumed = subprocess.run(
        [*command, str(tmp_path / "b"), "--resume"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"step {steps} of {steps}" in resumed.stdout
    a, b = tmp_path / "a" / "checkpoint", tmp_path / "b" / "checkpoint"
    for name in ("model.safetensors", "training.safetensors", "objective.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta), name
    assert (tmp_path / "b" / "metrics.jsonl").read_text() == (
        tmp_path / "a" / "metrics.jsonl"
    ).read_text()
    assert sorted(p.name for p in (tmp_path / "b").iterdir()) == [
        "checkpoint",
        "config.toml",
        "metrics.jsonl",
    ]  # the killed save left nothing behind


def test_a_toml_error_at_the_end_of_the_file_still_names_a_line(tmp_path):
    from ebmflow.run_config import load_run_config

    path = tmp_path / "run.toml"
    path.write_text("[data]\nname = '8gaussians'\n\n[energy]\nname = 'mlp\n")
    with pytest.raises(ConfigError, match=r"run\.toml: TOML syntax error: .*line \d+"):
        load_run_config(path)


# == CLI: user errors are one line, --debug shows the traceback =================================


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, host):
    """A GMM checkpoint, and damaged copies of it."""
    root = tmp_path_factory.mktemp("cli-ckpts")
    ebmflow.save(ebmflow.GMMEnergy.ring(), root / "gmm")
    for damage in ("truncated", "tampered", "newer", "foreign"):
        if damage == "foreign":  # a component from a plugin this CLI does not have
            ebmflow.save(Quadratic(), root / damage, host=host)
            continue
        ebmflow.save(ebmflow.GMMEnergy.ring(), root / damage)
        folder = root / damage
        if damage == "truncated":
            data = (folder / "model.safetensors").read_bytes()
            (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
        elif damage == "tampered":
            (folder / "config.json").write_text('{"kind": "energy",\n "name": }')
        else:
            config = json.loads((folder / "config.json").read_text())
            config.update(format_version=99, ebmflow_version="9.9")
            (folder / "config.json").write_text(json.dumps(config))
    return root


TOML_FAULTS = {
    "syntax": (lambda t: t.replace('name = "mlp"', 'name = "mlp'), r"TOML syntax error: .*line 6"),
    "missing-table": (
        lambda t: t.replace('[data]\nname = "8gaussians"\n', ""),
        r"missing table \[data\]",
    ),
    "unknown-component": (
        lambda t: t.replace('"mlp"', '"mpl"'),
        r"\[energy\]: unknown energy 'mpl'; did you mean 'mlp'",
    ),
    "unknown-argument": (
        lambda t: t.replace("widths", "width"),
        r"\[energy\]: .*did you mean 'widths'.*Accepted arguments: dim",
    ),
    "ill-typed-argument": (
        lambda t: t.replace("dim = 2", 'dim = "2"'),
        r"\[energy\]: MLPEnergy: dim must be an integer ≥ 1, got '2'",
    ),
    "zero-step-size": (
        lambda t: t.replace("step_size = 0.01", "step_size = 0.0"),
        r"\[sampler\]: langevin: step_size must be a number > 0, got 0.0",
    ),
}


@pytest.mark.parametrize("fault", TOML_FAULTS)
def test_cli_train_reports_a_bad_run_file_on_one_line(tmp_path, capsys, fault):
    edit, message = TOML_FAULTS[fault]
    config = tmp_path / "run.toml"
    config.write_text(edit(RUN.format(steps=2)))
    assert main(["train", str(config), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    line = one_error_line(capsys)
    assert line.startswith(f"ebmflow: error: {config}"), line
    assert re.search(message, line), line


CHECKPOINT_FAULTS = {
    "missing": ("missing", [], r"no checkpoint at .*missing: the folder does not exist"),
    "truncated": ("truncated", [], r"model\.safetensors is \d+ bytes.*truncated"),
    "tampered": ("tampered", [], r"config\.json is not valid JSON: .*line 2"),
    "newer-format": ("newer", [], r"written by a newer ebmflow \(9\.9"),
    "plugin-not-installed": (
        "foreign",
        [],
        r"plugin 'rel', which is not installed; install "
        r"it: pip install ebmflow-rel",
    ),
    "unknown-sampler": (
        "gmm",
        ["--sampler", "mlaa"],
        r"unknown sampler 'mlaa'; did you mean "
        r"'mala'",
    ),
    "bad-sampler-value": (
        "gmm",
        ["--sampler-arg", "step_size=-1"],
        r"langevin: step_size must be a number > 0, got -1",
    ),
    "diverging-sampler": (
        "gmm",
        ["--sampler-arg", "step_size=1e30", "--steps", "20"],
        r"langevin diverged at step \d+: non-finite energy in \d+ of 16",
    ),
}


@pytest.mark.parametrize("fault", CHECKPOINT_FAULTS)
def test_cli_sample_reports_a_bad_checkpoint_or_sampler_on_one_line(
    checkpoints, tmp_path, capsys, fault
):
    folder, extra, message = CHECKPOINT_FAULTS[fault]
    argv = [
        "sample",
        str(checkpoints / folder),
        "--n",
        "16",
        *extra,
        "--out",
        str(tmp_path / "s.safetensors"),
    ]
    assert main(argv) == 1
    line = one_error_line(capsys)
    assert line.startswith("ebmflow: error: "), line
    assert re.search(message, line), line
    assert not (tmp_path / "s.safetensors").exists()


def test_console_script_user_error_is_one_line_and_debug_shows_the_traceback(tmp_path):
    # the installed script in a fresh process (no torch import on this path: fast)
    (tmp_path / "run.toml").write_text("[data]\nname = '8gaussians\n[energy]\nname = 'mlp'\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    command = [*_ebmflow(), "train", str(tmp_path / "run.toml"), "--out", str(tmp_path / "o")]
    plain = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert plain.returncode == 1
    lines = [
        line for line in plain.stderr.splitlines() if not line.startswith("ebmflow: warning:")
    ]  # a broken installed plugin
    assert len(lines) == 1 and lines[0].startswith("ebmflow: error: "), plain.stderr
    assert "TOML syntax error" in lines[0] and "line 2" in lines[0]
    debug = subprocess.run(
        [*command, "--debug"], env=env, capture_output=True, text=True, timeout=120
    )
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr
    assert "ebmflow.errors.ConfigError" in debug.stderr and "TOML syntax error" in debug.stderr


def test_argparse_errors_are_usage_plus_one_error_line(capsys):
    with pytest.raises(SystemExit) as caught:
        main(["sample", "somewhere", "--n", "many", "--out", "x.safetensors"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[-1] == "ebmflow sample: error: argument --n: invalid int value: 'many'"
