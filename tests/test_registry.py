"""The plugin registry, in-process: lookup, errors, config-driven construction, laziness and
isolation of broken plugins. Plugins here are objects registered on a private
``ebmflow.PluginHost``; discovery through installed entry points is in test_entry_points.py.
"""

from __future__ import annotations

import re
import sys
import uuid
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ebmflow
from ebmflow import Component
from ebmflow.registry import KINDS

NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]*")


# -- factories the test plugins hand over (plain callables, no torch) ----------------------


def rw_sampler(step_size=0.5, n_steps=10):
    return {"made": "rw", "step_size": step_size, "n_steps": n_steps}


def well_energy(a=1.0):
    return {"made": "well", "a": a}


def energy_sum(energies):
    return {"made": "sum", "energies": energies}


def toy_objective(sampler=None, energies=None, base_energy=None, helper=None, data=None):
    return {
        "made": "objective",
        "sampler": sampler,
        "energies": energies,
        "base_energy": base_energy,
        "helper": helper,
        "data": data,
    }


def other_sampler():
    return {"made": "other"}


@pytest.fixture
def bare_host():
    """A host with no components at all: no core plugins, no entry points."""
    return ebmflow.PluginHost(builtins=False, entry_points=False)


@pytest.fixture
def core_host():
    """A host with the core's components and no entry points."""
    return ebmflow.PluginHost(entry_points=False)


@pytest.fixture
def toy_host(bare_host, make_plugin):
    """Plugin ``toy``: sampler ``rw``, energies ``well`` and ``sum``, objective ``obj``."""
    bare_host.register(
        make_plugin(
            samplers=[
                Component("rw", rw_sampler, "random walk"),
                Component("other", other_sampler),
            ],
            energies=[Component("well", well_energy, "a well"), Component("sum", energy_sum)],
            objectives=[Component("obj", toy_objective)],
        ),
        name="toy",
    )
    return bare_host


# -- lookup --------------------------------------------------------------------------------


def test_component_is_reachable_by_bare_and_by_qualified_name(toy_host):
    bare = toy_host.get("sampler", "rw")
    assert toy_host.get("sampler", "toy:rw") is bare
    assert (bare.kind, bare.name, bare.plugin, bare.qualified_name) == (
        "sampler",
        "rw",
        "toy",
        "toy:rw",
    )
    assert toy_host.create("sampler", "toy:rw")["made"] == "rw"


def test_core_components_come_from_the_ebmflow_plugin_and_only_when_builtins_are_on(
    core_host, bare_host
):
    assert core_host.get("sampler", "mala").qualified_name == "ebmflow:mala"
    assert {c.name for c in core_host.components("sampler")} >= {
        "langevin",
        "mala",
        "hmc",
        "annealed-langevin",
    }
    assert bare_host.components() == []
    assert bare_host.plugins() == []


def test_same_bare_name_in_two_plugins_is_ambiguous_only_at_lookup(bare_host, make_plugin):
    # registering both emits no warning (the suite turns PluginWarning into an error)
    for name in ("alpha", "beta"):
        info = bare_host.register(
            make_plugin(
                samplers=[Component("shared", rw_sampler), Component(f"{name}-only", other_sampler)]
            ),
            name=name,
        )
        assert info.status == "ok"
    assert [c.qualified_name for c in bare_host.components("sampler")] == [
        "alpha:alpha-only",
        "beta:beta-only",
        "alpha:shared",
        "beta:shared",
    ]
    with pytest.raises(ebmflow.AmbiguousComponentError) as caught:
        bare_host.get("sampler", "shared")
    assert "alpha:shared" in str(caught.value) and "beta:shared" in str(caught.value)
    with pytest.raises(ebmflow.AmbiguousComponentError):
        bare_host.create("sampler", "shared")
    assert bare_host.get("sampler", "beta:shared").plugin == "beta"
    assert bare_host.create("sampler", "alpha:shared", step_size=1.0)["step_size"] == 1.0
    assert bare_host.create("sampler", "beta-only") == {"made": "other"}


def test_unknown_name_lists_available_names_and_close_matches(core_host):
    with pytest.raises(ebmflow.UnknownComponentError) as caught:
        core_host.get("sampler", "malaa")
    message = str(caught.value)
    assert "did you mean 'mala'" in message
    for name in ("annealed-langevin", "hmc", "langevin", "mala"):
        assert name in message
    assert isinstance(caught.value, LookupError)


