"""Checkpoints as an attack surface: what a crafted or damaged checkpoint folder can do.

A checkpoint from an untrusted source may hold anything in its folder: special files
(FIFOs, symbolic links to ``/dev/zero``), a ``config.json`` that names components a
checkpoint never holds or constructor arguments sized to exhaust memory, weights of the
wrong dtype, JSON nested a hundred thousand levels deep. Each case here is built for real
(real FIFOs, real symbolic links, real safetensors files with their hashes recomputed) and
must end as a :class:`~ebmflow.CheckpointError` quickly. Cases that hung or exhausted memory
before run in a subprocess under a timeout and a memory limit, so a regression fails the
test instead of hanging it or the machine.

Saving is an attack surface too, from the other side: ``ebmflow.save`` deletes the folder
it replaces, so it must replace only what is provably an ebmflow checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

import ebmflow
from ebmflow import checkpoint
from ebmflow.errors import CheckpointError, ConfigError, EbmflowError

REPO = Path(__file__).resolve().parents[1]
POSIX = pytest.mark.skipif(os.name != "posix", reason="needs FIFOs and symbolic links")


def core_host() -> ebmflow.PluginHost:
    """The core's own components only (mlp, gaussian, langevin, ais ...)."""
    return ebmflow.PluginHost(entry_points=False)


def saved_mlp(path: Path, **kwargs) -> ebmflow.MLPEnergy:
    energy = ebmflow.MLPEnergy(**{"dim": 2, "widths": [8], **kwargs})
    ebmflow.save(energy, path, host=core_host())
    return energy


def edit_config(path: Path, edit) -> None:
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))


