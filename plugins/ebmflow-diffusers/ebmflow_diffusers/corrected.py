"""An MCMC corrector on any diffusers scheduler: :func:`with_corrector` and :func:`add_corrector`.

``with_corrector(DDIMScheduler)`` is a subclass of diffusers' own class whose arithmetic is
untouched: with ``corrector_steps=0`` (the default) it *is* that scheduler, with eight more
config entries. With ``corrector_steps = k > 0``, each ``step`` call first runs k steps of a
registered ebmflow sampler (``langevin``, ``mala``, ``hmc``, ...) on the model's score at the
current level, in VE coordinates (:mod:`ebmflow_diffusers.sample_space`), then evaluates the
model once at the corrected sample and hands that output and sample to the base class's
``step``. The corrector therefore calls the model itself: :func:`add_corrector` gives it the
pipeline's network (or :meth:`CorrectorMixin.bind_model` any ``denoise(x, t)``).

Schedulers with several calls per level correct on the first only (Heun: its Euler call).
On UniPC the MCMC corrector takes the place of UniC at the levels it corrects: UniC rebuilds
the current sample from the previous one, which would discard the MCMC move.

Classes for the common schedulers are named here (``EBMDDIMScheduler`` ...) so that pipelines
holding them save and load; ``with_corrector`` makes one for any other scheduler class.
"""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from types import FrameType
from typing import Any, ClassVar

import torch
from diffusers import SchedulerMixin  # at module level: pipeline loading looks it up here
from torch import Tensor

import ebmflow
from ebmflow_diffusers import corrector as _corrector
from ebmflow_diffusers.sample_space import (
    PREDICTIONS,
    SPACES,
    Denoiser,
    LevelScore,
    level,
    space_of,
)
from ebmflow_diffusers.segment import RULES, quadrature_weights

#: the corrector's config entries and their defaults (as EBMScheduler names them).
CORRECTOR_DEFAULTS: dict[str, Any] = {
    "corrector": "langevin",
    "corrector_steps": 0,
    "corrector_args": None,
    "step_size_rule": "snr",
    "snr": 0.16,
    "step_size_scale": 1.0,
    "energy_rule": "trapezoid",
    "energy_points": 2,
}


def _check(name: str, values: dict[str, Any], space: str) -> None:
    def bad(message: str) -> ebmflow.ConfigError:
        return ebmflow.ConfigError(f"{name}: {message}")

    steps = values["corrector_steps"]
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise bad(f"corrector_steps must be an integer ≥ 0, got {steps!r}")
    if values["step_size_rule"] not in _corrector.STEP_SIZE_RULES:
        raise bad(
            f"step_size_rule must be one of {', '.join(map(repr, _corrector.STEP_SIZE_RULES))}, "
            f"got {values['step_size_rule']!r}"
        )
    if values["step_size_rule"] == "beta" and space == "edm":
        raise bad("step_size_rule 'beta' needs a DDPM training table, which EDM has not; use 'snr'")
    if values["energy_rule"] not in RULES:
        raise bad(
            f"energy_rule must be one of {', '.join(map(repr, RULES))}, "
            f"got {values['energy_rule']!r}"
        )
    try:
        quadrature_weights(values["energy_points"], values["energy_rule"])
    except ValueError as exc:
        raise bad(f"energy_points: {exc}") from None
    for key in ("snr", "step_size_scale"):
        value = values[key]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise bad(f"{key} must be a finite number ≥ 0, got {value!r}")
    args = values["corrector_args"]
    if args is not None and not isinstance(args, dict):
        raise bad(f"corrector_args must be a dict, got {type(args).__name__}")


def warn_if_replaced(scheduler: Any, frame: FrameType | None) -> None:
    """Warn when a pipeline's ``__init__`` reads the config of a scheduler whose corrector is
    on: stock pipelines read it only to build another scheduler from it (``DDIMPipeline``
    does, whatever it is given), and that one has no corrector."""
    if frame is None or frame.f_code.co_name != "__init__":
        return
    owner = frame.f_locals.get("self")
    from diffusers import DiffusionPipeline

    if isinstance(owner, DiffusionPipeline):
        warnings.warn(
            f"{type(owner).__name__}.__init__ rebuilds its scheduler from the config of the "
            f"{type(scheduler).__name__} it was given, so that scheduler's MCMC corrector will "
            f"not run; add the corrector after building the pipeline: "
            f"ebmflow_diffusers.add_corrector(pipe, corrector=..., corrector_steps=...)",
            UserWarning,
            stacklevel=3,
        )


