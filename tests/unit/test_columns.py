"""Which column holds what: a chemist's own column names are found without being renamed."""
import pandas as pd
import pytest

from chemlm_engine.columns import name_column, value_column
from chemlm_engine.data import molecules_from_frame
from chemlm_engine.errors import DataError


@pytest.mark.parametrize("columns, expected", [
    (["ID", "Structure", "logD7.4 (exp)"], "logD7.4 (exp)"),
    (["Compound ID", "SMILES", "Measured LogD pH 7.4", "Project"], "Measured LogD pH 7.4"),
    (["smiles", "clogP", "measured_logd"], "measured_logd"),  # a known name before a word inside a name
    (["smiles", "Label"], "Label"),
    (["Compound ID", "SMILES", "clogP", "Target Name"], None),  # computed, and ChEMBL's protein: not measured values
])
def test_the_measured_value_column_is_found_by_its_name(columns, expected):
    assert value_column(columns) == expected


def test_an_id_column_is_a_name_not_a_value():
    columns = ["Compound ID", "Structure", "logD7.4 (exp)"]
    assert name_column(columns) == "Compound ID" and value_column(columns) == "logD7.4 (exp)"
    moleculenet = ["CMPD_CHEMBLID", "exp", "smiles"]  # Lipophilicity.csv's own header
    assert name_column(moleculenet) == "CMPD_CHEMBLID" and value_column(moleculenet) == "exp"


def test_training_data_reads_the_label_from_a_column_named_as_a_measured_value():
    frame = pd.DataFrame({"ID": ["a", "b"], "Structure": ["CCO", "c1ccccc1O"], "logD7.4 (exp)": ["-0.3", "1.5"]})
    data, report = molecules_from_frame(frame, "Structure")
    assert list(data.labels) == [-0.3, 1.5] and report.n_rows == 2
    with pytest.raises(DataError, match="no label column"):
        molecules_from_frame(frame.drop(columns="logD7.4 (exp)"), "Structure")
