"""The stock diffusers scheduler behind :class:`~ebmflow_diffusers.EBMScheduler`'s VP predictor,
and the argument conventions EBMScheduler shares with it.

A VP predictor step is ``DDPMScheduler.step`` or ``DDIMScheduler.step`` itself, on a stock
scheduler built from the same config and holding the same timesteps: drop-in means diffusers'
numbers, and diffusers computes its coefficients in float32 from its float32 tables. The
same scheduler answers ``_get_variance`` and ``_threshold_sample``, which stock pipelines call.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

from diffusers import DDIMScheduler, DDPMScheduler

#: ``step``'s positional arguments after ``sample``, in each stock scheduler's order.
POSITIONAL = {
    "ddpm": ("generator", "return_dict"),
    "ddim": ("eta", "use_clipped_model_output", "generator", "variance_noise", "return_dict"),
}
#: the stock class whose config names a predictor, for ``from_config``.
PREDICTOR_OF_CLASS = {
    "DDIMScheduler": "ddim",
    "DDPMScheduler": "ddpm",
    "EBMDDIMScheduler": "ddim",
    "EBMDDPMScheduler": "ddpm",
}


def stock_class(predictor: str) -> Any:
    return DDIMScheduler if predictor == "ddim" else DDPMScheduler


def stock_scheduler(config: Mapping[str, Any], predictor: str, state: Any) -> Any:
    """A stock DDPM/DDIM scheduler with ``config``'s entries it knows, and the run state of
    ``state`` (``num_inference_steps``, the predictor timesteps, ``custom_timesteps``)."""
    klass: Any = stock_class(predictor)
    keys = set(inspect.signature(klass.__init__).parameters) - {"self"}
    stock = klass(**{key: value for key, value in config.items() if key in keys})
    if state.num_inference_steps is not None:
        stock.num_inference_steps = state.num_inference_steps
        stock.timesteps = state.predictor_timesteps
        stock.custom_timesteps = state.custom_timesteps
    return stock


def step_keywords(predictor: str, args: tuple, kwargs: dict[str, Any], where: str) -> dict:
    """``step``'s optional arguments as keywords, positional ones read in the stock
    scheduler's order (DDIM: ``eta`` first; DDPM: ``generator`` first)."""
    order = POSITIONAL[predictor]
    if len(args) > len(order):
        raise TypeError(
            f"{where}.step takes at most {3 + len(order)} positional arguments with the "
            f"{predictor!r} predictor (model_output, timestep, sample, {', '.join(order)}), "
            f"got {3 + len(args)}"
        )
    named = dict(zip(order, args))
    both = set(named) & set(kwargs)
    if both:
        raise TypeError(f"{where}.step got {', '.join(sorted(both))} both by position and name")
    return {**named, **kwargs}


def predictor_from_config(config: Any, kwargs: Mapping[str, Any]) -> str | None:
    """The predictor a stock config implies, unless the config or the call names one: by its
    ``_class_name`` where it has one (a loaded config), else by its keys (a live
    ``scheduler.config``): ``set_alpha_to_one`` without ``variance_type`` is DDIMScheduler's."""
    if not isinstance(config, Mapping) or "predictor" in kwargs or "predictor" in config:
        return None
    name = config.get("_class_name")
    if name is not None:
        return PREDICTOR_OF_CLASS.get(str(name))
    if "set_alpha_to_one" in config and "variance_type" not in config:
        return "ddim"
    return None
