"""CD builds a sampler given by name with the host that builds the objective, so an
isolated ``PluginHost`` with an in-process sampler plugin is complete."""

from __future__ import annotations

import ebmflow_cd.plugin
import pytest

import ebmflow


class HostOnlyLangevin(ebmflow.Langevin):
    """A sampler registered only with the test's isolated host."""


class _InProcessSamplers:
    @ebmflow.hookimpl
    def ebmflow_samplers(self):
        return [ebmflow.Component("host-only-langevin", HostOnlyLangevin)]


@pytest.mark.parametrize("objective", ["cd", "pcd"])
def test_named_sampler_is_built_by_the_callers_host(objective):
    host = ebmflow.PluginHost(entry_points=False)
    host.register(ebmflow_cd.plugin, name="cd")
    host.register(_InProcessSamplers(), name="in-process")
    built = host.create("objective", objective, sampler="host-only-langevin")
    assert type(built.sampler) is HostOnlyLangevin
    with pytest.raises(ebmflow.UnknownComponentError, match="host-only-langevin"):
        ebmflow.create("objective", objective, sampler="host-only-langevin")
