"""Excel workbooks as chemists keep compound lists: the first sheet read as a table, one row per sheet row between
the header and the last filled row, numbers as their values (IDs kept with a zero-padding format's zeros)."""
import io

import pandas as pd
import pytest
from openpyxl import Workbook
from openpyxl.styles import Font

from chemlm_engine.errors import DataError, OutputError
from chemlm_engine.library import predict_library
from chemlm_engine.model import RegressionModel
from chemlm_engine.predict import load_predictor, predict_csv
from chemlm_engine.tables import EXCEL_ROWS, columns_of, count_rows, pick_column, read_table, write_xlsx


def _workbook(path) -> None:
    book = Workbook()
    sheet = book.active
    sheet.append([])  # a blank first row: the header is the first filled one
    sheet.append(["ID", "SMILES", "logD", None])  # an empty header cell at the end: no column
    sheet.append(["CPD-1", "CCO", 1.5])
    sheet.append([])  # a blank row between filled ones is a row
    sheet.append([1003, "c1ccccc1O", 2])
    sheet.append([None, "C1CC", None])  # a broken SMILES keeps its row (and its error)
    sheet.cell(row=30, column=6).font = Font(bold=True)  # formatting far below: the sheet reaches row 30, no rows
    book.create_sheet("notes").append(["ignored", "second sheet"])
    book.save(path)


@pytest.fixture(scope="module")
def regressor(regressor_dir) -> RegressionModel:
    return RegressionModel.load(regressor_dir, "cpu")


def test_the_first_sheet_is_a_table_from_its_header_to_its_last_filled_row(tmp_path):
    _workbook(tmp_path / "compounds.xlsx")
    table = read_table(tmp_path / "compounds.xlsx")
    assert table.frame.to_dict("list") == {"ID": ["CPD-1", "", "1003", ""], "SMILES": ["CCO", "", "c1ccccc1O", "C1CC"],
                                           "logD": ["1.5", "", "2", ""]}
    assert table.problems == [None, "empty", None, None]
    assert count_rows(tmp_path / "compounds.xlsx") == 4
    upload = io.BytesIO((tmp_path / "compounds.xlsx").read_bytes())
    upload.name = "compounds.xlsx"  # as the app's upload has it
    assert columns_of(upload) == ["ID", "SMILES", "logD"] and count_rows(upload) == 4


def test_an_id_kept_with_leading_zeros_keeps_them(tmp_path):
    """Excel keeps such IDs as numbers shown through a "00000" format: read as 7, they would not join back."""
    book = Workbook()
    sheet = book.active
    sheet.append(["ID", "SMILES", "mass"])
    sheet.append([7, "CCO", 1234.5])
    sheet["A2"].number_format = "00000"
    sheet["C2"].number_format = "#,##0.00"  # a display format of a measured value: its value, not the thousands mark
    book.save(tmp_path / "ids.xlsx")
    assert read_table(tmp_path / "ids.xlsx").frame.to_dict("list") == {"ID": ["00007"], "SMILES": ["CCO"],
                                                                       "mass": ["1234.5"]}


def test_a_workbook_is_predicted_alike_on_the_page_path_and_the_library_path(regressor_dir, tmp_path):
    _workbook(tmp_path / "compounds.xlsx")
    model = load_predictor(regressor_dir, "cpu")  # as the app loads it: the precision the library path uses
    page = predict_csv(model, tmp_path / "compounds.xlsx", name_column="ID", measured_column="logD")
    assert page["prediction"].notna().tolist() == [True, False, True, False]
    assert page["error"][1] == "empty" and "parse" in page["error"][3]
    assert page["measured"].tolist()[0] == 1.5
    summary = predict_library(regressor_dir, tmp_path / "compounds.xlsx", tmp_path / "out.parquet", chunk_rows=2)
    streamed = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == len(streamed) == 4 and streamed["ID"].tolist() == ["CPD-1", "", "1003", ""]
    assert streamed["prediction"][0] == pytest.approx(page["prediction"][0], abs=1e-5)


