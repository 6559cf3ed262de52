"""2D structure pictures as data URIs (for tables in the app and reports)."""
from __future__ import annotations

import base64
import functools
import io

from rdkit import Chem, rdBase
from rdkit.Chem import Draw

__all__ = ["molecule_image_uri", "grid_image"]


def molecule_image_uri(smiles: str | None, size: tuple[int, int] = (220, 160)) -> str | None:
    """PNG depiction of a molecule as a ``data:image/png;base64,…`` URI; ``None`` if it cannot be parsed."""
    if not isinstance(smiles, str) or not smiles:  # missing values arrive from pandas as NaN
        return None
    return _image_uri(smiles, size)


@functools.lru_cache(maxsize=4096)  # ~4 ms a picture: a page rerun draws each molecule once (8-12 KB each)
def _image_uri(smiles: str, size: tuple[int, int]) -> str | None:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return None
    buffer = io.BytesIO()
    Draw.MolToImage(mol, size=size).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def grid_image(smiles: list[str], legends: list[str], per_row: int = 5, size: tuple[int, int] = (240, 190)):
    """A grid picture of molecules with a legend under each (a PIL image); unparsable ones are left blank."""
    with rdBase.BlockLogs():
        mols = [Chem.MolFromSmiles(s) if isinstance(s, str) else None for s in smiles]
    return Draw.MolsToGridImage([m if m is not None else Chem.Mol() for m in mols], molsPerRow=per_row,
                                subImgSize=size, legends=legends)
