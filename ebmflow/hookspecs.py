"""The hooks a plugin implements, and the markers to implement them with.

A plugin is any module or object whose functions carry :data:`hookimpl`. Each component
hook returns a list of :class:`ebmflow.Component` records; it is called once per host, when
the first component is looked up. ``factory`` in a record may be a ``"module:attr"``
string, so that implementing these hooks imports nothing heavy.

Example::

    import ebmflow

    @ebmflow.hookimpl
    def ebmflow_samplers():
        return [ebmflow.Component("my-sampler", "my_pkg.sampler:MySampler", "what it does")]
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "ebmflow"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def ebmflow_energies():
    """Energies: ``nn.Module`` subclasses of ``ebmflow.Energy`` (``E(x, sigma) -> (B,)``)."""


@hookspec
def ebmflow_objectives():
    """Objectives: ``ebmflow.Objective`` subclasses (``forward(energy, batch)``)."""


@hookspec
def ebmflow_samplers():
    """Samplers: ``ebmflow.Sampler`` subclasses (``init`` / ``step`` / ``run``)."""


@hookspec
def ebmflow_datasets():
    """Datasets: factories returning an ``ebmflow`` dataset (``sample``, optional ``log_prob``)."""


@hookspec
def ebmflow_noise_schedules():
    """Noise schedules: factories returning decreasing VE noise levels ``sigma``."""


@hookspec
def ebmflow_converters():
    """Converters: callables turning a foreign checkpoint into an ebmflow component."""


@hookspec
def ebmflow_schedulers():
    """Schedulers for other frameworks' pipelines (e.g. a diffusers scheduler)."""


@hookspec
def ebmflow_log_z_estimators():
    """log Z estimators: functions ``f(energy, **options)`` returning a result with ``log_z``
    (and ``stderr`` where it is estimated), called by ``ebmflow.evaluate.log_z``."""


@hookspec
def ebmflow_evaluators():
    """Evaluators: reports that ``ebmflow evaluate`` gives, instead of the NLL, for the
    energies an evaluator claims (e.g. ebmflow-jem's classification report).

    The factory takes no arguments and returns an object with ``claims(energy) -> bool``,
    ``evaluate(energy, request) -> dict`` (a JSON-friendly report; ``request`` is an
    :class:`ebmflow.commands.evaluate.EvaluationRequest`) and ``format(report) -> str``
    (the text output). The first evaluator, by name, that claims the energy reports on it;
    ``ebmflow evaluate --nll`` skips them all.
    """


@hookspec
def ebmflow_commands(subparsers):
    """Add sub-commands to the ``ebmflow`` CLI.

    ``subparsers`` is the ``argparse`` sub-parser action; call ``subparsers.add_parser(...)``
    and ``set_defaults(func=...)``, where ``func(args) -> int`` runs the command and
    ``args.host`` is the :class:`ebmflow.PluginHost` the CLI runs with.
    """
