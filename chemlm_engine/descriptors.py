"""RDKit 2D descriptors as extra inputs of the regression head: computed once per molecule (cached in
this process), standardised with statistics of the training split, saved with the model."""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors
from sklearn.preprocessing import StandardScaler

from .errors import ModelLoadError

__all__ = ["DESCRIPTOR_NAMES", "describe", "DescriptorScaler"]

# Every RDKit 2D descriptor but QED (a fifth of the cost alone) and Ipc (overflows to 1e30 and beyond).
_SKIPPED = {"qed", "Ipc"}
_FUNCTIONS = [(name, fn) for name, fn in Descriptors.descList if name not in _SKIPPED]
DESCRIPTOR_NAMES = [name for name, _ in _FUNCTIONS]
# Standardised values are clipped here: a few descriptors have heavy tails that would dominate the head.
_CLIP = 10.0
_CACHE: dict[str, np.ndarray] = {}
_CACHE_LIMIT = 500_000


def _one(smiles: str) -> np.ndarray:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
        values = np.full(len(_FUNCTIONS), np.nan, dtype=np.float64)
        if mol is None:
            return values
        for i, (_, fn) in enumerate(_FUNCTIONS):
            try:
                values[i] = fn(mol)
            except Exception:  # noqa: BLE001 - RDKit descriptor functions raise several types; NaN is handled
                continue
    values[~np.isfinite(values)] = np.nan
    return values


def describe(smiles: Sequence[str]) -> np.ndarray:
    """Raw descriptors, shape ``(len(smiles), len(DESCRIPTOR_NAMES))``, NaN where RDKit gives no finite value."""
    out = np.empty((len(smiles), len(_FUNCTIONS)), dtype=np.float64)
    for row, text in enumerate(smiles):
        values = _CACHE.get(text)
        if values is None:
            values = _one(text)
            if len(_CACHE) < _CACHE_LIMIT:
                _CACHE[text] = values
        out[row] = values
    return out


@dataclass
class DescriptorScaler:
    """Per-descriptor median (fills missing values), mean and scale of the training split."""

    names: list[str]
    median: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    FILE = "descriptors.json"

    @classmethod
    def fit(cls, smiles: Sequence[str]) -> DescriptorScaler:
        raw = describe(smiles)
        median = np.nan_to_num(np.nanmedian(raw, axis=0), nan=0.0) if len(raw) else np.zeros(raw.shape[1])
        filled = np.where(np.isnan(raw), median, raw)
        fitted = StandardScaler().fit(filled)  # a constant descriptor keeps scale 1
        return cls(list(DESCRIPTOR_NAMES), median, fitted.mean_, fitted.scale_)

    def transform(self, smiles: Sequence[str]) -> np.ndarray:
        """Standardised, clipped float32 features; missing values become the training median (0 after scaling)."""
        if self.names != DESCRIPTOR_NAMES:
            raise ModelLoadError("this model was saved with another RDKit descriptor list; retrain it with this RDKit")
        raw = describe(smiles)
        filled = np.where(np.isnan(raw), self.median, raw)
        return np.clip((filled - self.mean) / self.scale, -_CLIP, _CLIP).astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.names)

    def save(self, folder: str | Path) -> None:
        payload = {"names": self.names, "median": self.median.tolist(), "mean": self.mean.tolist(),
                   "scale": self.scale.tolist()}
        (Path(folder) / self.FILE).write_text(json.dumps(payload))

    @classmethod
    def load(cls, folder: str | Path) -> DescriptorScaler | None:
        path = Path(folder) / cls.FILE
        if not path.exists():
            return None
        raw = json.loads(path.read_text())
        return cls(raw["names"], *(np.asarray(raw[k], dtype=np.float64) for k in ("median", "mean", "scale")))

