"""Helpers for component and plugin authors: the building blocks the built-in components use.

A plugin imports ``ebmflow`` (the user-facing API), this module, and in its tests
``ebmflow.testing`` — nothing else of the core, so that the core's modules can be moved and
split without breaking plugins (import-linter checks it, see ``.importlinter``). Everything
here is re-exported from the module that owns it; the most common helpers are also at the
top level (``ebmflow.check_finite``, ...).

Samplers
    :func:`check_finite` raises :class:`~ebmflow.SamplerDivergedError` for non-finite chains;
    :func:`gaussian_like` draws noise from a generator; :func:`per_row` shapes one value per
    chain to act on a batch; :func:`metropolis_accept`, :func:`select`, :func:`sum_squares`
    and :func:`row_dot` are the Metropolis–Hastings pieces; :func:`build_sampler` builds the
    sampler a component was given (object, name or config) with the caller's host;
    ``Sampler.check_compatible`` checks an energy and a start before ``init``;
    :class:`Warmup` is the step-size (dual averaging) and diagonal-mass-matrix warm-up
    that ``mala``, ``hmc`` and ``nuts`` share, with :func:`mass_windows` (Stan's windows)
    and :func:`check_target_accept`; :func:`run_chains` takes k steps of any sampler from
    a start and returns the chains at the target with their mean acceptance
    (:class:`Chains`), as objectives drawing negative samples need them.
Nested components
    :func:`current_host` is the host to build a component given by name or config with
    (``current_host().create(kind, spec)``): the host building the component whose
    constructor is running, so isolated hosts with in-process plugins work.
Energies
    :data:`EVENT_SPACES` lists the values of ``Energy.event_space`` (``"continuous"``,
    ``"binary"``, ``"categorical"``) and of a sampler's ``event_spaces``;
    :func:`score_seed` is the backward seed that turns ``autograd.grad`` of energies into
    the score; :data:`ACTIVATIONS` / :func:`make_activation`, :func:`check_widths`,
    :class:`SigmaEmbedding` / :func:`check_sigma_embedding` and :func:`resolve_sigma` build
    networks that treat widths, activations and the noise level like the built-in ones.
Evaluation
    :func:`evaluation_dtype_device`, :func:`resolve_event_shape`, :func:`base_tensor` and
    :func:`check_has_energy` give a log Z estimator the argument rules of ``ais_log_z``.
Validation and files
    :func:`check_positive`, :func:`check_positive_int`, :func:`check_interval` word bad
    arguments like every other component; :func:`open_regular_file` /
    :func:`read_regular_file` read a file from an untrusted folder safely;
    :class:`AllocationBudget` bounds what building a network from an untrusted config may
    allocate, in proportion to the weight files that come with it (as ``ebmflow.load``
    does).
Figures
    :func:`require_matplotlib` returns ``matplotlib.pyplot`` (Agg) or an error saying how to
    install it; :func:`matplotlib_available` says whether figures can be made.
"""

from __future__ import annotations

from ebmflow.checkpoint.budget import AllocationBudget
from ebmflow.energies import (
    ACTIVATIONS,
    SIGMA_EMBEDDINGS,
    SigmaEmbedding,
    check_sigma_embedding,
    check_widths,
    make_activation,
    resolve_sigma,
)
from ebmflow.energy import EVENT_SPACES, score_seed
from ebmflow.evaluate.arguments import (
    base_tensor,
    check_has_energy,
    evaluation_dtype_device,
    resolve_event_shape,
)
from ebmflow.files import open_regular_file, read_regular_file
from ebmflow.plotting import matplotlib_available, require_matplotlib
from ebmflow.registry import current_host
from ebmflow.samplers.adaptation import Warmup, check_target_accept, mass_windows
from ebmflow.samplers.base import (
    SMALL_EVENT,
    build_sampler,
    check_finite,
    gaussian_like,
    per_row,
)
from ebmflow.samplers.chains import Chains, run_chains
from ebmflow.samplers.metropolis import metropolis_accept, row_dot, select, sum_squares
from ebmflow.validation import check_interval, check_positive, check_positive_int

__all__ = [
    "ACTIVATIONS",
    "EVENT_SPACES",
    "SIGMA_EMBEDDINGS",
    "SMALL_EVENT",
    "AllocationBudget",
    "Chains",
    "SigmaEmbedding",
    "Warmup",
    "base_tensor",
    "build_sampler",
    "check_finite",
    "check_has_energy",
    "check_interval",
    "check_positive",
    "check_positive_int",
    "check_sigma_embedding",
    "check_target_accept",
    "check_widths",
    "current_host",
    "evaluation_dtype_device",
    "gaussian_like",
    "make_activation",
    "mass_windows",
    "matplotlib_available",
    "metropolis_accept",
    "open_regular_file",
    "per_row",
    "read_regular_file",
    "require_matplotlib",
    "resolve_event_shape",
    "resolve_sigma",
    "row_dot",
    "run_chains",
    "score_seed",
    "select",
    "sum_squares",
]
