"""The accuracy features: descriptor-augmented head, SMILES enumeration and test-time augmentation,
deep ensembles with split-conformal intervals; and the shared pool loader that keeps test molecules out."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from rdkit import Chem
from sklearn.metrics import r2_score

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.data import MoleculeData
from chemlm_engine.descriptors import DESCRIPTOR_NAMES, HEAD_DESCRIPTORS, DescriptorScaler, describe, size_warning
from chemlm_engine.predict import Conformal, Ensemble, load_predictor, predict_smiles
from chemlm_engine.jobs import run_job
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import randomize_smiles
from chemlm_engine.pipeline import JobContext, load_split_data, load_pool
from chemlm_engine.tokenizer import smiles_tokens
from chemlm_engine.inference import predict_values
from chemlm_engine.training import fit


def _tiny(backbone, **model) -> RegressionModel:
    return RegressionModel.from_spec(ModelSpec(backbone=str(backbone), head_hidden=16, **model), seed=0)


# -- descriptors ------------------------------------------------------------------------------------
def test_descriptor_scaling_comes_from_the_training_split_only(lipo):
    train, other = lipo.smiles[:200], lipo.smiles[200:260]
    scaler = DescriptorScaler.fit(train)
    raw = describe(train, HEAD_DESCRIPTORS)
    np.testing.assert_allclose(scaler.mean, np.where(np.isnan(raw), scaler.median, raw).mean(axis=0))
    features = scaler.transform(other)
    assert features.shape == (60, len(HEAD_DESCRIPTORS)) and np.isfinite(features).all()
    assert np.abs(features).max() <= 10.0  # clipped


def test_a_list_of_descriptors_gets_those_columns_alone_in_its_order_also_from_the_helper_process(lipo):
    import chemlm_engine.descriptors as descriptors

    smiles = lipo.smiles[:2 * descriptors._SHARE_MIN + 10]  # the helper process takes half
    names = ["MolLogP", *HEAD_DESCRIPTORS[:3], "TPSA"]
    descriptors._CACHE.clear()
    try:
        every, some, head = describe(smiles), describe(smiles, names), describe(smiles, HEAD_DESCRIPTORS)
    finally:
        descriptors._CACHE.clear()
    columns = [DESCRIPTOR_NAMES.index(name) for name in names]
    np.testing.assert_array_equal(some, every[:, columns])
    np.testing.assert_array_equal(head, every[:, [DESCRIPTOR_NAMES.index(name) for name in HEAD_DESCRIPTORS]])
    assert not any(name.startswith(("BCUT2D", "BertzCT", "SPS", "AvgIpc", "BalabanJ")) for name in HEAD_DESCRIPTORS)
    assert len(HEAD_DESCRIPTORS) == len(DESCRIPTOR_NAMES) - 12


def test_a_large_molecule_warning_counts_the_descriptors_its_model_skips():
    every, head = size_warning(300, DESCRIPTOR_NAMES), size_warning(300, HEAD_DESCRIPTORS)
    assert "46 descriptors" in every and "34 descriptors" in head
    assert size_warning(300, ["MolLogP", "TPSA"]) is None and size_warning(50, DESCRIPTOR_NAMES) is None


def test_descriptors_are_rdkits_own_values_also_when_the_helper_process_computes_half(lipo):
    import chemlm_engine.descriptors as descriptors
    from rdkit.Chem import Descriptors

    smiles = lipo.smiles[:2 * descriptors._SHARE_MIN + 44]  # enough for the helper process to take half
    descriptors._CACHE.clear()
    try:
        values = describe(smiles)
    finally:
        descriptors._CACHE.clear()
    for row in (0, 1, len(smiles) // 2 + 1, len(smiles) - 1):  # rows of both halves
        expected = Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(smiles[row]))
        reference = np.array([expected[name] for name in DESCRIPTOR_NAMES], dtype=float)
        reference[~np.isfinite(reference)] = np.nan
        np.testing.assert_array_equal(values[row], reference)


def test_the_descriptor_cache_keeps_the_latest_molecules_up_to_its_limit(lipo, monkeypatch):
    """A library streams through describe(): memory must stop growing at the cache's limit (it kept 500,000
    molecules, ~1 GB, before), while molecules asked for again soon (ensemble members, fit then transform) are
    still computed once."""
    import chemlm_engine.descriptors as descriptors

    monkeypatch.setattr(descriptors, "_CACHE", {})
    monkeypatch.setattr(descriptors, "_CACHE_LIMIT", 5)
    first = describe(lipo.smiles[:4])
    later = describe(lipo.smiles[4:7])
    assert [text for _, text in descriptors._CACHE] == lipo.smiles[2:7]  # the two oldest left
    computed = []
    monkeypatch.setattr(descriptors, "_compute", lambda smiles, columns: computed.extend(smiles) or [
        descriptors.describe_mol(Chem.MolFromSmiles(s), columns) for s in smiles])
    again = describe(lipo.smiles[:7])
    assert computed == lipo.smiles[:2]  # only what had left the cache
    np.testing.assert_array_equal(again, np.vstack([first, later]))


class _Spy:
    """Records the share each helper process is handed."""

    def __init__(self, pool, handed: list[int]) -> None:
        self.pool, self.handed = pool, handed

    def submit(self, fn, batch, *args):
        self.handed.append(len(batch))
        return self.pool.submit(fn, batch, *args)


def test_a_prediction_in_chunks_gives_half_of_every_chunks_descriptors_to_the_helper(tiny_backbone, lipo, monkeypatch):
    """predict_smiles reports progress chunk by chunk: each chunk's descriptors are still shared between processes
    (a chunk below the old 256-molecule threshold was computed in one process: 2.5x slower)."""
    import chemlm_engine.descriptors as descriptors

    model = _tiny(tiny_backbone, descriptors=True)
    model.descriptor_scaler = DescriptorScaler.fit(lipo.smiles[:50])
    monkeypatch.setattr(descriptors.os, "sched_getaffinity", lambda _: {0, 1})  # two cores, as CI has
    pool, handed = descriptors._pool(), []
    assert pool is not None
    monkeypatch.setattr(descriptors, "_pool", lambda: _Spy(pool, handed))
    descriptors._CACHE.clear()
    try:
        achiral = [s for s in lipo.smiles[100:800] if "@" not in s][:400]  # no enantiomer pair read as one
        frame = predict_smiles(model, achiral)  # 400 molecules: 10 chunks of 40
    finally:
        descriptors._CACHE.clear()
    assert frame["prediction"].notna().all() and handed == [20] * 10


def test_descriptors_are_shared_among_as_many_processes_as_cores(lipo, monkeypatch):
    """Four cores: three helpers, each handed a quarter of a batch (this process computes the first); the values
    are those computed in one process. Small batches stay in this process; at most 8 processes share one."""
    import chemlm_engine.descriptors as descriptors

    monkeypatch.setattr(descriptors.os, "sched_getaffinity", lambda _: set(range(64)))
    assert descriptors.worker_processes() == 8
    monkeypatch.setattr(descriptors.os, "sched_getaffinity", lambda _: {0, 1, 2, 3})
    monkeypatch.setattr(descriptors, "_POOL", None)
    try:
        pool, handed = descriptors._pool(), []
        assert len(pool._processes) == 3  # all started up front, not on the first large batch
        monkeypatch.setattr(descriptors, "_pool", lambda: _Spy(pool, handed))
        smiles = lipo.smiles[:100]
        shared = descriptors._compute(smiles, descriptors._ALL)
        assert handed == [25, 25, 25]
        np.testing.assert_array_equal(shared, descriptors._many(smiles))
        descriptors._compute(smiles[:2 * descriptors._SHARE_MIN - 1], descriptors._ALL)
        assert handed == [25, 25, 25]  # too few to be worth a helper's round trip
    finally:
        descriptors._reset_pool()


def test_missing_descriptor_values_become_the_training_median(lipo, monkeypatch):
    import chemlm_engine.descriptors as descriptors

    scaler = DescriptorScaler.fit(lipo.smiles[:100])
    monkeypatch.setattr(descriptors, "_one", lambda smiles, columns: np.full(len(columns), np.nan))
    descriptors._CACHE.clear()
    try:
        filled = scaler.transform(["CCO"])
    finally:
        descriptors._CACHE.clear()
    np.testing.assert_allclose(filled[0], np.clip((scaler.median - scaler.mean) / scaler.scale, -10, 10), rtol=1e-5)


def test_a_descriptor_model_trains_saves_and_reloads(tiny_backbone, lipo, tmp_path):
    data = lipo.subset(range(120))
    model = _tiny(tiny_backbone, descriptors=True)
    fit(model, data.subset(range(100)), data.subset(range(100, 120)), TrainConfig(epochs=1, batch_size=16))
    before = predict_values(model, lipo.smiles[200:220])
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "regressor.json").read_text())["descriptors"] is True
    loaded = RegressionModel.load(tmp_path / "m", "cpu")
    np.testing.assert_allclose(predict_values(loaded, lipo.smiles[200:220]), before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loaded.descriptor_scaler.mean, model.descriptor_scaler.mean)


# -- SMILES enumeration -------------------------------------------------------------------------------
def test_random_spellings_are_the_same_molecule_and_round_trip_through_the_tokenizer(lipo):
    smiles = lipo.smiles[:500]
    spelled = randomize_smiles(smiles, seed=7)
    assert spelled == randomize_smiles(smiles, seed=7) and spelled != randomize_smiles(smiles, seed=8)
    assert sum(a != b for a, b in zip(spelled, smiles)) > 400  # really non-canonical
    for original, variant in zip(smiles, spelled):
        assert Chem.CanonSmiles(variant) == Chem.CanonSmiles(original)
        assert "".join(smiles_tokens(variant)) == variant


def test_the_shipped_vocabulary_reads_random_spellings(lipo):
    tokenizer = load_predictor_tokenizer()
    spelled = randomize_smiles(lipo.smiles, seed=1)
    unknown = sum(tokenizer.unk_token_id in ids for ids in tokenizer(spelled)["input_ids"])
    assert unknown / len(spelled) < 0.002  # measured: 4 of 12,600 spellings hold a token the vocabulary lacks


def load_predictor_tokenizer():
    from chemlm_engine.spec.config import DEFAULT_BACKBONE
    from chemlm_engine.tokenizer import load_tokenizer

    return load_tokenizer(DEFAULT_BACKBONE)


def test_augmented_training_sees_other_spellings(tiny_backbone, lipo, monkeypatch):
    import chemlm_engine.training as training

    seen = []
    real = training.randomize_smiles
    monkeypatch.setattr(training, "randomize_smiles", lambda s, seed: seen.append(seed) or real(s, seed))
    data = lipo.subset(range(60))
    fit(_tiny(tiny_backbone), data.subset(range(50)), data.subset(range(50, 60)),
        TrainConfig(epochs=3, batch_size=16, augment=True, seed=2))
    assert seen == [2001, 2002, 2003]  # one fresh spelling per molecule and epoch


def test_test_time_augmentation_is_the_mean_over_spellings(tiny_backbone, lipo):
    model = _tiny(tiny_backbone).eval()
    smiles = lipo.smiles[:30]
    plain = predict_values(model, smiles, tta=0)
    spellings = [smiles] + [randomize_smiles(smiles, seed=k) for k in (1, 2, 3)]
    expected = np.mean([predict_values(model, s, tta=0) for s in spellings], axis=0)
    np.testing.assert_allclose(predict_values(model, smiles, tta=3), expected, rtol=1e-6)
    assert not np.allclose(expected, plain)


def test_a_molecules_random_spellings_and_augmented_prediction_are_its_own_wherever_it_is_listed(tiny_backbone,
                                                                                                 lipo):
    """The spellings were seeded by the molecule's place in the list: listed after others, it was read otherwise."""
    smiles = list(lipo.smiles[:20])
    assert randomize_smiles(smiles, seed=1)[5:] == randomize_smiles(smiles[5:], seed=1)
    model = _tiny(tiny_backbone).eval()
    model.inference_precision = "fp32"
    np.testing.assert_allclose(predict_values(model, smiles, tta=3)[5:], predict_values(model, smiles[5:], tta=3),
                               rtol=0, atol=1e-6)


