"""Bad input as a new user (or an attacker) gives it: nothing crashes, runs no code, loses a row or
predicts a wrong molecule without saying so. One test (or more) per item of the input-safety issue."""
import codecs
import io
import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chemlm_engine.spec import DataSpec, JobSpec, TrainConfig
from chemlm_engine.data import read_csv
from chemlm_engine.errors import ConfigError, DataError, InvalidSmilesError, ModelLoadError, StoreError
from chemlm_engine.jobs import run_job
from chemlm_engine.library import predict_library
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import MAX_SMILES_LENGTH, canonicalize, prepare_smiles
from chemlm_engine.predict import (PREDICTION_COLUMNS, add_applicability_domain, predict_csv, predict_smiles,
                                   user_table)
from chemlm_engine.store import RunStore
from chemlm_engine.tables import read_table, write_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def regressor(regressor_dir) -> RegressionModel:
    return RegressionModel.load(regressor_dir, "cpu")


# -- 1, 2: crashes ----------------------------------------------------------------------------------
def test_a_20000_atom_chain_is_an_error_row_not_a_segfault(regressor):
    # On the old main this killed the process inside RDKit's SMILES writer.
    result = predict_smiles(regressor, ["C" * 20000, "CCO", "C" * 100_000])
    assert result["error"].tolist()[0] == f"too long: 20,000 characters (the limit is {MAX_SMILES_LENGTH:,})"
    assert result["error"].tolist()[2].startswith("too long: 100,000")
    assert np.isfinite(result.loc[1, "prediction"])


