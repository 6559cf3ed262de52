import os
import signal
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

from chemlm_engine.spec import METHODS, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.errors import DataError, JobCancelledError
from chemlm_engine.inference import predict_values
from chemlm_engine.jobs import run_job
from chemlm_engine.manager import JobManager
from chemlm_engine.model import RegressionModel


def _spec(backbone, epochs=2, source="lipophilicity", subset=120, **train) -> JobSpec:
    return JobSpec(data=DataSpec(source=source, subset=subset),
                   model=ModelSpec(backbone=str(backbone), head_hidden=16),
                   train=TrainConfig(epochs=epochs, batch_size=16, **train))


def test_run_job_stores_spec_epochs_metrics_predictions_and_model(tiny_backbone, store):
    spec = _spec(tiny_backbone)
    run_id = run_job(spec, store)
    record = store.get_run(run_id)
    assert record.status == "finished"
    assert JobSpec.from_dict(record.spec) == spec
    assert {"test_mse", "test_rmse", "test_mae", "test_r2"} <= set(record.metrics)
    assert record.versions["torch"] and record.data_hash and record.info["n_train"] == 96
    epochs = store.epochs(run_id)
    assert epochs["epoch"].tolist() == [1, 2] and {"train_mse", "val_mse", "val_r2"} <= set(epochs.columns)
    preds = store.molecules(run_id, "prediction")
    assert len(preds) == 12 and preds["prediction"].notna().all()
    model = RegressionModel.load(record.model_path)
    assert model.tokenizer.pad_token == "<pad>"


def crash(ctx, data, opts):
    (ctx.artifacts / "model").mkdir(parents=True)  # a partial model folder, as a full disk leaves it
    (ctx.artifacts / "model" / "head.safetensors").write_bytes(b"half")
    raise OSError(28, "No space left on device")


def test_failed_job_keeps_traceback_and_the_next_job_runs(tiny_backbone, store, monkeypatch):
    monkeypatch.setitem(METHODS, "mlm", replace(METHODS["mlm"], run=f"{__name__}:crash"))
    manager = JobManager(store)
    bad = manager.submit(replace(_spec(tiny_backbone), method="mlm"))
    good = manager.submit(_spec(tiny_backbone, epochs=1))
    failed = manager.wait(bad, timeout=120)
    assert failed.status == "failed"
    assert "No space left" in failed.error and "Traceback" in failed.traceback
    assert not (store.home / bad).exists()  # no partial artifacts left behind
    assert manager.wait(good, timeout=300).status == "finished"


def test_the_data_is_loaded_and_checked_once_from_submit_to_the_finished_run(tiny_backbone, store, monkeypatch):
    import chemlm_engine.pipeline as pipeline

    loads, real = [], pipeline.load_split_data
    monkeypatch.setattr(pipeline, "load_split_data", lambda spec: loads.append(spec) or real(spec))
    manager = JobManager(store)
    run_id = manager.submit(_spec(tiny_backbone, epochs=1))
    assert manager.wait(run_id, timeout=300).status == "finished"
    assert len(loads) == 1  # the worker ran on the data submit checked
    assert store.get_run(run_id).info["n_train"] == 96


def test_files_named_relative_to_the_working_folder_are_recorded_absolute(tiny_backbone, store, lipo, tmp_path,
                                                                           monkeypatch):
    """A run started from one folder is re-run or built on from any other (the app, another shell, a worker)."""
    (tmp_path / "mine.csv").write_text("smiles,logD\n" + "".join(
        f"{s},{y}\n" for s, y in zip(lipo.smiles[:60], lipo.labels[:60])))
    monkeypatch.chdir(tmp_path)
    spec = _spec(os.path.relpath(tiny_backbone), epochs=1, source="mine.csv", subset=None)
    by_job = store.get_run(run_job(spec, store)).spec
    manager = JobManager(store)
    by_manager = manager.wait(manager.submit(spec), timeout=300)
    assert by_manager.status == "finished"
    for recorded in (by_job, by_manager.spec):
        assert recorded["data"]["source"] == str(tmp_path / "mine.csv")
        assert recorded["model"]["backbone"] == str(tiny_backbone)


