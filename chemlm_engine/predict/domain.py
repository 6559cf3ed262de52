"""Applicability domain: the training molecules saved with a model, their Morgan fingerprints (cached in the
model folder), and the nearest training molecule of each prediction."""
from __future__ import annotations

import functools
import logging
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, DataStructs, rdBase

from ..errors import OutputError
from ..model import content_digest, load_training_set
from ..outputs import written_aside
from .morgan import BITS, MORGAN, morgan_counts

__all__ = ["DOMAIN_COLUMNS", "DOMAIN_SIMILARITY", "FINGERPRINT_FILE", "fingerprints", "TrainingReference",
           "nearest_neighbours", "add_applicability_domain"]

log = logging.getLogger(__name__)

# Below this Tanimoto similarity to the nearest training molecule (Morgan radius 2, 2048 bits) a
# prediction is flagged as outside the applicability domain: such pairs rarely share a chemical series.
DOMAIN_SIMILARITY = 0.3
# A molecule the model read only in part (its SMILES truncated) is outside the domain whatever its similarity.
TRUNCATED = "truncated:"
# in_training: the molecule, its stereochemistry aside, is one the model was trained on (enantiomers share their logD,
# and neither the fingerprints nor the descriptors see stereochemistry: a racemate of a training molecule is one too)
DOMAIN_COLUMNS = ("nearest_training_smiles", "nearest_training_label", "similarity", "in_domain", "in_training")
FINGERPRINT_FILE = "training_fingerprints.npz"
_QUERY_BLOCK = 256  # query molecules per matrix product: against 4,200 training molecules ~9 MB per float64 block
_MATRIX_MIN = 64  # fewer queries are searched one by one: the matrix (34 MB for 4,200 molecules) costs ~30 ms


def fingerprints(smiles: Sequence[str]) -> list:
    """Morgan fingerprints (radius 2, 2048 bits) of valid SMILES, for Tanimoto similarities."""
    with rdBase.BlockLogs():
        return [MORGAN.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]


def _flat(smiles: str) -> str:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


