"""Library files as chemists have them: SMILES files (ZINC, Enamine and RDKit write ``SMILES name`` lines, with a
header or without), CXSMILES (Enamine's REAL files carry an extension on most molecules), Parquet, compressed (SD files:
test_sd_files.py)."""
import bz2
import gzip
import io
import lzma

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rdkit import Chem

from chemlm_engine.errors import DataError, InvalidSmilesError
from chemlm_engine.library import predict_library
from chemlm_engine.library_results import library_window
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import canonicalize, prepare_smiles, split_smiles_line
from chemlm_engine.predict import parse_pasted, predict_csv
from chemlm_engine.tables import columns_of, count_rows, pick_column, read_table

ZINC_STYLE = "smiles zinc_id\nCCO ZINC1\nc1ccccc1O ZINC2\n\nC[C@H](N)C(=O)O |&1:1| ZINC3\nnot_a_smiles ZINC4\n"
RDKIT_STYLE = "CCO ethanol\r\nCCN\r\nCC(=O)O acetic acid\r\n"


@pytest.fixture(scope="module")
def regressor(regressor_dir) -> RegressionModel:
    return RegressionModel.load(regressor_dir, "cpu")


def test_a_smiles_file_with_a_header_line_takes_its_column_names(tmp_path):
    path = tmp_path / "zinc.smi"
    path.write_text(ZINC_STYLE)
    table = read_table(path)
    assert list(table.frame.columns) == ["smiles", "zinc_id"]
    assert table.frame["zinc_id"].tolist() == ["ZINC1", "ZINC2", "", "ZINC3", "ZINC4"]
    assert table.frame["smiles"].tolist()[3] == "C[C@H](N)C(=O)O |&1:1|"  # the extension stays with its SMILES
    assert table.problems == [None, None, "empty", None, None] and count_rows(path) == 5


@pytest.mark.parametrize("name, text", [("lib.csv", "smiles,name\nCCO,a\n\nCCN,b\n\n,\n  \n"),
                                        ("lib.smi", "CCO a\n\nCCN b\n\n\n"),
                                        ("lib.tsv", "smiles\tname\nCCO\ta\n\t\nCCN\tb\n\t\n")])
def test_the_blank_lines_that_end_a_file_are_no_rows(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    table = read_table(path)
    assert table.problems == [None, "empty", None] and count_rows(path) == 3  # a blank line between data is a row


def test_a_smiles_file_without_a_header_starts_with_a_molecule(tmp_path):
    path = tmp_path / "plain.smi"
    path.write_bytes(b"\xef\xbb\xbf" + RDKIT_STYLE.encode())  # with a BOM and Windows line ends
    frame = read_table(path).frame
    assert frame.to_dict("list") == {"smiles": ["CCO", "CCN", "CC(=O)O"], "name": ["ethanol", "", "acetic acid"]}
    assert count_rows(path) == 3
    path.write_text("C1CC broken\nCCO ethanol\n")  # a broken first molecule is a row (with its error), not a header
    assert read_table(path).frame["smiles"].tolist() == ["C1CC", "CCO"] and count_rows(path) == 2


def test_the_same_lines_as_a_csv_are_told_their_first_line_is_a_molecule(tmp_path):
    path = tmp_path / "plain.csv"
    path.write_text(RDKIT_STYLE)
    with pytest.raises(DataError, match="is a molecule, not a header.*extension .smi"):
        pick_column(columns_of(path), None, ("smiles",), "SMILES")
    with pytest.raises(DataError, match="looked for smiles.*rename yours to smiles.*--smiles-column"):  # a header
        pick_column(["id", "structure"], None, ("smiles",), "SMILES")
    with pytest.raises(DataError, match=r"rename yours to measured$"):  # no command takes an option for this one
        pick_column(["id", "value"], None, ("measured",), "measured value")


def test_an_uploaded_file_is_read_as_the_kind_its_name_says(tmp_path):
    upload = io.BytesIO(RDKIT_STYLE.encode())
    upload.name = "mine.smi"
    assert columns_of(upload) == ["smiles", "name"]
    pd.DataFrame({"SMILES": ["CCO"], "ID": ["x"]}).to_parquet(tmp_path / "lib.parquet")
    parquet = io.BytesIO((tmp_path / "lib.parquet").read_bytes())
    parquet.name = "lib.parquet"
    assert columns_of(parquet) == ["SMILES", "ID"]
    broken = io.BytesIO(b"not parquet at all")
    broken.name = "broken.parquet"
    with pytest.raises(DataError, match="cannot read broken.parquet"):
        columns_of(broken)


def test_a_smiles_file_is_predicted_one_row_per_line_on_the_page_path_and_the_library_path(regressor,
                                                                                           regressor_dir, tmp_path):
    path = tmp_path / "zinc.smi"
    path.write_text(ZINC_STYLE)
    page = predict_csv(regressor, path)
    assert page["zinc_id"].tolist() == ["ZINC1", "ZINC2", "", "ZINC3", "ZINC4"]
    assert page["prediction"].notna().tolist() == [True, True, False, True, False]
    assert page["error"].tolist()[2] == "empty" and "parse" in page["error"].tolist()[4]
    summary = predict_library(regressor_dir, path, tmp_path / "out.parquet", chunk_rows=2)
    streamed = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == len(streamed) == 5 and summary.invalid == 2
    assert streamed["canonical_smiles"].tolist()[3] == canonicalize("C[C@H](N)C(=O)O")
    packed = tmp_path / "zinc.smi.gz"
    packed.write_bytes(gzip.compress(ZINC_STYLE.encode()))
    predict_library(regressor_dir, packed, tmp_path / "packed.parquet", chunk_rows=2)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "packed.parquet"), streamed)