def test_a_100000_character_csv_line_costs_one_row(regressor, tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("smiles\nCCO\n" + "C" * 100_000 + "\nCCN\n")
    result = predict_csv(regressor, path)
    assert result["prediction"].notna().tolist() == [True, False, True]
    assert "too long" in result.loc[1, "error"]


def test_names_as_a_series_with_any_index(regressor):
    names = pd.Series(["a", "b"], index=[10, 11])
    result = predict_smiles(regressor, pd.Series(["CCO", "CCN"], index=[5, 6]), names)
    assert result["name"].tolist() == ["a", "b"] and result["prediction"].notna().all()


# -- 3: no code from a model folder -----------------------------------------------------------------
def _booby_trap(folder: Path, marker: Path, claim_trust: bool) -> None:
    """Make ``folder``'s backbone and tokenizer point at a Python file that writes ``marker`` on import."""
    code = f"open({str(marker)!r}, 'w').write('ran')\nfrom transformers import BertModel as Evil\n"
    for target in (folder / "backbone", folder):
        (target / "evil.py").write_text(code)
    config = json.loads((folder / "backbone" / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil.Evil"}
    config["model_type"] = "evil-bert"  # no built-in class: only the shipped code could load it
    (folder / "backbone" / "config.json").write_text(json.dumps(config))
    meta = json.loads((folder / "regressor.json").read_text())
    meta["trust_remote_code"] = claim_trust
    (folder / "regressor.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("claim_trust", [True, False])
def test_a_model_folder_cannot_run_its_own_code(regressor_dir, tmp_path, claim_trust):
    import shutil

    folder = tmp_path / "gift"
    shutil.copytree(regressor_dir, folder)
    marker = tmp_path / "pwned"
    _booby_trap(folder, marker, claim_trust)
    with pytest.raises(ModelLoadError, match="trust_remote_code"):
        RegressionModel.load(folder, "cpu")
    assert not marker.exists()


# -- 4: one output row per input row ----------------------------------------------------------------
BLANKS = "id,smiles,note\nm1,CCO,first\n\nm3,CCN,third\n,,\nm5,c1ccccc1,fifth\nm6,CCC,x,extra\n"


def test_blank_and_ragged_rows_keep_their_place(regressor, tmp_path):
    path = tmp_path / "blanks.csv"
    path.write_text(BLANKS)
    result = predict_csv(regressor, path)
    assert result["row"].tolist() == [1, 2, 3, 4, 5, 6]
    assert result["error"].tolist()[1] == result["error"].tolist()[3] == "empty"
    assert "4 fields but the header has 3" in result.loc[5, "error"]
    assert result["prediction"].notna().tolist() == [True, False, True, False, True, False]
    assert result["id"].tolist() == ["m1", "", "m3", "", "m5", "m6"]  # the user's columns come along
    assert result["note"].tolist()[:1] == ["first"]


def test_the_library_path_keeps_blank_rows_too(regressor_dir, tmp_path):
    path = tmp_path / "lib.csv"
    path.write_text(BLANKS)
    summary = predict_library(regressor_dir, path, tmp_path / "out.parquet", chunk_rows=2)
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert summary.rows == len(out) == 6 and summary.invalid == 3
    assert out["id"].tolist() == ["m1", "", "m3", "", "m5", "m6"] and out["error"].tolist()[1] == "empty"


def test_training_data_reports_blank_rows_by_their_number():
    data, report = read_csv(io.StringIO("smiles,y\nCCO,1\n\nCCN,2\nCCC,3\n"))
    assert len(data) == 3 and [(i.row, i.reason) for i in report.invalid] == [(2, "empty")]


def test_a_bare_carriage_return_round_trips(regressor, tmp_path):
    path = tmp_path / "cr.csv"
    path.write_bytes(b'smiles,note\nCCO,"a\rb"\nCCN,"c\r\nd"\n')  # quoted, as a spreadsheet writes them
    result = predict_csv(regressor, path)
    assert result["note"].tolist() == ["a\rb", "c\r\nd"]
    write_csv(result, tmp_path / "out.csv")
    back = read_table(tmp_path / "out.csv").frame
    assert back["note"].tolist() == ["a\rb", "c\r\nd"] and len(back) == 2


# -- 5: no silently wrong molecule ------------------------------------------------------------------
@pytest.mark.parametrize("text, reason", [("C C O", "whitespace"), ("CCα", "not SMILES"), ("", "empty"),
                                          ("   ", "empty"), ("C1CC", "parse")])
def test_text_rdkit_would_misread_is_an_error(text, reason):
    with pytest.raises(InvalidSmilesError, match=reason):
        canonicalize(text)


@pytest.mark.parametrize("text, same_as", [("[H]C([H])([H])C([H])([H])O[H]", "CCO"), ("[H]/C(C)=C(/[H])C", "C/C=C/C"),
                                           ("F[C@]([H])(Cl)Br", "F[C@H](Cl)Br")])
def test_hydrogens_written_as_atoms_are_the_same_molecule(text, same_as):
    assert canonicalize(text) == canonicalize(same_as)  # not a string of [H] the model reads as unknown
    assert canonicalize("[2H]C([2H])([2H])O") == "[2H]C([2H])([2H])O"  # an isotope is kept


@pytest.mark.parametrize("salt, says", [
    ("CC(=O)[O-].CC(=O)[O-].[Ca+2]", "removed [Ca+2] and 1 more copy of the kept molecule"),  # not "removed" itself
    ("CN1CCCN=C1/C=C/c1cccs1.OC(=O)c1cc2ccccc2c(Cc2c3ccccc3cc(C(O)=O)c2O)c1O",  # pyrantel pamoate: pamoic acid kept
     "removed CN1CCCN=C1/C=C/c1cccs1 (kept the larger of 2 organic parts: check that it is the compound)"),
    ("OC(=O)c1ccccc1.[Na+]", "removed [Na+]")])
def test_what_standardisation_removed_is_said_as_a_chemist_reads_it(salt, says):
    from chemlm_engine.molecules import Standardization, prepare_smiles

    assert prepare_smiles(salt, Standardization()).changes[0] == says
    assert not any("metal" in change for change in prepare_smiles(salt, Standardization()).changes)


@pytest.mark.parametrize("complex_, metals", [("[Gd+3].[O-]C(=O)CN(CC(=O)[O-])CCN(CC(=O)[O-])CC(=O)[O-]", "Gd"),
                                             ("N.N.Cl[Pt]Cl", "Pt"), ("CC(=O)[O-].CC(=O)[O-].[Cu+2].[Na+]", "Cu")])
def test_a_removed_metal_is_said_to_leave_the_ligand_predicted_alone(complex_, metals):
    from chemlm_engine.molecules import Standardization, prepare_smiles

    said = prepare_smiles(complex_, Standardization()).changes
    assert f"removed the metal ({metals}): predicted as the part left, not as a complex or salt of the metal" in said


@pytest.mark.parametrize("ferrocene", ["[cH-]1cccc1.[cH-]1cccc1.[Fe+2]", "[CH-]1C=CC=C1.[CH-]1C=CC=C1.[Fe+2]"])
def test_an_organometallic_whose_ligand_needs_its_metal_is_an_error_that_names_the_metal(ferrocene):
    from chemlm_engine.molecules import Standardization, prepare_smiles

    error = prepare_smiles(ferrocene, Standardization()).error
    assert error.startswith("an organometallic: removed the metal (Fe) leaves c1cccc1, which is no molecule on its own")


@pytest.mark.parametrize("fragment", ["*CC*", "[1*]c1ccccc1", "CC(=O)[*:1]"])
def test_a_fragment_with_wildcards_is_an_error_not_a_molecule(fragment):
    with pytest.raises(InvalidSmilesError, match="wildcard or attachment point"):
        canonicalize(fragment)


def test_an_isotope_labelled_compound_is_predicted_as_its_parent_and_says_so():
    from chemlm_engine.molecules import Standardization, prepare_smiles

    labelled = prepare_smiles("[2H]C([2H])([2H])Oc1ccc(C[C@H]([2H])N)cc1[13CH3]", Standardization())
    assert labelled.smiles == canonicalize("COc1ccc(CCN)cc1C")  # the stereo centre only the label made is gone too
    assert labelled.changes == ("removed isotope labels ([13C], [2H])",)
    assert prepare_smiles("[18F]c1ccccc1", Standardization(enabled=False)).smiles == "[18F]c1ccccc1"  # as trained


def test_a_molecule_without_carbon_is_predicted_with_a_warning(regressor):
    result = predict_smiles(regressor, ["O", "N.N.Cl[Pt]Cl", "CCO", "ClC(Cl)(Cl)Cl"])  # cisplatin keeps its ammonia
    assert result["canonical_smiles"].tolist()[:2] == ["O", "N"] and result["prediction"].notna().all()
    assert ["no carbon atom" in str(w) for w in result["warnings"]] == [True, True, False, False]


def test_a_permanent_ion_is_predicted_with_a_warning_and_a_neutralised_one_or_a_zwitterion_without(regressor):
    """Benzyltrimethylammonium came out "in domain" without a word, like any neutral molecule."""
    result = predict_smiles(regressor, ["C[N+](C)(C)Cc1ccccc1", "CC(=O)[O-].[Na+]", "C[N+](C)(C)CC(=O)[O-]"])
    said = [str(w) for w in result["warnings"]]
    assert "an ion (net charge +1 after standardisation)" in said[0] and said[1:] == ["None", "None"]


def test_unknown_tokens_and_truncation_are_warned(regressor):
    long_chain = "C" * (regressor.max_tokens + 50)
    result = predict_smiles(regressor, ["[Gd+3]", "[Xe]", "CCO", long_chain, "C" * 3000])
    warnings = result["warnings"].tolist()
    assert "[Gd+3]" in warnings[0] and "[Xe]" in warnings[1] and warnings[2] is None
    assert f"the model reads only the first {regressor.max_tokens}" in warnings[3]
    assert result["prediction"].notna().all()


# -- 6: standardisation -----------------------------------------------------------------------------
def test_salts_and_charges_are_standardised_and_said(regressor):
    result = predict_smiles(regressor, ["CC(=O)[O-].[Na+]", "CC(=O)O", "C[NH3+].[Cl-]"])
    assert result["canonical_smiles"].tolist() == ["CC(=O)O", "CC(=O)O", "CN"]
    assert result.loc[0, "standardization"] == "removed [Na+]; neutralised"
    assert result.loc[0, "prediction"] == result.loc[1, "prediction"]
    assert pd.isna(result.loc[1, "standardization"])


# -- 7: what cannot train is refused before a run exists ------------------------------------------
def _csv(tmp_path, labels, smiles=None) -> str:
    smiles = smiles or [("C" * (i + 1)) + "O" for i in range(len(labels))]
    path = tmp_path / "d.csv"
    pd.DataFrame({"smiles": smiles, "y": labels}).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("setting", [{"learning_rate": math.nan}, {"learning_rate": math.inf},
                                     {"head_learning_rate": math.nan}, {"weight_decay": math.nan},
                                     {"warmup_ratio": math.nan}, {"grad_clip": -math.inf}, {"layer_decay": 0.0},
                                     {"layer_decay": math.nan}, {"ema_decay": 1.0}, {"ema_decay": -0.1}])
def test_non_finite_hyper_parameters_are_refused(setting):
    with pytest.raises(ConfigError, match="finite|non-negative|decay must be"):
        TrainConfig(**setting)


def test_a_label_outlier_is_reported(tmp_path):
    labels = list(np.linspace(0, 4, 199)) + [1e30]
    _, report = read_csv(_csv(tmp_path, labels))
    assert [i.row for i in report.outliers] == [200]
    assert "1e+30" in report.summary()


# -- 9: a damaged store is one clear error --------------------------------------------------------
def test_a_damaged_store_is_a_clear_error(tmp_path):
    home = tmp_path / "runs"
    home.mkdir()
    (home / "runs.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="run store"):
        RunStore(home=home)


# -- 11: encodings and delimiters -------------------------------------------------------------------
TEXT = "smiles{d}name\nCCO{d}ethanol\nCCN{d}ethylamine\n"


@pytest.mark.parametrize("encoding, bom", [("utf-8", b""), ("utf-8", codecs.BOM_UTF8),
                                           ("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)])
@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_encodings_and_delimiters_are_sniffed(tmp_path, encoding, bom, delimiter):
    path = tmp_path / "in.csv"
    path.write_bytes(bom + TEXT.format(d=delimiter).encode(encoding))
    frame = read_table(path).frame
    assert list(frame.columns) == ["smiles", "name"] and frame["name"].tolist() == ["ethanol", "ethylamine"]


def test_a_semicolon_file_with_commas_inside_quoted_cells_and_decimal_commas_is_read_on_semicolons(tmp_path):
    path = tmp_path / "euro.csv"  # as Excel saves a table in German: the sniffer took it for one column
    path.write_bytes(codecs.BOM_UTF8 + 'Compound_ID;SMILES;logD (pH 7,4);Projekt\nA-1;CCO;1,2;Säure, "x"\n'
                     'A-2;CCN;-0,3;B\nA-3;c1ccccc1;2,1;"C; D"\n'.encode())
    frame = read_table(path).frame
    assert list(frame.columns) == ["Compound_ID", "SMILES", "logD (pH 7,4)", "Projekt"]
    assert frame["Projekt"].tolist() == ['Säure, "x"', "B", "C; D"] and frame["logD (pH 7,4)"][1] == "-0,3"


@pytest.mark.parametrize("payload, reason", [("smiles\nCCO\nCé\n".encode("latin-1"), "not UTF-8"),
                                             (b"PK\x03\x04\x00\x00binary", "not UTF-8|binary"),
                                             (b"", "empty")])
def test_unreadable_files_get_a_clear_message(tmp_path, payload, reason):
    path = tmp_path / "bad.csv"
    path.write_bytes(payload)
    with pytest.raises(DataError, match=reason):
        read_table(path)


# -- 12: exposure -----------------------------------------------------------------------------------
def test_the_app_serves_on_loopback_by_default():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"


# -- property: prediction never loses, reorders or crashes on any input ------------------------------
SMILES_ALPHABET = "CNOSPFIBrcnos()[]=#-+@/\\%.0123456789Hl*: \tα\r\n"
texts = st.one_of(st.text(max_size=40), st.text(alphabet=SMILES_ALPHABET, max_size=60),
                  st.sampled_from(["CCO", "c1ccccc1", "CC(=O)[O-].[Na+]", "[Gd+3]", "", " ", "C" * 6000]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(st.lists(texts, max_size=6))
def test_prediction_gives_one_row_per_input_for_any_strings(regressor, inputs):
    result = predict_smiles(regressor, inputs)
    assert list(result.columns[:len(PREDICTION_COLUMNS)]) == PREDICTION_COLUMNS
    assert result["row"].tolist() == list(range(1, len(inputs) + 1))
    assert result["input"].tolist() == inputs
    assert (result["prediction"].notna() == result["error"].isna()).all()


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=80), st.text(alphabet=SMILES_ALPHABET, max_size=120)))
def test_preparing_any_string_never_raises(text):
    prepared = prepare_smiles(text)
    assert (prepared.smiles is None) != (prepared.error is None)


# -- issue #30: one odd row or molecule never takes the rest down -------------------------------------
def test_an_unbalanced_quote_costs_its_own_row_only(regressor, tmp_path):
    path = tmp_path / "quote.csv"
    path.write_text('smiles,name\nCCO,a\nCCN,"oops\nCCC,c\nCCCC,d\n"ab"c,e\nCCCCC,f\n')
    result = predict_csv(regressor, path)
    assert result["row"].tolist() == [1, 2, 3, 4, 5, 6]
    assert result["prediction"].notna().tolist() == [True, False, True, True, False, True]
    assert "unbalanced quote" in result.loc[1, "error"] and result.loc[1, "input"] == "CCN"
    data, report = read_csv(io.StringIO('smiles,y\nCCO,1\nCCN,"2\nCCC,3\nCCCC,4\n'))
    assert len(data) == 3 and [i.row for i in report.invalid] == [2]


def test_the_library_keeps_the_users_own_prediction_and_error_columns(regressor_dir, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("smiles,prediction,error\nCCO,old,none\nC1CC,old2,none2\n")
    predict_library(regressor_dir, path, tmp_path / "out.parquet")
    out = pd.read_parquet(tmp_path / "out.parquet")
    assert out["prediction (input)"].tolist() == ["old", "old2"] and out["error (input)"].tolist() == ["none", "none2"]
    assert out["prediction"].notna().tolist() == [True, False] and out["error"].isna().tolist() == [True, False]


def test_a_files_columns_named_like_the_domain_ones_keep_their_values(regressor, tmp_path):
    path = tmp_path / "again.csv"  # e.g. an earlier prediction fed back in, its columns edited
    path.write_text("smiles,similarity,in_domain,nearest_training_smiles\nCCO,99,my flag,MINE\n")
    out = user_table(add_applicability_domain(predict_csv(regressor, path), None))
    assert out[["similarity (input)", "in_domain (input)", "nearest_training_smiles (input)"]].values.tolist() == [
        ["99", "my flag", "MINE"]]
    assert out["similarity"].isna().all() and list(out.columns).count("similarity") == 1


def test_a_molecule_standardisation_cannot_write_back_is_an_error_row(regressor, tmp_path):
    result = predict_smiles(regressor, ["CCO", "[CH2+3]C", "CCN"])
    assert result["prediction"].notna().tolist() == [True, False, True]
    assert "cannot read back" in result.loc[1, "error"]
    _, report = read_csv(_csv(tmp_path, [1.0, 2.0, 3.0], ["CCO", "[CH2+3]C", "CCN"]))
    assert [i.row for i in report.invalid] == [2]  # never trained on, so never a model that cannot predict


def test_labels_beyond_float32_are_reported_not_trained(tmp_path):
    data, report = read_csv(_csv(tmp_path, [1.0, 1e300, -1e31, 2.0, 3.0]))
    assert len(data) == 3 and [i.row for i in report.unlabeled] == [2, 3]
    assert "out of range" in report.unlabeled[0].reason


def test_formula_cells_are_defused_in_written_csv(tmp_path):
    frame = pd.DataFrame({"=name": ['=HYPERLINK("http://x")', "+cmd", "@SUM(A1)", "-2+3+cmd|' /C calc'!A0", "ok"],
                          "value": ["-1.5", "+2", "-0,3", "\t=1", "-1,5+cmd"],
                          "prediction": [-1.5, 2.0, 3.0, 4.0, 5.0]})
    back = read_table(io.StringIO(write_csv(frame))).frame
    assert list(back.columns) == ["'=name", "value", "prediction"]
    assert back["'=name"].tolist() == ['\'=HYPERLINK("http://x")', "'+cmd", "'@SUM(A1)", "'-2+3+cmd|' /C calc'!A0",
                                       "ok"]
    assert back["value"].tolist() == ["-1.5", "+2", "-0,3", "'\t=1", "'-1,5+cmd"]  # numbers (decimal comma too) stay
    assert back["prediction"].tolist() == ["-1.5", "2.0", "3.0", "4.0", "5.0"]


def test_a_saved_prediction_keeps_the_files_own_columns_and_names(regressor, tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text("compound_id,smiles,measured_logd,project\nX-1,CCO,0.1,=A\nX-2,C1CC,1.2,B\n")
    frame = predict_csv(regressor, path, name_column="compound_id", measured_column="measured_logd")
    saved = user_table(frame)
    assert list(saved.columns[:5]) == ["row", "compound_id", "smiles", "measured_logd", "project"]
    assert not {"name", "input", "measured"} & set(saved.columns)  # no renamed copies of the user's columns
    assert saved["compound_id"].tolist() == ["X-1", "X-2"] and saved["prediction"].notna().tolist() == [True, False]
    back = read_table(io.StringIO(write_csv(saved))).frame
    assert back["project"].tolist() == ["'=A", "B"] and back["measured_logd"].tolist() == ["0.1", "1.2"]
    pasted = predict_smiles(regressor, ["CCO"], ["ethanol"])
    assert user_table(pasted) is pasted  # pasted SMILES keep name and input
    path.write_text("smiles,name,input\nCCO,ethanol,a\n")  # columns named as the page's copies (a .smi has "name")
    saved = user_table(predict_csv(regressor, path, name_column="name"))
    assert list(saved.columns[:4]) == ["row", "smiles", "name", "input"] and saved["input"].tolist() == ["a"]


@pytest.mark.parametrize("smiles, said", [("C1CC", "cannot parse SMILES: unclosed ring"),
                                          ("CC(C", "cannot parse SMILES: extra open parentheses (around character 3)"),
                                          ("123", "cannot parse SMILES: syntax error (around character 1)")])
def test_an_unparseable_smiles_says_rdkits_reason_and_where(smiles, said):
    assert prepare_smiles(smiles).error == said  # what to fix, not only "syntax error"