def _packed(fps: list) -> np.ndarray:
    """Fingerprints as rows of bytes (RDKit's FPS layout, read back with ``CreateFromFPSText``)."""
    rows = [np.frombuffer(bytes.fromhex(DataStructs.BitVectToFPSText(fp)), np.uint8) for fp in fps]
    return np.stack(rows) if rows else np.zeros((0, BITS // 8), np.uint8)


@dataclass
class TrainingReference:
    """The molecules a model was trained on, their labels (if saved) and fingerprints."""

    smiles: list[str]
    labels: np.ndarray | None
    fingerprints: list
    bits: np.ndarray  # the fingerprints packed, one row of bytes per molecule (as cached in the model folder)

    @functools.cached_property
    def bit_matrix(self) -> np.ndarray:
        """The fingerprints as a float32 matrix of 0 / 1, one row per molecule, for :func:`nearest_neighbours`."""
        return np.unpackbits(self.bits, axis=1, bitorder="little").astype(np.float32)

    def holds_stereoisomer(self, smiles: str) -> bool:
        """Whether a molecule here is ``smiles`` but for its stereochemistry. Only those with its fingerprint are
        compared (the fingerprints ignore stereochemistry): not the whole set's SMILES rewritten on first use."""
        bits = _packed(fingerprints([smiles]))[0]
        flat = _flat(smiles)
        return any(_flat(self.smiles[i]) == flat for i in np.flatnonzero((self.bits == bits).all(axis=1)))

    @classmethod
    def from_smiles(cls, smiles: Sequence[str],
                    labels: Sequence[float] | np.ndarray | None = None) -> TrainingReference:
        fps = fingerprints(list(smiles))
        return cls(list(smiles), None if labels is None else np.asarray(labels, dtype=float), fps, _packed(fps))

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
                fits = bits.shape == (len(smiles), BITS // 8)
                if fits and str(cached["checksum"]) == content_digest(digest, bits):
                    return cls(smiles, labels, [DataStructs.CreateFromFPSText(row.tobytes().hex()) for row in bits],
                               bits)
        except (OSError, EOFError, KeyError, ValueError, zipfile.BadZipFile):
            pass  # missing or unreadable: rebuilt below
        reference = cls.from_smiles(smiles, labels)
        bits = reference.bits
        try:  # written aside and renamed: a reader in another process never sees half a file
            with written_aside(path) as partial, open(partial, "wb") as out:  # a file: savez adds no suffix
                np.savez_compressed(out, bits=bits, checksum=np.asarray(content_digest(digest, bits)))
        except OutputError as exc:  # a read-only model folder still predicts; it just pays for the fingerprints
            log.warning("cannot cache fingerprints in %s: %s", folder, exc)
        return reference


def nearest_neighbours(query: Sequence[str], reference: TrainingReference) -> pd.DataFrame:
    """For each (valid, canonical) query SMILES, the most similar reference molecule (the first of equals) and its
    Tanimoto similarity on Morgan fingerprints (radius 2, 2048 bits), RDKit's value either way: few queries one by
    one, many against the reference's :attr:`~TrainingReference.bit_matrix` (worth building for ~64 or more)."""
    if len(query) < max(_MATRIX_MIN, 1):
        best, similarity = _nearest_one_by_one(query, reference)
    else:
        best, similarity = _nearest_by_matrix(query, reference)
    labels = np.full(len(best), np.nan) if reference.labels is None else reference.labels[best]
    return pd.DataFrame({"nearest_training_smiles": [reference.smiles[i] for i in best], "similarity": similarity,
                         "nearest_training_label": labels},
                        columns=["nearest_training_smiles", "similarity", "nearest_training_label"])


def _nearest_one_by_one(query: Sequence[str], reference: TrainingReference) -> tuple[np.ndarray, np.ndarray]:
    rows = [np.asarray(DataStructs.BulkTanimotoSimilarity(fp, reference.fingerprints)) for fp in fingerprints(query)]
    best = np.array([int(row.argmax()) for row in rows], dtype=int)
    return best, np.array([row[i] for row, i in zip(rows, best)], dtype=float)


def _nearest_by_matrix(query: Sequence[str], reference: TrainingReference) -> tuple[np.ndarray, np.ndarray]:
    """``|a & b| / (|a| + |b| - |a & b|)`` with the intersections of a block of queries and every reference molecule
    one float32 matrix product (exact: counts up to 2,048): 1,000 queries in ~0.25 s instead of ~0.45 s."""
    references = reference.bit_matrix
    queries = (morgan_counts(query) > 0).astype(np.float32)  # the trees' counts when they just computed them
    best, similarity = np.zeros(len(queries), dtype=int), np.zeros(len(queries))
    reference_bits = references.sum(axis=1)[None, :]
    for start in range(0, len(queries), _QUERY_BLOCK):
        block = queries[start:start + _QUERY_BLOCK]
        # torch, not numpy: its threads are the ones the forward passes just used (OpenBLAS's would fight them)
        shared = (torch.from_numpy(block) @ torch.from_numpy(references).T).numpy().astype(np.float64)
        union = block.sum(axis=1)[:, None] + reference_bits - shared
        similarities = np.divide(shared, union, out=np.zeros_like(shared), where=union > 0)  # RDKit: 0 for two empty
        rows = slice(start, start + len(block))
        best[rows] = similarities.argmax(axis=1)  # the first of equals, as RDKit's list would give
        similarity[rows] = similarities[np.arange(len(block)), best[rows]]
    return best, similarity


def add_applicability_domain(frame: pd.DataFrame, reference: TrainingReference | None,
                             threshold: float = DOMAIN_SIMILARITY) -> pd.DataFrame:
    """Add the nearest training molecule, its similarity, its measured value (``nearest_training_label``, when
    the labels were saved), ``in_domain`` (similar enough to a training molecule, and read whole by the model) and
    ``in_training`` (a training molecule itself, its stereochemistry aside) to a prediction table (left empty
    without a reference)."""
    out = frame.copy()
    for column in DOMAIN_COLUMNS:
        out[column] = None if column in ("nearest_training_smiles", "in_domain", "in_training") else np.nan
    valid = out.index[out["error"].isna()]
    if len(valid) and reference is not None and reference.smiles:
        nn = nearest_neighbours(out.loc[valid, "canonical_smiles"].tolist(), reference)
        for column in ("nearest_training_smiles", "similarity", "nearest_training_label"):
            out.loc[valid, column] = nn[column].to_numpy()
        read_whole = ~out.loc[valid, "warnings"].fillna("").str.contains(TRUNCATED) if "warnings" in out else True
        out.loc[valid, "in_domain"] = (nn["similarity"].to_numpy() >= threshold) & read_whole
        seen = out.loc[valid, "canonical_smiles"].isin(set(reference.smiles)).to_numpy().copy()
        twins = ~seen & (nn["similarity"].to_numpy() == 1.0)  # a stereoisomer has the same fingerprint: only these
        if twins.any():
            seen[twins] = [reference.holds_stereoisomer(s) for s in out.loc[valid[twins], "canonical_smiles"]]
        out.loc[valid, "in_training"] = seen
    return out