def test_a_subset_as_large_as_the_data_is_recorded_as_none(tiny_backbone, store, lipo, tmp_path):
    """It trained on every molecule: it says so, and compares with the runs that did."""
    (tmp_path / "mine.csv").write_text("smiles,logD\n" + "".join(
        f"{s},{y}\n" for s, y in zip(lipo.smiles[:60], lipo.labels[:60])))
    spec = _spec(tiny_backbone, epochs=1, source=str(tmp_path / "mine.csv"), subset=1_000_000)
    manager = JobManager(store)
    for run_id in (run_job(spec, store), manager.submit(spec)):
        record = manager.wait(run_id, timeout=300)
        assert record.status == "finished" and record.spec["data"]["subset"] is None
        assert record.info["n_train"] == 48
    smaller = store.get_run(run_job(replace(spec, data=replace(spec.data, subset=50)), store))
    assert smaller.spec["data"]["subset"] == 50 and smaller.info["n_train"] == 40


def test_a_pool_or_start_the_method_cannot_use_is_refused_before_a_run_is_recorded(tiny_backbone, store, tmp_path):
    (tmp_path / "empty.csv").write_text("smiles,logD\n")
    (tmp_path / "nosmiles.csv").write_text("foo,bar\nA,1\n")
    for method, pool in (("influence", "missing.csv"), ("influence", "empty.csv"), ("uncertainty", "nosmiles.csv")):
        spec = replace(_spec(tiny_backbone, epochs=1), method=method, options={"pool": str(tmp_path / pool)})
        with pytest.raises(DataError, match=f"the pool {pool}: " if pool == "nosmiles.csv" else None):
            run_job(spec, store)  # the job's data is read too: the message names the file it is about
        with pytest.raises(DataError):
            JobManager(store).submit(spec)
    (tmp_path / "corpus.csv").write_text("name,value\nA,1\n")
    for corpus in ("missing.csv", "corpus.csv"):  # a pretraining's corpus: none, or without a SMILES column
        with pytest.raises(DataError):
            run_job(JobSpec(method="pretrain", options={"corpus": str(tmp_path / corpus), "max_steps": 1}), store)
    start = replace(_spec(tiny_backbone, epochs=1, subset=50), method="isal", options={"initial_size": 100_000})
    with pytest.raises(DataError, match="initial_size"):
        run_job(start, store)
    assert store.runs() == []  # nothing to clutter the run list


def test_cancel_stops_a_running_job_within_a_batch(tiny_backbone, store):
    manager = JobManager(store)
    run_id = manager.submit(_spec(tiny_backbone, epochs=200, subset=400))
    while store.get_run(run_id).progress == 0:  # wait until it is inside the fit loop
        threading.Event().wait(0.05)
    manager.cancel(run_id)
    record = manager.wait(run_id, timeout=60)
    assert record.status == "cancelled"
    assert len(store.epochs(run_id)) < 200


def test_a_manager_that_does_not_own_the_jobs_cancels_them_through_the_store(tiny_backbone, store):
    owner, other = JobManager(store), JobManager(store)  # e.g. the executor was switched in the sidebar
    running = owner.submit(_spec(tiny_backbone, epochs=200, subset=400))
    queued = owner.submit(_spec(tiny_backbone, epochs=1))
    while store.get_run(running).progress == 0:
        threading.Event().wait(0.05)
    other.cancel(queued)
    other.cancel(running)
    record = owner.wait(running, timeout=60)
    assert record.status == "cancelled" and len(store.epochs(running)) < 200
    after = owner.wait(queued, timeout=60)
    assert after.status == "cancelled" and after.started_at is None  # never started


def test_cancelled_run_job_raises_and_is_recorded(tiny_backbone, store):
    event = threading.Event()
    event.set()
    with pytest.raises(JobCancelledError):
        run_job(_spec(tiny_backbone), store, cancel=event)
    assert store.runs()[0].status == "cancelled"


def test_a_run_cancelled_after_its_worker_looked_is_not_started(tiny_backbone, store):
    spec = _spec(tiny_backbone)
    run_id = store.create_run(spec.to_dict(), spec.method)
    store.request_cancel(run_id)  # e.g. from another manager, between the worker's check and the start
    with pytest.raises(JobCancelledError, match="not started: it is cancelled"):
        run_job(spec, store, run_id)
    record = store.get_run(run_id)
    assert record.status == "cancelled" and record.started_at is None and store.epochs(run_id).empty