def test_ensemble_members_reading_smiles_alike_share_one_tokenisation(tiny_backbone, lipo, monkeypatch):
    """Members with one tokenizer, token limit and test-time augmentation are handed one tokenisation per
    spelling (not one per member) and predict what each predicts alone; a member that reads differently
    tokenises for itself."""
    import chemlm_engine.inference as inference

    smiles = lipo.smiles[:20]
    spec = ModelSpec(backbone=str(tiny_backbone), head_hidden=16, tta=2)
    members = [RegressionModel.from_spec(spec, seed=seed).eval() for seed in (0, 1)]
    alone = [predict_values(m, smiles) for m in members]
    calls = []
    encode = inference.encode_smiles
    monkeypatch.setattr(inference, "encode_smiles", lambda *args: calls.append(1) or encode(*args))
    mean, std = Ensemble(members).members_predict(smiles)
    assert len(calls) == 3  # the canonical spelling and two random ones, once for both members
    np.testing.assert_allclose(mean, np.mean(alone, axis=0), rtol=1e-6)
    np.testing.assert_allclose(std, np.std(alone, axis=0, ddof=1), rtol=1e-5)
    calls.clear()
    other = RegressionModel.from_spec(ModelSpec(backbone=str(tiny_backbone), head_hidden=16, tta=1), seed=2).eval()
    Ensemble([*members, other]).members_predict(smiles)
    assert len(calls) == 2 * 3 + 2  # no sharing: each member its own spellings