class CorrectorMixin:
    """What :func:`with_corrector` adds to a diffusers scheduler class (see the module
    docstring). Config entries: ``corrector``, ``corrector_steps``, ``corrector_args``,
    ``step_size_rule``, ``snr``, ``step_size_scale``, ``energy_rule``, ``energy_points``,
    with EBMScheduler's meanings."""

    corrector_base: ClassVar[type]
    sample_space: ClassVar[str]
    _denoise: Denoiser | None = None
    _corrector_generator: torch.Generator | None = None
    #: the model's score at the level being corrected, moved from level to level
    _level_score: LevelScore | None = None
    #: (step size, acceptance rate or None) of each corrected level since ``set_timesteps``.
    corrector_log: list[tuple[float, float | None]]

    def _corrector_init(self, *args: Any, **kwargs: Any) -> None:
        own = {key: kwargs.pop(key) for key in list(kwargs) if key in CORRECTOR_DEFAULTS}
        self.corrector_base.__init__(self, *args, **kwargs)  # type: ignore[misc]
        values = {**CORRECTOR_DEFAULTS, **own}
        _check(type(self).__name__, values, self.sample_space)
        kind = getattr(self.config, "prediction_type", "epsilon")
        if values["corrector_steps"] and self.sample_space != "edm" and kind not in PREDICTIONS:
            raise ebmflow.ConfigError(
                f"{type(self).__name__}: the corrector needs prediction_type "
                f"{', '.join(map(repr, PREDICTIONS))}, got {kind!r}"
            )
        self._make_corrector = _corrector.SamplerMaker(
            values["corrector"], values["corrector_args"] or {}
        )
        self.register_to_config(**values)  # type: ignore[attr-defined]
        if values["corrector_steps"]:  # so that bad sampler arguments fail here
            self.make_corrector(1e-3)
        self.corrector_log = []

    @property
    def config(self) -> Any:
        config = self._internal_dict  # type: ignore[attr-defined]
        if config.get("corrector_steps"):
            caller = sys._getframe(1)  # read at every config access of every step: kept cheap
            if caller.f_code.co_name == "__init__":
                warn_if_replaced(self, caller)
        return config

    def bind_model(
        self, model: Any = None, *, denoise: Denoiser | None = None, generator=None
    ) -> None:
        """Give the corrector the model to call: a diffusers network called as
        ``model(x, t).sample`` (an unconditional one: ``UNet2DModel``), or ``denoise(x, t)``
        returning the output a pipeline would pass to ``step`` (conditioning and guidance
        included); ``generator``: the corrector's noise where ``step`` gets none."""
        if denoise is None:
            if model is None:
                raise ebmflow.ComponentArgumentError(
                    f"{type(self).__name__}.bind_model: pass a model or denoise=callable"
                )
            params = inspect.signature(model.forward).parameters.values()
            required = [
                p.name
                for p in params
                if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
            ]
            if len(required) > 2:
                raise ebmflow.ComponentArgumentError(
                    f"{type(self).__name__}.bind_model: {type(model).__name__} needs "
                    f"{', '.join(required[2:])} besides the sample and timestep, which the "
                    f"scheduler cannot know; pass denoise=lambda x, t: <the output the pipeline "
                    f"passes to step>. A model is called as model(x, t).sample (UNet2DModel)"
                )

            def denoise(x: Tensor, t: Any) -> Tensor:
                return model(x, t).sample

        self._denoise = denoise
        self._corrector_generator = generator

    def make_corrector(self, step_size: float) -> ebmflow.Sampler:
        """The corrector sampler with step size η (through the ebmflow registry)."""
        return self._make_corrector(step_size)

    def _corrected_set_timesteps(self, *args: Any, **kwargs: Any) -> Any:
        self.corrector_log = []
        return self.corrector_base.set_timesteps(self, *args, **kwargs)  # type: ignore[attr-defined]

    def _step_size(self, sigma: float, score: Tensor) -> float:
        config = self._internal_dict  # type: ignore[attr-defined]
        if config["step_size_rule"] == "snr":
            return _corrector.snr_step_size(score, config["snr"])
        # σ² − σ′² over one training step at the nearest training level: c β_t / ᾱ_t
        ac = self.alphas_cumprod.double()  # type: ignore[attr-defined]
        sigmas = ((1 - ac) / ac).sqrt()
        t = int((sigmas - sigma).abs().argmin())
        beta = 1.0 - float(ac[t] / ac[t - 1]) if t > 0 else float(1.0 - ac[0])
        return config["step_size_scale"] * beta / float(ac[t])

    def _wants_correction(self) -> bool:
        return bool(self._internal_dict["corrector_steps"]) and bool(  # type: ignore[attr-defined]
            getattr(self, "state_in_first_order", True)
        )

    def correct(
        self, model_output: Tensor, timestep: Any, sample: Tensor, generator=None
    ) -> tuple[Tensor, Tensor]:
        """The corrected (model output, sample) at ``timestep``'s level: ``corrector_steps``
        sampler steps from ``sample``, then the model at the result."""
        name = type(self).__name__
        if self._denoise is None:
            raise ebmflow.ConfigError(
                f"{name}: corrector_steps = {self._internal_dict['corrector_steps']} but no "  # type: ignore[attr-defined]
                f"model to call; use ebmflow_diffusers.add_corrector(pipe, ...) or "
                f"scheduler.bind_model(model)"
            )
        generator = generator if generator is not None else self._corrector_generator
        if generator is None:
            raise ebmflow.ConfigError(
                f"{name}: the corrector draws noise but this step call got no generator; "
                f"pass generator= to add_corrector or bind_model (no global RNG is used)"
            )
        sigma, scale = level(self, timestep, self.sample_space)
        if not 0 < sigma < math.inf:
            return model_output, sample
        energy = self._level_score
        if energy is None or energy.denoise is not self._denoise:
            energy = LevelScore(self, self._denoise, timestep, sigma, scale, self.sample_space)
            self._level_score = energy
        else:
            energy.move_to(timestep, sigma, scale)
        x_ve = sample / scale
        energy.remember(x_ve, model_output)
        eta = self._step_size(sigma, energy.score(x_ve))
        config = self._internal_dict  # type: ignore[attr-defined]
        x_new, rate = _corrector.run_corrector(
            self.make_corrector(eta),
            energy,
            x_ve,
            sigma,
            config["corrector_steps"],
            generator,
            n_points=config["energy_points"],
            rule=config["energy_rule"],
        )
        self.corrector_log.append((eta, rate))
        sample = (x_new * scale).to(sample.dtype)
        return energy.output(x_new).to(model_output.dtype), sample

    def _corrected_step(self, *args: Any, **kwargs: Any) -> Any:
        base_step = self.corrector_base.step  # type: ignore[attr-defined]
        if not self._wants_correction():
            return base_step(self, *args, **kwargs)
        if hasattr(self, "last_sample") and hasattr(self, "multistep_uni_c_bh_update"):
            self.last_sample = None  # UniC would rebuild the sample and undo the MCMC move
        if len(args) == 3:  # how pipelines call it: (model_output, timestep, sample, **kw)
            output, timestep, sample = args
            output, sample = self.correct(output, timestep, sample, kwargs.get("generator"))
            return base_step(self, output, timestep, sample, **kwargs)
        bound = _corrector.cached_signature(base_step).bind(self, *args, **kwargs)
        arguments = bound.arguments
        output, sample = self.correct(
            arguments["model_output"],
            arguments["timestep"],
            arguments["sample"],
            arguments.get("generator"),
        )
        arguments["model_output"], arguments["sample"] = output, sample
        return base_step(*bound.args, **bound.kwargs)


