"""`chemlm tune`: a search on the validation split whose trials are runs in the store."""
import time
from dataclasses import replace

import pytest

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.tune import run_search, trial_spec


def _base(backbone) -> JobSpec:
    return JobSpec(data=DataSpec(subset=100), model=ModelSpec(backbone=str(backbone), head_hidden=16),
                   train=TrainConfig(epochs=3, batch_size=16))


def test_a_trial_spec_sets_model_training_and_method_settings_and_validates_them(tiny_backbone):
    base = _base(tiny_backbone)
    spec = trial_spec(base, {"learning_rate": 3e-4, "head_hidden": 32, "dropout": 0.2, "descriptors": True})
    assert (spec.train.learning_rate, spec.model.head_hidden, spec.model.dropout, spec.model.descriptors) == \
        (3e-4, 32, 0.2, True)
    assert spec.data == base.data and spec.train.epochs == 3
    lora = trial_spec(JobSpec(method="lora"), {"rank": 4})
    assert lora.method_options.rank == 4
    with pytest.raises(Exception, match="rnak"):
        trial_spec(JobSpec(method="lora"), {"rnak": 4})


@pytest.mark.ray
def test_a_search_records_every_trial_and_returns_the_best_on_validation(tiny_backbone, store):
    from ray import tune

    from chemlm_engine.cluster import connect

    connect(num_cpus=2)
    space = {"learning_rate": tune.grid_search([1e-5, 1e-3]), "head_hidden": tune.choice([16, 32])}
    result = run_search(_base(tiny_backbone), store, "tiny-search", num_samples=1, space=space, cpus_per_trial=1)
    trials = result.trials
    assert len(trials) == 2 and set(trials["learning_rate"]) == {1e-5, 1e-3}
    assert trials["val_mse"].is_monotonic_increasing and result.best_run_id == trials.loc[0, "run_id"]
    runs = {r.id: r for r in store.runs()}
    assert set(trials["run_id"]) <= set(runs)  # every trial is a run in the store, grouped by the search
    assert all(runs[i].info["search"] == "tiny-search" and runs[i].status in ("finished", "interrupted")
               for i in trials["run_id"])
    for row in trials.itertuples():  # the table says what each run measured, as `runs show` does
        measured = store.epochs(row.run_id)["val_mse"].dropna()
        assert row.epochs_run == len(measured) and row.val_mse == pytest.approx(measured.min())
    best = runs[result.best_run_id]
    assert result.best_spec.train.learning_rate == best.spec["train"]["learning_rate"]
    assert result.best_val_mse == pytest.approx(store.epochs(best.id)["val_mse"].min())
    again = run_search(_base(tiny_backbone), store, "tiny-search", num_samples=1, space=space, cpus_per_trial=1)
    assert len(again.trials) == 2 and len(store.runs()) == len(runs)  # resumed: finished trials are not rerun


@pytest.mark.ray
def test_a_search_on_another_machine_replays_the_recorded_trials_instead_of_training_them(tiny_backbone, store,
                                                                                        tmp_path):
    from ray import tune

    from chemlm_engine.cluster import connect
    from chemlm_engine.store import RunStore

    connect(num_cpus=2)
    space = {"learning_rate": tune.loguniform(1e-5, 1e-3)}  # sampled: the seed must propose the same settings again
    records: list[dict] = []
    first = run_search(_base(tiny_backbone), store, "moved", num_samples=2, space=space, cpus_per_trial=1,
                       on_trial=records.append)
    assert len(records) == 2 and {r["run_id"] for r in records} == set(first.trials["run_id"])
    for record in records:  # each epoch as the run measured it
        measured = store.epochs(record["run_id"]).set_index("epoch")["val_mse"]
        assert record["epochs"] and all(measured[e] == pytest.approx(v) for e, v in record["epochs"])
    elsewhere = RunStore(home=tmp_path / "elsewhere")  # no Tune folder, no runs: only the records travelled
    again = run_search(_base(tiny_backbone), elsewhere, "moved", num_samples=2, space=space, cpus_per_trial=1,
                       replay=records)
    assert elsewhere.runs() == []  # nothing was trained again
    assert again.best_run_id == first.best_run_id and again.best_val_mse == first.best_val_mse
    assert set(again.trials["status"]) == {"replayed"}


