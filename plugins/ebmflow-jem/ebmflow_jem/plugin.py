"""Hook implementations of ebmflow-jem: the objective ``jem``, the classifier energies, the
evaluator ``classification`` (what ``ebmflow evaluate`` reports for a classifier energy) and
the ``ebmflow jem-sample`` command.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``
(no torch); ``ebmflow.create`` imports a component's module on first use.
"""

from __future__ import annotations

import ebmflow


@ebmflow.hookimpl
def ebmflow_objectives():
    return [
        ebmflow.Component(
            "jem",
            "ebmflow_jem.objective:JEM",
            "JEM (Grathwohl et al. 2020): cross-entropy for p(y|x) + SGLD with a replay "
            "buffer for p(x), on a classifier energy",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_energies():
    return [
        ebmflow.Component(
            "classifier",
            "ebmflow_jem.classifier:ClassifierEnergy",
            "any classifier network f as an energy: E(x) = -logsumexp f(x), E(x, y) = -f(x)[y]",
        ),
        ebmflow.Component(
            "classifier-convnet",
            "ebmflow_jem.classifier:ConvClassifierEnergy",
            "a small convolutional classifier for images, as a JEM energy",
        ),
        ebmflow.Component(
            "classifier-mlp",
            "ebmflow_jem.classifier:MLPClassifierEnergy",
            "an MLP classifier for vectors, as a JEM energy",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_evaluators():
    return [
        ebmflow.Component(
            "classification",
            "ebmflow_jem.evaluator:ClassificationEvaluator",
            "accuracy, calibration (ECE) and OOD AUROC of a classifier energy on the "
            "held-out split, for ebmflow evaluate",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_commands(subparsers):
    from ebmflow_jem.command import add_jem_sample

    add_jem_sample(subparsers)