_CLASSES: dict[Any, Any] = {}


def with_corrector(scheduler_class: Any, space: str | None = None) -> Any:
    """The corrector-enabled subclass of a diffusers scheduler class (made once per class).

    Args:
        scheduler_class: a diffusers scheduler class (DDPM, DDIM, Euler, Euler ancestral,
            Heun, DPM-Solver, UniPC, EDM Euler, ...; see :data:`~ebmflow_diffusers.
            sample_space.SPACES`), or one already corrector-enabled (returned as it is).
        space: ``"vp"``, ``"ve"`` or ``"edm"`` for a class not in that table.
    """
    if isinstance(scheduler_class, type) and issubclass(scheduler_class, CorrectorMixin):
        return scheduler_class
    if not (isinstance(scheduler_class, type) and issubclass(scheduler_class, SchedulerMixin)):
        raise ebmflow.ComponentArgumentError(
            f"with_corrector needs a diffusers scheduler class, got {scheduler_class!r}"
        )
    if scheduler_class in _CLASSES:
        return _CLASSES[scheduler_class]
    space = space or space_of(scheduler_class)
    if space not in ("vp", "ve", "edm"):
        raise ebmflow.ComponentArgumentError(
            f"with_corrector: the sample space of {scheduler_class.__name__} is not known; "
            f"supported: {', '.join(SPACES)} (or pass space='vp', 've' or 'edm')"
        )
    base: Any = scheduler_class  # a SchedulerMixin subclass, typed loosely for its methods
    base_init = inspect.signature(base.__init__)
    params = [p for p in base_init.parameters.values() if p.kind != p.VAR_KEYWORD]
    extra = [
        inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=value)
        for key, value in CORRECTOR_DEFAULTS.items()
    ]
    keyword = [p for p in base_init.parameters.values() if p.kind == p.VAR_KEYWORD]
    params = [p.replace(kind=p.KEYWORD_ONLY) if p.kind == p.VAR_POSITIONAL else p for p in params]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._corrector_init(*args, **kwargs)

    def step(self, *args: Any, **kwargs: Any) -> Any:
        return self._corrected_step(*args, **kwargs)

    def set_timesteps(self, *args: Any, **kwargs: Any) -> Any:
        return self._corrected_set_timesteps(*args, **kwargs)

    for method, original in (
        (step, base.step),
        (set_timesteps, base.set_timesteps),
    ):
        method.__signature__ = inspect.signature(original)  # type: ignore[attr-defined]
        method.__doc__ = original.__doc__
    __init__.__signature__ = base_init.replace(parameters=params + extra + keyword)  # type: ignore[attr-defined]
    name = f"EBM{scheduler_class.__name__}"
    klass = type(
        name,
        (CorrectorMixin, scheduler_class),
        {
            "__init__": __init__,
            "step": step,
            "set_timesteps": set_timesteps,
            "__module__": __name__,
            "__qualname__": name,
            "__doc__": f"{scheduler_class.__name__} with an MCMC corrector "
            f"(:mod:`ebmflow_diffusers.corrected`); with corrector_steps=0 it is "
            f"{scheduler_class.__name__}.",
            "corrector_base": scheduler_class,
            # diffusers looks compatibles up by name in its own namespace, which holds the
            # base class but not this one
            "_compatibles": [*base._compatibles, base.__name__],
            "sample_space": space,
        },
    )
    _CLASSES[scheduler_class] = klass
    return klass


