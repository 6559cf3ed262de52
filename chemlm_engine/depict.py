"""2D structure pictures as data URIs (for tables in the app and reports)."""
from __future__ import annotations

import base64
import io

from rdkit import Chem, rdBase
from rdkit.Chem import Draw

__all__ = ["molecule_image_uri"]


def molecule_image_uri(smiles: str | None, size: tuple[int, int] = (220, 160)) -> str | None:
    """PNG depiction of a molecule as a ``data:image/png;base64,…`` URI; ``None`` if it cannot be parsed."""
    if not isinstance(smiles, str) or not smiles:  # missing values arrive from pandas as NaN
        return None
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    buffer = io.BytesIO()
    Draw.MolToImage(mol, size=size).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
