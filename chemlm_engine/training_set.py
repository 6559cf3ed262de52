"""The training molecules saved next to a model (for the applicability domain and explanations), and the
content digest that ties a derived cache to what it was built from."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from .errors import DataError, ModelLoadError

__all__ = ["TRAINING_SET_FILE", "content_digest", "save_training_set", "load_training_set", "missing_training_set"]

TRAINING_SET_FILE = "training_set.csv"


def content_digest(*parts: str | np.ndarray) -> str:
    """SHA-256 over texts and arrays (dtype and shape included): what a derived cache was built from, and
    what it holds, so that a changed training set or a damaged cache file is noticed and rebuilt."""
    digest = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            digest.update(f"{part.dtype.str}{part.shape}".encode())
            digest.update(np.ascontiguousarray(part).tobytes())
        else:
            digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def save_training_set(folder: str | Path, smiles: list[str], labels: np.ndarray | None) -> None:
    """The training molecules next to a model, for nearest-neighbour similarity at prediction time."""
    import pandas as pd

    pd.DataFrame({"smiles": smiles, "label": labels if labels is not None else np.nan}).to_csv(
        Path(folder) / TRAINING_SET_FILE, index=False)


def load_training_set(folder: str | Path) -> tuple[list[str], np.ndarray] | None:
    """Training SMILES and labels saved with a model folder, if any."""
    path = Path(folder) / TRAINING_SET_FILE
    if not path.exists():
        return None
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"smiles": str})
        smiles, labels = frame["smiles"].tolist(), pd.to_numeric(frame["label"], errors="coerce").to_numpy(float)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:  # EmptyDataError is a ValueError
        raise ModelLoadError(f"{path} is damaged ({type(exc).__name__}: {exc}): export the model again") from None
    if not all(isinstance(s, str) and s for s in smiles):
        raise ModelLoadError(f"{path} is damaged (a row without SMILES): export the model again")
    return smiles, labels


def missing_training_set(folder: str | Path) -> DataError:
    """The error for a model folder without its training molecules, which an explanation needs."""
    return DataError(f"{folder} has no saved training set ({TRAINING_SET_FILE}), so no training molecule to "
                     "attribute the prediction to: explain a model trained by ChemLM Studio")
