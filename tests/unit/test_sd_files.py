"""SD files as vendors, ChEMBL and PubChem ship libraries: one row per record, its title and data fields as columns,
stereo from wedges or 3D kept, and the same errors as a SMILES line gets."""
import gzip
import io

import pandas as pd
import pytest
from rdkit import Chem
from rdkit.Chem import AllChem

from chemlm_engine.errors import DataError
from chemlm_engine.library import annotated_library, predict_library
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import canonicalize, prepare_smiles
from chemlm_engine.predict import load_predictor, predict_csv, result_columns
from chemlm_engine.filekinds import saved_suffix
from chemlm_engine.sdfile import frame_rows, write_sd
from chemlm_engine.tables import columns_of, count_rows, read_table

UNPARSEABLE = "no atoms here\n\n\n  X\nM  END\n$$$$\n"  # its counts line is not a molfile's
UNPARSEABLE_WITH_FIELDS = UNPARSEABLE.replace("$$$$", ">  <ID>\nV3\n\n>  <logD>\n2.0\n\n$$$$")  # kept as written


def _block(smiles: str, name: str, fields: dict[str, str], embed: bool = False, sanitize: bool = True) -> str:
    mol = Chem.MolFromSmiles(smiles, sanitize=sanitize)
    if embed:  # 3D coordinates and explicit hydrogens, as a docking or conformer tool writes them
        mol = Chem.AddHs(mol)
        AllChem.EmbedMolecule(mol, randomSeed=7)
    mol.SetProp("_Name", name)
    for key, value in fields.items():
        mol.SetProp(key, value)
    buffer = io.StringIO()
    with Chem.SDWriter(buffer) as writer:
        writer.SetKekulize(sanitize)
        writer.write(mol)
    return buffer.getvalue()


def _library() -> str:
    return (_block("c1ccccc1O", "phenol", {"ID": "V1", "logD": "1.5"})
            + _block("C[C@H](N)C(=O)O", "L-alanine", {"ID": "V2", "logD": "-2.9"}, embed=True)
            + UNPARSEABLE_WITH_FIELDS
            + _block("CCO.[Na+].[Cl-]", "ethanol, salted", {"ID": "V4"})  # no logD: that cell stays blank
            + _block("C(C)(C)(C)(C)C", "pentavalent", {"ID": "V5", "logD": "0"}, sanitize=False))


@pytest.fixture(scope="module")
def regressor(regressor_dir) -> RegressionModel:
    return RegressionModel.load(regressor_dir, "cpu")


def test_an_sd_file_is_a_table_of_one_row_per_record(tmp_path):
    path = tmp_path / "vendor.sdf"
    path.write_text(_library())
    table = read_table(path)
    frame = table.frame
    assert list(frame.columns) == ["smiles", "name", "ID", "logD"]
    assert frame["name"].tolist() == ["phenol", "L-alanine", "no atoms here", "ethanol, salted", "pentavalent"]
    assert frame["ID"].tolist() == ["V1", "V2", "V3", "V4", "V5"] and frame["logD"].tolist()[2:4] == ["2.0", ""]
    assert table.problems[2] == "cannot read this SD record (not a valid molfile)"
    assert [p for i, p in enumerate(table.problems) if i != 2] == [None] * 4
    # the stereocentre read from 3D coordinates, the hydrogens folded in
    assert canonicalize(frame["smiles"][1]) == canonicalize("C[C@H](N)C(=O)O")
    assert count_rows(path) == 5 and columns_of(path) == ["smiles", "name", "ID", "logD"]
    upload = io.BytesIO(path.read_bytes())
    upload.name = "vendor.sdf"  # as the app's upload has it
    assert count_rows(upload) == 5 and columns_of(upload) == ["smiles", "name", "ID", "logD"]


def test_a_record_gets_the_error_its_molecule_gets_as_smiles():
    upload = io.BytesIO(_block("C(C)(C)(C)(C)C", "x", {}, sanitize=False).encode())
    upload.name = "one.sdf"
    smiles = read_table(upload).frame["smiles"][0]
    assert smiles  # read, unsanitised: the chemistry is judged with every other input
    assert prepare_smiles(smiles).error == prepare_smiles("C(C)(C)(C)(C)C").error
    assert "valence" in prepare_smiles("C(C)(C)(C)(C)C").error


