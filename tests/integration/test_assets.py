"""The embedded models in assets/ (shipped with the repository)."""
import json

import numpy as np
import pytest

from chemlm_engine.spec import DEFAULT_BACKBONE, DEFAULT_REGRESSOR, FAST_REGRESSOR
from chemlm_engine.data import make_split
from chemlm_engine.predict import Ensemble, load_predictor, predict_smiles
from chemlm_engine.model import load_backbone, load_training_set
from chemlm_engine.training import regression_metrics


@pytest.mark.parametrize("folder", [DEFAULT_REGRESSOR, FAST_REGRESSOR])
def test_shipped_regressor_predicts_the_bundled_test_split(lipo, folder):
    model = load_predictor(folder, "cpu")
    test = lipo.subset(make_split(lipo, "random", seed=0).test)
    result = predict_smiles(model, test.smiles)
    predictions = result["prediction"].to_numpy()
    assert np.all(np.isfinite(predictions))
    assert regression_metrics(test.labels, predictions)["r2"] > 0.3  # a sanity floor, not the target
    if isinstance(model, Ensemble):  # calibrated intervals: a floor far below the stated 90 %
        inside = (result["interval_low"] <= test.labels) & (test.labels <= result["interval_high"])
        assert inside.mean() > 0.75
    trained_on = set(load_training_set(folder)[0])
    assert not trained_on & set(test.smiles)  # the test split was held out


def test_the_embedded_student_is_one_pass_that_follows_its_teacher(lipo):
    student, teacher = load_predictor(FAST_REGRESSOR, "cpu"), load_predictor(DEFAULT_REGRESSOR, "cpu")
    assert isinstance(student, Ensemble) and len(student.members) == 1 and student.spread is not None
    test = lipo.subset(make_split(lipo, "random", seed=0).test).smiles[:100]
    (mean, spread), (taught, _) = student.predict(test), teacher.predict(test)
    assert np.corrcoef(mean, taught)[0, 1] > 0.9 and np.all(spread > 0)
    assert set(load_training_set(FAST_REGRESSOR)[0]) == set(load_training_set(DEFAULT_REGRESSOR)[0])


def test_shipped_backbone_is_small_and_pretrained_without_lipophilicity(lipo):
    model, tokenizer = load_backbone(DEFAULT_BACKBONE)
    assert 3e6 <= sum(p.numel() for p in model.parameters()) <= 12e6
    summary = json.loads(open(f"{DEFAULT_BACKBONE}/pretrain_summary.json").read())
    # MOSES molecules that are also in Lipophilicity were removed
    assert summary["steps"] == summary["config"]["max_steps"] and summary["excluded"] > 0
    for smi in lipo.smiles[:200]:
        assert "<unk>" not in tokenizer.convert_ids_to_tokens(tokenizer(smi)["input_ids"])
