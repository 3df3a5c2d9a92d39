"""The ``ebmflow`` command line, in-process through ``ebmflow.cli.main(argv, host=...)`` with
a private host, plus two subprocess checks of the installed console script."""

from __future__ import annotations

import json

import pytest

import ebmflow
from ebmflow import Component
from ebmflow.cli import main
from ebmflow.registry import KINDS


def hello_command(subparsers):
    parser = subparsers.add_parser("hello", help="say hello from a plugin")
    parser.add_argument("--who", default="world")
    parser.set_defaults(func=run_hello)


def run_hello(args):
    n_samplers = len(args.host.components("sampler"))
    print(f"hello {args.who}; {n_samplers} samplers")
    return 3  # main returns the command's status


def failing_command(error):
    def commands(subparsers):
        parser = subparsers.add_parser("fail", help="raise an error")

        def run(args):
            raise error

        parser.set_defaults(func=run)

    return commands


def broken_commands(subparsers):
    raise RuntimeError("commands hook exploded")


@pytest.fixture
def host():
    """The core's components, no entry points."""
    return ebmflow.PluginHost(entry_points=False)


def test_version_prints_the_package_version(host, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--version"], host=host)
    assert caught.value.code == 0
    assert capsys.readouterr().out == f"ebmflow {ebmflow.__version__}\n"


def test_help_lists_the_core_commands_and_options(host, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["--help"], host=host)
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for word in ("plugins", "components", "--version", "--debug"):
        assert word in out


def test_no_command_prints_help_and_succeeds(host, capsys):
    assert main([], host=host) == 0
    assert capsys.readouterr().out.startswith("usage: ebmflow")


def test_plugins_json_lists_each_plugin_with_its_status_and_components(host, capsys):
    assert main(["plugins", "--json"], host=host) == 0
    [core] = json.loads(capsys.readouterr().out)
    assert set(core) == {"name", "distribution", "version", "status", "components", "error"}
    assert (core["name"], core["distribution"], core["status"], core["error"]) == (
        "ebmflow",
        "ebmflow",
        "ok",
        None,
    )
    assert core["version"] == ebmflow.__version__
    assert "mala" in core["components"]["sampler"]


def test_components_json_lists_every_component_with_its_plugin(host, capsys):
    assert main(["components", "--json"], host=host) == 0
    found = json.loads(capsys.readouterr().out)
    assert found == [c.to_dict() for c in host.components()]
    assert set(found[0]) == {"kind", "name", "plugin", "qualified_name", "summary"}
    assert {"ebmflow:mala", "ebmflow:gaussian", "ebmflow:geometric"} <= {
        c["qualified_name"] for c in found
    }


@pytest.mark.parametrize("spelling", ["sampler", "samplers", "Sampler"])
def test_components_kind_filter_accepts_the_registry_spellings(host, capsys, spelling):
    assert main(["components", "--kind", spelling, "--json"], host=host) == 0
    found = json.loads(capsys.readouterr().out)
    assert found and {c["kind"] for c in found} == {"sampler"}


def test_tables_show_components_and_plugin_failures(host, make_plugin, capsys):
    with pytest.warns(ebmflow.PluginWarning):
        host.register(make_plugin(samplers="not a list"), name="bad")
    assert main(["components", "--kind", "sampler"], host=host) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["KIND", "NAME", "PLUGIN", "SUMMARY"]
    assert any(line.split()[:3] == ["sampler", "mala", "ebmflow"] for line in lines)
    assert main(["plugins"], host=host) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "ok" in rows["ebmflow"].split()
    assert "failed" in rows["bad"].split() and "returned a str" in rows["bad"]


def assert_one_line_error(captured, start):
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(start), lines[0]
    assert "Traceback" not in captured.err


def test_unknown_kind_is_one_line_on_stderr_without_traceback(host, capsys):
    assert main(["components", "--kind", "nope"], host=host) == 1
    captured = capsys.readouterr()
    assert_one_line_error(captured, "ebmflow: error: unknown component kind 'nope'")
    for kind in KINDS:
        assert kind in captured.err


def test_user_error_raised_by_a_command_is_one_line_on_stderr(host, make_plugin, capsys):
    host.register(
        make_plugin(commands=failing_command(ebmflow.ConfigError("bad value 7"))), name="failer"
    )
    assert main(["fail"], host=host) == 1
    assert_one_line_error(capsys.readouterr(), "ebmflow: error: bad value 7")


def test_unexpected_error_in_a_command_is_one_line_pointing_at_debug(host, make_plugin, capsys):
    host.register(make_plugin(commands=failing_command(ZeroDivisionError("oops"))), name="failer")
    assert main(["fail"], host=host) == 1
    captured = capsys.readouterr()
    assert_one_line_error(captured, "ebmflow: internal error: ZeroDivisionError: oops")
    assert "--debug" in captured.err


@pytest.mark.parametrize("argv", [["--debug", "fail"], ["fail", "--debug"]])
def test_debug_lets_the_error_and_its_traceback_through(host, make_plugin, argv):
    host.register(
        make_plugin(commands=failing_command(ebmflow.ConfigError("bad value 7"))), name="failer"
    )
    with pytest.raises(ebmflow.ConfigError, match="bad value 7"):
        main(argv, host=host)


def test_debug_shows_unknown_kind_as_an_exception(host):
    with pytest.raises(ebmflow.UnknownKindError):
        main(["components", "--kind", "nope", "--debug"], host=host)


def test_bad_command_line_syntax_exits_with_status_2(host, capsys):
    with pytest.raises(SystemExit) as caught:
        main(["no-such-command"], host=host)
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_plugin_adds_a_cli_command_that_gets_the_host(host, make_plugin, capsys):
    host.register(make_plugin(commands=hello_command), name="greeter")
    with pytest.raises(SystemExit):
        main(["--help"], host=host)
    assert "hello" in capsys.readouterr().out
    assert main(["hello", "--who", "ebm"], host=host) == 3
    n_samplers = len(host.components("sampler"))
    assert capsys.readouterr().out == f"hello ebm; {n_samplers} samplers\n"


def test_plugin_whose_commands_hook_raises_does_not_take_the_cli_down(host, make_plugin, capsys):
    host.register(
        make_plugin(commands=broken_commands, samplers=[Component("extra", dict)]),
        name="broken-cli",
    )
    host.register(make_plugin(commands=hello_command), name="greeter")
    assert main(["components", "--json"], host=host) == 0
    captured = capsys.readouterr()
    qualified = {c["qualified_name"] for c in json.loads(captured.out)}
    assert "ebmflow:mala" in qualified
    assert "broken-cli:extra" not in qualified  # a failed plugin contributes nothing
    warning_lines = captured.err.splitlines()
    assert len(warning_lines) == 1
    assert warning_lines[0].startswith("ebmflow: warning: ebmflow plugin 'broken-cli' failed")
    assert "RuntimeError: commands hook exploded" in warning_lines[0]
    # the healthy plugin's command still works, and the failure is listed
    assert main(["hello"], host=host) == 3
    capsys.readouterr()
    assert main(["plugins", "--json"], host=host) == 0
    status = {p["name"]: (p["status"], p["error"]) for p in json.loads(capsys.readouterr().out)}
    assert status["broken-cli"] == ("failed", "RuntimeError: commands hook exploded")
    assert status["greeter"] == ("ok", None)


def test_console_script_prints_version(fake_site):
    out = fake_site.run("--version")
    assert (out.returncode, out.stdout) == (0, f"ebmflow {ebmflow.__version__}\n"), out.stderr


def test_listing_plugins_and_components_imports_no_torch(fake_site):
    out = fake_site.python("""
        import contextlib, io, sys
        from ebmflow.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            codes = [main(["plugins", "--json"]), main(["components", "--json"]),
                     main(["components"])]
        print(codes, "torch" in sys.modules)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[0, 0, 0] False"
