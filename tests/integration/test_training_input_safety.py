"""Input safety of training jobs (issue #30): what cannot train is refused before a run exists, what
diverges is recorded as such (each test trains a tiny model)."""
import numpy as np
import pandas as pd
import pytest

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.errors import DataError, TrainingDivergedError
from chemlm_engine.jobs import run_job
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import Standardization
from chemlm_engine.predict import predict_smiles
from tests.unit.test_input_safety import _csv


def test_standardisation_can_be_turned_off_and_is_recorded(tiny_backbone, store, tmp_path):
    csv = tmp_path / "salts.csv"
    smiles = ["CC(=O)[O-].[Na+]"] + ["C" * k + "N" for k in range(1, 24)]
    pd.DataFrame({"smiles": smiles, "y": np.linspace(0, 3, len(smiles))}).to_csv(csv, index=False)
    off = JobSpec(data=DataSpec(source=str(csv), standardize=False),
                  model=ModelSpec(backbone=str(tiny_backbone), head_hidden=8), train=TrainConfig(epochs=1))
    record = store.get_run(run_job(off, store))
    assert record.spec["data"]["standardize"] is False
    model = RegressionModel.load(record.model_path, "cpu")
    assert model.standardization == Standardization(enabled=False)
    assert predict_smiles(model, ["CC(=O)[O-].[Na+]"])["canonical_smiles"][0] == "CC(=O)[O-].[Na+]"


def test_what_a_users_file_lost_is_said_where_the_command_prints(tiny_backbone, store, tmp_path, caplog):
    csv = tmp_path / "messy.csv"
    smiles = ["C" * k + "N" for k in range(1, 24)]
    pd.DataFrame({"smiles": smiles + ["C1CC", "CCN"], "y": [*np.linspace(0, 3, len(smiles)), 1.0, ""]}).to_csv(
        csv, index=False)
    spec = JobSpec(data=DataSpec(source=str(csv)), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=8),
                   train=TrainConfig(epochs=1))
    with caplog.at_level("WARNING", logger="chemlm_engine.jobs"):
        run_job(spec, store)
    said = [r.getMessage() for r in caplog.records if r.name == "chemlm_engine.jobs"]
    assert said == ["data messy.csv: 25 rows: 1 invalid SMILES, 1 unlabeled, 0 duplicates merged, 0 standardised"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="chemlm_engine.jobs"):  # the bundled data set: nothing to say
        run_job(JobSpec(data=DataSpec(subset=40), model=spec.model, train=spec.train), store)
    assert not [r for r in caplog.records if r.name == "chemlm_engine.jobs"]


@pytest.mark.parametrize("labels, reason", [([2.0] * 30, "nothing to learn"), ([1.0, 2.0, 3.0], "too few"),
                                            ([1.0], "too few"), ([1.0, 2.0], "too few")])
def test_untrainable_data_is_refused_before_a_run_is_created(tiny_backbone, store, tmp_path, labels, reason):
    spec = JobSpec(data=DataSpec(source=_csv(tmp_path, labels)), model=ModelSpec(backbone=str(tiny_backbone)))
    with pytest.raises(DataError, match=reason):
        run_job(spec, store)
    assert store.runs() == []


def test_an_exploding_run_is_marked_diverged(tiny_backbone, store):
    spec = JobSpec(data=DataSpec(subset=200), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=2, batch_size=16, learning_rate=10.0, head_learning_rate=10.0,
                                     grad_clip=0.0, warmup_ratio=0.0))
    with pytest.raises(TrainingDivergedError, match="diverged|loss became"):
        run_job(spec, store)
    record = store.runs()[0]
    assert record.status == "diverged" and "lower the learning rate" in record.error
    assert not (store.home / record.id).exists()


def test_labels_that_differ_below_float32_resolution_are_refused(tiny_backbone, store, tmp_path):
    spec = JobSpec(data=DataSpec(source=_csv(tmp_path, [1 + 1e-12 * i for i in range(30)])),
                   model=ModelSpec(backbone=str(tiny_backbone)))
    with pytest.raises(DataError, match="vary by .* only"):
        run_job(spec, store)
