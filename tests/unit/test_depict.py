"""Structure pictures: RDKit's 2D layout grows faster than the molecule, so a molecule above DRAW_LIMIT heavy atoms
gets a picture that says why it is not drawn (a 5,000-carbon chain froze the app's server for minutes)."""
import base64
import io

import numpy as np
from PIL import Image

from chemlm_engine import depict
from chemlm_engine.depict import DRAW_LIMIT, grid_image, molecule_image_uri
from chemlm_engine.predict.explain import draw_atom_contributions

HUGE = "C" * (DRAW_LIMIT + 1)


def _image(uri: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))


def test_a_molecule_too_large_to_lay_out_is_never_handed_to_rdkits_drawing(monkeypatch):
    drawn = []
    monkeypatch.setattr(depict.Draw, "MolToImage", lambda mol, size: drawn.append(mol) or Image.new("RGB", size))
    assert _image(molecule_image_uri(HUGE, (200, 140))).size == (200, 140)
    assert drawn == []  # the placeholder, not a layout
    molecule_image_uri("C" * DRAW_LIMIT, (200, 140))
    assert len(drawn) == 1  # at the limit: drawn


def test_the_grid_and_the_atom_map_say_why_a_molecule_is_not_drawn(monkeypatch):
    said, placeholder = [], depict.placeholder_png
    monkeypatch.setattr(depict, "placeholder_png", lambda text, size: said.append(text) or placeholder(text, size))
    grid = grid_image(["CCO", HUGE, "C1CC"], ["ethanol", "chain", "broken"], per_row=3, size=(240, 190))
    assert said == [f"chain\n(not drawn: {DRAW_LIMIT + 1} heavy atoms (over {DRAW_LIMIT}))", "broken\n(cannot be read)"]
    assert grid.size == (720, 190)  # RDKit's own grid drew those two cells blank, legend and all
    assert all(len(set(grid.crop((x, 0, x + 240, 190)).getdata())) > 1 for x in (0, 240, 480))
    picture = Image.open(io.BytesIO(draw_atom_contributions(HUGE, np.ones(DRAW_LIMIT + 1), size=(460, 340))))
    assert picture.size == (460, 340) and len(set(picture.getdata())) > 1  # the note is written on it
