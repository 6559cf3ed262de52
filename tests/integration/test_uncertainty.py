import json

import numpy as np
import pytest

from chemlm_engine.errors import DataError
from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.store import Tables
from chemlm_engine.jobs import run_job
from chemlm_engine.inference import mc_dropout, predict_values
from chemlm_engine.methods.selection import select_random, select_top
from chemlm_engine.model import RegressionModel
from chemlm_engine.predict import predict_smiles


def _model(backbone):
    return RegressionModel.from_spec(ModelSpec(backbone=str(backbone), head_hidden=16, dropout=0.2), seed=0)


def test_dropout_is_active_in_mc_passes_and_off_in_normal_prediction(tiny_backbone, lipo):
    model = _model(tiny_backbone).eval()
    smiles = lipo.smiles[:30]
    first = predict_smiles(model, smiles)["prediction"].to_numpy()
    second = predict_smiles(model, smiles)["prediction"].to_numpy()
    np.testing.assert_array_equal(first, second)
    mean, std = mc_dropout(model, smiles, passes=8)
    assert np.all(std > 0)
    _, full_std = mc_dropout(model, smiles, passes=8, scope="full")
    assert np.all(full_std > 0) and not np.allclose(full_std, std)
    assert not model.training and not any(m.training for m in model.modules())  # restored afterwards
    np.testing.assert_array_equal(predict_smiles(model, smiles)["prediction"].to_numpy(), first)
    again_mean, again_std = mc_dropout(model, smiles, passes=8)
    np.testing.assert_allclose(again_std, std)  # seeded: reproducible


def test_prediction_table_carries_uncertainty_and_keeps_invalid_rows(tiny_backbone):
    frame = predict_smiles(_model(tiny_backbone), ["CCO", "C1CC", "c1ccccc1O"], mc_passes=5)
    assert frame["uncertainty"].notna().tolist() == [True, False, True]


def test_selection_takes_the_largest_standard_deviations():
    std = np.array([0.1, 0.5, 0.2, 0.9, 0.5, 0.05])
    assert select_top(std, 3).tolist() == [3, 1, 4]
    picked = select_random(6, 3, seed=1)
    assert len(set(picked.tolist())) == 3 and picked.tolist() == select_random(6, 3, seed=1).tolist()


def test_acquisition_run_trains_end_to_end_and_stores_selection(tiny_backbone, store):
    spec = JobSpec(method="uncertainty", data=DataSpec(subset=200),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=1, batch_size=16),
                   options={"initial_size": 40, "acquire": 30, "passes": 4})
    record = store.get_run(run_job(spec, store))
    assert record.status == "finished" and record.metrics["n_labelled"] == 70
    pool = store.molecules(record.id, "pool_uncertainty")
    acquired = store.molecules(record.id, "acquired")
    assert len(pool) == 160 - 40 and len(acquired) == 30
    assert acquired["score"].min() >= pool["score"].nlargest(30).min() - 1e-12
    assert len(store.molecules(record.id, "test_uncertainty")) == 20
    assert -1 <= record.metrics["uncertainty_error_spearman"] <= 1


def test_sweep_runs_uncertainty_and_random_at_every_n(tiny_backbone, store):
    spec = JobSpec(method="uncertainty", data=DataSpec(subset=150),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=1, batch_size=16),
                   options={"initial_size": 30, "sweep": [40, 10], "passes": 3})  # in any order
    record = store.get_run(run_job(spec, store))
    table = store.table(record.id, Tables.SWEEP)
    assert list(zip(table["n"], table["strategy"])) == [(10, "uncertainty"), (10, "random"), (40, "uncertainty"),
                                                       (40, "random")]
    assert table[["train_mse", "val_mse", "test_mse", "test_r2"]].notna().all().all()
    # the model kept (and its metrics) is the largest N with the method's own strategy: 30 + 40 labelled molecules
    assert record.metrics["n_labelled"] == 70 and record.metrics["test_mse"] == table["test_mse"].iloc[2]
    from chemlm_engine.compare import run_document  # what `chemlm runs show` prints

    document = json.loads(json.dumps(run_document(store, record.id)))
    assert len(document["tables"]["sweep"]) == 4 and len(document["acquired"]) == 40  # the list to measure next
    assert {"smiles", "score", "strategy"} <= set(document["acquired"][0])


def test_a_sweep_size_beyond_the_pool_runs_as_the_whole_pool_and_says_so(tiny_backbone, store):
    spec = JobSpec(method="uncertainty", data=DataSpec(subset=60), train=TrainConfig(epochs=1, batch_size=16),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   options={"initial_size": 20, "sweep": [10, 500], "passes": 2})  # 48 training molecules: pool 28
    record = store.get_run(run_job(spec, store))
    assert store.table(record.id, Tables.SWEEP)["n"].tolist() == [10, 10, 28, 28]  # what ran, not 500
    assert record.info["acquire_note"] == "the pool has 28 molecules, so the sweep runs N = 10, 28"
    assert record.metrics["n_labelled"] == 48