def test_padding_batches_to_a_multiple_of_eight_tokens_changes_no_prediction(tiny_backbone, lipo, monkeypatch):
    import chemlm_engine.inference as inference

    ids, mask = inference.collate([[5, 6, 7], [5] * 9], 0, torch.device("cpu"), 8)
    assert ids.shape == (2, 16) and mask.sum(1).tolist() == [3, 9] and (ids[mask == 0] == 0).all()
    cpu = torch.device("cpu")
    assert [inference.pad_multiple(cpu, p) for p in ("bf16", "int8", "fp32")] == [8, 8, 1]
    model = _tiny(tiny_backbone).eval()
    model.inference_precision = "fp32"  # exact arithmetic to compare; bf16 pads the same way
    smiles = lipo.smiles[:40]
    unpadded = predict_values(model, smiles)
    monkeypatch.setattr(inference, "pad_multiple", lambda *_: 8)
    np.testing.assert_allclose(predict_values(model, smiles), unpadded, rtol=1e-5, atol=1e-6)


# -- conformal intervals and ensembles ----------------------------------------------------------------
def test_conformal_intervals_cover_what_they_promise():
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(200):
        std = rng.uniform(0.2, 1.0, 500)
        mean = rng.normal(size=500)
        labels = mean + rng.normal(size=500) * std * 1.7  # miscalibrated spread: conformal must fix it
        conformal = Conformal.calibrate(labels[:250], mean[:250], std[:250], coverage=0.9)
        low, high = conformal.interval(mean[250:], std[250:])
        hits.append(((labels[250:] >= low) & (labels[250:] <= high)).mean())
    assert 0.89 <= np.mean(hits) <= 0.93
    with pytest.raises(ValueError, match="too few"):
        Conformal.calibrate(labels[:5], mean[:5], std[:5], coverage=0.9)


