"""Gradient-boosted trees beside the transformers: LightGBM on each molecule's RDKit descriptors (the ones a
descriptor head reads, computed once for both) and its Morgan counts. Their errors differ from the transformers'
(correlation ~0.7 on Lipophilicity's test parts), so a blend of the two beats either alone; an ensemble folder
keeps them as LightGBM's own text model (``trees.txt``), no pickle."""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from ..descriptors import DESCRIPTOR_NAMES, HEAD_DESCRIPTORS, describe
from ..errors import ModelLoadError
from .morgan import BITS, morgan_counts

if TYPE_CHECKING:  # imported on use: prediction without trees does not load LightGBM
    import lightgbm

__all__ = ["TREES_FILE", "TREE_PARAMS", "Trees", "tree_features"]

TREES_FILE = "trees.txt"
_MORGAN_NAMES = [f"morgan_{i}" for i in range(BITS)]
# Chosen a priori (common LightGBM settings for a few thousand rows and a few thousand features), never on a test
# split: many small steps, half the features per tree, and 80 % of the molecules per tree against over-fitting.
TREE_PARAMS = {"objective": "regression", "learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20,
               "feature_fraction": 0.5, "bagging_fraction": 0.8, "bagging_freq": 1, "verbose": -1}
ROUNDS = 1000


def tree_features(smiles: Sequence[str], names: Sequence[str] = HEAD_DESCRIPTORS) -> np.ndarray:
    """Raw descriptors ``names`` (NaN where missing: the trees route them) and radius-2 Morgan counts, one row per
    SMILES."""
    return np.hstack([describe(smiles, names).astype(np.float32), morgan_counts(smiles)])


@dataclass
class Trees:
    """A LightGBM booster over :func:`tree_features` of ``descriptor_names``, and the weight its prediction gets in a
    blend."""

    booster: lightgbm.Booster
    weight: float
    descriptor_names: list[str]

    @classmethod
    def fit(cls, smiles: Sequence[str], labels: np.ndarray, weight: float, seed: int = 0,
            descriptor_names: Sequence[str] = HEAD_DESCRIPTORS) -> Trees:
        import lightgbm

        names = list(descriptor_names)
        data = lightgbm.Dataset(tree_features(smiles, names), np.asarray(labels, dtype=np.float64),
                                feature_name=[*names, *_MORGAN_NAMES], free_raw_data=True)
        params = {**TREE_PARAMS, "seed": seed, "num_threads": len(os.sched_getaffinity(0))}
        return cls(lightgbm.train(params, data, num_boost_round=ROUNDS), weight, names)

    def predict(self, smiles: Sequence[str]) -> np.ndarray:
        if not smiles:
            return np.zeros(0)
        features = tree_features(smiles, self.descriptor_names)
        return np.asarray(self.booster.predict(features, num_threads=len(os.sched_getaffinity(0))))

    def blend(self, mean: np.ndarray, smiles: Sequence[str]) -> np.ndarray:
        """``(1 − weight) · mean + weight · trees``: the transformers' mean blended with the trees' prediction."""
        return (1.0 - self.weight) * np.asarray(mean) + self.weight * self.predict(smiles)

    def save(self, folder: str | Path) -> str:
        self.booster.save_model(str(Path(folder) / TREES_FILE))
        return TREES_FILE

    @classmethod
    def load(cls, folder: str | Path, weight: float) -> Trees:
        import lightgbm

        path = Path(folder) / TREES_FILE
        try:
            booster = lightgbm.Booster(model_file=str(path))
        except (OSError, lightgbm.basic.LightGBMError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from None
        names = booster.feature_name()
        descriptor_names = names[:-BITS]
        if names[-BITS:] != _MORGAN_NAMES or not set(descriptor_names) <= set(DESCRIPTOR_NAMES):
            raise ModelLoadError(f"{path} was fitted on other features (another RDKit's descriptor list?): "
                                 "train the ensemble again with this RDKit")
        return cls(booster, weight, descriptor_names)
