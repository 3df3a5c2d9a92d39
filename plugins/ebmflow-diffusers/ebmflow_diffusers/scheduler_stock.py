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
from torch import Tensor

from ebmflow import ComponentArgumentError
from ebmflow_diffusers.scheduler_arguments import fail

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


def stock_scheduler(config: Mapping[str, Any], predictor: str) -> Any:
    """A stock DDPM/DDIM scheduler with the entries of ``config`` it knows."""
    klass: Any = stock_class(predictor)
    keys = set(inspect.signature(klass.__init__).parameters) - {"self"}
    return klass(**{key: value for key, value in config.items() if key in keys})


def sync_run_state(stock: Any, state: Any) -> Any:
    """``stock`` with the run state of ``state``: ``num_inference_steps``, the predictor
    timesteps and ``custom_timesteps`` (what the stock step reads besides its config)."""
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
        raise ComponentArgumentError(
            f"{where}.step takes at most {3 + len(order)} positional arguments with the "
            f"{predictor!r} predictor (model_output, timestep, sample, {', '.join(order)}), "
            f"got {3 + len(args)}"
        )
    named = dict(zip(order, args))
    both = set(named) & set(kwargs)
    if both:
        raise ComponentArgumentError(
            f"{where}.step got {', '.join(sorted(both))} both by position and name"
        )
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


class StockPredictor:
    """EBMScheduler's VP predictor and stock helpers, answered by the stock scheduler."""

    config: Any
    num_inference_steps: int | None
    _stock_cache: Any

    def _stock(self) -> Any:
        # built once (building one costs more than a step), given each run's timesteps
        if self._stock_cache is None:
            self._stock_cache = stock_scheduler(self.config, self.config.predictor)
        return sync_run_state(self._stock_cache, self)

    def _stock_step(
        self, output, timestep, sample, generator, eta, use_clipped_model_output, variance_noise
    ):
        """The VP predictor: DDPMScheduler's or DDIMScheduler's own step (see
        :mod:`ebmflow_diffusers.scheduler_stock`)."""
        stock = self._stock()
        if self.config.predictor == "ddim":
            if variance_noise is not None and generator is not None:
                raise fail("pass either generator or variance_noise, not both")
            out = stock.step(
                output,
                timestep,
                sample,
                eta=eta,
                use_clipped_model_output=use_clipped_model_output,
                generator=generator,
                variance_noise=variance_noise,
            )
        else:
            out = stock.step(output, timestep, sample, generator=generator)
        return out.prev_sample, out.pred_original_sample

    def _get_variance(self, *args: Any, **kwargs: Any) -> Any:
        """The stock scheduler's ``_get_variance`` (DDPM's or DDIM's, by the predictor), which
        stock pipelines call."""
        return self._stock()._get_variance(*args, **kwargs)

    def _threshold_sample(self, sample: Tensor) -> Tensor:
        """Dynamic thresholding of x̂₀ as the stock schedulers do it."""
        return self._stock()._threshold_sample(sample)