def test_a_table_that_starts_below_and_right_of_a1_starts_there(tmp_path):
    book = Workbook()
    book.active["B3"], book.active["C3"], book.active["B4"], book.active["C4"] = "SMILES", "logD", "CCO", -0.3
    book.save(tmp_path / "offset.xlsx")
    assert read_table(tmp_path / "offset.xlsx").frame.to_dict("list") == {"SMILES": ["CCO"], "logD": ["-0.3"]}
    book.active["A9"].font = Font(bold=True)  # an empty but formatted cell: the sheet now reaches back to column A
    book.save(tmp_path / "offset.xlsx")
    assert read_table(tmp_path / "offset.xlsx").frame.to_dict("list") == {"SMILES": ["CCO"], "logD": ["-0.3"]}


def test_the_users_numbers_are_written_as_numbers_and_ids_as_text(tmp_path):
    """A file's own columns are read as text; written back into a workbook, a column of plain numbers is numbers
    again (it sums and sorts), while IDs with leading zeros or anything else that is not a number stay text."""
    from openpyxl import load_workbook

    frame = pd.DataFrame({"ID": ["00007", "A-12"], "logD": ["1.5", ""], "count": ["3", "-12"],
                          "note": ["-1 from lit", "n.d."]})
    write_xlsx(frame, tmp_path / "out.xlsx")
    rows = list(load_workbook(tmp_path / "out.xlsx").active.iter_rows(min_row=2, values_only=True))
    assert rows == [("00007", 1.5, 3, "-1 from lit"), ("A-12", None, -12, "n.d.")]  # no apostrophe before "-1"


def test_a_file_that_is_not_a_workbook_is_one_clear_error(tmp_path):
    path = tmp_path / "compounds.xlsx"
    path.write_text("smiles\nCCO\n")  # a CSV given the wrong name
    for read in (read_table, count_rows):
        with pytest.raises(DataError, match="cannot read .*compounds.xlsx .*save it again as .xlsx, or as CSV"):
            read(path)


def test_results_written_as_a_workbook_read_back_alike_with_formulas_defused(tmp_path):
    frame = pd.DataFrame({"ID": ["007", "=HYPERLINK(\"http://x\")", "tab\x01bell"], "prediction": [1.25, None, -0.5],
                          "in_domain": [True, False, None]})
    write_xlsx(frame, tmp_path / "out.xlsx")
    back = read_table(tmp_path / "out.xlsx").frame
    download = io.BytesIO(write_xlsx(frame))  # or its bytes, for the page's download
    download.name = "predictions.xlsx"
    pd.testing.assert_frame_equal(read_table(download).frame, back)
    assert back["ID"].tolist() == ["007", "=HYPERLINK(\"http://x\")", "tabbell"]  # as written, no apostrophe added
    assert back["prediction"].tolist() == ["1.25", "", "-0.5"] and back["in_domain"].tolist() == ["True", "False", ""]
    from openpyxl import load_workbook

    cell = load_workbook(tmp_path / "out.xlsx").active["A3"]
    assert cell.data_type == "s" and cell.value.startswith("=")  # text, never a formula Excel would run
    with pytest.raises(OutputError, match="do not fit a sheet"):
        write_xlsx(pd.DataFrame({"x": range(EXCEL_ROWS + 1)}), tmp_path / "huge.xlsx")


def test_a_title_and_notes_above_the_table_are_not_its_header(tmp_path):
    book = Workbook()
    sheet = book.active
    sheet["A1"], sheet["A2"] = "My compounds", "sent by J. Smith, May"  # a title and a note, as chemists keep them
    sheet["B4"], sheet["C4"], sheet["B5"], sheet["C5"], sheet["B7"] = "Compound ID", "Smiles", "CPD-1", "CCO", "CPD-2"
    book.save(tmp_path / "titled.xlsx")
    table = read_table(tmp_path / "titled.xlsx")
    assert table.frame.to_dict("list") == {"Compound ID": ["CPD-1", "", "CPD-2"], "Smiles": ["CCO", "", ""]}
    assert table.problems == [None, "empty", None] and count_rows(tmp_path / "titled.xlsx") == 3
    sheet["C4"] = "Structure"  # no header names a SMILES column: the first filled row is the header, as always
    book.save(tmp_path / "titled.xlsx")
    assert columns_of(tmp_path / "titled.xlsx") == ["My compounds"]
    with pytest.raises(DataError, match=r"'Structure' not found; columns are \['My compounds'\] \(a title above"):
        pick_column(columns_of(tmp_path / "titled.xlsx"), "Structure", ["smiles"], "SMILES")  # said, with the way out