def rewrite_weights(
    path: Path, state: dict[str, torch.Tensor], name: str = "model.safetensors"
) -> None:
    """Replace a weights file and record its new size and SHA-256, as an attacker would."""
    safetensors.torch.save_file(state, path / name)
    data = (path / name).read_bytes()

    def edit(config):
        config["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    edit_config(path, edit)


def component(kind: str, name: str, arguments: dict, plugin: str = "ebmflow") -> dict:
    distribution = "ebmflow" if plugin == "ebmflow" else f"ebmflow-{plugin}"
    return {
        "kind": kind,
        "name": name,
        "plugin": plugin,
        "distribution": distribution,
        "plugin_version": ebmflow.__version__,
        "arguments": arguments,
    }


def write_config(path: Path, record: dict, files: dict | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    config = {
        "format_version": 1,
        "ebmflow_version": ebmflow.__version__,
        **record,
        "files": files or {},
    }
    (path / "config.json").write_text(json.dumps(config))


def python(code: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


# -- hostile files: each case in one subprocess, under an alarm and a memory limit -----------

# Runs every case of HOSTILE in one fresh interpreter (importing torch once), each under a
# 10-second alarm and with the address space limited to 2 GiB above what the interpreter
# uses at the start, and prints one JSON line of outcomes: a hang becomes "timeout", memory
# exhaustion a MemoryError or an allocator error, instead of taking the machine down.
HOSTILE_SCRIPT = """
import json, os, resource, signal, sys, time, traceback
import torch
torch.set_num_threads(1)
import ebmflow
from ebmflow import checkpoint

cases = json.loads(sys.argv[1])
vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
limit = vm * 1024 + (2 << 30)
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

class Hung(BaseException):  # not an OSError, so no reader can mistake it for one
    pass

def alarm(signum, frame):
    raise Hung("still running after 10 s")

signal.signal(signal.SIGALRM, alarm)
host = ebmflow.default_host()
host.load()
outcomes = {}
for name, (op, path) in cases.items():
    start = time.perf_counter()
    signal.alarm(10)
    try:
        if op == "load":
            result = ebmflow.load(path, host=host)
            outcome = ("returned", type(result).__name__)
        elif op == "save":
            ebmflow.save(ebmflow.MLPEnergy(dim=2, widths=[8]), path, host=host)
            outcome = ("returned", "saved")
        elif op.startswith("read_json:"):
            outcome = ("returned", repr(checkpoint.read_json(path, op.split(":")[1]))[:80])
        elif op.startswith("read_tensors:"):
            outcome = ("returned", repr(checkpoint.read_tensors(path, op.split(":")[1]))[:80])
        else:
            raise ValueError(op)
    except Hung as exc:
        outcome = ("timeout", str(exc))
    except BaseException as exc:
        outcome = (type(exc).__name__, str(exc) or repr(exc))
    finally:
        signal.alarm(0)
    outcomes[name] = list(outcome) + [time.perf_counter() - start]
print(json.dumps(outcomes))
"""

# case -> (how to build it, what to do with it, the message expected)
HOSTILE = {
    "weights-symlink-to-dev-zero": ("load", r"model\.safetensors is a symbolic link"),
    "weights-fifo": ("load", r"model\.safetensors is not a regular file \(it is a FIFO\)"),
    "weights-sparse-terabyte": (
        "load",
        r"model\.safetensors is 1099511627776 bytes but "
        r"config\.json records",
    ),
    "config-symlink-to-dev-zero": ("load", r"config\.json is a symbolic link"),
    "config-fifo": ("load", r"config\.json is not a regular file \(it is a FIFO\)"),
    "config-sparse-terabyte": (
        "load",
        r"config\.json is 1099511627776 bytes; a checkpoint's "
        r"config\.json may hold at most",
    ),
    "training-json-fifo": (
        "read_json:training.json",
        r"training\.json is not a regular file \(it is a FIFO\)",
    ),
    "training-tensors-dev-zero": (
        "read_tensors:training.safetensors",
        r"training\.safetensors is a symbolic link",
    ),
    "save-over-config-fifo": (
        "save",
        r"refusing to save to .*: .*config\.json is not a "
        r"regular file \(it is a FIFO\)",
    ),
    "save-over-config-dev-zero": (
        "save",
        r"refusing to save to .*: .*config\.json is a "
        r"symbolic link",
    ),
    "converter-reading-a-fifo": (
        "load",
        r"kind 'converter' .*a checkpoint holds only "
        r"energy, objective, sampler and noise_schedule",
    ),
    "nested-converter-reading-a-fifo": (
        "load",
        r"kind 'converter' .*a checkpoint holds "
        r"only",
    ),
    "mlp-40000-by-40000": (
        "load",
        r"building energy 'ebmflow:mlp' would allocate 6\.4 GB "
        r"\(asked for a float32 tensor of shape \(40000, 40000\)\), "
        r"but a checkpoint may allocate at most",
    ),
}


def build_hostile(case: str, root: Path) -> Path:
    path = root / case / "ckpt"
    if case.startswith("save-over-config"):
        saved_mlp(path)
        (path / "config.json").unlink()
        if case.endswith("fifo"):
            os.mkfifo(path / "config.json")
        else:
            (path / "config.json").symlink_to("/dev/zero")
        return path
    if case.startswith("training"):
        checkpoint.write_checkpoint_folder(
            path,
            {"training.json": b'{"step": 1}', "training.safetensors": {"a": torch.ones(2)}},
            {"kind": "trainer-state"},
        )
        if case == "training-json-fifo":
            (path / "training.json").unlink()
            os.mkfifo(path / "training.json")
        else:
            (path / "training.safetensors").unlink()
            (path / "training.safetensors").symlink_to("/dev/zero")
        return path
    if "converter" in case:
        pipeline = root / case / "pipeline"  # outside the checkpoint folder
        pipeline.mkdir(parents=True)
        os.mkfifo(pipeline / "model_index.json")  # reading it would block forever
        converter = component("converter", "diffusers", {"source": str(pipeline)}, "diffusers")
        if case.startswith("nested"):
            record = component(
                "energy", "unet-energy", {"model": {"__component__": converter}}, "diffusers"
            )
        else:
            record = converter
        write_config(path, record)
        return path
    if case == "mlp-40000-by-40000":
        saved_mlp(path)
        edit_config(path, lambda c: c["arguments"].update(widths=[40000, 40000]))
        return path
    saved_mlp(path)
    name = "config.json" if case.startswith("config") else "model.safetensors"
    file = path / name
    file.unlink()
    if case.endswith("symlink-to-dev-zero"):
        file.symlink_to("/dev/zero")
    elif case.endswith("fifo"):
        os.mkfifo(file)
    elif case.endswith("sparse-terabyte"):
        with open(file, "wb") as f:
            f.truncate(1 << 40)  # a hole: takes no disk space, reads as a terabyte of zeros
    return path


@pytest.fixture(scope="module")
def hostile_outcomes(tmp_path_factory) -> dict[str, list]:
    if os.name != "posix" or not Path("/proc/self/status").exists():
        pytest.skip("needs FIFOs, /dev/zero and /proc (Linux)")
    root = tmp_path_factory.mktemp("hostile")
    cases = {case: (op, str(build_hostile(case, root))) for case, (op, _) in HOSTILE.items()}
    result = python(HOSTILE_SCRIPT, json.dumps(cases), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


@pytest.mark.parametrize("case", list(HOSTILE))
def test_special_files_and_hostile_configs_fail_fast_with_a_checkpoint_error(
    case, hostile_outcomes
):
    outcome, message, seconds = hostile_outcomes[case]
    assert outcome == "CheckpointError", (outcome, message)
    assert re.search(HOSTILE[case][1], message), message
    assert seconds < 1.0, seconds  # refused before reading, building or allocating much


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs FIFOs and /proc")
def test_cli_reports_a_hostile_checkpoint_on_one_line(tmp_path):
    fifo = build_hostile("weights-fifo", tmp_path)
    huge = build_hostile("mlp-40000-by-40000", tmp_path)
    code = """
    import resource, sys
    import torch
    from ebmflow.cli import main
    vm = int(next(l for l in open("/proc/self/status") if l.startswith("VmSize")).split()[1])
    limit = vm * 1024 + (2 << 30)  # a regression fails to allocate instead of swamping the host
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    sys.exit(main(["sample", sys.argv[1], "--n", "4", "--out", sys.argv[2]]))
    """
    for folder, message in (
        (fifo, r"is not a regular file \(it is a FIFO\)"),
        (huge, r"would allocate 6\.4 GB"),
    ):
        result = python(code, str(folder), str(tmp_path / "s.safetensors"), timeout=120)
        lines = [
            line for line in result.stderr.splitlines() if not line.startswith("ebmflow: warning:")
        ]
        assert result.returncode == 1, result.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("ebmflow: error: "), result.stderr
        assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "s.safetensors").exists()


# -- save replaces only folders that are provably checkpoints -------------------------------


def _photos_and_notes(path: Path) -> None:
    (path / "photos").mkdir(parents=True)
    (path / "photos" / "holiday.jpg").write_bytes(b"\xff\xd8 precious")
    (path / "notes.txt").write_text("precious")


def _valid_record(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def test_save_refuses_a_folder_with_foreign_subfolders(tmp_path):
    # exactly what was deleted: config.json with an integer format_version and a files list
    path = tmp_path / "mine"
    _photos_and_notes(path)
    (path / "config.json").write_text(
        json.dumps({"format_version": 1, "files": ["photos", "notes.txt"]})
    )
    with pytest.raises(CheckpointError, match=r"refusing to save to .*mine"):
        saved_mlp(path)
    assert (path / "photos" / "holiday.jpg").read_bytes() == b"\xff\xd8 precious"
    assert (path / "notes.txt").read_text() == "precious"


def test_save_refuses_a_valid_looking_config_that_lists_a_subfolder(tmp_path):
    path = tmp_path / "mine"
    _photos_and_notes(path)
    write_config(
        path,
        component("energy", "mlp", {}),
        files={"photos": _valid_record(b""), "notes.txt": _valid_record(b"precious")},
    )
    with pytest.raises(CheckpointError, match=r"refusing to save .*photos is a folder"):
        saved_mlp(path)
    assert sorted(os.listdir(path)) == ["config.json", "notes.txt", "photos"]
    assert (path / "photos" / "holiday.jpg").exists()


@POSIX
def test_save_refuses_a_checkpoint_whose_files_were_replaced_by_symlinks(tmp_path):
    path = tmp_path / "ckpt"
    saved_mlp(path)
    elsewhere = tmp_path / "elsewhere.safetensors"
    os.rename(path / "model.safetensors", elsewhere)
    (path / "model.safetensors").symlink_to(elsewhere)
    with pytest.raises(
        CheckpointError,
        match=r"refusing .*model\.safetensors is a symbolic "
        r"link",
    ):
        saved_mlp(path)
    assert (path / "model.safetensors").is_symlink() and elsewhere.exists()


def test_save_refuses_a_checkpoint_whose_file_sizes_do_not_match(tmp_path):
    path = tmp_path / "ckpt"
    saved_mlp(path)
    (path / "model.safetensors").write_bytes(b"someone's own file under this name")
    with pytest.raises(
        CheckpointError,
        match=r"refusing .*model\.safetensors is 34 bytes but "
        r"config\.json records",
    ):
        saved_mlp(path)
    assert (path / "model.safetensors").read_bytes() == b"someone's own file under this name"


def test_save_refuses_a_folder_whose_config_json_is_not_a_valid_checkpoint_config(tmp_path):
    path = tmp_path / "ckpt"
    saved_mlp(path)
    edit_config(path, lambda c: c.update(format_version=True))  # bool, not an integer
    with pytest.raises(
        CheckpointError,
        match=r"refusing .*'format_version' must be an "
        r"integer",
    ):
        saved_mlp(path)


def test_save_still_replaces_a_checkpoint_and_an_interrupted_save(tmp_path):
    path = tmp_path / "ckpt"
    saved_mlp(path)
    newer = saved_mlp(path, widths=[4])
    loaded = ebmflow.load(path, host=core_host())
    assert loaded.get_config()["widths"] == newer.get_config()["widths"]
    assert os.listdir(tmp_path) == ["ckpt"]


# -- load builds only the kinds a checkpoint can hold -----------------------------------------


def test_load_refuses_a_log_z_estimator_and_never_runs_it(tmp_path):
    gaussian = component("energy", "gaussian", {"mean": [0.0, 0.0], "std": 1.0})
    write_config(
        tmp_path / "ais",
        component(
            "log_z_estimator",
            "ais",
            {"energy": {"__component__": gaussian}, "n_chains": 8, "n_temps": 4},
        ),
    )
    with pytest.raises(
        CheckpointError,
        match=r"config\.json: kind 'log_z_estimator' cannot be "
        r"loaded from a checkpoint: a checkpoint holds "
        r"only energy, objective, sampler and "
        r"noise_schedule components",
    ):
        ebmflow.load(tmp_path / "ais", host=core_host())


def test_load_refuses_a_nested_component_of_a_kind_a_checkpoint_cannot_hold(tmp_path):
    dataset = component("dataset", "8gaussians", {})
    write_config(
        tmp_path / "c", component("sampler", "langevin", {"step_size": {"__component__": dataset}})
    )
    with pytest.raises(
        CheckpointError,
        match=r"argument 'step_size': kind 'dataset' cannot "
        r"be loaded from a checkpoint",
    ):
        ebmflow.load(tmp_path / "c", host=core_host())


def test_save_refuses_a_component_kind_that_load_would_refuse(tmp_path):
    data = core_host().create("dataset", "8gaussians")
    with pytest.raises(
        CheckpointError,
        match=r"cannot save .*a dataset: a checkpoint holds "
        r"only energy, objective, sampler and "
        r"noise_schedule components",
    ):
        ebmflow.save(data, tmp_path / "d", host=core_host())
    assert not (tmp_path / "d").exists()


def test_noise_schedules_and_samplers_still_round_trip(tmp_path):
    host = core_host()
    schedule = host.create("noise_schedule", "karras", sigma_max=10.0)
    ebmflow.save(schedule, tmp_path / "s", host=host)
    assert ebmflow.load(tmp_path / "s", host=host).get_config() == schedule.get_config()
    sampler = host.create("sampler", "annealed-langevin")
    ebmflow.save(sampler, tmp_path / "a", host=host)
    assert type(ebmflow.load(tmp_path / "a", host=host)) is type(sampler)


def test_arguments_with_too_many_values_are_refused_before_building(tmp_path):
    saved_mlp(tmp_path / "c")
    edit_config(tmp_path / "c", lambda c: c["arguments"].update(widths=[1] * 100_000))
    start = time.perf_counter()
    with pytest.raises(
        CheckpointError,
        match=r"arguments hold more than 16384 values; "
        r"at most 16384 are accepted",
    ):
        ebmflow.load(tmp_path / "c", host=core_host())
    assert time.perf_counter() - start < 1.0


def test_save_refuses_arguments_that_load_would_refuse(tmp_path):
    host = ebmflow.PluginHost(entry_points=False)
    host.register(Counting(), name="counting")
    deep: list = []
    for _ in range(80):
        deep = [deep]
    with pytest.raises(CheckpointError, match=r"nested deeper than 64 levels"):
        ebmflow.save(CountingEnergy(options={"deep": deep}), tmp_path / "deep", host=host)
    with pytest.raises(CheckpointError, match=r"arguments hold more than 16384 values"):
        ebmflow.save(
            CountingEnergy(options={"long": list(range(100_000))}), tmp_path / "long", host=host
        )
    assert os.listdir(tmp_path) == []


# -- crafted nesting and dtypes end as CheckpointError --------------------------------------


def test_deeply_nested_json_is_a_checkpoint_error_not_a_recursion_error(tmp_path):
    saved_mlp(tmp_path / "c")
    config = (tmp_path / "c" / "config.json").read_text()
    deep = "[" * 100_000 + "]" * 100_000
    (tmp_path / "c" / "config.json").write_text(
        config.replace('"format_version"', f'"metadata": {deep}, "format_version"', 1)
    )
    with pytest.raises(
        CheckpointError,
        match=r"config\.json: JSON nested deeper than 64 "
        r"levels",
    ):
        ebmflow.load(tmp_path / "c", host=core_host())


def test_deeply_nested_arguments_are_a_checkpoint_error_not_a_recursion_error(tmp_path):
    saved_mlp(tmp_path / "c")
    value: object = 8
    for _ in range(600):  # json parses 600 levels; decoding them recursed too deep
        value = [value]
    edit_config(tmp_path / "c", lambda c: c["arguments"].update(widths=value))
    with pytest.raises(CheckpointError, match=r"nested deeper than 64 levels"):
        ebmflow.load(tmp_path / "c", host=core_host())


def _weights_as(path: Path, dtype: torch.dtype) -> None:
    state = ebmflow.load(path, host=core_host()).state_dict()
    rewrite_weights(path, {k: v.to(dtype) for k, v in state.items()})


@pytest.mark.parametrize(
    "dtype", [torch.int64, torch.int32, torch.bool, torch.complex64, torch.uint8]
)
def test_weights_of_a_dtype_the_model_cannot_hold_are_a_checkpoint_error(tmp_path, dtype):
    saved_mlp(tmp_path / "c")
    _weights_as(tmp_path / "c", dtype)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(
        CheckpointError,
        match=rf"model\.safetensors: .* is {name} but the "
        rf"energy's tensor is float32; floating-point "
        rf"tensors load from float16, bfloat16, float32 "
        rf"or float64",
    ):
        ebmflow.load(tmp_path / "c", host=core_host())


def test_floating_point_weights_keep_their_saved_dtype(tmp_path):
    saved_mlp(tmp_path / "c")
    _weights_as(tmp_path / "c", torch.float64)
    loaded = ebmflow.load(tmp_path / "c", host=core_host())
    assert {p.dtype for p in loaded.parameters()} == {torch.float64}
    loaded(torch.zeros(3, 2, dtype=torch.float64))  # and the model works


def test_integer_buffers_load_only_from_exactly_their_dtype(tmp_path):
    host = ebmflow.PluginHost(entry_points=False)
    host.register(Counting(), name="counting")
    ebmflow.save(CountingEnergy(), tmp_path / "c", host=host)
    state = ebmflow.load(tmp_path / "c", host=host).state_dict()
    state["count"] = state["count"].to(torch.int32)
    rewrite_weights(tmp_path / "c", state)
    with pytest.raises(
        CheckpointError,
        match=r"'count' is int32 but the energy's tensor is "
        r"int64; .*other tensors only from exactly their "
        r"dtype",
    ):
        ebmflow.load(tmp_path / "c", host=host)


class CountingEnergy(ebmflow.Energy):
    """A quadratic energy with an integer buffer and a plain dict argument."""

    def __init__(self, options: dict | None = None):
        super().__init__()
        self.options = options
        self.weight = torch.nn.Parameter(torch.ones(2))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))

    def forward(self, x, sigma=None):
        return (self.weight * x * x).sum(-1)


class Counting:
    @ebmflow.hookimpl
    def ebmflow_energies(self):
        return [ebmflow.Component("counting", CountingEnergy)]


# -- dict arguments and symbolic link loops -------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"kind": "energy", "name": "mlp"},
        {"kind": "sampler", "name": "langevin", "step_size": 0.5},
        {"nested": [{"kind": "energy", "name": "gaussian"}]},
    ],
)
def test_a_plain_dict_argument_with_kind_and_name_survives_save_and_load(tmp_path, options):
    host = ebmflow.PluginHost(entry_points=False)
    host.register(Counting(), name="counting")
    ebmflow.save(CountingEnergy(options=options), tmp_path / "c", host=host)
    assert ebmflow.load(tmp_path / "c", host=host).options == options


