"""Properties over what users hand in (issue #30): CSV bytes, labels and model-folder files. Whatever the input,
every row read gives exactly one output row, one bad row never fails its batch, and nothing but a ChemLMError
(one clear line in the CLI and the app) reaches the user."""
import io
import shutil

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chemlm_engine.spec import ModelSpec
from chemlm_engine.data import molecules_from_frame
from chemlm_engine.descriptors import DescriptorScaler
from chemlm_engine.predict import TrainingReference, predict_csv, predict_smiles
from chemlm_engine.predict.ensemble import ENSEMBLE_FILE, Conformal, Ensemble, load_predictor
from chemlm_engine.errors import ChemLMError, DataError
from chemlm_engine.model import RegressionModel

FIXTURES = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
CELL = st.text(alphabet=st.characters(blacklist_characters="\n\r\x00", blacklist_categories=("Cs",)), max_size=12)
SMILES = st.sampled_from(["CCO", "c1ccccc1O", "C1CC", "", "[CH2+3]C", "CC(=O)[O-].[Na+]", "=HYPERLINK(1)"])


@pytest.fixture(scope="module")
def folder(tmp_path_factory, tiny_backbone, lipo):
    """A tiny descriptor model saved as a 2-member ensemble with its training set (every file a user can hand in)."""
    root = tmp_path_factory.mktemp("ensemble") / "e"
    for i in range(2):
        model = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=8, descriptors=True),
                                          seed=i)
        model.set_label_scaler(lipo.labels[:30])
        model.descriptor_scaler = DescriptorScaler.fit(lipo.smiles[:30])
        members = [model] if i == 0 else [*members, model]
    Ensemble(members, Conformal(0.9, 1.5, 0.1, 30)).save(root, lipo.smiles[:30], lipo.labels[:30])
    return root


@pytest.fixture(scope="module")
def model(folder):
    return load_predictor(folder, "cpu")


@settings(max_examples=60, deadline=None, suppress_health_check=FIXTURES)
@given(st.binary(max_size=300))
def test_any_bytes_as_a_csv_give_a_clear_error_or_one_row_per_record(model, payload):
    try:
        out = predict_csv(model, io.BytesIO(b"smiles,name\n" + payload))
    except DataError:
        return
    assert out["row"].tolist() == list(range(1, len(out) + 1))
    assert (out["prediction"].notna() == out["error"].isna()).all()


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURES)
@given(st.lists(st.tuples(SMILES, CELL.filter(lambda c: '"' not in c and "," not in c)), min_size=1, max_size=8))
def test_every_line_of_a_hand_written_csv_is_one_row_in_order(model, rows):
    text = "smiles,note\n" + "".join(f"{s},{n}\n" for s, n in rows)
    out = predict_csv(model, io.StringIO(text))
    while rows and not (rows[-1][0].strip() or rows[-1][1].strip()):  # but the blank lines that end the file
        rows = rows[:-1]
    assert len(out) == len(rows) and out["input"].tolist() == [s for s, _ in rows]
    if not rows:  # a header and blank lines: no row
        return
    readable = [s in ("CCO", "c1ccccc1O", "CC(=O)[O-].[Na+]") for s, _ in rows]
    assert out["prediction"].notna().tolist() == readable  # one bad row never fails its batch
    assert np.isfinite(out.loc[out["prediction"].notna(), "prediction"]).all()


LABEL = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
                  st.sampled_from(["1e300", "-1e31", "nan", "inf", "", " 2.5 ", "1,5"]))


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(SMILES, LABEL), min_size=1, max_size=10))
def test_any_labels_are_trained_on_or_reported_never_a_crash(rows):
    frame = pd.DataFrame({"smiles": [s for s, _ in rows], "y": [str(v) for _, v in rows]})
    try:
        data, report = molecules_from_frame(frame)
    except DataError as exc:
        assert "no usable molecules" in str(exc)
        return
    assert np.isfinite(data.labels).all() and (np.abs(data.labels) <= 1e30).all()
    accounted = len(report.invalid) + len(report.unlabeled) + len(report.duplicates) + len(data)
    assert accounted == len(rows)  # every row is trained on or named in the report


FILES = ["ensemble.json", "member-0/regressor.json", "member-0/head.safetensors", "member-0/descriptors.json",
         "member-0/backbone/model.safetensors", "member-0/backbone/config.json", "tokenizer.json",
         "training_set.csv", "training_fingerprints.npz"]


@pytest.mark.parametrize("name", FILES)
@settings(max_examples=8, deadline=None, suppress_health_check=FIXTURES)
@given(payload=st.one_of(st.binary(max_size=200), st.just(b""), st.just(b'{"members": ["../x"]}'),
                         st.just(b'{"coverage": 0.9}'), st.just(b"smiles,label\nCCO,nan\n")))
def test_a_damaged_model_file_is_a_clear_error_or_still_predicts(folder, tmp_path_factory, name, payload):
    copy = tmp_path_factory.mktemp("damaged") / "e"
    shutil.copytree(folder, copy)
    (copy / name).write_bytes(payload)
    try:
        predictor = load_predictor(copy, "cpu")
        out = predict_smiles(predictor, ["CCO", "c1ccccc1O", "C1CC"])
        TrainingReference.load(copy)
    except ChemLMError:
        return
    assert out["prediction"].notna().tolist() == [True, True, False]
    assert np.isfinite(out["prediction"].iloc[:2]).all()
