"""The run store's contract: lifecycle, named tables, per-molecule rows, rename and delete."""
import os
import time
from pathlib import Path

import pandas as pd
import pytest

from chemlm_engine.spec import DataSpec, JobSpec, TrainConfig
from chemlm_engine.errors import RunNotFoundError, StoreError
from chemlm_engine.compare import run_summary, runs_frame
from chemlm_engine.store import RunStore, Tables
from chemlm_engine.store.uploads import UPLOAD_GRACE


def _run(store: RunStore) -> str:
    spec = JobSpec(method="lora", data=DataSpec(subset=100, split="scaffold"), train=TrainConfig(epochs=3, seed=2),
                   options={"rank": 4})
    return store.create_run(spec.to_dict(), spec.method, "my run")


def test_lifecycle_and_summary_from_the_spec(tmp_path):
    store = RunStore(home=tmp_path)
    run_id = _run(store)
    assert store.get_run(run_id).status == "queued"
    store.start(run_id, {"torch": "x"})
    store.finish(run_id, {"test_r2": 0.5, "test_mse": float("nan")})
    record = store.get_run(run_id)
    assert record.status == "finished" and record.metrics["test_mse"] is None  # NaN stored as null
    row = run_summary(record)
    assert (row["method"], row["split"], row["seed"], row["subset"], row["epochs"]) == ("lora", "scaffold", 2, 100, 3)
    assert '"rank": 4' in row["options"] and row["test_r2"] == 0.5


def test_named_tables_keep_order_and_are_separate_from_epochs(tmp_path):
    store = RunStore(home=tmp_path)
    run_id = _run(store)
    store.add_epoch(run_id, 1, {"train_mse": 1.0}, stage="train")
    store.add_table(run_id, Tables.SWEEP, [{"k": 16, "test_r2": 0.1}, {"k": 32, "test_r2": 0.2}])
    store.add_table(run_id, Tables.SWEEP, [{"k": 64, "test_r2": 0.3}])
    assert store.table(run_id, Tables.SWEEP)["k"].tolist() == [16, 32, 64]
    assert store.table(run_id, Tables.SOLVER).empty
    assert store.epochs(run_id)["stage"].tolist() == ["train"]


def test_rename_and_delete_remove_rows_and_files(tmp_path):
    store = RunStore(home=tmp_path)
    run_id = _run(store)
    with pytest.raises(StoreError, match="still active"):
        store.delete(run_id)
    store.add_molecules(run_id, "prediction", pd.DataFrame({"smiles": ["CCO"], "label": [1.0], "note": ["x"]}))
    (store.artifact_dir(run_id) / "model").mkdir()
    store.rename(run_id, "  renamed ")
    assert store.get_run(run_id).name == "renamed"
    store.cancel(run_id)
    store.delete(run_id)
    with pytest.raises(RunNotFoundError):
        store.get_run(run_id)
    assert store.molecules(run_id).empty and not (tmp_path / run_id).exists()


def test_exporting_a_run_without_a_model_says_which_of_the_two_reasons_it_is(tmp_path):
    store = RunStore(home=tmp_path)
    queued = _run(store)
    library = JobSpec(method="predict", options={"model": "assets/lipo-regressor", "source": "library.csv"})
    finished = store.create_run(library.to_dict(), "predict", "a library")
    store.finish(finished, {"rows": 10})  # as a library prediction finishes: results, no model folder
    with pytest.raises(RunNotFoundError, match="no model to export \\(status queued\\)"):
        store.export_model(queued, tmp_path / "out")
    with pytest.raises(RunNotFoundError, match="no model to export \\(a predict run makes none\\)"):
        store.export_model(finished, tmp_path / "out")
    pretrained = store.create_run(JobSpec(method="pretrain").to_dict(), "pretrain", "a backbone")
    store.set_info(pretrained, output="/data/my-backbone")
    store.finish(pretrained, {"steps": 10})  # its backbone is in its output folder, not a regressor to export
    with pytest.raises(RunNotFoundError, match="a pretrain run writes a backbone, to /data/my-backbone: train on it"):
        store.export_model(pretrained, tmp_path / "out")


def test_a_run_whose_stored_options_no_longer_validate_still_lists(tmp_path):
    store = RunStore(home=tmp_path)
    spec = JobSpec(method="ia3").to_dict()
    run_id = store.create_run({**spec, "options": {"rank": 4}}, "ia3")  # accepted by an older version
    row = run_summary(store.get_run(run_id))
    assert row["method"] == "ia3" and "not readable now" in row["options"]
    assert len(runs_frame(store.runs())) == 1