@POSIX
def test_a_symbolic_link_loop_is_reported_as_a_loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    with pytest.raises(CheckpointError, match=r"a symbolic link loop, not a checkpoint folder"):
        ebmflow.load(tmp_path / "a", host=core_host())
    with pytest.raises(
        CheckpointError,
        match=r"refusing to save to .*: it is a symbolic link "
        r"loop",
    ):
        saved_mlp(tmp_path / "a")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()


def test_a_non_floating_load_dtype_is_an_ebmflow_config_error(tmp_path):
    saved_mlp(tmp_path / "c")
    with pytest.raises(ConfigError, match=r"dtype must be a floating-point torch\.dtype"):
        ebmflow.load(tmp_path / "c", host=core_host(), dtype=torch.int64)
    assert issubclass(ConfigError, EbmflowError) and issubclass(ConfigError, ValueError)


@POSIX
def test_files_are_never_read_through_symbolic_links_out_of_the_folder(tmp_path):
    saved_mlp(tmp_path / "c")
    outside = tmp_path / "outside.safetensors"
    os.rename(tmp_path / "c" / "model.safetensors", outside)
    (tmp_path / "c" / "model.safetensors").symlink_to(outside)
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors is a symbolic link; a "
        r"checkpoint folder holds regular files only",
    ):
        ebmflow.load(tmp_path / "c", host=core_host())


