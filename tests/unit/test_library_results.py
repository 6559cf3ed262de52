"""A finished library prediction read in batches: its distribution and the rows in a logD window."""
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from chemlm_engine import library_results
from chemlm_engine.library_results import library_window, predictions_of


def _output(path, in_domain=(True, False, None, True, True, False, True)):
    """A library's output as the streamed path writes it: the file's columns, then the results (None: invalid)."""
    predictions = [1.0, 2.0, None, 3.0, 2.5, 1.5, 0.5]
    table = pa.table({"id": [f"Z{i}" for i in range(7)], "smiles": ["C"] * 7, "canonical_smiles": ["C"] * 7,
                      "prediction": pa.array(predictions, pa.float64()),
                      "in_domain": pa.array([None if p is None else d for p, d in zip(predictions, in_domain)],
                                            pa.bool_())})
    pq.write_table(table, path)
    return path


def test_the_window_keeps_input_order_and_row_numbers_across_batches_and_counts_past_its_limit(tmp_path,
                                                                                            monkeypatch):
    monkeypatch.setattr(library_results, "WINDOW_BATCH", 3)  # four rows of the window in three batches
    output = _output(tmp_path / "predictions.parquet")
    rows, count = library_window(output, 1.0, 2.5)
    assert count == 4 and rows["row"].tolist() == [1, 2, 5, 6] and rows["id"].tolist() == ["Z0", "Z1", "Z4", "Z5"]
    assert list(rows.columns[:3]) == ["row", "id", "smiles"]
    first, count = library_window(output, 1.0, 2.5, limit=3)
    assert count == 4 and first["row"].tolist() == [1, 2, 5]
    inside, count = library_window(output, 1.0, 2.5, inside_only=True)
    assert count == 2 and inside["row"].tolist() == [1, 5]
    none, count = library_window(output, 5.0, 6.0)
    assert count == 0 and none.empty and list(none.columns) == ["row", "id", "smiles", "canonical_smiles",
                                                              "prediction", "in_domain"]


def test_the_distribution_leaves_out_invalid_rows_and_says_where_no_domain_was_known(tmp_path):
    values, domain = predictions_of(_output(tmp_path / "a.parquet"))
    assert values.tolist() == [1.0, 2.0, 3.0, 2.5, 1.5, 0.5]
    assert domain.tolist() == ["inside", "outside", "inside", "inside", "outside", "inside"]
    _, unknown = predictions_of(_output(tmp_path / "b.parquet", in_domain=(None,) * 7))  # no training set saved
    assert set(unknown) == {"unknown"}
    frame = pd.read_parquet(tmp_path / "a.parquet")
    assert np.isnan(frame["prediction"][2])  # the invalid row is in the file, one row per input


def test_an_output_written_before_the_applicability_domain_still_reads(tmp_path):
    output = tmp_path / "old.parquet"
    pq.write_table(pq.read_table(_output(tmp_path / "new.parquet")).drop(["in_domain"]), output)
    values, domain = predictions_of(output)
    assert len(values) == 6 and set(domain) == {"unknown"}
    rows, count = library_window(output, 1.0, 2.5, inside_only=True)  # nothing known to be inside: no filter
    assert count == 4 and rows["row"].tolist() == [1, 2, 5, 6]


def test_the_first_rows_of_a_window_can_be_its_highest_lowest_or_most_certain_across_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(library_results, "WINDOW_BATCH", 3)
    output = _output(tmp_path / "one-model.parquet")  # window 1.0-2.5: rows 1, 2, 5, 6 (1.0, 2.0, 2.5, 1.5)
    assert library_window(output, 1.0, 2.5, limit=2, order="highest logD first")[0]["row"].tolist() == [5, 2]
    lowest, count = library_window(output, 1.0, 2.5, limit=3, order="lowest logD first")
    assert count == 4 and lowest["row"].tolist() == [1, 6, 2]
    assert library_window(output, 1.0, 2.5, order="highest logD first")[0]["row"].tolist() == [5, 2, 6, 1]
    # one model has no members' spread: its rows stay in input order
    assert library_window(output, 1.0, 2.5, limit=2, order="most certain first")[0]["row"].tolist() == [1, 2]
    spread = pq.read_table(output).append_column("uncertainty", pa.array([0.3, 0.1, None, 0.2, 0.1, 0.05, 0.4]))
    pq.write_table(spread, tmp_path / "ensemble.parquet")
    certain, _ = library_window(tmp_path / "ensemble.parquet", 1.0, 2.5, limit=3, order="most certain first")
    assert certain["row"].tolist() == [6, 2, 5]  # 0.05, then the tie at 0.1 in input order


def test_a_library_is_scored_against_a_measured_column_of_its_file_read_alone(tmp_path):
    """The metrics of a streamed prediction read back from its output: the input's own columns (one renamed beside
    a result column of the same name), cells that are not numbers said, the model's own training molecules left out."""
    from chemlm_engine.library_results import input_columns, measured_frame
    from chemlm_engine.predict.batch import measured_metrics

    table = pa.table({"row": [1, 2, 3, 4, 5], "id": list("abcde"), "smiles": ["C"] * 5,
                      "prediction (input)": ["1.5", "n.d.", "2.0", "", "4.5"], "canonical_smiles": ["C"] * 5,
                      "prediction": pa.array([1.0, 2.0, 2.5, None, 3.0], pa.float64()),
                      "interval_low": [0.0, 1.0, 1.0, None, 3.2], "interval_high": [2.0, 3.0, 4.0, None, 4.0],
                      "in_training": [False, False, True, None, False]})
    pq.write_table(table, tmp_path / "out.parquet")
    assert input_columns(tmp_path / "out.parquet") == ["id", "smiles", "prediction (input)"]
    frame = measured_frame(tmp_path / "out.parquet", "prediction")  # the input's name: its renamed column is read
    assert frame["measured"].tolist()[::2] == [1.5, 2.0, 4.5] and np.isnan(frame["measured"][1])
    assert frame["row"].tolist() == [1, 2, 3, 4, 5] and frame.attrs["measured_column"] == "prediction"
    assert "n.d." in frame.attrs["measured_note"]
    metrics = measured_metrics(frame)  # rows 1 and 5: row 3 is a training molecule, 2 and 4 lack a value
    assert metrics["n"] == 2 and metrics["in_training"] == 1 and metrics["coverage"] == 0.5
    assert metrics["mae"] == 1.0
    assert measured_frame(tmp_path / "out.parquet", "prediction (input)")["measured"].equals(frame["measured"])