def test_a_stored_spec_with_fields_this_version_does_not_know_still_lists(tmp_path):
    store = RunStore(home=tmp_path)
    spec = JobSpec(data=DataSpec(subset=100), train=TrainConfig(epochs=3)).to_dict()
    spec["model"]["retired_setting"] = True  # written by another version
    spec["train"].pop("epochs")  # and one it did not write
    run_id = store.create_run(spec, "baseline", "old run")
    row = run_summary(store.get_run(run_id))
    assert (row["subset"], row["epochs"]) == (100, TrainConfig().epochs)
    assert runs_frame(store.runs())["id"].tolist() == [run_id]


def test_the_store_refuses_a_file_as_home_and_an_unknown_url_scheme_with_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file"):
        RunStore(home=tmp_path / "file")
    with pytest.raises(StoreError, match="SQLAlchemy URL"):
        RunStore("nosuchdialect://x", home=tmp_path)


def test_the_database_records_its_schema_version_and_a_newer_one_is_refused(tmp_path):
    from sqlalchemy import text

    from chemlm_engine.store import schema as store_schema

    store = RunStore(home=tmp_path)
    run_id = _run(store)
    with store.engine.begin() as connection:
        assert connection.execute(text("select value from store_meta")).scalar() == str(store_schema.SCHEMA_VERSION)
        connection.execute(text("drop table store_meta"))  # as written before versions were recorded
    assert RunStore(home=tmp_path).get_run(run_id).name == "my run"  # read as version 1, and recorded
    with store.engine.begin() as connection:
        connection.execute(text("update store_meta set value = '99'"))
    with pytest.raises(StoreError, match="newer ChemLM Studio.*schema 99"):
        RunStore(home=tmp_path)


def test_an_older_database_is_migrated_once(tmp_path, monkeypatch):
    from sqlalchemy import text

    from chemlm_engine.store import schema as store_schema

    run_id = _run(RunStore(home=tmp_path))  # a version-1 database
    calls = []

    def add_a_column(connection):
        calls.append(1)
        connection.execute(text("alter table runs add column project varchar(50) default 'none'"))

    monkeypatch.setattr(store_schema, "SCHEMA_VERSION", 2)
    monkeypatch.setattr(store_schema, "MIGRATIONS", {2: add_a_column})
    store = RunStore(home=tmp_path)
    RunStore(home=tmp_path)  # already at 2: not migrated again
    assert calls == [1] and store.get_run(run_id).name == "my run"
    with store.engine.begin() as connection:
        assert connection.execute(text("select project from runs")).scalar() == "none"
        assert connection.execute(text("select value from store_meta")).scalar() == "2"


def test_an_upload_is_kept_under_its_content_so_a_path_means_one_files_bytes(tmp_path):
    store = RunStore(home=tmp_path)
    first = store.save_upload(b"smiles\nCCO\n")
    assert first.read_bytes() == b"smiles\nCCO\n" and first.parent == tmp_path / "uploads"
    assert store.save_upload(b"smiles\nCCO\n") == first and store.save_upload(b"smiles\nCCN\n") != first


def test_deleting_a_run_deletes_the_uploads_no_run_names_once_they_are_older_than_the_grace(tmp_path):
    store = RunStore(home=tmp_path)
    kept, orphan, fresh = (store.save_upload(f"smiles\n{s}\n".encode()) for s in ("CCO", "CCN", "CCC"))
    spec = JobSpec(method="predict", options={"model": "m", "source": str(kept)}).to_dict()
    user = store.create_run(spec, "predict")
    doomed = _run(store)
    old = time.time() - UPLOAD_GRACE - 60
    for path in (kept, orphan):
        os.utime(path, (old, old))
    store.cancel(doomed)
    store.delete(doomed)
    assert kept.exists() and fresh.exists() and not orphan.exists()
    store.save_upload(b"smiles\nCCO\n")  # uploaded again: fresh, kept after its run is gone
    store.cancel(user)
    store.delete(user)
    assert kept.exists()
    os.utime(kept, (old, old))
    assert store.prune_uploads() == [kept] and not kept.exists()


def test_the_runs_table_names_an_uploaded_file_as_it_was_uploaded(tmp_path):
    store = RunStore(home=tmp_path)
    upload = str(store.save_upload(b"smiles,y\nCCO,1\n", ".csv"))  # kept under its content's hash
    named = store.create_run(JobSpec(data=DataSpec(source=upload)).to_dict(), "baseline")
    store.set_info(named, data_file="mine.csv")  # as the app records it when it queues the run
    unnamed = store.create_run(JobSpec(data=DataSpec(source=upload)).to_dict(), "baseline")  # a command's run
    bundled = store.create_run(JobSpec().to_dict(), "baseline")
    by_id = runs_frame(store.runs()).set_index("id")["dataset"]
    assert (by_id[named], by_id[unnamed], by_id[bundled]) == ("mine.csv", Path(upload).name, "lipophilicity")
