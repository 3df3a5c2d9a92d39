"""Hook implementations of ebmflow-discrete: one record per component.

Factories are ``"module:attr"`` strings, so loading the plugin imports only ``ebmflow``
(no torch); ``ebmflow.create`` imports a component's module on first use.
"""

from __future__ import annotations

import ebmflow

_PKG = "ebmflow_discrete"


@ebmflow.hookimpl
def ebmflow_samplers():
    return [
        ebmflow.Component(
            "gibbs",
            f"{_PKG}.gibbs:Gibbs",
            "single-site Gibbs over binary or one-hot states, random or systematic scan",
        ),
        ebmflow.Component(
            "gwg",
            f"{_PKG}.gwg:GibbsWithGradients",
            "Gibbs-with-Gradients (Grathwohl et al. 2021): gradient-informed single-site "
            "proposals with an MH test",
        ),
        ebmflow.Component(
            "dmala",
            f"{_PKG}.dmala:DiscreteLangevin",
            "discrete Langevin (Zhang et al. 2022): DMALA, or DULA with adjust=false",
        ),
        ebmflow.Component(
            "block-gibbs",
            f"{_PKG}.block_gibbs:BlockGibbs",
            "block Gibbs for energies with block conditionals (the RBM's v → h → v)",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_energies():
    return [
        ebmflow.Component(
            "ising", f"{_PKG}.ising:IsingEnergy", "Ising model on a square lattice, binary states"
        ),
        ebmflow.Component(
            "potts", f"{_PKG}.potts:PottsEnergy", "q-state Potts model, one-hot states"
        ),
        ebmflow.Component(
            "rbm", f"{_PKG}.rbm:BernoulliRBM", "Bernoulli RBM, free energy of the visible units"
        ),
        ebmflow.Component(
            "binary-mlp", f"{_PKG}.binary_mlp:BinaryMLPEnergy", "MLP energy over binary vectors"
        ),
    ]


@ebmflow.hookimpl
def ebmflow_objectives():
    return [
        ebmflow.Component(
            "pseudo-likelihood",
            f"{_PKG}.pseudo_likelihood:PseudoLikelihood",
            "pseudo-likelihood (Besag 1975) for binary and categorical energies",
        ),
        ebmflow.Component(
            "ratio-matching",
            f"{_PKG}.ratio_matching:RatioMatching",
            "ratio matching (Hyvärinen 2007) for binary energies",
        ),
    ]


@ebmflow.hookimpl
def ebmflow_datasets():
    return [
        ebmflow.Component(
            "ising",
            f"{_PKG}.dataset:IsingSamples",
            "exact samples of a small Ising lattice (side ≤ 4) by enumeration",
        ),
    ]
