"""A component given a nested component by name builds it with the host that builds the
component, so an isolated ``PluginHost`` with in-process plugins is complete: what it
registers is found by the components it builds, and the process-wide host is not consulted.
"""

from __future__ import annotations

import threading

import pytest
import torch

import ebmflow


class HostOnlySampler(ebmflow.Langevin):
    """A sampler registered only with the test's isolated host."""


class HostOnlySchedule(ebmflow.NoiseSchedule):
    """Three fixed noise levels, registered only with the test's isolated host."""

    def sigmas(self, n: int) -> torch.Tensor:
        return torch.tensor([1.0, 0.5, 0.25], dtype=torch.float64)


class NestingObjective(ebmflow.Objective):
    """An objective that takes its sampler by name, through ``ebmflow.extend.build_sampler``."""

    def __init__(self, sampler="host-only-sampler") -> None:
        super().__init__()
        from ebmflow.extend import build_sampler

        self.sampler = build_sampler("nesting", sampler)

    def forward(self, energy, batch):  # pragma: no cover - only construction is tested
        raise NotImplementedError


class _InProcessPlugin:
    @ebmflow.hookimpl
    def ebmflow_samplers(self):
        return [ebmflow.Component("host-only-sampler", HostOnlySampler)]

    @ebmflow.hookimpl
    def ebmflow_noise_schedules(self):
        return [ebmflow.Component("host-only-schedule", HostOnlySchedule)]

    @ebmflow.hookimpl
    def ebmflow_objectives(self):
        return [ebmflow.Component("nesting", NestingObjective)]


@pytest.fixture
def host() -> ebmflow.PluginHost:
    host = ebmflow.PluginHost(entry_points=False)
    host.register(_InProcessPlugin(), name="in-process")
    return host


def test_build_sampler_uses_the_host_that_builds_the_component(host):
    objective = host.create("objective", "nesting")
    assert type(objective.sampler) is HostOnlySampler


def test_build_sampler_outside_the_isolated_host_does_not_see_its_plugins():
    with pytest.raises(ebmflow.UnknownComponentError, match="host-only-sampler"):
        NestingObjective()


def test_build_sampler_takes_an_explicit_host(host):
    from ebmflow.extend import build_sampler

    assert type(build_sampler("owner", "host-only-sampler", host=host)) is HostOnlySampler


def test_annealed_langevin_builds_its_named_schedule_with_the_callers_host(host):
    sampler = host.create("sampler", "annealed-langevin", noise_schedule="host-only-schedule")
    assert list(sampler.sigmas) == [1.0, 0.5, 0.25]
    with pytest.raises(ebmflow.UnknownComponentError, match="host-only-schedule"):
        ebmflow.create("sampler", "annealed-langevin", noise_schedule="host-only-schedule")


def test_ais_builds_its_named_sampler_with_the_callers_host(host):
    gaussian = ebmflow.GaussianEnergy(mean=[0.0, 0.0], std=1.0).double()
    result = ebmflow.evaluate.log_z(
        gaussian,
        "ais",
        host=host,
        sampler="host-only-sampler",
        n_chains=8,
        n_temps=4,
        generator=torch.Generator().manual_seed(0),
    )
    assert result.log_z == result.log_z  # finite enough to compare: the run completed
    with pytest.raises(ebmflow.UnknownComponentError, match="host-only-sampler"):
        ebmflow.evaluate.log_z(
            gaussian,
            "ais",
            sampler="host-only-sampler",
            n_chains=8,
            n_temps=4,
            generator=torch.Generator().manual_seed(0),
        )


def test_current_host_is_the_default_host_outside_construction(host):
    assert ebmflow.current_host() is ebmflow.default_host()
    host.create("objective", "nesting")
    assert ebmflow.current_host() is ebmflow.default_host()  # reset after the build


def test_current_host_is_the_building_host_even_when_the_build_fails(host):
    with pytest.raises(ebmflow.UnknownComponentError):
        host.create("objective", "nesting", sampler="no-such-sampler")
    assert ebmflow.current_host() is ebmflow.default_host()


def test_current_host_is_per_thread(host):
    seen = {}

    class Probe(ebmflow.Objective):
        def __init__(self) -> None:
            super().__init__()
            other = threading.Thread(target=lambda: seen.update(other=ebmflow.current_host()))
            other.start()
            other.join()
            seen["self"] = ebmflow.current_host()

        def forward(self, energy, batch):  # pragma: no cover
            raise NotImplementedError

    class ProbePlugin:
        @ebmflow.hookimpl
        def ebmflow_objectives(self):
            return [ebmflow.Component("probe", Probe)]

    host.register(ProbePlugin(), name="probe")
    host.create("objective", "probe")
    assert seen["self"] is host
    assert seen["other"] is ebmflow.default_host()
