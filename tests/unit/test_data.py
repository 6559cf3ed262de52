import io

import numpy as np
import pytest

from chemlm_engine.molecules import canonicalize
from chemlm_engine.data import (length_bins, make_split, murcko_scaffold, random_split, read_csv,
                                scaffold_split)
from chemlm_engine.errors import DataError, InvalidSmilesError


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


def test_candidates_may_lack_labels_but_not_a_number_where_one_is_given():
    text = "SMILES,target\nCCO,1.0\nc1ccccc1,\nCC(=O)O,abc\nCCN, \n"
    data, report = read_csv(io.StringIO(text), labels_required=False)
    assert data.smiles == ["CCO", "c1ccccc1", "CCN"] and np.isnan(data.labels[1:]).all()
    assert [i.row for i in report.unlabeled] == [3]  # a typo is still reported, a blank is a candidate
    assert report.summary().endswith("1 unlabeled, 0 duplicates merged, 0 standardised; 2 without a label, kept as "
                                     "candidates to measure")
    data, report = read_csv(io.StringIO("smiles\nCCO\nOCC\n"), labels_required=False)  # no label column at all
    assert data.smiles == ["CCO"] and np.isnan(data.labels).all()
    assert report.summary().endswith("1 duplicate merged, 0 standardised; 2 without a label, kept as candidates "
                                     "to measure")
    with pytest.raises(DataError, match="label column"):
        read_csv(io.StringIO("smiles\nCCO\n"))


def test_labels_saved_with_decimal_commas_are_read_as_numbers_unless_they_could_be_thousands():
    data, report = read_csv(io.StringIO("smiles;logd\nCCO;-0,31\nCCN;1,5\nCCC;2\nCCCC;n.d.\n"))
    assert data.labels.tolist() == [-0.31, 1.5, 2.0] and [i.row for i in report.unlabeled] == [4]
    _, report = read_csv(io.StringIO('smiles,y\nCCO,"1,250"\nCCN,"2,000"\nCCC,3\n'))  # three digits after commas
    assert [i.row for i in report.unlabeled] == [1, 2]
    _, report = read_csv(io.StringIO("smiles;logd\nCCO;0,5\nCCN;1.5\nCCC;2\n"))  # a decimal point in the column
    assert [i.row for i in report.unlabeled] == [1]


def test_canonicalize_gives_one_form_per_molecule():
    assert canonicalize("OCC") == canonicalize("C(O)C") == "CCO"
    with pytest.raises(InvalidSmilesError, match="empty"):
        canonicalize("  ")