@pytest.mark.ray
def test_a_cancelled_search_resumes_training_only_the_trials_that_had_not_ended(tiny_backbone, store):
    from ray import tune

    from chemlm_engine.cluster import connect
    from chemlm_engine.errors import JobCancelledError

    connect(num_cpus=2)
    base = replace(_base(tiny_backbone), train=TrainConfig(epochs=20, batch_size=16))
    space = {"learning_rate": tune.grid_search([1e-5, 1e-4, 1e-3])}
    first: list[dict] = []
    with pytest.raises(JobCancelledError):  # stopped once its first trial has ended
        run_search(base, store, "resumed", num_samples=1, space=space, cpus_per_trial=2, on_trial=first.append,
                   should_stop=lambda: len(first) >= 1)
    later: list[dict] = []
    ended = {r.id for r in store.runs() if r.status in ("finished", "interrupted")}
    result = run_search(base, store, "resumed", num_samples=1, space=space, cpus_per_trial=2, on_trial=later.append)
    assert len(result.trials) == 3 and set(result.trials["status"]) <= {"finished", "stopped by ASHA", "interrupted"}
    trained = {r["run_id"] for r in later} - {r["run_id"] for r in first}  # the first trial is replayed, not trained
    assert len(trained) == 2 and first[0]["run_id"] in ended and not trained & ended


@pytest.mark.ray
def test_the_tune_command_writes_the_best_spec_that_train_reproduces(tiny_backbone, tmp_path, monkeypatch):
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from chemlm_engine.cli import app
    from chemlm_engine.store import RunStore

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "runs"))
    best = tmp_path / "best.json"
    monkeypatch.chdir(tmp_path)
    out = CliRunner().invoke(app, ["tune", "--backbone", str(tiny_backbone), "--subset", "80", "--epochs", "2",
                                   "--num-samples", "2", "--cpus-per-trial", "1", "--name", "cli", "-o", "best.json"])
    assert out.exit_code == 0, out.output
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    assert summary["spec"] == str(best) and Path(summary["refit_spec"]).is_absolute()  # written relative, named whole
    assert summary["trials"] == 2 and "chemlm train --spec" in out.stderr
    spec = JobSpec.from_json(best.read_text())
    assert spec.data.subset == 80 and spec.model.backbone == str(tiny_backbone)
    searched = RunStore(home=tmp_path / "runs").get_run(summary["best_run_id"])
    assert spec == JobSpec.from_dict(searched.spec)  # the file is the best trial's own spec
    again = CliRunner().invoke(app, ["train", "--spec", str(best)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1])["status"] == "finished"
    # the refit: the same recipe on training + validation, for the epochs the best trial was best at
    refit = JobSpec.from_json(Path(summary["refit_spec"]).read_text())
    best_epoch = int(RunStore(home=tmp_path / "runs").epochs(summary["best_run_id"]).set_index("epoch")["val_mse"]
                     .idxmin())
    assert refit.method_options.train_on_val and refit.train.epochs == best_epoch
    assert refit.model == spec.model and refit.data == spec.data
    done = CliRunner().invoke(app, ["train", "--spec", summary["refit_spec"]])
    finished = json.loads(done.stdout.strip().splitlines()[-1])
    assert finished["status"] == "finished", done.output
    # trained on training + validation: no validation score is reported (it was the training MSE under that name)
    refitted = RunStore(home=tmp_path / "runs").get_run(finished["run_id"])
    assert refitted.metrics.get("val_mse") is None and refitted.metrics["train_mse"] > 0
    trial = RunStore(home=tmp_path / "runs").get_run(summary["best_run_id"]).info
    assert (refitted.info["n_train"], refitted.info["n_val"]) == (trial["n_train"] + trial["n_val"], 0)  # as trained
    assert refitted.info["data_report"].endswith("(the whole file; the run used a subset of 80)")  # not its 80 rows


@pytest.mark.ray
def test_a_search_whose_trials_all_fail_says_why_instead_of_a_key_error(tiny_backbone, store):
    from ray import tune

    from chemlm_engine.cluster import connect
    from chemlm_engine.errors import SearchError

    connect(num_cpus=2)
    with pytest.raises(SearchError, match="no trial of search 'broken' finished an epoch; first error: .*learning"):
        run_search(_base(tiny_backbone), store, "broken", num_samples=1, cpus_per_trial=1,
                   space={"learning_rate": tune.choice([-1.0])})