def test_an_sd_file_is_predicted_alike_on_the_page_path_and_the_library_path(regressor_dir, tmp_path):
    path = tmp_path / "vendor.sdf"
    path.write_text(_library())
    model = load_predictor(regressor_dir, "cpu")  # as the app loads it: the precision the library path uses
    page = predict_csv(model, path, name_column="name", measured_column="logD")
    assert page["prediction"].notna().tolist() == [True, True, False, True, False]
    assert page["measured"].tolist()[:2] == [1.5, -2.9]
    assert page["standardization"][3] == "removed [Na+].[Cl-]"
    assert "valence" in page["error"][4]
    summary = predict_library(regressor_dir, path, tmp_path / "out.parquet", chunk_rows=2)
    streamed = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == len(streamed) == 5 and summary.invalid == 2
    assert streamed["ID"].tolist() == ["V1", "V2", "V3", "V4", "V5"]
    assert streamed["prediction"].tolist()[:2] == pytest.approx(page["prediction"].tolist()[:2], abs=1e-5)
    annotated = io.BytesIO(annotated_library(tmp_path / "out.parquet", path))  # the app's download of a library job
    annotated.name = "predictions.sdf"
    back = read_table(annotated).frame
    assert back.columns.tolist()[:5] == ["smiles", "name", "ID", "logD", "chemlm_canonical_smiles"]
    assert back["chemlm_prediction"].tolist()[:2] == [f"{v:.6g}" for v in streamed["prediction"][:2]]
    packed = tmp_path / "vendor.sdf.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    predict_library(regressor_dir, packed, tmp_path / "packed.parquet", chunk_rows=2)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "packed.parquet"), streamed)


def test_predictions_go_back_into_a_copy_of_the_sd_file_record_by_record(regressor, tmp_path):
    path = tmp_path / "vendor.sdf.gz"  # compressed in, plain out
    path.write_bytes(gzip.compress(_library().encode()))
    frame = predict_csv(regressor, path)
    results = frame[result_columns(frame)]
    write_sd(path, *frame_rows(results), tmp_path / "annotated.sdf")
    in_memory = write_sd(path, *frame_rows(results))  # for a download
    assert in_memory == (tmp_path / "annotated.sdf").read_bytes()
    written = (tmp_path / "annotated.sdf").read_text()
    originals = _library().split("$$$$\n")[:-1]
    copies = written.split("$$$$\n")[:-1]
    assert len(copies) == 5 and all(copy.startswith(original) for original, copy in zip(originals, copies))
    back = read_table(tmp_path / "annotated.sdf").frame  # the file's own fields, then the results, per record
    assert back.columns.tolist()[:4] == ["smiles", "name", "ID", "logD"]
    assert back["chemlm_prediction"][:2].astype(float).tolist() == pytest.approx(frame["prediction"][:2], abs=1e-5)
    assert back["chemlm_canonical_smiles"][1] == canonicalize("C[C@H](N)C(=O)O")
    assert "chemlm_prediction>" not in copies[2] and "chemlm_error>\ncannot read this SD record" in copies[2]
    assert "valence" in copies[4].split("chemlm_error>\n")[1]
    with pytest.raises(ValueError, match="more records"):
        write_sd(path, *frame_rows(results[:4]), tmp_path / "short.sdf")


def test_an_sd_file_predicted_again_has_its_earlier_predictions_replaced_not_repeated(tmp_path):
    """Another reader keeps the first of two fields of one name: it would read the earlier model's value."""
    path = tmp_path / "vendor.sdf"
    path.write_text(_library())
    write_sd(path, ["prediction", "warnings"], [(1.0, "an old warning")] * 5, tmp_path / "once.sdf")
    write_sd(tmp_path / "once.sdf", ["prediction", "warnings"], [(2.0, None)] * 5, tmp_path / "twice.sdf")
    records = (tmp_path / "twice.sdf").read_text().split("$$$$\n")[:-1]
    assert all(r.count("<chemlm_prediction>") == 1 and "<chemlm_prediction>\n2\n\n" in r for r in records)
    back, original = read_table(tmp_path / "twice.sdf").frame, read_table(path).frame
    assert "chemlm_warnings" not in back and back["chemlm_prediction"].tolist() == ["2"] * 5  # the old one not left
    pd.testing.assert_frame_equal(back[original.columns], original)  # the file's own fields as they were


