"""Ionisation classes at pH 7.4 from substructure rules."""
import pytest
from rdkit import Chem

from chemlm_engine.ionisation import count_ionisable, ionisation_class


@pytest.mark.parametrize("smiles, expected", [
    ("CCO", "neutral"), ("c1ccncc1", "neutral"), ("Nc1ccccc1", "neutral"), ("CC(=O)NC", "neutral"),
    ("NS(=O)(=O)c1ccccc1", "neutral"), ("C=CN(C)C", "neutral"), ("Cn1nnnc1C", "neutral"),  # no acidic H
    ("CC(=O)O", "acid"), ("CC(=O)[O-]", "acid"), ("Cc1nn[nH]n1", "acid"), ("Cc1[nH]nnn1", "acid"),
    ("CC(=O)NS(=O)(=O)c1ccccc1", "acid"), ("CS(=O)(=O)O", "acid"),
    ("CCN", "base"), ("C1CCNCC1", "base"), ("NCc1ccccc1", "base"), ("C[NH3+]", "base"), ("NC(=N)N", "base"),
    ("CC(=O)N1CCNCC1", "base"),  # the amide nitrogen is not basic, the other one is
    ("NCC(=O)O", "zwitterion"),
])
def test_ionisation_class(smiles, expected):
    assert ionisation_class(Chem.MolFromSmiles(smiles)) == expected


def test_groups_are_counted_once_each():
    assert count_ionisable(Chem.MolFromSmiles("OC(=O)CCC(=O)O")) == (2, 0)
    assert count_ionisable(Chem.MolFromSmiles("CN1CCN(C)CC1")) == (0, 2)