def test_an_ensemble_job_saves_members_and_predicts_intervals(tiny_backbone, store):
    spec = JobSpec(method="ensemble", data=DataSpec(subset=200), options={"members": 3, "coverage": 0.8},
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=2, batch_size=16, seed=4))
    record = store.get_run(run_job(spec, store))
    assert record.status == "finished" and record.metrics["members"] == 3
    assert 0 <= record.metrics["interval_coverage"] <= 1 and record.metrics["interval_width"] > 0
    ensemble = load_predictor(record.model_path, "cpu")
    assert isinstance(ensemble, Ensemble) and len(ensemble.members) == 3
    assert ensemble.trees is not None and ensemble.trees.weight == 0.5  # blended in by default
    assert len({(m.spec.head_hidden, m.spec.descriptors) for m in ensemble.members}) == 1  # trained alike
    first, second = (member.head[0].weight.detach() for member in ensemble.members[:2])
    seeds_differ = not np.allclose(first, second)
    assert seeds_differ
    result = predict_smiles(ensemble, ["CCO", "c1ccccc1O", "C1CC"])
    assert result["prediction"].notna().tolist() == [True, True, False]
    valid = result.iloc[:2]
    assert (valid["interval_low"] < valid["prediction"]).all() and (valid["prediction"] < valid["interval_high"]).all()
    assert (valid["uncertainty"] > 0).all()
    # the stored test predictions are the members' mean (the saved members' bf16 weights move it by < 0.002)
    stored = store.molecules(record.id, "prediction")
    mean, _ = ensemble.predict(stored["smiles"].tolist())
    np.testing.assert_allclose(stored["prediction"], mean, atol=2e-3)


