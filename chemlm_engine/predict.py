"""Batch prediction: one output row per input, with the error for rows that cannot be predicted."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem import rdFingerprintGenerator

from .data import SMILES_COLUMNS, _pick_column, try_canonicalize
from .errors import DataError
from .model import RegressionModel
from .training import encode_smiles, predict_encoded

__all__ = ["predict_smiles", "predict_csv", "parse_pasted", "nearest_neighbours", "add_applicability_domain",
           "DOMAIN_SIMILARITY"]

# Below this Tanimoto similarity to the nearest training molecule (Morgan radius 2, 2048 bits) a
# prediction is flagged as outside the applicability domain: such pairs rarely share a chemical series.
DOMAIN_SIMILARITY = 0.3
_MORGAN = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def parse_pasted(text: str) -> tuple[list[str], list[str]]:
    """Split pasted text into SMILES and names: one molecule per line, optional name after a space or tab."""
    smiles: list[str] = []
    names: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        smiles.append(parts[0])
        names.append(parts[1].strip() if len(parts) > 1 else "")
    return smiles, names


def predict_smiles(model: RegressionModel, smiles: Sequence[str], names: Sequence[str] | None = None,
                   batch_size: int = 128, mc_passes: int = 0) -> pd.DataFrame:
    """Predict every valid SMILES; invalid ones get a row with ``error`` set and no prediction.

    Columns: ``row`` (1-based), ``name``, ``input``, ``canonical_smiles``, ``prediction``, ``error``;
    with ``mc_passes`` > 1 also ``uncertainty``, the MC-dropout standard deviation.
    """
    rows = []
    for i, raw in enumerate(smiles):
        canonical, reason = try_canonicalize(str(raw))
        rows.append({"row": i + 1, "name": names[i] if names is not None else "", "input": raw,
                     "canonical_smiles": canonical, "prediction": np.nan, "error": reason})
    frame = pd.DataFrame(rows, columns=["row", "name", "input", "canonical_smiles", "prediction", "error"])
    valid = frame.index[frame["error"].isna()]
    if len(valid):
        encoded = encode_smiles(model.tokenizer, frame.loc[valid, "canonical_smiles"].tolist(),
                                model.max_tokens)
        frame.loc[valid, "prediction"] = predict_encoded(model, encoded, batch_size)
    if mc_passes > 1:
        from .methods.uncertainty import mc_dropout

        frame["uncertainty"] = np.nan
        if len(valid):
            _, std = mc_dropout(model, frame.loc[valid, "canonical_smiles"].tolist(), mc_passes)
            frame.loc[valid, "uncertainty"] = std
    return frame


def predict_csv(model: RegressionModel, source: str | Path | IO, smiles_column: str | None = None,
                name_column: str | None = None, mc_passes: int = 0) -> pd.DataFrame:
    """Predict a CSV's SMILES column (auto-detected unless named); see :func:`predict_smiles`."""
    try:
        frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read CSV: {exc}") from None
    column = _pick_column(list(frame.columns), smiles_column, SMILES_COLUMNS, "SMILES")
    names = frame[name_column].tolist() if name_column else None
    return predict_smiles(model, frame[column].tolist(), names, mc_passes=mc_passes)


def _fingerprints(smiles: Sequence[str]) -> list:
    with rdBase.BlockLogs():
        return [_MORGAN.GetFingerprint(Chem.MolFromSmiles(s)) for s in smiles]


def nearest_neighbours(query: Sequence[str], reference: Sequence[str]) -> pd.DataFrame:
    """For each (valid, canonical) query SMILES, the most similar reference molecule and its Tanimoto
    similarity on Morgan fingerprints (radius 2, 2048 bits)."""
    ref_fps = _fingerprints(reference)
    rows = []
    for fp in _fingerprints(query):
        sims = np.asarray(DataStructs.BulkTanimotoSimilarity(fp, ref_fps))
        best = int(sims.argmax())
        rows.append({"nearest_training_smiles": reference[best], "similarity": float(sims[best])})
    return pd.DataFrame(rows, columns=["nearest_training_smiles", "similarity"])


def add_applicability_domain(frame: pd.DataFrame, training_smiles: Sequence[str],
                             threshold: float = DOMAIN_SIMILARITY) -> pd.DataFrame:
    """Add the nearest training molecule, its similarity and ``in_domain`` to a prediction table."""
    out = frame.copy()
    out["nearest_training_smiles"] = None
    out["similarity"] = np.nan
    out["in_domain"] = None
    valid = out.index[out["error"].isna()]
    if len(valid) and len(training_smiles):
        nn = nearest_neighbours(out.loc[valid, "canonical_smiles"].tolist(), list(training_smiles))
        out.loc[valid, "nearest_training_smiles"] = nn["nearest_training_smiles"].to_numpy()
        out.loc[valid, "similarity"] = nn["similarity"].to_numpy()
        out.loc[valid, "in_domain"] = nn["similarity"].to_numpy() >= threshold
    return out