def test_runs_left_running_by_a_dead_process_are_interrupted(store):
    run_id = store.create_run({}, "baseline")
    store._update(run_id, status="running", pid=2**22 + 12345)  # no such process
    alive = store.create_run({}, "baseline")  # queued by this (living) process
    manager = JobManager(store)
    assert manager.interrupted == [run_id]
    assert store.get_run(run_id).status == "interrupted"
    assert store.get_run(alive).status == "queued"


def test_store_reads_while_a_job_writes(tiny_backbone, store):
    manager = JobManager(store)
    run_id = manager.submit(_spec(tiny_backbone, epochs=3))
    seen = set()
    while True:
        record = store.get_run(run_id)  # a reader polling like the dashboard does
        seen.add(record.status)
        store.epochs(run_id)
        if record.status not in ("queued", "running"):
            break
        threading.Event().wait(0.02)
    assert record.status == "finished" and "running" in seen
    assert store.url.startswith("sqlite")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_the_process_executor_runs_cancels_and_notices_a_killed_job(tiny_backbone, store):
    manager = JobManager(store, executor="process")
    done = manager.wait(manager.submit(_spec(tiny_backbone, epochs=1)), timeout=180)
    assert done.status == "finished" and done.metrics["test_r2"] <= 1 and done.pid != os.getpid()
    assert np.isfinite(predict_values(RegressionModel.load(done.model_path), ["CCO", "c1ccccc1O"])).all()

    for stop in ("cancel", "kill"):
        run_id = manager.submit(_spec(tiny_backbone, epochs=200, subset=400))
        while store.get_run(run_id).progress == 0:  # inside the fit loop, in the child
            threading.Event().wait(0.05)
        if stop == "cancel":
            manager.cancel(run_id)
        else:
            os.kill(store.get_run(run_id).pid, signal.SIGKILL)
        record = manager.wait(run_id, timeout=120)
        assert record.status == ("cancelled" if stop == "cancel" else "interrupted"), record.message
        assert len(store.epochs(run_id)) < 200


def test_a_job_process_that_shared_its_descriptors_with_helpers_ends_and_the_next_job_runs(tiny_backbone, store):
    """A job process joins its child processes before it exits, and an idle descriptor helper never ends by itself:
    the first job with descriptors (a library prediction, the default recipe) kept its process alive for ever and
    every later job of the app queued behind it. (On one core no helper starts; CI has two.)"""
    manager = JobManager(store, executor="process")
    spec = JobSpec(data=DataSpec(subset=120), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=8,
                                                             descriptors=True), train=TrainConfig(epochs=1))
    for _ in range(2):
        assert manager.wait(manager.submit(spec), timeout=90).status == "finished"
    deadline = time.time() + 30
    while manager._children and time.time() < deadline:  # joined by the worker thread once the process is gone
        time.sleep(0.2)
    assert not manager._children


def test_a_job_its_host_ends_from_inside_is_interrupted_not_failed(tiny_backbone, store):
    """Ray Tune ends a trial that ASHA stops by raising SystemExit(0) from tune.report inside the fit."""
    def host_stops(fraction: float, message: str) -> None:
        if "epoch 1" in message:
            raise SystemExit(0)

    spec = JobSpec(data=DataSpec(subset=60), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=8),
                   train=TrainConfig(epochs=2, batch_size=16))
    with pytest.raises(SystemExit):
        run_job(spec, store, progress=host_stops)
    run = store.runs()[0]
    assert run.status == "interrupted" and "SystemExit 0" in run.message and not run.error


def test_a_late_interruption_does_not_overwrite_how_a_run_ended(store):
    run_id = store.create_run(JobSpec().to_dict(), "baseline")
    store.cancel(run_id, "the search was cancelled")
    store.interrupt(run_id, "stopped: its process is exiting")  # the dying worker's word arrives after
    assert store.get_run(run_id).status == "cancelled"
    running = store.create_run(JobSpec().to_dict(), "baseline")
    store.interrupt(running, "interrupted (SIGINT / SIGTERM)")
    assert store.get_run(running).status == "interrupted"
