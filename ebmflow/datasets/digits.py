"""scikit-learn's bundled 8×8 handwritten digits (the UCI optical-recognition test set).

The 1797 images ship inside scikit-learn (``sklearn.datasets.load_digits``), so no download
is needed; scikit-learn itself is imported only when a :class:`Digits` is built.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ebmflow.datasets.base import Dataset, generator_device
from ebmflow.errors import ConfigError
from ebmflow.validation import check_positive, check_positive_int

_SCALES = {"unit": "[0, 1]: x / 16", "symmetric": "[−1, 1]: x / 8 − 1"}
_OWNER = "digits dataset"


def _load_digits() -> tuple[Tensor, Tensor]:
    """All 1797 images as float64 (1797, 64) in 0..16 and labels int64 (1797,)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError(
            "the digits dataset needs scikit-learn, which ships the 8x8 digits: "
            "pip install scikit-learn  (or: pip install 'ebmflow[digits]')"
        ) from exc
    bunch: Any = load_digits()
    return (
        torch.as_tensor(bunch.data, dtype=torch.float64),
        torch.as_tensor(bunch.target, dtype=torch.int64),
    )


def _splitmix64(x: int) -> int:
    """SplitMix64 (Steele, Lea & Flood 2014): a fixed 64-bit integer hash, the same on every
    platform and library version."""
    mask = (1 << 64) - 1
    z = (x + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def _stratified_split(labels: Tensor, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices (sorted) of the train and test rows. Within each class c the rows are ordered
    by the hash SplitMix64(seed · 2³² + row), a permutation that depends on nothing but
    ``seed``, and the first round(test_fraction · n_c) of them form the test split."""
    train, test = [], []
    for c in range(int(labels.max()) + 1):
        rows = torch.nonzero(labels == c).flatten().tolist()
        rows.sort(key=lambda row: _splitmix64((seed << 32) + row))
        n_test = round(test_fraction * len(rows))
        test.extend(rows[:n_test])
        train.extend(rows[n_test:])
    return torch.tensor(sorted(train), dtype=torch.int64), torch.tensor(
        sorted(test), dtype=torch.int64
    )


class Digits(Dataset):
    """The 8×8 digits as images of shape (1, 8, 8), with a fixed stratified train/test split.

    Pixels are integers 0..16 in the source; ``scale="unit"`` (default) maps them to [0, 1]
    by x / 16, ``scale="symmetric"`` to [−1, 1] by x / 8 − 1. No dequantisation noise is
    added. The split is stratified: within each of the 10 classes a permutation fixed by
    ``seed`` (an integer hash, so the same on every platform and torch version) sends
    round(test_fraction · n_class) images to the test split (359 of 1797 with the
    defaults), the rest to train; rows keep their original order within a split. The same
    ``(test_fraction, seed)`` always gives the same split, and the two splits are disjoint
    and cover all 1797 images.

    ``sample(n, generator)`` draws n rows of the split uniformly *with replacement* from
    ``generator``; :meth:`sample_with_labels` returns the labels of the same draw, and
    :meth:`tensors` the whole split. There is no density: ``has_log_prob = False``.

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: fraction of each class held out for test, in (0, 1).
        seed: integer seed of the split.
        scale: ``"unit"`` or ``"symmetric"``.

    Raises:
        ImportError: if scikit-learn is not installed (``pip install scikit-learn``).
    """

    name = "digits"
    event_shape = (1, 8, 8)
    has_log_prob = False
    n_classes = 10

    def __init__(
        self,
        split: str = "train",
        test_fraction: float = 0.2,
        seed: int = 0,
        scale: str = "unit",
    ) -> None:
        if split not in ("train", "test"):
            raise ConfigError(f"{_OWNER}: split must be 'train' or 'test', got {split!r}")
        test_fraction = check_positive(_OWNER, "test_fraction", test_fraction)
        if not test_fraction < 1:
            raise ConfigError(
                f"{_OWNER}: test_fraction must be a number in (0, 1), got {test_fraction!r}"
            )
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"{_OWNER}: seed must be an integer ≥ 0, got {seed!r}")
        if scale not in _SCALES:
            accepted = ", ".join(f"{k!r} ({v})" for k, v in _SCALES.items())
            raise ConfigError(f"{_OWNER}: scale must be one of {accepted}; got {scale!r}")
        self.split, self.test_fraction, self.seed, self.scale = split, test_fraction, seed, scale

        pixels, labels = _load_digits()
        train, test = _stratified_split(labels, test_fraction, seed)
        #: indices of this split's rows in ``sklearn.datasets.load_digits()``
        self.indices = train if split == "train" else test
        if self.indices.numel() == 0:
            raise ConfigError(
                f"{_OWNER}: test_fraction={test_fraction!r} leaves the {split} split empty "
                "(each class has 174 to 183 images); use a value between 0.01 and 0.99"
            )
        x = pixels[self.indices]
        x = x / 16 if scale == "unit" else x / 8 - 1
        self._x = x.to(torch.float32).reshape(-1, *self.event_shape)
        self._y = labels[self.indices]

    def __len__(self) -> int:
        return self._x.shape[0]

    def tensors(self) -> tuple[Tensor, Tensor]:
        """The whole split: images float32 (N, 1, 8, 8) and labels int64 (N,) (copies)."""
        return self._x.clone(), self._y.clone()

    def sample_with_labels(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> tuple[Tensor, Tensor]:
        """``n`` images drawn with replacement, and their labels; the images equal
        ``sample(n, generator)`` for the same generator state."""
        n = check_positive_int(_OWNER, "n", n, minimum=0)
        rows = self._rows(n, generator)
        x, y = self._x[rows], self._y[rows]
        return (x, y) if device is None else (x.to(device), y.to(device))

    def _rows(self, n: int, generator: torch.Generator | None) -> Tensor:
        rows = torch.randint(
            0, len(self), (n,), generator=generator, device=generator_device(generator)
        )
        return rows.cpu()

    def _sample(self, n, generator):
        return self._x[self._rows(n, generator)]