def test_unknown_name_without_close_match_still_lists_what_exists(toy_host):
    with pytest.raises(
        ebmflow.UnknownComponentError,
        match=r"unknown sampler 'zzzz'\. "
        r"Available samplers: other, rw",
    ):
        toy_host.get("sampler", "zzzz")


def test_unknown_plugin_prefix_says_no_such_plugin_is_installed(toy_host):
    with pytest.raises(ebmflow.UnknownComponentError, match="No plugin named 'nope'"):
        toy_host.get("sampler", "nope:rw")


def test_unknown_name_mentions_plugins_that_failed_to_load(toy_host, make_plugin):
    with pytest.warns(ebmflow.PluginWarning):
        toy_host.register(make_plugin(samplers=RuntimeError("boom")), name="broken")
    with pytest.raises(ebmflow.UnknownComponentError, match="failed to load: broken"):
        toy_host.get("sampler", "from-broken")


@pytest.mark.parametrize("call", ["get", "create", "components"])
def test_bad_kind_raises_unknown_kind_error_listing_the_kinds(toy_host, call):
    with pytest.raises(ebmflow.UnknownKindError) as caught:
        if call == "components":
            toy_host.components("samplr")
        else:
            getattr(toy_host, call)("samplr", "rw")
    assert "'samplr'" in str(caught.value)
    for kind in KINDS:
        assert kind in str(caught.value)


@pytest.mark.parametrize(
    ("spelling", "kind"),
    [
        ("sampler", "sampler"),
        ("samplers", "sampler"),
        ("Sampler", "sampler"),
        ("noise_schedule", "noise_schedule"),
        ("noise-schedule", "noise_schedule"),
        ("noise-schedules", "noise_schedule"),
        ("energies", "energy"),
    ],
)
def test_kind_spellings_are_accepted(core_host, spelling, kind):
    found = core_host.components(spelling)
    assert found and {c.kind for c in found} == {kind}


def test_components_lists_every_kind_sorted_with_public_fields(toy_host):
    found = toy_host.components()
    assert [(c.kind, c.name) for c in found] == [
        ("energy", "sum"),
        ("energy", "well"),
        ("objective", "obj"),
        ("sampler", "other"),
        ("sampler", "rw"),
    ]
    assert toy_host.get("energy", "well").to_dict() == {
        "kind": "energy",
        "name": "well",
        "plugin": "toy",
        "qualified_name": "toy:well",
        "summary": "a well",
    }


def test_plugins_lists_name_distribution_version_status_and_components(bare_host, make_plugin):
    info = bare_host.register(
        make_plugin(
            samplers=[Component("rw", rw_sampler)], energies=[Component("well", well_energy)]
        ),
        name="toy",
        distribution="toy-dist",
        version="2.1",
    )
    assert info == bare_host.plugins()[0]
    assert info.to_dict() == {
        "name": "toy",
        "distribution": "toy-dist",
        "version": "2.1",
        "status": "ok",
        "components": {"energy": ["well"], "sampler": ["rw"]},
        "error": None,
    }


def test_unregister_removes_a_plugin_and_its_components(toy_host):
    toy_host.unregister("toy")
    assert toy_host.components() == []
    with pytest.raises(ebmflow.UnknownComponentError):
        toy_host.get("sampler", "rw")
    with pytest.raises(ebmflow.PluginError, match="no plugin named 'toy'"):
        toy_host.unregister("toy")


def test_a_hook_returning_none_or_a_tuple_is_accepted(bare_host, make_plugin):
    bare_host.register(
        make_plugin(samplers=None, energies=(Component("well", well_energy),)), name="p"
    )
    assert [c.qualified_name for c in bare_host.components()] == ["p:well"]


# -- construction --------------------------------------------------------------------------


def test_create_from_a_config_dict_with_kwargs_overriding_the_config(toy_host):
    config = {"name": "rw", "step_size": 0.1, "n_steps": 3}
    assert toy_host.create("sampler", config) == {"made": "rw", "step_size": 0.1, "n_steps": 3}
    assert toy_host.create("sampler", config, step_size=0.9)["step_size"] == 0.9
    assert config == {"name": "rw", "step_size": 0.1, "n_steps": 3}  # not mutated
    # a "kind" key in the config is allowed (configs written by ebmflow.save carry it)
    assert toy_host.create("sampler", {"kind": "sampler", "name": "toy:rw"})["made"] == "rw"