def test_records_before_the_first_readable_one_are_rows_and_a_file_of_none_is_empty(tmp_path):
    path = tmp_path / "late.sdf"
    path.write_text(UNPARSEABLE + _block("CCN", "ethylamine", {"ID": "A"}))
    table = read_table(path)
    assert table.frame.to_dict("list") == {"smiles": ["", "CCN"], "name": ["no atoms here", "ethylamine"],
                                           "ID": ["", "A"]}
    assert table.problems[0].startswith("cannot read this SD record") and table.problems[1] is None
    path.write_text("")
    with pytest.raises(DataError, match="empty"):
        read_table(path)


def test_blank_records_are_none_and_reading_counting_and_annotating_agree(tmp_path):
    path = tmp_path / "gaps.sdf"
    block = _block("CCN", "ethylamine", {"ID": "A"})
    path.write_text(block + "$$$$\n\n\n$$$$\n" + block + "\n\n")  # an empty record between, blank lines after
    table = read_table(path)
    assert table.frame["name"].tolist() == ["ethylamine"] * 2 and table.problems == [None, None]
    assert count_rows(path) == 2
    write_sd(path, ["prediction"], [(1.0,), (2.0,)], tmp_path / "out.sdf")
    assert read_table(tmp_path / "out.sdf").frame["chemlm_prediction"].tolist() == ["1", "2"]


def test_a_single_molfile_without_a_terminator_is_one_row(tmp_path):
    path = tmp_path / "one.mol"
    path.write_text(Chem.MolToMolBlock(Chem.MolFromSmiles("CC(=O)O")))
    assert read_table(path).frame["smiles"].tolist() == ["CC(=O)O"] and count_rows(path) == 1


@pytest.mark.parametrize("name, suffix", [("vendor.sdf", ".sdf"), ("Vendor.SDF.GZ", ".SDF.GZ"),
                                          ("my.library.smi.bz2", ".smi.bz2"), ("a.b.csv", ".csv"), ("notes", ".csv"),
                                          ("archive.gz", ".gz")])
def test_a_saved_upload_keeps_the_suffix_that_says_its_kind(name, suffix, tmp_path):
    assert saved_suffix(name) == suffix


def test_a_field_only_later_records_have_is_read_and_a_value_line_is_not_a_field(tmp_path):
    path = tmp_path / "merged.sdf"  # two vendors' files joined: the second adds a field
    second = _block("CCN", "ethylamine", {"ID": "B1", "Supplier": "Acme"}).replace(
        ">  <Supplier>", ">  <note>\n> 10 µM, see <assay>\n\n>  <Supplier>")  # a value line that looks like a header
    path.write_text(_block("CCO", "ethanol", {"ID": "A1"}) + UNPARSEABLE + second)
    table = read_table(path)
    assert table.frame.columns.tolist() == ["smiles", "name", "ID", "note", "Supplier"] == columns_of(path)
    assert table.frame.to_dict("list") == {"smiles": ["CCO", "", "CCN"],
                                           "name": ["ethanol", "no atoms here", "ethylamine"],
                                           "ID": ["A1", "", "B1"], "note": ["", "", "> 10 µM, see <assay>"],
                                           "Supplier": ["", "", "Acme"]}
    assert count_rows(path) == 3
    packed = tmp_path / "merged.sdf.gz"  # the field names are read in a pass of their own: compressed too
    packed.write_bytes(gzip.compress(path.read_bytes()))
    assert read_table(packed).frame.equals(table.frame)


def test_a_field_called_name_keeps_its_name_and_a_record_without_atoms_says_so(tmp_path):
    path = tmp_path / "vendor.sdf"
    path.write_text(_block("CCO", "ENM-001", {"name": "ethanol", "logD": "-0.3"})
                    + _block("", "ENM-002", {"name": "nothing drawn"}))  # a record of no atoms
    table = read_table(path)
    assert list(table.frame.columns) == ["smiles", "title", "name", "logD"]  # not name and name.1
    assert table.frame["name"].tolist() == ["ethanol", "nothing drawn"] and table.frame["title"][0] == "ENM-001"
    assert table.problems == [None, "this SD record's molfile has no atoms"]
