"""Gradient-boosted trees beside the transformers: fitted on descriptors and Morgan counts, saved as LightGBM text,
blended into an ensemble's prediction, and explained as a fixed part of it."""
import json

import numpy as np
import pytest
from rdkit import Chem

from chemlm_engine.descriptors import DESCRIPTOR_NAMES, HEAD_DESCRIPTORS, describe
from chemlm_engine.errors import ModelLoadError
from chemlm_engine.model import RegressionModel
from chemlm_engine.predict import Conformal, Ensemble, load_predictor
from chemlm_engine.predict.explain import atom_contributions, training_contributions
from chemlm_engine.predict.trees import TREES_FILE, Trees, tree_features
from chemlm_engine.spec import ModelSpec
from chemlm_engine.training import regression_metrics


@pytest.fixture(scope="module")
def trees(lipo) -> Trees:
    return Trees.fit(lipo.smiles[:150], lipo.labels[:150], weight=0.3, seed=0)


def test_the_features_are_the_descriptors_then_morgan_counts_with_missing_values_kept(lipo):
    x = tree_features(["CCO", "C" * 200])
    n = len(HEAD_DESCRIPTORS)
    assert x.shape == (2, n + 2048)
    np.testing.assert_array_equal(x[0, :n], describe(["CCO"], HEAD_DESCRIPTORS)[0].astype(np.float32))
    assert x[0, n:].sum() >= Chem.MolFromSmiles("CCO").GetNumAtoms()  # counts: every atom's radius-0 environment
    assert np.isnan(x[1]).any() and not np.isnan(x[0]).any()  # a size-limited descriptor of a large molecule


def test_trees_learn_round_trip_and_refuse_another_feature_list(trees, lipo, tmp_path):
    assert regression_metrics(lipo.labels[:150], trees.predict(lipo.smiles[:150]))["r2"] > 0.8
    new = lipo.smiles[150:170]
    trees.save(tmp_path)
    again = Trees.load(tmp_path, weight=0.3)
    np.testing.assert_allclose(again.predict(new), trees.predict(new), rtol=1e-12)
    text = (tmp_path / TREES_FILE).read_text()
    (tmp_path / TREES_FILE).write_text(text.replace("morgan_0 ", "morgan_x ", 1))
    with pytest.raises(ModelLoadError, match="other features"):
        Trees.load(tmp_path, weight=0.3)
    (tmp_path / TREES_FILE).write_text("not a model")
    with pytest.raises(ModelLoadError, match="cannot read"):
        Trees.load(tmp_path, weight=0.3)


def test_trees_fitted_on_every_descriptor_still_load_and_predict_as_they_did(lipo, tmp_path):
    """An ensemble's trees from before the cut list (every descriptor) keep theirs; new trees read HEAD_DESCRIPTORS."""
    older = Trees.fit(lipo.smiles[:60], lipo.labels[:60], weight=0.5, seed=0, descriptor_names=DESCRIPTOR_NAMES)
    assert older.booster.num_feature() == len(DESCRIPTOR_NAMES) + 2048
    older.save(tmp_path)
    again = Trees.load(tmp_path, weight=0.5)
    assert again.descriptor_names == DESCRIPTOR_NAMES
    np.testing.assert_allclose(again.predict(lipo.smiles[60:70]), older.predict(lipo.smiles[60:70]), rtol=1e-12)
    text = (tmp_path / TREES_FILE).read_text()
    (tmp_path / TREES_FILE).write_text(text.replace("BertzCT ", "NoSuchDescriptor ", 1))
    with pytest.raises(ModelLoadError, match="other features"):
        Trees.load(tmp_path, weight=0.5)


def _members(backbone) -> list[RegressionModel]:
    return [RegressionModel.from_spec(ModelSpec(backbone=str(backbone), head_hidden=16), seed=s) for s in (0, 1)]


def test_an_ensemble_with_trees_predicts_the_blend_and_keeps_it_through_its_folder(tiny_backbone, trees, lipo,
                                                                                  tmp_path):
    ensemble = Ensemble(_members(tiny_backbone), Conformal(0.9, 1.5, 0.1, 30), trees=trees)
    smiles = lipo.smiles[200:220]
    members_mean, std = ensemble.members_predict(smiles)
    mean, spread = ensemble.predict(smiles)
    np.testing.assert_allclose(mean, 0.7 * members_mean + 0.3 * trees.predict(smiles), rtol=1e-9)
    np.testing.assert_array_equal(spread, std)  # the spread stays the members'
    ensemble.save(tmp_path, lipo.smiles[:30], lipo.labels[:30])
    meta = json.loads((tmp_path / "ensemble.json").read_text())
    assert meta["format"] == "chemlm-ensemble/3" and meta["trees"]["weight"] == 0.3
    loaded = load_predictor(tmp_path, "cpu")
    assert isinstance(loaded, Ensemble) and loaded.trees is not None
    np.testing.assert_allclose(loaded.predict(smiles)[0], mean, atol=2e-3)  # members saved in bf16
    meta["trees"]["weight"] = 1.5
    (tmp_path / "ensemble.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="weight"):
        load_predictor(tmp_path, "cpu")


def test_explanations_scale_the_members_part_and_hold_the_trees_fixed(tiny_backbone, trees, lipo, tmp_path):
    members = _members(tiny_backbone)
    plain, blended = Ensemble(members), Ensemble(members, trees=trees)
    plain.save(tmp_path / "plain", lipo.smiles[:40], lipo.labels[:40])
    smiles = "CC(=O)Oc1ccccc1C(=O)O"
    alone, parts = atom_contributions(plain, smiles, steps=16), atom_contributions(blended, smiles, steps=16)
    tree_part = 0.3 * trees.predict([smiles])[0]
    assert parts["trees"] == pytest.approx(tree_part) and alone["trees"] == 0.0
    np.testing.assert_allclose(parts["atoms"], 0.7 * alone["atoms"], rtol=1e-6, atol=1e-9)
    assert parts["prediction"] == pytest.approx(blended.predict([smiles])[0][0], abs=1e-3)  # the blend's own number
    assert parts["prediction"] - parts["baseline"] == pytest.approx(0.7 * (alone["prediction"] - alone["baseline"]))
    contributions = [training_contributions(e, tmp_path / "plain", smiles).set_index("smiles")["contribution"]
                     for e in (plain, blended)]
    np.testing.assert_allclose(contributions[1].loc[contributions[0].index], 0.7 * contributions[0], atol=1e-5)
