"""Datasets: 2-D toy densities with exact log-densities, and scikit-learn's 8×8 digits.

Every dataset draws samples only from the ``generator`` it is given; see
:class:`~ebmflow.datasets.base.Dataset`.
"""

from ebmflow.datasets.base import Dataset
from ebmflow.datasets.digits import Digits
from ebmflow.datasets.toy2d import Checkerboard, EightGaussians, Moons, Rings, Toy2D, TwoSpirals

__all__ = [
    "Checkerboard",
    "Dataset",
    "Digits",
    "EightGaussians",
    "Moons",
    "Rings",
    "Toy2D",
    "TwoSpirals",
]
