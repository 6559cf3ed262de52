"""Ionisable groups at pH 7.4 by substructure rules: which molecules are acids, bases or zwitterions.

logD at pH 7.4 is logP corrected for the charged fraction, so the groups that are mostly charged at that pH
matter most. The rules are deliberately few and conservative (pKa well below 7 for acids, well above 8
for bases); weakly basic aromatic nitrogens (pyridine, imidazole, anilines) count as neutral.
"""
from __future__ import annotations

from rdkit import Chem

__all__ = ["ACID_SMARTS", "BASE_SMARTS", "IONISATION_CLASSES", "count_ionisable", "ionisation_class"]

# name → SMARTS; both the neutral and the charged spelling of a group match.
ACID_SMARTS = {
    "carboxylic acid": "[CX3](=O)[OX2H1,OX1-]",
    "tetrazole": "[#7;H1,-1;$([#7]1:[#7]:[#7]:[#7]:[#6]:1),$([#7]1:[#7]:[#7]:[#6]:[#7]:1)]",  # 1H or 2H
    "acyl sulfonamide": "[#6]C(=O)[NX3H1,NX2-]S(=O)(=O)",
    "sulfonic / sulfuric acid": "[SX4](=O)(=O)[OX2H1,OX1-]",
    "phosphonic / phosphoric acid": "[PX4](=O)[OX2H1,OX1-]",
}
BASE_SMARTS = {
    # sp3 nitrogen bonded only to sp3 carbon or hydrogen: aliphatic amines (not amides, anilines, sulfonamides)
    "aliphatic amine": "[NX3;!$(N-[!#6;!#1]);!$(N-[#6]=,#,:*);!$(N-a)]",
    "protonated / quaternary amine": "[NX4+;!$(N-[!#6;!#1])]",
    "amidine / guanidine": "[CX3;!a](=[NX2;!a;!$(N-[!#6;!#1])])([#7X3;!a])",
}
IONISATION_CLASSES = ("neutral", "acid", "base", "zwitterion")
_PATTERNS = {kind: [Chem.MolFromSmarts(s) for s in table.values()]
             for kind, table in (("acid", ACID_SMARTS), ("base", BASE_SMARTS))}


def count_ionisable(mol: Chem.Mol) -> tuple[int, int]:
    """(acidic, basic) groups of ``mol`` that are mostly charged at pH 7.4 (distinct atoms matched)."""
    counts = []
    for kind in ("acid", "base"):
        anchors = {match[0] for pattern in _PATTERNS[kind] for match in mol.GetSubstructMatches(pattern)}
        counts.append(len(anchors))
    return counts[0], counts[1]


def ionisation_class(mol: Chem.Mol) -> str:
    """``neutral``, ``acid``, ``base`` or ``zwitterion`` (both) at pH 7.4, from :func:`count_ionisable`."""
    acids, bases = count_ionisable(mol)
    return IONISATION_CLASSES[(acids > 0) + 2 * (bases > 0)]