# -- a reader beside a writer sees one complete checkpoint ----------------------------------

# A real second process saving as fast as it can, for a fixed time.
WRITER_SCRIPT = """
import sys, time, torch, ebmflow
torch.set_num_threads(1)
host = ebmflow.PluginHost(entry_points=False)
path, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
version = 0
while time.monotonic() < end:
    energy = ebmflow.MLPEnergy(dim=2, widths=[256, 256])
    with torch.no_grad():
        for p in energy.parameters():
            p.fill_(float(version))
    ebmflow.save(energy, path, host=host, metadata={"version": version})
    version += 1
print(version)
"""


def test_a_reader_beside_a_writing_process_never_sees_a_false_corruption_error(tmp_path):
    path = tmp_path / "c"
    host = core_host()
    first = ebmflow.MLPEnergy(dim=2, widths=[256, 256])
    with torch.no_grad():
        for p in first.parameters():
            p.fill_(-1.0)
    ebmflow.save(first, path, host=host)
    env = {k: v for k, v in os.environ.items() if not k.startswith("EBMFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER_SCRIPT, str(path), "4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    errors: list[str] = []
    loads = 0
    deadline = time.monotonic() + 60
    try:
        while writer.poll() is None and time.monotonic() < deadline:
            try:
                loaded = ebmflow.load(path, host=host)
            except CheckpointError as exc:
                errors.append(str(exc))
                continue
            values = {float(p.detach().flatten()[0]) for p in loaded.parameters()}
            assert len(values) == 1, values  # every weight from the same save
            loads += 1
    finally:
        writer.kill() if writer.poll() is None else None
        out, err = writer.communicate(timeout=30)
    assert writer.returncode == 0, err[-2000:]
    saves = int(out.split()[-1])
    assert saves >= 20 and loads >= 20, (saves, loads)  # the two really overlapped
    assert errors == [], f"{len(errors)} of {loads + len(errors)} loads failed: {errors[:3]}"
