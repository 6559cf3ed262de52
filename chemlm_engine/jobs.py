"""Executing jobs: ``run_job`` runs one ``JobSpec`` and writes everything to the store; ``JobManager``
runs jobs on background threads (a queue, one at a time by default) with cancel and crash capture."""
from __future__ import annotations

import logging
import math
import platform
import queue
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from .config import JobSpec, ModelSpec
from .data import DataReport, MoleculeData, data_hash, load_lipophilicity, make_split, read_csv
from .errors import JobCancelledError
from .model import RegressionModel, best_device, count_parameters
from .store import RunStore
from .training import EpochMetrics, TrainCallbacks, encode_smiles, fit, predict_encoded, regression_metrics

__all__ = ["JobContext", "run_job", "JobManager", "package_versions", "load_job_data", "METHODS"]

log = logging.getLogger(__name__)
ProgressFn = Callable[[float, str], None]


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "peft", "rdkit", "scikit-learn", "numpy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


@dataclass
class SplitData:
    train: MoleculeData
    val: MoleculeData
    test: MoleculeData
    report: DataReport


def load_job_data(spec: JobSpec) -> SplitData:
    """Load, validate and split the data a spec names (``subset`` picks a seeded random sample first)."""
    if spec.data.source == "lipophilicity":
        data, report = load_lipophilicity()
    else:
        data, report = read_csv(spec.data.source, spec.data.smiles_column, spec.data.label_column)
    if spec.data.subset is not None and spec.data.subset < len(data):
        pick = np.random.default_rng(spec.data.split_seed).choice(len(data), spec.data.subset, replace=False)
        data = data.subset(np.sort(pick))
    split = make_split(data, spec.data.split, spec.data.fractions, spec.data.split_seed)
    return SplitData(data.subset(split.train), data.subset(split.val), data.subset(split.test), report)


@dataclass
class JobContext:
    """What a method needs to run and report: spec, store, run id, cancel flag and progress."""

    spec: JobSpec
    store: RunStore
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressFn | None = None
    _last_write: float = 0.0

    @property
    def artifacts(self) -> Path:
        return self.store.artifact_dir(self.run_id)

    def progress(self, fraction: float, message: str, force: bool = False) -> None:
        """Report progress; store writes are throttled to two per second."""
        if self.on_progress is not None:
            self.on_progress(fraction, message)
        now = time.time()
        if force or now - self._last_write > 0.5:
            self._last_write = now
            self.store.set_progress(self.run_id, fraction, message)

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise JobCancelledError("cancelled by user")


def train_and_evaluate(ctx: JobContext, data: SplitData, model_spec: ModelSpec | None = None,
                       stage: str = "train", span: tuple[float, float] = (0.0, 1.0),
                       epoch_indices: Callable[[int], np.ndarray] | None = None,
                       save: bool = True) -> tuple[RegressionModel, dict[str, float]]:
    """Fit a regressor on ``data.train`` (selecting on ``data.val``), evaluate on ``data.test``, store
    epochs, test predictions and (with ``save``) the model folder. Returns the model and test metrics."""
    spec = ctx.spec
    model = RegressionModel.from_spec(model_spec or spec.model, seed=spec.train.seed).to(best_device())
    trainable, total = count_parameters(model)
    ctx.store.set_info(ctx.run_id, trainable_params=trainable, total_params=total,
                       trainable_pct=100.0 * trainable / total, device=str(best_device()))
    epochs = spec.train.epochs
    lo, hi = span

    def on_batch(epoch: int, batch: int, n_batches: int) -> None:
        done = (epoch - 1 + batch / n_batches) / epochs
        ctx.progress(lo + (hi - lo) * done, f"{stage}: epoch {epoch}/{epochs}, batch {batch}/{n_batches}")

    def on_epoch(m: EpochMetrics) -> None:
        ctx.store.add_epoch(ctx.run_id, m.epoch, m.__dict__, stage=stage)

    result = fit(model, data.train, data.val if len(data.val) else None, spec.train, TrainCallbacks(on_batch, on_epoch, ctx.cancel),
                 epoch_indices=epoch_indices)
    test_pred = predict_encoded(model, encode_smiles(model.tokenizer, data.test.smiles, model.max_tokens))
    test = regression_metrics(data.test.labels, test_pred)
    best = result.history[result.best_epoch - 1] if result.best_epoch else result.history[-1]
    metrics = {**{f"test_{k}": v for k, v in test.items()}, "val_mse": best.val_mse, "val_r2": best.val_r2,
               "train_mse": best.train_mse, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "train_seconds": result.seconds, "seconds_per_epoch": result.seconds / max(len(result.history), 1)}
    ctx.store.add_molecules(ctx.run_id, "prediction", pd.DataFrame(
        {"smiles": data.test.smiles, "label": data.test.labels, "prediction": test_pred, "split": "test"}))
    if save:
        model.save(ctx.artifacts / "model", data.train.smiles, data.train.labels)
    return model, metrics