# -- the pool loader (a test molecule must never be trained on) --------------------------------------
def test_the_pool_loader_drops_every_split_and_says_how_many(tiny_backbone, store, tmp_path):
    spec = JobSpec(data=DataSpec(subset=100), model=ModelSpec(backbone=str(tiny_backbone)))
    data = load_split_data(spec.data)
    outside = ["CCCCCCCCO", "CCCCCCCCN", "CCCCCCCCCl"]
    pool_smiles = data.train.smiles[:2] + data.val.smiles[:2] + data.test.smiles[:3] + outside
    path = tmp_path / "pool.csv"
    pd.DataFrame({"smiles": pool_smiles, "y": np.arange(len(pool_smiles), dtype=float)}).to_csv(path, index=False)
    run_id = store.create_run(spec.to_dict(), "influence")
    pool = load_pool(JobContext(spec, store, run_id), data, str(path))
    assert sorted(pool.smiles) == sorted(Chem.CanonSmiles(s) for s in outside)
    assert store.get_run(run_id).info["pool_dropped"] == {"train": 2, "val": 2, "test": 3}
    assert isinstance(pool, MoleculeData)


def test_a_large_molecule_is_predicted_with_a_warning_and_its_batch_is_unaffected(tiny_backbone, lipo):
    from chemlm_engine.descriptors import LARGE_MOLECULE

    data = lipo.subset(range(60))
    model = _tiny(tiny_backbone, descriptors=True)
    fit(model, data.subset(range(50)), data.subset(range(50, 60)), TrainConfig(epochs=1, batch_size=16))
    small, large = lipo.smiles[0], "C" * 5000
    alone = predict_smiles(model, [small])
    frame = predict_smiles(model, [small, large, "CCO"])
    assert frame["error"].isna().all() and np.isfinite(frame["prediction"]).all()
    assert frame.loc[0, "prediction"] == pytest.approx(alone.loc[0, "prediction"], abs=1e-5)
    assert f"over {LARGE_MOLECULE}" in frame.loc[1, "warnings"] and "truncated" in frame.loc[1, "warnings"]
    assert pd.isna(frame.loc[0, "warnings"]) and pd.isna(frame.loc[2, "warnings"])
    plain = predict_smiles(_tiny(tiny_backbone), [large])  # no descriptors: nothing skipped, nothing to warn of
    assert "over" not in plain.loc[0, "warnings"]


def test_members_select_their_epoch_on_a_part_of_their_own_and_never_see_the_calibration(tiny_backbone, store,
                                                                                         monkeypatch):
    import chemlm_engine.methods.ensemble as job

    seen = []
    real = job.train_and_evaluate

    def recording(ctx, data, **kwargs):
        seen.append((set(data.train.smiles), set(data.val.smiles), kwargs["train"].select_best))
        return real(ctx, data, **kwargs)

    monkeypatch.setattr(job, "train_and_evaluate", recording)
    spec = JobSpec(method="ensemble", data=DataSpec(subset=200),
                   options={"members": 3, "train_on_val": True, "member_selection": 0.2, "tree_weight": 0},
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16), train=TrainConfig(epochs=2, seed=1))
    record = store.get_run(run_job(spec, store))
    assert record.status == "finished" and record.metrics["calibration_molecules"] >= 10
    split = load_split_data(spec.data)
    pooled = set(split.train.smiles) | set(split.val.smiles)
    used = set().union(*(train | val for train, val, _ in seen))
    calibration = pooled - used  # what no member trained or selected on
    assert len(calibration) == record.metrics["calibration_molecules"]
    assert record.info["n_train"] + record.info["n_calibration"] == len(pooled) and record.info["n_val"] == 0
    assert all(selecting and val and not train & val for train, val, selecting in seen)
    assert len({frozenset(val) for _, val, _ in seen}) == 3  # each member's own held-out part
    measured = dict(zip([*split.train.smiles, *split.val.smiles], [*split.train.labels, *split.val.labels]))
    held_out = sorted(calibration)
    ensemble = load_predictor(record.model_path)
    assert isinstance(ensemble, Ensemble) and ensemble.trees is None  # tree_weight 0: the members alone
    assert record.metrics["calibration_r2"] == record.metrics["calibration_r2_members"]
    mean, _ = ensemble.predict(held_out)  # its validation score, reported
    assert record.metrics["calibration_r2"] == pytest.approx(r2_score([measured[s] for s in held_out], mean), abs=5e-3)
