"""Model folders are validated on load: a damaged file that cannot be rebuilt is refused with a clear
ModelLoadError, never turned into NaN predictions or inverted intervals (issue #30, item 5)."""
import json
import shutil

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from chemlm_engine.spec import ModelSpec
from chemlm_engine.descriptors import DescriptorScaler
from chemlm_engine.predict.ensemble import ENSEMBLE_FILE, load_predictor
from chemlm_engine.errors import ModelLoadError
from chemlm_engine.model import HEAD_FILE, RegressionModel


@pytest.fixture(scope="module")
def descriptor_model(tiny_backbone, lipo, tmp_path_factory):
    model = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=8, descriptors=True), seed=0)
    model.set_label_scaler(lipo.labels[:40])
    model.descriptor_scaler = DescriptorScaler.fit(lipo.smiles[:40])
    folder = tmp_path_factory.mktemp("model") / "m"
    model.save(folder)
    RegressionModel.load(folder, "cpu")  # intact: loads
    return folder


def _copy(folder, tmp_path):
    shutil.copytree(folder, tmp_path / "m")
    return tmp_path / "m"


@pytest.mark.parametrize("key, value", [("median", np.nan), ("mean", np.inf), ("scale", 0.0), ("scale", "short")])
def test_a_damaged_descriptor_scaling_is_refused(descriptor_model, tmp_path, key, value):
    folder = _copy(descriptor_model, tmp_path)
    path = folder / DescriptorScaler.FILE
    raw = json.loads(path.read_text())
    raw[key] = raw[key][:5] if value == "short" else [value] + raw[key][1:]
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="descriptors.json is damaged"):
        RegressionModel.load(folder, "cpu")


@pytest.mark.parametrize("key, value", [("label_std", float("nan")), ("label_std", 0.0), ("label_mean", float("inf")),
                                        ("head.0.weight", float("nan"))])
def test_a_damaged_head_is_refused(descriptor_model, tmp_path, key, value):
    folder = _copy(descriptor_model, tmp_path)
    state = load_file(str(folder / HEAD_FILE))
    state[key] = torch.full_like(state[key], value)
    save_file(state, str(folder / HEAD_FILE))
    with pytest.raises(ModelLoadError, match="head.safetensors is damaged"):
        RegressionModel.load(folder, "cpu")


@pytest.mark.parametrize("conformal", [{"quantile": -1.0}, {"quantile": float("nan")}, {"epsilon": 0.0},
                                       {"coverage": 1.5}, {"unknown": 1}])
def test_a_damaged_calibration_is_refused(descriptor_model, tmp_path, conformal):
    folder = tmp_path / "ensemble"
    shutil.copytree(descriptor_model, folder / "member-0")
    good = {"coverage": 0.9, "quantile": 2.0, "epsilon": 0.1, "n_calibration": 40}
    (folder / ENSEMBLE_FILE).write_text(json.dumps({"members": ["member-0"], "conformal": {**good, **conformal}}))
    with pytest.raises(ModelLoadError, match="ensemble.json is damaged"):
        load_predictor(folder, "cpu")
    (folder / ENSEMBLE_FILE).write_text(json.dumps({"members": ["member-0"], "conformal": good}))
    low, high = load_predictor(folder, "cpu").conformal.interval(np.zeros(2), np.ones(2))
    assert (low < high).all()  # the intact one loads


@pytest.mark.parametrize("file, written, error", [
    ("regressor.json", "chemlm-regressor/2", "written by a newer ChemLM Studio"),
    ("regressor.json", "chemlm-ensemble/1", "not a 'chemlm-regressor'"),
    (ENSEMBLE_FILE, "chemlm-ensemble/7", "newer ChemLM Studio.*chemlm-ensemble/3"),
    (ENSEMBLE_FILE, None, None),  # folders from before formats were written still load
    ("regressor.json", None, None)])
def test_a_model_folder_of_a_newer_format_is_refused_by_name(descriptor_model, tmp_path, file, written, error):
    folder = tmp_path / "ensemble"
    shutil.copytree(descriptor_model, folder / "member-0")
    (folder / ENSEMBLE_FILE).write_text(json.dumps({"format": "chemlm-ensemble/1", "members": ["member-0"]}))
    path = folder / (file if file == ENSEMBLE_FILE else f"member-0/{file}")
    meta = json.loads(path.read_text())
    assert meta.pop("format") in ("chemlm-ensemble/1", "chemlm-regressor/1")  # what this version writes
    path.write_text(json.dumps(meta if written is None else {**meta, "format": written}))
    if error is None:
        assert len(load_predictor(folder, "cpu").members) == 1
    else:
        with pytest.raises(ModelLoadError, match=error):
            load_predictor(folder, "cpu")


def test_saving_a_model_draws_no_progress_bar(descriptor_model, tmp_path, capfd):
    """A job's log gets its own lines, not transformers' "Writing model shards" bar for every member saved."""
    RegressionModel.load(descriptor_model, "cpu").save(tmp_path / "again")
    assert (tmp_path / "again" / HEAD_FILE).exists()
    assert "shards" not in capfd.readouterr().err


def test_a_model_keeps_the_descriptor_list_it_was_trained_with(tiny_backbone, lipo, tmp_path):
    """New models read HEAD_DESCRIPTORS (not the costliest); a model saved with every descriptor (before the list
    was cut) loads with its own list and predicts as it did; a list naming a descriptor this RDKit lacks is refused."""
    from chemlm_engine.descriptors import DESCRIPTOR_NAMES, HEAD_DESCRIPTORS
    from chemlm_engine.inference import predict_values

    spec = ModelSpec(backbone=str(tiny_backbone), head_hidden=8, descriptors=True)
    new = RegressionModel.from_spec(spec, seed=0)
    assert new.descriptor_names == HEAD_DESCRIPTORS and new.head[0].in_features == 32 + len(HEAD_DESCRIPTORS)
    older = RegressionModel(new.backbone, new.tokenizer, spec, DescriptorScaler.fit(lipo.smiles[:40], DESCRIPTOR_NAMES))
    older.set_label_scaler(lipo.labels[:40])
    older.save(tmp_path / "older")
    loaded = RegressionModel.load(tmp_path / "older", "cpu")
    assert loaded.descriptor_names == DESCRIPTOR_NAMES and loaded.head[0].in_features == 32 + len(DESCRIPTOR_NAMES)
    smiles = lipo.smiles[40:60]
    older.eval()
    loaded.inference_precision = older.inference_precision = "fp32"
    np.testing.assert_allclose(predict_values(loaded, smiles), predict_values(older, smiles), rtol=1e-5)
    path = tmp_path / "older" / DescriptorScaler.FILE
    raw = json.loads(path.read_text())
    raw["names"][3] = "NoSuchDescriptor"
    path.write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="this RDKit does not have .*NoSuchDescriptor"):
        RegressionModel.load(tmp_path / "older", "cpu")
