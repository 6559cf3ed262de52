"""Applicability domain: the training molecules saved with a model, their Morgan fingerprints (cached in the
model folder), and the nearest training molecule of each prediction."""
from __future__ import annotations

import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator

from ..errors import OutputError
from ..model import content_digest, load_training_set
from ..tables import written_aside

__all__ = ["DOMAIN_COLUMNS", "DOMAIN_SIMILARITY", "FINGERPRINT_FILE", "fingerprints", "TrainingReference",
           "nearest_neighbours", "add_applicability_domain"]

log = logging.getLogger(__name__)

# Below this Tanimoto similarity to the nearest training molecule (Morgan radius 2, 2048 bits) a
# prediction is flagged as outside the applicability domain: such pairs rarely share a chemical series.
DOMAIN_SIMILARITY = 0.3
DOMAIN_COLUMNS = ("nearest_training_smiles", "nearest_training_label", "similarity", "in_domain")
FINGERPRINT_FILE = "training_fingerprints.npz"
_BITS = 2048
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=_BITS)


def fingerprints(smiles: Sequence[str]) -> list:
    """Morgan fingerprints (radius 2, 2048 bits) of valid SMILES, for Tanimoto similarities."""
    with rdBase.BlockLogs():
        return [_MORGAN.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]


def _packed(fps: list) -> np.ndarray:
    """Fingerprints as rows of bytes (RDKit's FPS layout, read back with ``CreateFromFPSText``)."""
    rows = [np.frombuffer(bytes.fromhex(DataStructs.BitVectToFPSText(fp)), np.uint8) for fp in fps]
    return np.stack(rows) if rows else np.zeros((0, _BITS // 8), np.uint8)


@dataclass
class TrainingReference:
    """The molecules a model was trained on, their labels (if saved) and fingerprints."""

    smiles: list[str]
    labels: np.ndarray | None
    fingerprints: list

    @classmethod
    def from_smiles(cls, smiles: Sequence[str],
                    labels: Sequence[float] | np.ndarray | None = None) -> TrainingReference:
        return cls(list(smiles), None if labels is None else np.asarray(labels, dtype=float),
                   fingerprints(list(smiles)))

    @classmethod
    def load(cls, folder: str | Path) -> TrainingReference | None:
        """The training set saved with a model folder (None without one). Its fingerprints come from
        ``training_fingerprints.npz`` next to it (computing them costs ~0.1 ms per molecule; reading, 1/20 of
        that); the file is written on first use and rebuilt when the training set changed."""
        saved = load_training_set(folder)
        if saved is None:
            return None
        smiles, measured = saved
        labels = None if np.isnan(measured).all() else measured
        path, digest = Path(folder) / FINGERPRINT_FILE, content_digest(*smiles)
        try:
            with np.load(path, allow_pickle=False) as cached:
                bits = cached["bits"]
                # the training set it was built from and what it holds: another set or a damaged file is rebuilt
                fits = bits.shape == (len(smiles), _BITS // 8)
                if fits and str(cached["checksum"]) == content_digest(digest, bits):
                    return cls(smiles, labels, [DataStructs.CreateFromFPSText(row.tobytes().hex()) for row in bits])
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
            pass  # missing or unreadable: rebuilt below
        reference = cls.from_smiles(smiles, labels)
        bits = _packed(reference.fingerprints)
        try:  # written aside and renamed: a reader in another process never sees half a file
            with written_aside(path) as partial, open(partial, "wb") as out:  # a file: savez adds no suffix
                np.savez_compressed(out, bits=bits, checksum=np.asarray(content_digest(digest, bits)))
        except OutputError as exc:  # a read-only model folder still predicts; it just pays for the fingerprints
            log.warning("cannot cache fingerprints in %s: %s", folder, exc)
        return reference


def nearest_neighbours(query: Sequence[str], reference: TrainingReference) -> pd.DataFrame:
    """For each (valid, canonical) query SMILES, the most similar reference molecule and its Tanimoto
    similarity on Morgan fingerprints (radius 2, 2048 bits)."""
    rows = []
    for fp in fingerprints(query):
        sims = np.asarray(DataStructs.BulkTanimotoSimilarity(fp, reference.fingerprints))
        best = int(sims.argmax())
        rows.append({"nearest_training_smiles": reference.smiles[best], "similarity": float(sims[best]),
                     "nearest_training_label": np.nan if reference.labels is None else reference.labels[best]})
    return pd.DataFrame(rows, columns=["nearest_training_smiles", "similarity", "nearest_training_label"])


def add_applicability_domain(frame: pd.DataFrame, reference: TrainingReference | None,
                             threshold: float = DOMAIN_SIMILARITY) -> pd.DataFrame:
    """Add the nearest training molecule, its similarity, its measured value (``nearest_training_label``, when
    the labels were saved) and ``in_domain`` to a prediction table (left empty without a reference)."""
    out = frame.copy()
    for column in DOMAIN_COLUMNS:
        out[column] = None if column in ("nearest_training_smiles", "in_domain") else np.nan
    valid = out.index[out["error"].isna()]
    if len(valid) and reference is not None and reference.smiles:
        nn = nearest_neighbours(out.loc[valid, "canonical_smiles"].tolist(), reference)
        for column in ("nearest_training_smiles", "similarity", "nearest_training_label"):
            out.loc[valid, column] = nn[column].to_numpy()
        out.loc[valid, "in_domain"] = nn["similarity"].to_numpy() >= threshold
    return out
