"""Hyperparameter search on the validation split, on Ray Tune: random search (Ray Tune's own variant generator)
over recipe settings, ASHA stopping trials whose validation MSE falls behind, every trial a run in the store
(named after the search, its settings in ``info``). The test split is never reported to the tuner. A search
resumes from the trials it has measured: the seeded random search proposes the same settings in the same order,
and a trial that ended before (in the store, or a record handed out by ``on_trial`` on another machine) replays its
epochs to ASHA instead of training again; a trial cut off or cancelled trains again.

Ray is imported lazily, as in :mod:`~chemlm_engine.cluster`: nothing else needs it."""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from functools import partial
from typing import Any

import pandas as pd

from .compare import STOPPED_ON_PURPOSE, status_words
from .errors import JobCancelledError, SearchError
from .pipeline import JobContext, SplitData
from .spec import METHODS, JobSpec, SearchOptions
from .store import ACTIVE_STATUSES, RunStore, Tables

__all__ = ["default_space", "trial_spec", "refit_spec", "run_search", "run_search_job", "stored_trials", "SearchResult",
           "TrialRecord"]

_MODEL_KEYS = ("head_hidden", "dropout", "descriptors")
_TRAIN_KEYS = ("learning_rate", "batch_size", "epochs", "weight_decay")


def default_space(method: str) -> dict[str, Any]:
    """What a search varies: learning rate, head size and dropout, batch size, descriptors in the head, and the
    method's own searchable options (its options class's ``SEARCH``, e.g. LoRA's rank). Epochs stay the base
    spec's: ASHA decides how many a trial gets."""
    from ray import tune

    space: dict[str, Any] = {"learning_rate": tune.loguniform(1e-5, 1e-3),
                             "head_hidden": tune.choice([64, 128, 256, 512]), "dropout": tune.uniform(0.0, 0.3),
                             "batch_size": tune.choice([16, 32, 64]), "descriptors": tune.choice([False, True])}
    return {**space, **{name: tune.choice(list(values)) for name, values in METHODS[method].options.SEARCH.items()}}


def trial_spec(base: JobSpec, config: dict[str, Any]) -> JobSpec:
    """``base`` with a trial's settings: model and training fields by name, anything else a method option
    (validated by the method's options class like any other)."""
    options = {k: v for k, v in config.items() if k not in _MODEL_KEYS + _TRAIN_KEYS}
    return replace(base, model=replace(base.model, **{k: config[k] for k in _MODEL_KEYS if k in config}),
                   train=replace(base.train, **{k: config[k] for k in _TRAIN_KEYS if k in config}),
                   options={**base.options, **options})


_ASHA_STOP, _BUDGET_CUT = STOPPED_ON_PURPOSE  # the messages of the trials a search stops: status_words reads them

TrialRecord = Mapping[str, Any]
"""A trial that ended (all its epochs, or stopped by ASHA): ``config``, ``epochs`` ([epoch, validation MSE] pairs),
``run_id``, ``seconds``."""


def _stop_reason(epochs: int, budget_ends: float | None) -> str:
    """Why Ray Tune stopped a trial after ``epochs``: ASHA, or the search's time budget once it has run out. ASHA
    judges reported epochs only: a trial stopped before its first was stopped by the search ending, not by ASHA."""
    if budget_ends is not None and time.time() >= budget_ends:
        return f"{_BUDGET_CUT} {epochs} epoch(s)"
    if epochs == 0:
        return "stopped by the search before its first epoch"
    return f"{_ASHA_STOP} {epochs} epoch(s): its validation MSE was behind the other trials'"


