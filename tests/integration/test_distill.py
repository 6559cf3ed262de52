"""Distilling an ensemble into one student: the student's mean, a spread model, intervals calibrated anew, and a
teacher that must not have seen the job's test molecules."""
import json
from dataclasses import replace

import numpy as np
import pytest

from chemlm_engine.errors import ConfigError, DataError, ModelLoadError
from chemlm_engine.jobs import run_job
from chemlm_engine.predict import Ensemble, load_predictor, predict_smiles
from chemlm_engine.predict.ensemble import SpreadModel
from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig

DATA = DataSpec(subset=200)  # the teacher's data; a distillation uses the same unless a test says otherwise


@pytest.fixture(scope="module")
def teacher(tiny_backbone, tmp_path_factory):
    from chemlm_engine.store import RunStore

    store = RunStore(home=tmp_path_factory.mktemp("distill") / "runs")
    spec = JobSpec(method="ensemble", data=DATA, options={"members": 3},  # a teacher that learnt something
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=6, batch_size=16, learning_rate=1e-3))
    return store, store.get_run(run_job(spec, store))


def _distil(store, tiny_backbone, teacher: str, split_seed: int = 0, **options):
    spec = JobSpec(method="distill", data=replace(DATA, split_seed=split_seed), options={"teacher": teacher, **options},
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=3, batch_size=16, learning_rate=1e-3))
    return store.get_run(run_job(spec, store))


def _refused(store, tiny_backbone, teacher: str, split_seed: int, error: type, match: str) -> None:
    """Refused before a run exists: no failed run is left in the store (and the app's Start stays disabled)."""
    runs = len(store.runs())
    with pytest.raises(error, match=match):
        _distil(store, tiny_backbone, teacher, split_seed)
    assert len(store.runs()) == runs


def test_a_distilled_ensemble_is_one_student_with_a_spread_and_its_own_calibration(teacher, tiny_backbone):
    store, taught = teacher
    record = _distil(store, tiny_backbone, taught.id)
    assert record.status == "finished", record.error
    assert {"teacher_test_r2", "teacher_interval_coverage", "interval_coverage", "test_r2"} <= set(record.metrics)
    student = load_predictor(record.model_path, "cpu")
    assert isinstance(student, Ensemble) and len(student.members) == 1 and student.spread is not None
    stored = store.molecules(record.id, "prediction")
    mean, spread = student.predict(stored["smiles"].tolist())
    np.testing.assert_allclose(stored["prediction"], mean, atol=2e-3)  # what was evaluated is what was saved
    assert (spread > 0).all() and student.conformal.n_calibration == record.metrics["calibration_molecules"]
    # the teacher's trees stay: the student replaces its members, and blends with the same trees at the same weight
    trees, smiles = load_predictor(taught.model_path, "cpu").trees, stored["smiles"].tolist()[:20]
    assert student.trees is not None and student.trees.weight == trees.weight
    np.testing.assert_allclose(student.trees.predict(smiles), trees.predict(smiles))
    np.testing.assert_allclose(mean[:20], trees.blend(student.members_predict(smiles)[0], smiles), atol=1e-6)
    result = predict_smiles(student, ["CCO", "c1ccccc1O", "C1CC"])
    valid = result.iloc[:2]
    assert result["prediction"].notna().tolist() == [True, True, False]
    assert (valid["interval_low"] < valid["prediction"]).all() and (valid["prediction"] < valid["interval_high"]).all()


def test_transfer_molecules_are_taught_to_the_student_but_never_the_jobs_own(teacher, tiny_backbone, lipo, tmp_path):
    from chemlm_engine.pipeline import load_split_data
    from chemlm_engine.predict.domain import TrainingReference

    store, taught = teacher
    job = load_split_data(DATA)
    own = set(job.train.smiles) | set(job.val.smiles) | set(job.test.smiles)
    library = [s for s in lipo.smiles if s not in own][:40]
    csv = tmp_path / "library.csv"
    csv.write_text("smiles\n" + "\n".join(library + job.test.smiles[:3] + job.val.smiles[:2]) + "\n")
    record = _distil(store, tiny_backbone, taught.id, transfer=str(csv))
    assert record.status == "finished", record.error
    assert record.metrics["transfer_molecules"] == 40  # the job's test and validation molecules left out
    assert record.info["pool_dropped"] == {"train": 0, "val": 2, "test": 3}
    assert set(TrainingReference.load(record.model_path).smiles).isdisjoint(library)  # no measured value to show
    assert store.epochs(record.id)["n_train"].iloc[0] == len(job.train) + 40  # the student learnt all of them


def test_a_teacher_that_trained_on_the_test_molecules_is_refused(teacher, tiny_backbone):
    store, taught = teacher
    # another split: part of its test molecules were the teacher's training molecules
    _refused(store, tiny_backbone, taught.id, 1, DataError, "the teacher trained on .* of this job's test molecules")


def test_a_single_regressor_is_no_teacher(teacher, tiny_backbone):
    store, taught = teacher
    _refused(store, tiny_backbone, f"{taught.model_path}/member-0", 0, ConfigError, "not a deep ensemble")


def test_the_spread_model_recovers_a_log_linear_spread():
    rng = np.random.default_rng(0)
    inputs = np.hstack([rng.normal(size=(400, 5)), np.ones((400, 1))])
    spread = np.exp(inputs[:, :-1] @ np.array([0.3, -0.2, 0.0, 0.1, 0.5]) - 1.0)
    model = SpreadModel.fit(inputs, spread, alpha=1e-3)
    np.testing.assert_allclose(model.predict(inputs), spread, rtol=1e-3)


def test_a_distilled_folder_says_it_needs_a_reader_of_format_2(teacher, tmp_path):
    store, taught = teacher
    ensemble = load_predictor(taught.model_path, "cpu")
    assert ensemble.trees is not None  # the default blends trees in: a reader of format 3
    plain = json.loads((Ensemble(ensemble.members, ensemble.conformal).save(tmp_path / "plain")
                        / "ensemble.json").read_text())
    assert plain["format"] == "chemlm-ensemble/1" and "spread" not in plain  # older readers still read it
    distilled = Ensemble(ensemble.members[:1], ensemble.conformal, SpreadModel([0.0] * 17, 0.0))
    meta = json.loads((distilled.save(tmp_path / "student") / "ensemble.json").read_text())
    assert meta["format"] == "chemlm-ensemble/2" and len(meta["spread"]["coef"]) == 17
    meta["members"] = ["member-0", "member-1"]  # a spread model belongs to exactly one student
    (tmp_path / "student" / "member-1").symlink_to(tmp_path / "student" / "member-0")
    (tmp_path / "student" / "ensemble.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="distilled one exactly one"):
        load_predictor(tmp_path / "student", "cpu")
