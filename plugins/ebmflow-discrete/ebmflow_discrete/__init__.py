"""ebmflow-discrete: energy-based models over binary and one-hot categorical states.

- samplers ``gibbs`` (:class:`Gibbs`), ``gwg`` (:class:`GibbsWithGradients`), ``dmala``
  (:class:`DiscreteLangevin`) and ``block-gibbs`` (:class:`BlockGibbs`);
- energies ``ising`` (:class:`IsingEnergy`), ``potts`` (:class:`PottsEnergy`), ``rbm``
  (:class:`BernoulliRBM`) and ``binary-mlp`` (:class:`BinaryMLPEnergy`);
- objectives ``pseudo-likelihood`` (:class:`PseudoLikelihood`) and ``ratio-matching``
  (:class:`RatioMatching`); ``pcd`` from ebmflow-cd works with the samplers above;
- the dataset ``ising`` (:class:`IsingSamples`, exact samples of a small lattice);
- :func:`exact_moments`: log Z, marginals and pair moments by enumeration (≤ 2^16 states).

Importing this package imports neither torch nor the modules that define these; they load
on first attribute access.
"""

from __future__ import annotations

from typing import Any

import ebmflow

__version__ = "0.1.0"

_LAZY = {
    "Gibbs": "ebmflow_discrete.gibbs",
    "GibbsWithGradients": "ebmflow_discrete.gwg",
    "DiscreteLangevin": "ebmflow_discrete.dmala",
    "BlockGibbs": "ebmflow_discrete.block_gibbs",
    "DiscreteSampler": "ebmflow_discrete.discrete_sampler",
    "IsingEnergy": "ebmflow_discrete.ising",
    "lattice_couplings": "ebmflow_discrete.ising",
    "neighbour_pairs": "ebmflow_discrete.ising",
    "PottsEnergy": "ebmflow_discrete.potts",
    "BernoulliRBM": "ebmflow_discrete.rbm",
    "BinaryMLPEnergy": "ebmflow_discrete.binary_mlp",
    "PseudoLikelihood": "ebmflow_discrete.pseudo_likelihood",
    "RatioMatching": "ebmflow_discrete.ratio_matching",
    "IsingSamples": "ebmflow_discrete.dataset",
    "exact_moments": "ebmflow_discrete.exact",
    "ExactMoments": "ebmflow_discrete.exact",
    "all_states": "ebmflow_discrete.exact",
    "check_states": "ebmflow_discrete.spaces",
    "uniform_states": "ebmflow_discrete.spaces",
}

_EXPORTS = ebmflow.LazyExports(__name__, _LAZY)
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    return _EXPORTS.load(name)


def __dir__() -> list[str]:
    return _EXPORTS.dir()