@pytest.mark.ray
def test_cancelling_a_search_job_stops_its_running_trials_and_records_them_cancelled(tiny_backbone, store):
    import threading
    import time

    from chemlm_engine.cluster import connect
    from chemlm_engine.errors import JobCancelledError
    from chemlm_engine.jobs import run_job

    connect(num_cpus=2)
    spec = JobSpec(method="search", data=DataSpec(subset=100), train=TrainConfig(epochs=200, batch_size=16),
                   model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   options={"num_samples": 2, "cpus_per_trial": 1})
    raised: list[Exception] = []

    def work() -> None:
        try:
            run_job(spec, store)
        except JobCancelledError as exc:
            raised.append(exc)

    worker = threading.Thread(target=work)
    worker.start()
    deadline = time.monotonic() + 120
    while not any(r.info.get("search") and r.status == "running" for r in store.runs()):
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.5)
    search = next(r for r in store.runs() if r.method == "search")
    store.request_cancel(search.id)  # as the app does: through the store, so a process worker sees it too
    worker.join(timeout=120)
    assert not worker.is_alive() and raised
    assert store.get_run(search.id).status == "cancelled"
    trials = [r for r in store.runs() if r.info.get("search") == search.id]
    assert trials and all(r.status == "cancelled" for r in trials)


def test_a_trial_ray_tune_stops_says_it_was_asha_and_after_how_many_epochs(tiny_backbone, store, monkeypatch):
    """Ray Tune stops a trial by SystemExit from tune.report: the run records why, not the generic exit."""
    from ray import tune

    from chemlm_engine.tune import _trial

    def stop(_metrics):
        raise SystemExit(0)

    monkeypatch.setattr(tune, "report", stop)
    spec = replace(_base(tiny_backbone), train=TrainConfig(epochs=200, batch_size=16))
    with pytest.raises(SystemExit):
        _trial({}, spec.to_json(), store.url, str(store.home), "stopped-search")
    run = store.runs()[0]
    assert run.status == "interrupted" and run.message.startswith("stopped early by ASHA after 1 epoch(s)")


def test_a_trial_stopped_once_the_time_budget_ran_out_says_so_and_is_not_replayed(tiny_backbone, store, monkeypatch):
    """Ray Tune ends every running trial the same way when the search's time budget runs out: not ASHA's verdict, so
    a resumed search trains it again instead of replaying it as done."""
    from ray import tune

    from chemlm_engine.tune import _close_trials, _trial, stored_trials

    def stop(_metrics):
        raise SystemExit(0)

    monkeypatch.setattr(tune, "report", stop)
    spec = replace(_base(tiny_backbone), train=TrainConfig(epochs=200, batch_size=16))
    with pytest.raises(SystemExit):
        _trial({}, spec.to_json(), store.url, str(store.home), "cut-search", budget_ends=time.time() - 1)
    cut = store.runs()[0]
    assert cut.status == "interrupted" and cut.message == "cut by the search's time budget after 1 epoch(s)"
    running = store.create_run(spec.to_dict(), spec.method, "cut-search trial")  # an actor that never said a word
    store.set_info(running, search="cut-search", trial_config={"seed": 1})
    store.start(running, {})
    _close_trials(store, "cut-search", None, budget_ends=time.time() - 1)
    assert store.get_run(running).message == "cut by the search's time budget after 0 epoch(s)"
    assert stored_trials(store, "cut-search") == []  # neither counts as ended on its own terms


def test_a_trial_the_search_stopped_says_why_instead_of_interrupted(tmp_path):
    from chemlm_engine.store import RunStore
    from chemlm_engine.compare import runs_frame, status_words
    from chemlm_engine.tune import _stop_reason

    store = RunStore(home=tmp_path)
    runs = [store.create_run(JobSpec().to_dict(), "baseline", f"trial {i}") for i in range(3)]
    for run in runs:
        store.start(run, {})
    store.interrupt(runs[0], _stop_reason(1, None))
    store.interrupt(runs[1], _stop_reason(1, time.time() - 1))
    store.interrupt(runs[2], "its process died")
    assert [status_words(store.get_run(r)) for r in runs] == ["stopped by ASHA", "cut by the time budget",
                                                              "interrupted"]
    # the run tables (Train page, `chemlm runs list`) say the same
    assert runs_frame([store.get_run(r) for r in runs])["status"].tolist() == ["stopped by ASHA",
                                                                               "cut by the time budget", "interrupted"]