def add_corrector(
    pipe: Any,
    corrector: str = "langevin",
    corrector_steps: int = 1,
    *,
    denoise: Denoiser | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Any:
    """Give a built pipeline's scheduler an MCMC corrector, in place, and return the pipeline.

    The pipeline's scheduler becomes ``with_corrector(type(pipe.scheduler))`` with the same
    config plus the corrector's (``options``: ``corrector_args``, ``step_size_rule``, ``snr``,
    ...), bound to the pipeline's ``unet`` (or ``denoise``). Done after the pipeline's
    ``__init__``, it survives a pipeline that rebuilds its scheduler there (``DDIMPipeline``).
    """
    scheduler = getattr(pipe, "scheduler", None)
    if scheduler is None:
        raise ebmflow.ComponentArgumentError(
            f"add_corrector: {type(pipe).__name__} has no scheduler; it needs a diffusers "
            f"pipeline with one"
        )
    klass: Any = with_corrector(type(scheduler))
    new = klass.from_config(
        dict(scheduler._internal_dict),
        corrector=corrector,
        corrector_steps=corrector_steps,
        **options,
    )
    model = denoise is None and (getattr(pipe, "unet", None) or getattr(pipe, "transformer", None))
    new.bind_model(model or None, denoise=denoise, generator=generator)
    pipe.register_modules(scheduler=new)
    return pipe


def _named() -> dict[str, type]:
    from diffusers import (
        DDIMScheduler,
        DDPMScheduler,
        DPMSolverMultistepScheduler,
        EDMEulerScheduler,
        EulerAncestralDiscreteScheduler,
        EulerDiscreteScheduler,
        HeunDiscreteScheduler,
        UniPCMultistepScheduler,
    )

    bases = (
        DDPMScheduler,
        DDIMScheduler,
        EulerDiscreteScheduler,
        EulerAncestralDiscreteScheduler,
        HeunDiscreteScheduler,
        DPMSolverMultistepScheduler,
        EDMEulerScheduler,
        UniPCMultistepScheduler,
    )
    return {f"EBM{base.__name__}": with_corrector(base) for base in bases}


_NAMED = _named()
EBMDDPMScheduler = _NAMED["EBMDDPMScheduler"]
EBMDDIMScheduler = _NAMED["EBMDDIMScheduler"]
EBMEulerDiscreteScheduler = _NAMED["EBMEulerDiscreteScheduler"]
EBMEulerAncestralDiscreteScheduler = _NAMED["EBMEulerAncestralDiscreteScheduler"]
EBMHeunDiscreteScheduler = _NAMED["EBMHeunDiscreteScheduler"]
EBMDPMSolverMultistepScheduler = _NAMED["EBMDPMSolverMultistepScheduler"]
EBMEDMEulerScheduler = _NAMED["EBMEDMEulerScheduler"]
EBMUniPCMultistepScheduler = _NAMED["EBMUniPCMultistepScheduler"]
