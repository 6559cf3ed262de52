import io

import numpy as np
import pytest

from chemlm_engine.molecules import canonicalize
from chemlm_engine.data import (length_bins, make_split, murcko_scaffold, random_split, read_csv,
                                scaffold_split)
from chemlm_engine.errors import DataError, InvalidSmilesError


def test_bundled_lipophilicity_is_complete(lipo):
    assert len(lipo) == 4200
    assert lipo.labels.min() >= -1.6 and lipo.labels.max() <= 4.6


@pytest.mark.parametrize("kind", ["random", "scaffold"])
def test_split_is_deterministic_disjoint_and_complete(lipo, kind):
    a = make_split(lipo, kind, seed=3)
    b = make_split(lipo, kind, seed=3)
    c = make_split(lipo, kind, seed=4)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
    assert not np.array_equal(a.test, c.test)
    parts = [set(a.train), set(a.val), set(a.test)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert len(parts[0] | parts[1] | parts[2]) == len(lipo)
    assert abs(len(a.train) - 0.8 * len(lipo)) <= 0.02 * len(lipo)


def test_scaffold_split_shares_no_scaffold(lipo):
    split = scaffold_split(lipo.smiles, seed=0)
    scaffolds = {part: {murcko_scaffold(lipo.smiles[i]) for i in getattr(split, part)}
                 for part in ("train", "val", "test")}
    assert not scaffolds["train"] & scaffolds["test"]
    assert not scaffolds["train"] & scaffolds["val"]
    assert not scaffolds["val"] & scaffolds["test"]


def test_random_split_rejects_bad_fractions():
    with pytest.raises(DataError):
        random_split(10, (0.5, 0.5, 0.5))


def test_csv_rows_are_reported_not_dropped_silently():
    text = ("SMILES,target\n"
            "CCO,1.0\n"           # row 1 ok
            "C1CC,2.0\n"          # row 2 unclosed ring
            "OCC,3.0\n"           # row 3 duplicate of row 1 (same molecule)
            "c1ccccc1,\n"         # row 4 missing label
            "CC(=O)O,abc\n"       # row 5 non-numeric label
            "C(C)(C)(C)(C)C,1\n"  # row 6 pentavalent carbon
            "CCN,0.5\n")          # row 7 ok
    data, report = read_csv(io.StringIO(text))
    assert data.smiles == ["CCO", "CCN"]
    assert data.labels.tolist() == [2.0, 0.5]  # duplicate labels averaged
    assert [(i.row, i.input) for i in report.invalid] == [(2, "C1CC"), (6, "C(C)(C)(C)(C)C")]
    assert "valence" in report.invalid[1].reason.lower()
    assert [i.row for i in report.unlabeled] == [4, 5]
    assert "missing" in report.unlabeled[0].reason and "not a number" in report.unlabeled[1].reason
    assert [i.row for i in report.duplicates] == [3] and "row 1" in report.duplicates[0].reason
    assert len(report.to_frame()) == 5


def test_csv_columns_can_be_named_and_missing_ones_are_explained():
    text = "mol,logd,smiles\nCCO,1.5,not-used\n"
    data, _ = read_csv(io.StringIO(text), smiles_col="mol", label_col="logd")
    assert data.smiles == ["CCO"]
    with pytest.raises(DataError, match="label column"):
        read_csv(io.StringIO("smiles,other\nCCO,1\n"))


def test_canonicalize_gives_one_form_per_molecule():
    assert canonicalize("OCC") == canonicalize("C(O)C") == "CCO"
    with pytest.raises(InvalidSmilesError, match="empty"):
        canonicalize("  ")


def test_length_bins_cover_every_molecule(lipo):
    bins = length_bins(lipo.smiles, 20)
    assert len(bins) == 20
    assert bins["cumulative_frequency"].iloc[-1] == len(lipo)
    assert bins["bin_start"].iloc[0] == min(len(s) for s in lipo.smiles)
    assert np.all(np.diff(bins["bin_start"]) > 0)
