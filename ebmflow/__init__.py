"""ebmflow: energy-based models with a unified diffusion view.

``import ebmflow`` is cheap: it loads the registry (pluggy) and nothing else. The modelling
API (energies, samplers, objectives, which need torch) is imported on first attribute
access, and plugins are loaded on the first component lookup.

This namespace is what users import. Plugin and component authors also have
:mod:`ebmflow.extend`, the helpers the built-in components share (checks, per-chain
shaping, score seeds, energy building blocks, evaluation arguments). A plugin imports
``ebmflow``, ``ebmflow.extend`` and (in its tests) ``ebmflow.testing``, nothing else of the
core; import-linter checks that (``.importlinter``).
"""

from __future__ import annotations

import importlib
from typing import Any

from ebmflow.errors import (
    AmbiguousComponentError,
    CheckpointError,
    ComponentArgumentError,
    ConfigError,
    EbmflowError,
    EnergyUnavailableError,
    NonFiniteLossError,
    PluginError,
    PluginWarning,
    SamplerDivergedError,
    TrainingDivergedError,
    UnknownComponentError,
    UnknownKindError,
)
from ebmflow.hookspecs import hookimpl
from ebmflow.lazy_exports import LazyExports
from ebmflow.registry import (
    Component,
    PluginHost,
    PluginInfo,
    components,
    create,
    current_host,
    default_host,
    plugins,
)

__version__ = "0.1.0"

# Public names that need torch, imported on first use: name -> "module:attr".
_LAZY: dict[str, str] = {
    # interfaces
    "Energy": "ebmflow.energy:Energy",
    "ScoreModel": "ebmflow.energy:ScoreModel",
    "broadcast_sigma": "ebmflow.energy:broadcast_sigma",
    "Sampler": "ebmflow.samplers.base:Sampler",
    "SamplerState": "ebmflow.samplers.base:SamplerState",
    "SampleResult": "ebmflow.samplers.base:SampleResult",
    "CompiledEnergy": "ebmflow.samplers.base:CompiledEnergy",
    "build_sampler": "ebmflow.samplers.base:build_sampler",
    "compile_energy": "ebmflow.samplers.base:compile_energy",
    "Objective": "ebmflow.objective:Objective",
    "ObjectiveOutput": "ebmflow.objective:ObjectiveOutput",
    "ReplayBuffer": "ebmflow.replay_buffer:ReplayBuffer",
    "Dataset": "ebmflow.datasets.base:Dataset",
    "NoiseSchedule": "ebmflow.noise_schedules.base:NoiseSchedule",
    "Configurable": "ebmflow.config:Configurable",
    "CompiledStep": "ebmflow.samplers.whole_step:CompiledStep",
    "compile_step": "ebmflow.samplers.whole_step:compile_step",
    # built-in components (also reachable through ebmflow.create)
    "MLPEnergy": "ebmflow.energies.mlp:MLPEnergy",
    "ConvNetEnergy": "ebmflow.energies.convnet:ConvNetEnergy",
    "GaussianEnergy": "ebmflow.energies.gaussian:GaussianEnergy",
    "GMMEnergy": "ebmflow.energies.gmm:GMMEnergy",
    "Langevin": "ebmflow.samplers.langevin:Langevin",
    "MALA": "ebmflow.samplers.mala:MALA",
    "HMC": "ebmflow.samplers.hmc:HMC",
    "AnnealedLangevin": "ebmflow.samplers.annealed_langevin:AnnealedLangevin",
    "Warmup": "ebmflow.samplers.adaptation:Warmup",
    # composition
    "Sum": "ebmflow.compose:Sum",
    "Scaled": "ebmflow.compose:Scaled",
    "Mixture": "ebmflow.compose:Mixture",
    "mixture": "ebmflow.compose:mixture",
    "condition": "ebmflow.compose:condition",
    "guidance": "ebmflow.compose:guidance",
    # inverse problems
    "posterior": "ebmflow.inverse.posterior:posterior",
    "Posterior": "ebmflow.inverse.posterior:Posterior",
    "GaussianMeasurement": "ebmflow.inverse.measurement:GaussianMeasurement",
    "AnnealedPosterior": "ebmflow.samplers.annealed_posterior:AnnealedPosterior",
    "DPS": "ebmflow.samplers.dps:DPS",
    # helpers for component authors (the whole kit, with these, is ebmflow.extend)
    "check_finite": "ebmflow.samplers.base:check_finite",
    "gaussian_like": "ebmflow.samplers.base:gaussian_like",
    "metropolis_accept": "ebmflow.samplers.metropolis:metropolis_accept",
    "select": "ebmflow.samplers.metropolis:select",
    "sum_squares": "ebmflow.samplers.metropolis:sum_squares",
    "check_positive": "ebmflow.validation:check_positive",
    "check_positive_int": "ebmflow.validation:check_positive_int",
    # reading files from an untrusted folder
    "open_regular_file": "ebmflow.files:open_regular_file",
    "read_regular_file": "ebmflow.files:read_regular_file",
    # checkpoints
    "save": "ebmflow.checkpoint:save",
    "load": "ebmflow.checkpoint:load",
    # training
    "Trainer": "ebmflow.trainer:Trainer",
    "Callback": "ebmflow.training.callbacks:Callback",
    "TensorBoardLogger": "ebmflow.training.tensorboard:TensorBoardLogger",
    # threads and devices
    "set_threads": "ebmflow.runtime:set_threads",
    "check_device": "ebmflow.runtime:check_device",
    # evaluation (a module: ebmflow.evaluate.grid_log_z, ...)
    "evaluate": "ebmflow.evaluate",
    # helpers for component and plugin authors (a module: ebmflow.extend.per_row, ...)
    "extend": "ebmflow.extend",
}

__all__ = [
    "AmbiguousComponentError",
    "CheckpointError",
    "Component",
    "ComponentArgumentError",
    "ConfigError",
    "EbmflowError",
    "EnergyUnavailableError",
    "PluginError",
    "PluginHost",
    "PluginInfo",
    "PluginWarning",
    "SamplerDivergedError",
    "NonFiniteLossError",
    "TrainingDivergedError",
    "UnknownComponentError",
    "UnknownKindError",
    "__version__",
    "components",
    "create",
    "current_host",
    "default_host",
    "hookimpl",
    "LazyExports",
    "plugins",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    try:
        module_name, _, attr = _LAZY[name].partition(":")
    except KeyError:
        raise AttributeError(f"module 'ebmflow' has no attribute {name!r}") from None
    value = importlib.import_module(module_name)
    if attr:
        value = getattr(value, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
