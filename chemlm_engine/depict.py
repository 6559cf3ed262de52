"""2D structure pictures as data URIs (for tables in the app and reports). RDKit's 2D layout grows faster than the
molecule (a 1,800-atom PEG took 55 s, a 5,000-carbon chain minutes, in the server's own process): molecules above
:data:`DRAW_LIMIT` heavy atoms get a picture that says so instead."""
from __future__ import annotations

import base64
import functools
import io
import textwrap

from PIL import Image, ImageDraw, ImageFont
from rdkit import Chem, rdBase
from rdkit.Chem import Draw

__all__ = ["molecule_image_uri", "grid_image", "too_large_to_draw", "placeholder_png", "DRAW_LIMIT"]

DRAW_LIMIT = 300  # heavy atoms: ChEMBL's largest drug-like molecules are drawn (a 400-atom peptide takes ~0.2 s)


def too_large_to_draw(mol: Chem.Mol) -> str | None:
    """Why ``mol`` is not drawn (None: it is)."""
    atoms = mol.GetNumHeavyAtoms()
    return f"not drawn: {atoms:,} heavy atoms (over {DRAW_LIMIT})" if atoms > DRAW_LIMIT else None


def placeholder_png(text: str, size: tuple[int, int]) -> bytes:
    """A white picture of ``size`` saying ``text``, in place of a drawing."""
    image = Image.new("RGB", size, "white")
    points = max(11, size[1] // 12)  # PIL's bitmap default was too small to read
    fits = max(10, int((size[0] - 16) / (0.55 * points)))  # characters a line holds
    text = "\n".join(textwrap.fill(line, fits) for line in text.splitlines())
    ImageDraw.Draw(image).multiline_text((8, size[1] // 3), text, fill=(90, 90, 90),
                                         font=ImageFont.load_default(size=points))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


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
    large = too_large_to_draw(mol)
    if large:
        png = placeholder_png(large, size)
    else:
        buffer = io.BytesIO()
        Draw.MolToImage(mol, size=size).save(buffer, format="PNG")
        png = buffer.getvalue()
    return "data:image/png;base64," + base64.b64encode(png).decode()


def grid_image(smiles: list[str], legends: list[str], per_row: int = 5, size: tuple[int, int] = (240, 190)):
    """A grid picture of molecules with a legend under each (a PIL image); one that cannot be read or is too large
    to draw is a cell with its legend and the reason."""
    cells = [_cell(text, legend, size) for text, legend in zip(smiles, legends)]
    grid = Image.new("RGB", (per_row * size[0], max(1, -(-len(cells) // per_row)) * size[1]), "white")
    for i, cell in enumerate(cells):
        grid.paste(cell, ((i % per_row) * size[0], (i // per_row) * size[1]))
    return grid


def _cell(smiles: str | None, legend: str, size: tuple[int, int]) -> Image.Image:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles) if isinstance(smiles, str) else None
    why = "cannot be read" if mol is None else too_large_to_draw(mol)
    if why:  # RDKit's grid drew such a cell blank, legend and all
        return Image.open(io.BytesIO(placeholder_png(f"{legend}\n({why})", size))).convert("RGB")
    return Draw.MolToImage(mol, size=size, legend=legend).convert("RGB")
