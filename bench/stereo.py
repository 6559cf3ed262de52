"""Does the default model treat stereo as chemistry does? Enantiomers have one logD; the model reads stereo marks. On
the 798 molecules the default never trained on (random split seed 0: calibration part and test split), each chiral
one is predicted as given, averaged with its mirror image (every tetrahedral centre inverted), as whichever of the
two has the smaller SMILES (so both enantiomers get one number), and with its stereo removed: R² per part, MAE on
the chiral molecules, and how far the mirror image and the stereo-free form move the prediction.

    .venv/bin/python bench/stereo.py
"""
from __future__ import annotations

import warnings

import numpy as np
from rdkit import Chem
from sklearn.metrics import r2_score

from chemlm_engine.predict import load_predictor
from chemlm_engine.spec import DEFAULT_REGRESSOR
from distill_coverage import unseen_molecules


def mirror(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    flip = {Chem.ChiralType.CHI_TETRAHEDRAL_CW: Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
            Chem.ChiralType.CHI_TETRAHEDRAL_CCW: Chem.ChiralType.CHI_TETRAHEDRAL_CW}
    for atom in mol.GetAtoms():
        atom.SetChiralTag(flip.get(atom.GetChiralTag(), atom.GetChiralTag()))
    return Chem.MolToSmiles(mol)


def without_stereo(smiles: str) -> str:
    mol = Chem.MolFromSmiles(smiles)
    Chem.RemoveStereochemistry(mol)
    return Chem.MolToSmiles(mol)


def main() -> None:
    smiles, labels, n = unseen_molecules()
    chiral = np.array(["@" in s for s in smiles])
    model = load_predictor(DEFAULT_REGRESSOR, "cpu")
    given = model.predict(smiles)[0]
    mirrored = model.predict([mirror(s) for s in smiles])[0]
    flat = model.predict([without_stereo(s) for s in smiles])[0]
    print(f"{chiral.sum()} of {len(smiles)} molecules have a specified tetrahedral centre\n")
    print("| prediction | R² calibration part | R² test | MAE, chiral molecules |\n|---|---|---|---|")
    one_of_pair = np.where([s <= mirror(s) for s in smiles], given, mirrored)  # the same enantiomer for both
    for name, p in (("as given", given), ("mean with the mirror image", (given + mirrored) / 2),
                    ("one enantiomer of each pair (the smaller SMILES)", one_of_pair), ("stereo removed", flat)):
        print(f"| {name} | {r2_score(labels[:n], p[:n]):.4f} | {r2_score(labels[n:], p[n:]):.4f} "
              f"| {np.abs(labels - p)[chiral].mean():.4f} |")
    for name, p in (("mirror image", mirrored), ("stereo removed", flat)):
        change = np.abs(p - given)[chiral]
        print(f"\n{name}: the prediction moves by {change.mean():.4f} logD on average, at most {change.max():.4f}")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