@pytest.mark.parametrize("config", [{"step_size": 0.1}, 42, ["rw"]])
def test_config_without_a_name_is_a_config_error(toy_host, config):
    with pytest.raises(ebmflow.ConfigError):
        toy_host.create("sampler", config)


def test_component_argument_error_lists_accepted_arguments_and_suggests_a_close_match(
    toy_host,
):
    with pytest.raises(ebmflow.ComponentArgumentError) as caught:
        toy_host.create("sampler", "rw", step_sise=0.2)
    message = str(caught.value)
    assert "'toy:rw'" in message
    assert "Accepted arguments: step_size=0.5, n_steps=10" in message
    assert "did you mean 'step_size' instead of 'step_sise'?" in message
    assert isinstance(caught.value, TypeError)


def test_missing_required_argument_is_a_component_argument_error(toy_host):
    with pytest.raises(ebmflow.ComponentArgumentError, match="Accepted arguments: energies"):
        toy_host.create("energy", "sum")


def test_nested_configs_are_built_recursively(toy_host):
    built = toy_host.create(
        "objective",
        {
            "name": "obj",
            "sampler": {"name": "rw", "step_size": 0.2},
            "energies": [{"name": "well"}, {"name": "toy:well", "a": 2.0}],
            "base_energy": {"name": "sum", "energies": [{"name": "well", "a": 3.0}]},
            "helper": {"kind": "sampler", "name": "other"},
            "data": {"name": "left-alone", "size": 3},  # "data" names no kind: a plain dict
        },
    )
    assert built["sampler"] == {"made": "rw", "step_size": 0.2, "n_steps": 10}
    assert built["energies"] == [{"made": "well", "a": 1.0}, {"made": "well", "a": 2.0}]
    assert built["base_energy"] == {"made": "sum", "energies": [{"made": "well", "a": 3.0}]}
    assert built["helper"] == {"made": "other"}
    assert built["data"] == {"name": "left-alone", "size": 3}


def test_nested_config_given_as_kwarg_overrides_and_is_built(toy_host):
    built = toy_host.create(
        "objective", {"name": "obj", "sampler": {"name": "rw"}}, sampler={"name": "other"}
    )
    assert built["sampler"] == {"made": "other"}


def test_nested_config_errors_name_the_nested_component(toy_host):
    with pytest.raises(ebmflow.ComponentArgumentError, match="'toy:rw'"):
        toy_host.create("objective", "obj", sampler={"name": "rw", "stepsize": 1})
    with pytest.raises(ebmflow.UnknownComponentError, match="unknown energy 'wel'"):
        toy_host.create("objective", "obj", energies=[{"name": "wel"}])


@pytest.fixture
def lazy_module(tmp_path, monkeypatch):
    """The name of an importable module (on sys.path, not yet imported) defining ``make``."""
    name = f"ebmflow_test_lazy_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(
        "def make(x=1):\n    return ('lazy', x)\n\nnot_callable = 3\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_lazy_factory_is_not_imported_until_create(bare_host, make_plugin, lazy_module):
    bare_host.register(make_plugin(samplers=[Component("lazy", f"{lazy_module}:make")]), name="p")
    assert [c.name for c in bare_host.components()] == ["lazy"]
    component = bare_host.get("sampler", "lazy")
    assert lazy_module not in sys.modules
    assert bare_host.create("sampler", "lazy", x=2) == ("lazy", 2)
    assert lazy_module in sys.modules
    assert component.load() is sys.modules[lazy_module].make


@pytest.mark.parametrize(
    ("factory", "expected"),
    [
        ("ebmflow_no_such_module_xyz:make", "ModuleNotFoundError"),
        ("{module}:missing_attr", "AttributeError"),
        ("{module}:not_callable", "is a int, not a callable"),
    ],
)
def test_unimportable_lazy_factory_is_a_plugin_error_naming_the_component(
    bare_host, make_plugin, lazy_module, factory, expected
):
    factory = factory.format(module=lazy_module)
    bare_host.register(make_plugin(samplers=[Component("ghost", factory)]), name="p")
    with pytest.raises(ebmflow.PluginError) as caught:
        bare_host.create("sampler", "ghost")
    assert "sampler 'p:ghost'" in str(caught.value)
    assert repr(factory) in str(caught.value)
    assert expected in str(caught.value)