def _key(config: Mapping[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def _trial(config: dict[str, Any], base_json: str, url: str, home: str, search: str,
           replay: Mapping[str, TrialRecord] | None = None, budget_ends: float | None = None) -> None:
    """One trial in a Ray worker: the same ``run_job`` as anywhere, reporting each epoch's validation MSE; a trial
    in ``replay`` (measured before) reports its recorded epochs instead. ``budget_ends``: when the search's time
    budget runs out (epoch seconds; Tune then stops every running trial the way ASHA does)."""
    from ray import tune

    from .jobs import run_job

    if (record := (replay or {}).get(_key(config))) is not None:
        for epoch, val_mse in record["epochs"]:  # ASHA, fed the same numbers in the same order, stops it again
            tune.report({"val_mse": val_mse, "epoch": epoch, "run_id": record["run_id"]})
        return
    spec = trial_spec(JobSpec.from_json(base_json), config)
    store = RunStore(url, home)
    run_id = store.create_run(spec.to_dict(), spec.method, f"{search} trial")
    store.set_info(run_id, search=search, trial_config=config)
    reported, last_poll = 0, 0.0

    def report_epochs(*_: Any) -> None:
        nonlocal reported, last_poll
        if time.monotonic() - last_poll < 1.0:  # progress arrives per batch; epochs once per epoch
            return
        last_poll = time.monotonic()
        epochs = store.epochs(run_id)
        rows = epochs[epochs["val_mse"].notna()] if "val_mse" in epochs else epochs.iloc[:0]
        for seen, (_, row) in enumerate(rows.iloc[reported:].iterrows(), start=reported + 1):
            try:
                tune.report({"val_mse": float(row["val_mse"]), "epoch": int(row["epoch"]), "run_id": run_id})
            except SystemExit:  # how Ray Tune ends a trial it stops (ASHA, or the search ending): said while the
                # run is still running, so run_job's generic word on the way out does not replace it; a cancelled
                # search then says so instead (_close_trials)
                store.interrupt(run_id, _stop_reason(seen, budget_ends))
                raise
        reported = len(rows)

    run_job(spec, store, run_id, progress=report_epochs)
    last_poll = 0.0
    report_epochs()


@dataclass(frozen=True)
class SearchResult:
    name: str
    best_run_id: str
    best_val_mse: float
    best_spec: JobSpec
    trials: pd.DataFrame  # one row per trial: run id, its settings, best validation MSE and epoch, epochs run, status
    best_epoch: int  # the best trial's epoch of lowest validation MSE

    @property
    def refit_spec(self) -> JobSpec | None:
        """The best recipe trained once on training + validation for its best epoch count, to be tested once."""
        return refit_spec(self.best_spec, self.best_epoch)


def refit_spec(spec: JobSpec, epochs: int) -> JobSpec | None:
    """``spec`` trained on training + validation for ``epochs`` (no epoch can be chosen on data it trained on):
    its method's ``train_on_val`` option; None for a method without one."""
    if "train_on_val" not in {f.name for f in fields(METHODS[spec.method].options)}:
        return None
    return replace(spec, options={**spec.options, "train_on_val": True},
                   train=replace(spec.train, epochs=epochs, patience=0))


def _cancel_stopper(should_stop: Callable[[], bool]) -> Any:
    """A Ray Tune stopper that ends the whole search (its running trials too) once ``should_stop()``; Tune asks on
    every step of its loop, not only when a trial reports."""
    from ray.tune import Stopper

    class CancelStopper(Stopper):
        def __call__(self, trial_id: str, result: dict) -> bool:
            return False

        def stop_all(self) -> bool:
            return should_stop()

    return CancelStopper()


def _trial_recorder(on_trial: Callable[[dict[str, Any]], None]) -> Any:
    """A Ray Tune callback handing ``on_trial`` each trial that ended on its own terms (its last result ``done``:
    all epochs, or ASHA's stop), not one cut off by the search's end."""
    from ray.tune import Callback

    class TrialRecorder(Callback):
        def __init__(self) -> None:
            self.epochs: dict[str, list[list[float]]] = {}

        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            self.epochs.setdefault(trial.trial_id, []).append([int(result["epoch"]), float(result["val_mse"])])

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            last = trial.last_result or {}
            if last.get("done") and self.epochs.get(trial.trial_id):
                on_trial({"config": trial.config, "epochs": self.epochs[trial.trial_id], "run_id": last["run_id"],
                          "seconds": float(last.get("time_total_s", 0.0))})

    return TrialRecorder()


def stored_trials(store: RunStore, name: str) -> list[dict[str, Any]]:
    """:data:`TrialRecord` s of the trials of search ``name`` that the store holds as ended on their own terms:
    finished, or stopped by ASHA (not cancelled, failed or cut off)."""
    records = []
    for run in store.runs():
        ended = status_words(run) in ("finished", "stopped by ASHA")
        if run.info.get("search") != name or "trial_config" not in run.info or not ended:
            continue
        measured = _measured_epochs(store, run.id)
        if measured.empty:  # cut off before its first epoch: trains again
            continue
        records.append({"config": run.info["trial_config"], "run_id": run.id, "seconds": run.duration or 0.0,
                        "epochs": [[int(e), float(v)] for e, v in zip(measured["epoch"], measured["val_mse"])]})
    return records


def _measured_epochs(store: RunStore, run_id: str) -> pd.DataFrame:
    """The epochs a run measured its validation MSE at, as the run recorded them."""
    epochs = store.epochs(run_id)
    return epochs[epochs["val_mse"].notna()] if "val_mse" in epochs else epochs.iloc[:0]


def _close_trials(store: RunStore, name: str, cancelled_at: float | None, budget_ends: float | None = None) -> None:
    """Trial runs whose Ray actor was stopped (by ASHA, the time budget or a cancelled search) may not record their
    end: say so. A search cancelled at ``cancelled_at`` (epoch seconds) also cancels the trials that stopped since."""
    for run in store.runs():
        if run.info.get("search") != name:
            continue
        if cancelled_at is not None and (run.status in ACTIVE_STATUSES or
                                         run.status == "interrupted" and (run.finished_at or 0) >= cancelled_at):
            store.cancel(run.id, "the search was cancelled")
        elif run.status in ACTIVE_STATUSES:
            epochs = store.epochs(run.id)
            done = int(epochs["val_mse"].notna().sum()) if "val_mse" in epochs else 0
            store.interrupt(run.id, _stop_reason(done, budget_ends))


def run_search(base: JobSpec, store: RunStore, name: str, num_samples: int, time_budget_s: float | None = None,
               space: dict[str, Any] | None = None, address: str | None = None, cpus_per_trial: int = 2,
               should_stop: Callable[[], bool] = lambda: False, replay: Sequence[TrialRecord] = (),
               on_trial: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Search ``space`` (default :func:`default_space`) around ``base`` for the lowest validation MSE, with
    ASHA (``max_t``: the base spec's epochs, grace period a quarter of them) and random search seeded by the
    base's training seed; resumes the search ``name`` from its stored trials. Runs stopped early are recorded as
    interrupted, saying so. Once ``should_stop()`` (polled about once a second) the search and its running
    trials stop: :class:`JobCancelledError`. ``on_trial`` gets a :data:`TrialRecord` for each trial that ends;
    trials in ``replay`` (records of this search from before) are not trained again."""
    # Quiet: Tune's JSON and CSV loggers only (its results come from them), not TensorBoard's, which warns that
    # tensorboardX is missing; and the classic reporter, which honours verbose=0 (the new one prints a settings box)
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    from ray import tune
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import BasicVariantGenerator

    from .cluster import connect

    connect(address)
    stop_seen: list[float] = []  # when should_stop() first said yes: trials stopping after it were cancelled
    polled = [0.0]

    def stop_now(every_s: float = 1.0) -> bool:  # Tune asks on every step of its loop: poll at most every_s
        if not stop_seen and time.monotonic() - polled[0] >= every_s:
            polled[0] = time.monotonic()
            if should_stop():
                stop_seen.append(time.time())
        return bool(stop_seen)

    folder = store.home / "tune" / name
    shutil.rmtree(folder, ignore_errors=True)  # Tune's own state: a resumed search replays the stored trials instead
    replay = [*stored_trials(store, name), *replay]
    replayed = {_key(r["config"]): r for r in replay}
    budget_ends = None if time_budget_s is None else time.time() + time_budget_s  # Tune's own clock starts later
    trainable = tune.with_resources(partial(_trial, base_json=base.to_json(), url=store.url, home=str(store.home),
                                            search=name, replay=replayed, budget_ends=budget_ends),
                                    {"cpu": cpus_per_trial})
    epochs = base.train.epochs
    tuner = tune.Tuner(trainable, param_space=space or default_space(base.method),
                       tune_config=tune.TuneConfig(metric="val_mse", mode="min", num_samples=num_samples,
                                                   time_budget_s=time_budget_s,
                                                   search_alg=BasicVariantGenerator(random_state=base.train.seed),
                                                   scheduler=ASHAScheduler(time_attr="training_iteration", max_t=epochs,
                                                                           grace_period=max(1, epochs // 4),
                                                                           reduction_factor=3)),
                       run_config=tune.RunConfig(name=name, storage_path=str(folder.parent), verbose=0,
                                                 stop=_cancel_stopper(stop_now),
                                                 callbacks=[JsonLoggerCallback(), CSVLoggerCallback(),
                                                            *([_trial_recorder(on_trial)] if on_trial else [])]))
    results = tuner.fit()
    stop_now(every_s=0.0)
    _close_trials(store, name, stop_seen[0] if stop_seen else None, budget_ends)
    if stop_seen:
        raise JobCancelledError(f"search {name!r} cancelled; run it again under the same name to resume it")
    statuses = {r["run_id"]: "replayed" for r in replay} | {r.id: status_words(r) for r in store.runs()}
    rows, configs = [], {}
    for result in (results[i] for i in range(len(results))):
        history = result.metrics_dataframe
        run_id = (result.metrics or {}).get("run_id")
        if run_id is None or history is None or history.empty:
            continue
        configs[run_id] = result.config or {}
        # the run's own epochs where the store has it: a stop Tune decided after the run had trained on (epochs
        # shorter than a progress report's second) leaves Tune's history shorter than what the run measured
        measured = _measured_epochs(store, run_id)
        history = measured if len(measured) else history
        best = history.loc[history["val_mse"].idxmin()]
        rows.append({"run_id": run_id, **configs[run_id], "val_mse": float(best["val_mse"]),
                     "best_epoch": int(best["epoch"]), "epochs_run": len(history),
                     "status": statuses.get(run_id, "unknown")})
    if not rows:
        errors = [str(r.error).strip().splitlines()[-1] for r in (results[i] for i in range(len(results))) if r.error]
        raise SearchError(f"no trial of search {name!r} finished an epoch" + (
            f"; first error: {errors[0]}" if errors else " within the time budget: give it more time or fewer epochs"))
    trials = pd.DataFrame(rows).sort_values("val_mse", ignore_index=True)
    best = str(trials.loc[0, "run_id"])
    return SearchResult(name, best, float(trials.loc[0, "val_mse"]), trial_spec(base, configs[best]), trials,
                        int(trials.loc[0, "best_epoch"]))


def run_search_job(ctx: JobContext, data: SplitData, opts: SearchOptions) -> dict[str, float | str]:
    """The search as a job (the app's launcher): the job's data, model and training are the base; its trials
    are grouped under the job's run id, listed in its ``trials`` table as they finish (the page shows the
    running ones from the store)."""
    base = replace(ctx.spec, method=opts.method, options={}, name="")
    ctx.progress(0.0, f"searching: {opts.num_samples} trials of {opts.method}", force=True)

    def progress_or_cancel() -> bool:  # the stopper's poll: the job's progress, and its cancel flag (process, Ray)
        # counted by the trials that ended (ASHA's stops end only later): trials started side by side would make
        # the share, so the page's time left, run ahead of the search
        trials = [r.status for r in ctx.store.runs() if r.info.get("search") == ctx.run_id]
        ended = sum(s not in ACTIVE_STATUSES for s in trials)
        running = len(trials) - ended
        ctx.progress(ended / opts.num_samples, f"searching: {ended} of {opts.num_samples} trials ended"
                     + (f", {running} running" if running else ""))
        return ctx.cancel.is_set()

    result = run_search(base, ctx.store, ctx.run_id, opts.num_samples, opts.time_budget_s,
                        cpus_per_trial=opts.cpus_per_trial, should_stop=progress_or_cancel)
    ctx.store.add_table(ctx.run_id, Tables.TRIALS, result.trials.to_dict("records"))
    refit = result.refit_spec
    ctx.store.set_info(ctx.run_id, best_spec=result.best_spec.to_dict(),
                       refit_spec=refit.to_dict() if refit is not None else None)
    return {"best_run_id": result.best_run_id, "best_val_mse": result.best_val_mse, "trials": len(result.trials)}