def _baseline(ctx: JobContext, data: SplitData) -> dict[str, float]:
    """Full fine-tuning. Option ``train_on_val``: fit on training + validation for the fixed number
    of epochs (no model selection), as for a model that ships."""
    if ctx.spec.options.get("train_on_val"):
        empty = MoleculeData([], np.zeros(0))
        data = SplitData(data.train.concat(data.val), empty, data.test, data.report)
    _, metrics = train_and_evaluate(ctx, data)
    return metrics


def _mlm_then_regression(ctx: JobContext, data: SplitData) -> dict[str, float]:
    """Unsupervised fine-tuning: masked LM on the task's training + validation SMILES, then regression."""
    from .methods.mlm import PretrainConfig, pretrain

    opts = ctx.spec.options
    smiles = data.train.smiles + data.val.smiles
    batch_size = int(opts.get("mlm_batch_size", 32))
    epochs = int(opts.get("mlm_epochs", 3))
    steps = max(1, math.ceil(len(smiles) / batch_size) * epochs)
    config = PretrainConfig(batch_size=batch_size, learning_rate=float(opts.get("mlm_learning_rate", 1e-4)),
                            max_steps=steps, warmup_steps=max(1, steps // 10), descriptor_weight=0.0,
                            checkpoint_every=steps + 1, n_eval=min(200, max(1, len(smiles) // 10)),
                            seed=ctx.spec.train.seed)

    def on_step(p: dict) -> None:
        ctx.check_cancel()
        ctx.progress(0.3 * p["step"] / p["max_steps"], f"masked LM: step {p['step']}/{p['max_steps']}, "
                                                       f"loss {p['mlm_loss']:.3f}")
        if p["step"] % max(1, steps // epochs) == 0:
            ctx.store.add_epoch(ctx.run_id, p["step"] // max(1, steps // epochs), {"mlm_loss": p["mlm_loss"]},
                                stage="mlm")

    result = pretrain(smiles, ctx.artifacts / "mlm", config, init_from=ctx.spec.model.backbone,
                      trust_remote_code=ctx.spec.model.trust_remote_code, progress=on_step, cancel=ctx.cancel)
    ctx.store.set_info(ctx.run_id, mlm_steps=result.steps, mlm_eval_loss=result.eval.get("mlm_loss"))
    adapted = replace(ctx.spec.model, backbone=str(ctx.artifacts / "mlm"))
    _, metrics = train_and_evaluate(ctx, data, adapted, span=(0.3, 1.0))
    return {**metrics, "mlm_eval_loss": result.eval.get("mlm_loss", math.nan)}


def _curriculum(ctx: JobContext, data: SplitData) -> dict[str, float]:
    """Curriculum learning: options ``difficulty`` (smiles_length | heavy_atoms | tokens), ``pacing``
    (linear | sqrt | step) and ``pacing_steps``."""
    from transformers import AutoTokenizer

    from .methods.curriculum import CurriculumSampler, difficulty

    opts = ctx.spec.options
    measure = opts.get("difficulty", "smiles_length")
    tokenizer = AutoTokenizer.from_pretrained(ctx.spec.model.backbone,
                                              trust_remote_code=ctx.spec.model.trust_remote_code) \
        if measure == "tokens" else None
    sampler = CurriculumSampler(difficulty(data.train.smiles, measure, tokenizer), ctx.spec.train.epochs,
                                ctx.spec.train.batch_size, opts.get("pacing", "linear"),
                                int(opts.get("pacing_steps", 4)))
    for row in sampler.plan():
        ctx.store.add_epoch(ctx.run_id, row["epoch"], row, stage="curriculum")
    _, metrics = train_and_evaluate(ctx, data, epoch_indices=sampler)
    return metrics


# Method name -> function(ctx, data) -> test metrics. Later methods add themselves here.
METHODS: dict[str, Callable[[JobContext, SplitData], dict[str, float]]] = {
    "baseline": _baseline,
    "mlm": _mlm_then_regression,
    "curriculum": _curriculum,
}


def run_job(spec: JobSpec, store: RunStore, run_id: str | None = None, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None) -> str:
    """Execute ``spec`` and record it in ``store``; returns the run id.

    A cancelled job is stored as ``cancelled`` and a crashed one as ``failed`` with its traceback;
    both re-raise so the caller sees what happened.
    """
    run_id = run_id or store.create_run(spec.to_dict(), spec.method, spec.name)
    ctx = JobContext(spec, store, run_id, cancel or threading.Event(), progress)
    store.start(run_id, package_versions())
    try:
        data = load_job_data(spec)
        store.set_info(run_id, data_hash=data_hash(data.train.concat(data.val).concat(data.test)),
                       n_train=len(data.train), n_val=len(data.val), n_test=len(data.test),
                       data_report=data.report.summary())
        ctx.check_cancel()
        metrics = METHODS[spec.method](ctx, data)
        model_dir = ctx.artifacts / "model"
        store.finish(run_id, metrics, str(model_dir) if model_dir.exists() else None)
        log.info("run %s finished: %s", run_id, metrics)
    except JobCancelledError as exc:
        store.cancel(run_id, str(exc))
        raise
    except BaseException as exc:
        store.fail(run_id, f"{type(exc).__name__}: {exc}", traceback.format_exc())
        raise
    return run_id


class JobManager:
    """Runs submitted jobs on background threads, in order. One per process.

    At start-up, runs left ``queued`` / ``running`` by a process that no longer exists are marked
    ``interrupted``.
    """

    def __init__(self, store: RunStore, workers: int = 1) -> None:
        self.store = store
        self.interrupted = store.mark_interrupted()
        self._queue: queue.Queue[tuple[str, JobSpec] | None] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._work, name=f"chemlm-job-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, spec: JobSpec) -> str:
        """Queue a job; returns its run id at once."""
        run_id = self.store.create_run(spec.to_dict(), spec.method, spec.name)
        with self._lock:
            self._cancel[run_id] = threading.Event()
        self._queue.put((run_id, spec))
        return run_id

    def cancel(self, run_id: str) -> None:
        """Cancel a queued job, or stop a running one within one batch."""
        with self._lock:
            event = self._cancel.get(run_id)
        if event is not None:
            event.set()
        if self.store.get_run(run_id).status == "queued":
            self.store.cancel(run_id, "cancelled before it started")

    def active(self) -> list[str]:
        """Ids of jobs queued or running in this manager."""
        with self._lock:
            return list(self._cancel)

    def wait(self, run_id: str, timeout: float = 600.0, poll: float = 0.1):
        """Block until a run leaves ``queued`` / ``running`` (tests, scripts); returns its record."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            record = self.store.get_run(run_id)
            if record.status not in ("queued", "running") and run_id not in self._running:
                return record
            time.sleep(poll)
        raise TimeoutError(f"run {run_id} still {self.store.get_run(run_id).status} after {timeout} s")

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            run_id, spec = item
            with self._lock:
                event = self._cancel[run_id]
                if event.is_set():
                    self._cancel.pop(run_id, None)
                    continue
                self._running.add(run_id)
            try:
                run_job(spec, self.store, run_id, cancel=event)
            except JobCancelledError:
                log.info("run %s cancelled", run_id)
            except BaseException:  # already recorded as failed with its traceback; keep serving jobs
                log.exception("run %s failed", run_id)
            finally:
                with self._lock:
                    self._running.discard(run_id)
                    self._cancel.pop(run_id, None)