# -- isolation -----------------------------------------------------------------------------


def test_plugin_whose_hook_raises_is_listed_failed_and_others_keep_working(toy_host, make_plugin):
    broken = make_plugin(
        energies=[Component("fine", well_energy)], samplers=RuntimeError("hook exploded")
    )
    with pytest.warns(ebmflow.PluginWarning, match="'broken'.*RuntimeError: hook exploded") as rec:
        info = toy_host.register(broken, name="broken")
    assert len(rec) == 1
    assert (info.status, info.error) == ("failed", "RuntimeError: hook exploded")
    status = {p.name: p.status for p in toy_host.plugins()}
    assert status == {"toy": "ok", "broken": "failed"}
    # all or nothing: the broken plugin's healthy hook contributes nothing either
    assert {c.plugin for c in toy_host.components()} == {"toy"}
    assert toy_host.create("sampler", "rw")["made"] == "rw"


MALFORMED = {
    "a dict instead of a list": ({"rw": rw_sampler}, "returned a dict; expected a list"),
    "a bare Component": (Component("rw", rw_sampler), "expected a list"),
    "a string": ("rw", "returned a str"),
    "a number": (3, "returned a int"),
    "a tuple record": ([("rw", rw_sampler)], "expected ebmflow.Component"),
    "a name with a space": ([Component("bad name", rw_sampler)], "invalid sampler name 'bad name'"),
    "a leading dash": ([Component("-rw", rw_sampler)], "invalid sampler name '-rw'"),
    "an upper-case name": ([Component("RW", rw_sampler)], "invalid sampler name 'RW'"),
    "a qualified name": ([Component("p:rw", rw_sampler)], "invalid sampler name 'p:rw'"),
    "a non-string name": ([Component(None, rw_sampler)], "invalid sampler name None"),
    "a non-callable factory": ([Component("rw", 42)], "factory of type int"),
    "a factory string without attr": ([Component("rw", "some.module")], "'module:attr'"),
    "duplicate names": (
        [Component("rw", rw_sampler), Component("rw", other_sampler)],
        "'rw' is registered twice",
    ),
    "a non-string summary": ([Component("rw", rw_sampler, summary=3)], "summary is not a string"),
}


