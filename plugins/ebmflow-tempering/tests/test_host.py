"""Parallel tempering builds a local sampler given by name with the host that builds it, so
an isolated ``PluginHost`` with an in-process sampler plugin is complete."""

from __future__ import annotations

import ebmflow_tempering.plugin
import pytest
import torch

import ebmflow


class HostOnlyMALA(ebmflow.MALA):
    """A local move registered only with the test's isolated host."""


class _InProcessSamplers:
    @ebmflow.hookimpl
    def ebmflow_samplers(self):
        return [ebmflow.Component("host-only-mala", HostOnlyMALA)]


@pytest.fixture
def host() -> ebmflow.PluginHost:
    host = ebmflow.PluginHost(entry_points=False)
    host.register(ebmflow_tempering.plugin, name="tempering")
    host.register(_InProcessSamplers(), name="in-process")
    return host


def test_named_local_sampler_is_built_by_the_callers_host(host):
    sampler = host.create(
        "sampler",
        "parallel-tempering",
        n_replicas=3,
        local_sampler={"name": "host-only-mala", "step_size": 0.1},
    )
    assert type(sampler.local_sampler) is HostOnlyMALA
    energy = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0)
    result = sampler.run(energy, torch.zeros(4, 2), 5, generator=torch.Generator().manual_seed(0))
    assert result.samples.shape == (4, 2)


def test_named_local_sampler_is_unknown_to_the_default_host():
    with pytest.raises(ebmflow.UnknownComponentError, match="host-only-mala"):
        ebmflow.create(
            "sampler", "parallel-tempering", n_replicas=3, local_sampler="host-only-mala"
        )