def test_isal_scores_are_the_expected_influence_over_the_predictive_distribution(tiny_backbone, lipo):
    from chemlm_engine.methods.influence.isal import expected_influence
    from chemlm_engine.spec import IsalOptions

    model = _model(tiny_backbone).eval()
    train, val, pool = lipo.subset(range(60)), lipo.subset(range(60, 80)), lipo.smiles[80:100]
    opts = IsalOptions(solver="exact")
    samples = np.random.default_rng(0).normal(1.0, 0.7, size=(5, len(pool)))  # labels the model might predict
    per_sample = [expected_influence(model, train, val, pool, y, opts) for y in samples]
    at_mean = expected_influence(model, train, val, pool, samples.mean(0), opts)
    np.testing.assert_allclose(at_mean, np.mean(per_sample, 0), rtol=1e-4, atol=1e-7)  # exact, not sampled
    assert np.ptp(at_mean) > 0
    # labelled with what the model already predicts, a molecule moves nothing: no influence
    standard = expected_influence(model, train, val, pool, predict_values(model, pool), opts)  # as the model reads them
    assert np.abs(standard).max() < 1e-3 * np.abs(at_mean).max()


def test_isal_sweep_runs_isal_uncertainty_and_random_on_the_same_initial_model(tiny_backbone, store):
    spec = JobSpec(method="isal", data=DataSpec(subset=150),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16, dropout=0.2),
                   train=TrainConfig(epochs=1, batch_size=16),
                   options={"initial_size": 30, "sweep": [10, 40], "passes": 4})
    record = store.get_run(run_job(spec, store))
    assert record.status == "finished", record.error
    table = store.table(record.id, Tables.SWEEP)
    assert list(zip(table["n"], table["strategy"])) == [(n, s) for n in (10, 40) for s in ("isal", "uncertainty",
                                                                                            "random")]
    scored = store.molecules(record.id, "pool_isal")
    acquired = store.molecules(record.id, "acquired")
    assert len(scored) == 120 - 30 and scored["score"].notna().all() and (scored["uncertainty"] > 0).all()
    # the kept list is ISAL's top 40, with what a chemist needs to decide: gain, prediction, spread
    assert len(acquired) == 40 and set(acquired["strategy"]) == {"isal"}
    assert acquired["score"].min() >= scored["score"].nlargest(40).min() - 1e-12
    assert {"prediction", "uncertainty"} <= set(acquired.columns)
    assert record.metrics["test_r2"] == table.loc[(table["n"] == 40) & (table["strategy"] == "isal"),
                                                  "test_r2"].item()


def test_isal_ranks_a_chemists_unlabelled_pool_once_with_a_model_of_all_the_training_split(tiny_backbone, store,
                                                                                         tmp_path, lipo, caplog):
    candidates = tmp_path / "candidates.csv"
    candidates.write_text("smiles\n" + "\n".join(lipo.smiles[:25] + ["not a smiles"]) + "\n")  # no label column
    spec = JobSpec(method="isal", data=DataSpec(subset=150),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16, dropout=0.2),
                   train=TrainConfig(epochs=1, batch_size=16),
                   options={"pool": str(candidates), "acquire": 10, "passes": 4})
    with caplog.at_level("WARNING"):
        record = store.get_run(run_job(spec, store))
    assert record.status == "finished", record.error
    assert "have no label, so the pool is your candidates: ranked once" in caplog.text  # said, not silently
    assert record.metrics["n_labelled"] == 120  # every labelled training molecule, nothing acquired into it
    assert record.info["pool_labelled"] is False
    assert record.info["pool_molecules"] + record.info["pool_dropped_known"] == 25  # those of the splits dropped
    acquired = store.molecules(record.id, "acquired")
    scored = store.molecules(record.id, "pool_isal")
    assert record.info["pool_molecules"] == len(scored) >= 10
    assert len(acquired) == 10 and acquired["label"].isna().all() and acquired["prediction"].notna().all()
    assert "acquire_note" not in record.info  # 10 of the pool's molecules, as asked
    assert acquired["score"].min() >= scored["score"].nlargest(10).min() - 1e-12
    with_sweep = JobSpec.from_dict({**spec.to_dict(), "options": {"pool": str(candidates), "sweep": [5]}})
    with pytest.raises(DataError, match="without a label"):  # a sweep would need the labels it reveals
        run_job(with_sweep, store)


def test_asking_for_more_than_the_pool_holds_acquires_all_of_it_and_says_so_with_the_run(tiny_backbone, store,
                                                                                        tmp_path, lipo):
    candidates = tmp_path / "candidates.csv"
    candidates.write_text("smiles\n" + "\n".join(lipo.smiles[-12:]) + "\n")
    spec = JobSpec(method="uncertainty", data=DataSpec(subset=80),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16, dropout=0.2),
                   train=TrainConfig(epochs=1, batch_size=16),
                   options={"pool": str(candidates), "acquire": 50, "passes": 2})
    record = store.get_run(run_job(spec, store))
    assert record.status == "finished", record.error
    pool = record.info["pool_molecules"]
    assert len(store.molecules(record.id, "acquired")) == pool
    assert record.info["acquire_note"] == f"50 asked for, but the pool has {pool} molecules: all of them are acquired"