@pytest.mark.parametrize(("records", "fragment"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_records_mark_the_plugin_failed_with_one_warning(
    toy_host, make_plugin, records, fragment
):
    with pytest.warns(ebmflow.PluginWarning) as rec:
        info = toy_host.register(make_plugin(samplers=records), name="bad")
    assert len(rec) == 1
    assert info.status == "failed"
    assert fragment in info.error
    assert "ebmflow_samplers" in info.error  # names the hook that returned it
    assert [c.plugin for c in toy_host.components()] == ["toy"] * 5


def test_a_failed_plugin_warns_once_not_on_every_lookup(toy_host, make_plugin):
    with pytest.warns(ebmflow.PluginWarning):
        toy_host.register(make_plugin(samplers=RuntimeError("x")), name="broken")
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        toy_host.components()
        toy_host.plugins()
        toy_host.create("sampler", "rw")
    assert later == []


def test_plugin_name_already_taken_is_recorded_failed_and_the_first_keeps_working(
    toy_host, make_plugin
):
    with pytest.warns(ebmflow.PluginWarning, match="already registered"):
        info = toy_host.register(make_plugin(samplers=[Component("x", rw_sampler)]), name="toy")
    assert info.status == "failed"
    assert toy_host.create("sampler", "toy:rw")["made"] == "rw"
    with pytest.raises(ebmflow.UnknownComponentError):
        toy_host.get("sampler", "x")


def test_invalid_plugin_name_is_recorded_failed(bare_host, make_plugin):
    with pytest.warns(ebmflow.PluginWarning, match="invalid plugin name"):
        info = bare_host.register(
            make_plugin(samplers=[Component("x", rw_sampler)]), name="has space"
        )
    assert info.status == "failed"
    assert bare_host.components() == []


def test_hookimpl_with_wrong_arguments_is_recorded_failed(bare_host):
    class Plugin:
        @ebmflow.hookimpl
        def ebmflow_samplers(self, unexpected):
            return []

    with pytest.warns(ebmflow.PluginWarning, match="unexpected"):
        info = bare_host.register(Plugin(), name="wrong-args")
    assert info.status == "failed"


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_strict_plugins_reraises_the_original_hook_error(make_plugin, value):
    host = ebmflow.PluginHost(
        builtins=False, entry_points=False, environ={"EBMFLOW_STRICT_PLUGINS": value}
    )
    with pytest.raises(KeyError, match="original"):
        host.register(make_plugin(samplers=KeyError("original")), name="broken")


def test_strict_plugins_raises_plugin_error_for_malformed_records_and_names(make_plugin):
    host = ebmflow.PluginHost(
        builtins=False, entry_points=False, environ={"EBMFLOW_STRICT_PLUGINS": "1"}
    )
    with pytest.raises(ebmflow.PluginError, match="invalid sampler name 'Bad Name'"):
        host.register(make_plugin(samplers=[Component("Bad Name", rw_sampler)]), name="p")
    with pytest.raises(ebmflow.PluginError, match="invalid plugin name"):
        host.register(make_plugin(), name="bad name")


def test_strict_plugins_off_values_only_warn(make_plugin):
    host = ebmflow.PluginHost(
        builtins=False, entry_points=False, environ={"EBMFLOW_STRICT_PLUGINS": "0"}
    )
    with pytest.warns(ebmflow.PluginWarning):
        host.register(make_plugin(samplers=KeyError("original")), name="broken")


# -- laziness of `import ebmflow` ----------------------------------------------------------


def test_import_ebmflow_loads_no_plugin_no_torch_and_no_entry_points(fake_site):
    fake_site.add(
        "fake-marker",
        {"marker": "fake_marker_plugin"},
        {
            "fake_marker_plugin.py": """
        import ebmflow

        @ebmflow.hookimpl
        def ebmflow_samplers():
            return [ebmflow.Component("marker-sampler", "fake_marker_plugin:make")]

        def make():
            return "made"
    """
        },
    )
    out = fake_site.python("""
        import json, sys
        import ebmflow

        def loaded():
            return {
                "plugin": "fake_marker_plugin" in sys.modules,
                "builtins": "ebmflow.builtins" in sys.modules,
                "torch": "torch" in sys.modules,
                "host": ebmflow.registry._default_host is not None,
            }

        before = loaded()
        names = [c.qualified_name for c in ebmflow.components("sampler")]
        print(json.dumps({"before": before, "after": loaded(), "names": names}))
    """)
    assert out.returncode == 0, out.stderr
    report = __import__("json").loads(out.stdout)
    assert report["before"] == {"plugin": False, "builtins": False, "torch": False, "host": False}
    # the plugin is there to be found: the first lookup loads it (and still no torch)
    assert report["after"] == {"plugin": True, "builtins": True, "torch": False, "host": True}
    assert "marker:marker-sampler" in report["names"]


# -- names (property) ----------------------------------------------------------------------

_settings = settings(
    max_examples=75,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_settings
@given(name=st.from_regex(NAME_RE, fullmatch=True))
def test_names_matching_the_pattern_are_accepted(make_plugin, name):
    host = ebmflow.PluginHost(builtins=False, entry_points=False)
    info = host.register(make_plugin(samplers=[Component(name, rw_sampler)]), name="p")
    assert info.status == "ok"
    assert host.get("sampler", name) is host.get("sampler", f"p:{name}")


@st.composite
def _near_miss_names(draw):
    """A valid name with one character that breaks it: anywhere, or '-'/'_' in front."""
    name = draw(st.from_regex(NAME_RE, fullmatch=True))
    if draw(st.booleans()):
        return draw(st.sampled_from("-_")) + name
    position = draw(st.integers(0, len(name)))
    bad = draw(st.sampled_from(list("AZ .:/\\\t\né+*!")))
    return name[:position] + bad + name[position:]


_not_names = st.one_of(st.just(""), _near_miss_names(), st.text(max_size=12)).filter(
    lambda s: not NAME_RE.fullmatch(s)
)


@_settings
@given(name=_not_names)
def test_names_not_matching_the_pattern_are_rejected_as_malformed(make_plugin, name):
    host = ebmflow.PluginHost(builtins=False, entry_points=False)
    with pytest.warns(ebmflow.PluginWarning, match="invalid sampler name"):
        info = host.register(make_plugin(samplers=[Component(name, rw_sampler)]), name="p")
    assert info.status == "failed"
    assert host.components() == []