@pytest.mark.ray
def test_ctrl_c_on_the_tune_command_cancels_the_search_and_writes_no_spec(tiny_backbone, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    from chemlm_engine.store import RunStore

    home, best = tmp_path / "runs", tmp_path / "best.json"
    args = [sys.executable, "-m", "chemlm_engine", "tune", "--backbone", str(tiny_backbone), "--subset", "200",
            "--epochs", "200", "--num-samples", "2", "--cpus-per-trial", "1", "--name", "ctrl-c", "-o", str(best)]
    process = subprocess.Popen(args, env={**os.environ, "CHEMLM_HOME": str(home)}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    store, deadline = RunStore(home=home), time.time() + 240
    while not any(len(store.epochs(r.id)) for r in store.runs() if r.status == "running"):  # a trial measured
        assert time.time() < deadline and process.poll() is None, process.communicate()[1][-2000:]
        time.sleep(0.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=180)
    assert process.returncode == 130, err[-2000:]
    assert "interrupted: search 'ctrl-c' stopped, no spec written" in err and not best.exists()
    assert "TensorboardX" not in err and "Configuration for experiment" not in err, err  # Ray Tune kept quiet
    trials = [r for r in store.runs() if r.info.get("search") == "ctrl-c"]
    assert trials and {r.status for r in trials} == {"cancelled"}, [(r.status, r.message) for r in trials]



def test_a_trial_cut_off_before_its_first_epoch_trains_again_instead_of_breaking_the_resume(tmp_path):
    from chemlm_engine.store import RunStore
    from chemlm_engine.tune import _stop_reason, stored_trials

    store = RunStore(home=tmp_path)
    run = store.create_run(JobSpec().to_dict(), "baseline", "trial")
    store.set_info(run, search="cut", trial_config={"learning_rate": 1e-4})
    store.start(run, {})
    store.interrupt(run, _stop_reason(0, None))  # what a killed search left: no epoch was ever measured
    assert stored_trials(store, "cut") == []  # not replayed (nor a KeyError): it trains again
    from chemlm_engine.compare import status_words

    assert status_words(store.get_run(run)) == "interrupted"  # ASHA judges measured epochs only: not an ASHA stop


def test_the_tune_command_hands_the_ray_trials_a_data_path_they_can_open_from_their_own_folder(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import chemlm_engine.tune
    from chemlm_engine.cli import app

    (tmp_path / "mine.csv").write_text("smiles,y\nCCO,1\n")
    monkeypatch.chdir(tmp_path)
    handed: list[JobSpec] = []

    def record(base, *args, **kwargs):  # instead of a search: what the trials would be given
        handed.append(base)
        raise KeyboardInterrupt

    monkeypatch.setattr(chemlm_engine.tune, "run_search", record)
    CliRunner().invoke(app, ["tune", "--data", "mine.csv", "-o", "best.json"])
    assert handed and handed[0].data.source == str(tmp_path / "mine.csv")  # absolute: Ray workers run elsewhere


def test_a_search_jobs_progress_counts_the_trials_that_ended_not_those_started(store, monkeypatch):
    """Two trials side by side used to count as half the search done: the page's time left then ran ahead."""
    import chemlm_engine.tune as tune
    from chemlm_engine.pipeline import JobContext
    from chemlm_engine.spec import SearchOptions

    search = store.create_run(JobSpec(method="search").to_dict(), "search", "s")
    said = []

    def searching(base, store, name, *args, should_stop, **kwargs):
        for ends in (True, False, False):  # one trial ended, two running
            trial = store.create_run(JobSpec().to_dict(), "baseline", "s trial")
            store.set_info(trial, search=name)
            store.start(trial, {})
            if ends:
                store.finish(trial, {})
        should_stop()
        raise tune.SearchError("enough")

    monkeypatch.setattr(tune, "run_search", searching)
    ctx = JobContext(JobSpec(method="search"), store, search, on_progress=lambda *report: said.append(report))
    with pytest.raises(tune.SearchError):
        tune.run_search_job(ctx, None, SearchOptions(num_samples=4))
    assert said[-1] == (0.25, "searching: 1 of 4 trials ended, 2 running")