@pytest.mark.parametrize("module", [gzip, bz2, lzma])
def test_a_compressed_library_is_read_as_what_its_inner_name_says(tmp_path, module):
    suffix = {gzip: ".gz", bz2: ".bz2", lzma: ".xz"}[module]
    path = tmp_path / f"zinc.smi{suffix}"
    path.write_bytes(module.compress(ZINC_STYLE.encode()))
    assert read_table(path).frame["zinc_id"].tolist() == ["ZINC1", "ZINC2", "", "ZINC3", "ZINC4"]
    assert count_rows(path) == 5
    upload = io.BytesIO(path.read_bytes())
    upload.name = path.name  # as the app's upload has it
    assert columns_of(upload) == ["smiles", "zinc_id"]


@pytest.mark.parametrize("name, text", [
    ("lib.csv.gz", "smiles\n" + "".join(f"C{'C' * (i % 40)}O\n" for i in range(5000))),
    ("lib.sdf.gz", (Chem.MolToMolBlock(Chem.MolFromSmiles("CCCCCCCCO")) + "$$$$\n") * 3000)])
def test_a_damaged_compressed_file_is_one_clear_error(tmp_path, name, text):
    whole = gzip.compress(text.encode())
    path = tmp_path / name
    path.write_bytes(whole[:len(whole) // 2])  # a download cut short
    upload = io.BytesIO(path.read_bytes())
    upload.name = name  # as the app's upload has it: named by its file name, not its object
    for read in (count_rows, read_table):
        for source in (path, upload):
            with pytest.raises(DataError, match=f"cannot read .*{name}: Compressed file ended"):
                read(source)


@pytest.mark.parametrize("cxsmiles, plain", [("CCO |$;;$|", "CCO"), ("C[C@H](O)CC |o1:1,r|", "C[C@H](O)CC"),
                                            ("CCO\t|$foo bar;;$|", "CCO")])
def test_a_cxsmiles_extension_is_read(cxsmiles, plain):
    assert prepare_smiles(cxsmiles).smiles == canonicalize(plain)


@pytest.mark.parametrize("text", ["CCO ethanol", "CCO |x", "CCO |a| |b|", "C C O |$;;$|"])
def test_whitespace_outside_a_cxsmiles_extension_is_still_an_error(text):
    with pytest.raises(InvalidSmilesError, match="whitespace"):
        canonicalize(text)


def test_an_enamine_cxsmiles_file_is_a_tab_separated_table_with_a_header(regressor, tmp_path):
    path = tmp_path / "real.cxsmiles"
    path.write_text("smiles\tidnumber\tMW\nC[C@H](N)C(=O)O |&1:1|\tZ1\t89.1\nCC(C)O\tZ2\t60.1\n")
    result = predict_csv(regressor, path)
    assert result["idnumber"].tolist() == ["Z1", "Z2"] and result["prediction"].notna().all()


def test_pasted_cxsmiles_keeps_its_extension_and_its_name():
    assert parse_pasted("CCO |$;;$| ethanol, 96 %\n\n  CCN  \nC[C@H](N)C(=O)O |&1:1|") == (
        ["CCO |$;;$|", "CCN", "C[C@H](N)C(=O)O |&1:1|"], ["ethanol, 96 %", "", ""], [1, 3, 4])


@settings(deadline=None)  # a loaded CI machine may stall one example: its time is not what this checks
@given(st.text(alphabet=st.sampled_from("C( )|=1\t&:$;O\nN"), max_size=30))
def test_splitting_any_line_keeps_the_line_in_order_and_never_raises(line):
    smiles, name = split_smiles_line(line)
    assert smiles == smiles.strip() and name == name.strip() and not (name and not smiles)
    assert " ".join(line.split()).startswith(" ".join(f"{smiles} {name}".split()))


def test_a_text_librarys_number_columns_come_out_as_numbers_and_its_ids_as_text(regressor_dir, tmp_path):
    source = tmp_path / "vendor.csv"
    source.write_text("compound_id,SMILES,price,stock,plate,note,row\n"
                      "00007,CCO,0.134,12,A1,,r1\n"
                      "00008,c1ccccc1O,1,,7,,r2\n"
                      "00009,CC(=O)O,-2.5,3,B2,,r3\n")
    output = tmp_path / "out.parquet"
    predict_library(regressor_dir, source, output, chunk_rows=2)  # the types hold across chunks
    frame = pd.read_parquet(output, dtype_backend="numpy_nullable")
    assert frame["price"].tolist() == [0.134, 1.0, -2.5] and str(frame["price"].dtype) == "Float64"
    assert frame["stock"].tolist() == [12, pd.NA, 3] and str(frame["stock"].dtype) == "Int64"
    # leading zeros (IDs), a column with text among its numbers, and a column with nothing in it stay text
    assert frame["compound_id"].tolist() == ["00007", "00008", "00009"]
    assert frame["plate"].tolist() == ["A1", "7", "B2"] and frame["note"].tolist() == ["", "", ""]
    # the input's row first, as a CSV or Excel output has it; the file's own "row" kept under another name
    assert list(frame.columns[:3]) == ["row", "compound_id", "SMILES"] and frame["row"].tolist() == [1, 2, 3]
    assert frame["row (input)"].tolist() == ["r1", "r2", "r3"] and frame["prediction"].notna().all()
    window, count = library_window(output, -100, 100, inside_only=False, order="highest logD first")
    assert count == 3 and sorted(window["row"]) == [1, 2, 3] and window["stock"].isna().sum() == 1
    assert window.set_index("row").loc[1, "stock"] == 12 and str(window["stock"].dtype) == "Int64"


def test_a_library_jobs_progress_says_what_a_cancel_now_would_keep():
    """"predicted 200 of 6,000 rows", then Cancel, then "nothing was kept": rows are kept a whole chunk at a time."""
    from chemlm_engine.library import progress_text

    assert progress_text(4200, 6000, 1000) == "predicted 4,200 of 6,000 rows (4,000 kept if cancelled now)"
    assert progress_text(200, 6000, 1000) == "predicted 200 of 6,000 rows (0 kept if cancelled now)"
    assert progress_text(4000, 6000, 1000) == "predicted 4,000 of 6,000 rows"  # a chunk just written
    assert progress_text(6000, 6000, 4096) == "predicted 6,000 of 6,000 rows"  # the last, shorter chunk
