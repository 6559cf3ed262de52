"""Which molecules to take: the top of a ranking, or the random control every selection method is compared with."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = ["select_top", "select_random", "sizes_within"]


def select_top(scores: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest scores (ties broken by position): the most uncertain, or the most helpful."""
    return np.argsort(-np.asarray(scores), kind="stable")[:n]


def select_random(size: int, n: int, seed: int) -> np.ndarray:
    """The random control: ``n`` indices drawn without replacement."""
    return np.random.default_rng(seed).choice(size, min(n, size), replace=False)


def sizes_within(sizes: Iterable[int], pool: int) -> list[int]:
    """A sweep's sizes (k, N) that a pool of ``pool`` molecules can give, ascending: a larger one runs as the
    whole pool, once."""
    return sorted({min(n, pool) for n in sizes})
