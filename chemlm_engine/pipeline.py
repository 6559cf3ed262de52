"""The steps every method shares: load and split a job's data, report progress, train and evaluate a
regressor and record it. Methods (``methods/``) compose these; ``jobs`` dispatches to them."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .spec import METHODS, DataSpec, JobSpec, ModelSpec, TrainConfig
from .data import DataReport, MoleculeData, load_lipophilicity, make_split, read_csv
from .errors import DataError, JobCancelledError
from .model import RegressionModel, best_device, check_backbone_folder, count_parameters
from .store import RunStore, Kinds, Tables
from .inference import predict_values, resolve_precision
from .training import EpochMetrics, TrainCallbacks, fit, regression_metrics

__all__ = ["SplitData", "load_split_data", "check_job_data", "as_recorded", "read_pool", "load_pool", "JobContext",
           "train_and_evaluate", "ProgressFn", "MIN_SPLIT_SIZES"]

ProgressFn = Callable[[float, str], None]


log = logging.getLogger(__name__)


@dataclass
class SplitData:
    train: MoleculeData
    val: MoleculeData
    test: MoleculeData
    report: DataReport


def load_split_data(spec: DataSpec) -> SplitData:
    """Load, validate and split the data ``spec`` names (``subset`` picks a seeded random sample first)."""
    if spec.source == "lipophilicity":
        data, report = load_lipophilicity(spec.standardization)
    else:
        data, report = read_csv(spec.source, spec.smiles_column, spec.label_column, spec.standardization)
    if spec.subset is not None and spec.subset < len(data):
        pick = np.random.default_rng(spec.split_seed).choice(len(data), spec.subset, replace=False)
        data = data.subset(np.sort(pick))
    split = make_split(data, spec.split, spec.fractions, spec.split_seed)
    return SplitData(data.subset(split.train), data.subset(split.val), data.subset(split.test), report)


def read_pool(spec: JobSpec, path: str, labels_required: bool = True) -> tuple[MoleculeData, DataReport]:
    """A method's pool file, standardised like the job's data; :class:`DataError` for a missing, unreadable or empty
    one (methods check it before a run is created). Without ``labels_required`` a molecule's label may be missing
    (NaN): candidates not yet measured."""
    try:
        pool, report = read_csv(path, standardization=spec.data.standardization, labels_required=labels_required)
    except DataError as exc:  # which file: the job reads its data and its pool
        raise DataError(f"the pool {Path(path).name}: {exc}") from None
    if not len(pool):
        raise DataError(f"the pool {Path(path).name} has no usable molecule: {report.summary()}")
    return pool, report


def load_pool(ctx: JobContext, data: SplitData, path: str, labels_required: bool = True) -> MoleculeData:
    """:func:`read_pool`, minus every molecule of the training, validation and test splits (a test molecule must
    never be trained on); records what it dropped."""
    pool, report = read_pool(ctx.spec, path, labels_required)
    unused = sorted(report.invalid + (report.unlabeled if labels_required else []), key=lambda issue: issue.row)
    if unused:  # said where the user looks (a command's stderr); the run's info keeps the whole report
        log.warning("pool %s: %s; not used: %s", Path(path).name, report.summary(),
                    ", ".join(f"row {i.row} ({i.reason})" for i in unused[:5]) + (" …" if len(unused) > 5 else ""))
    known = set(data.train.smiles) | set(data.val.smiles) | set(data.test.smiles)
    keep = [i for i, s in enumerate(pool.smiles) if s not in known]
    dropped = {part: len(set(pool.smiles) & set(getattr(data, part).smiles)) for part in ("train", "val", "test")}
    if len(keep) < len(pool):
        log.warning("pool %s: %d of its molecules already in the job's data (%s), left out", Path(path).name,
                    len(pool) - len(keep), ", ".join(f"{part} {n}" for part, n in dropped.items() if n))
    ctx.store.set_info(ctx.run_id, pool_report=report.summary(), pool_dropped=dropped,
                       pool_dropped_known=len(pool) - len(keep))
    return pool.subset(keep)


# Fewest molecules per part with which a fit, model selection and a test R² mean anything.
MIN_SPLIT_SIZES = {"train": 8, "val": 2, "test": 2}


def as_recorded(spec: JobSpec, data: SplitData) -> JobSpec:
    """The spec a run records, given its checked data: the files and folders it names as absolute paths (usable from
    any folder: :meth:`~.spec.config.JobSpec.with_absolute_paths`), and a subset larger than the data as none (the
    run trained on every molecule, and compares with the runs that did)."""
    spec = spec.with_absolute_paths()
    molecules = len(data.train) + len(data.val) + len(data.test)  # after the subset: its size where it took one
    if spec.data.subset is None or spec.data.subset <= molecules or not METHODS[spec.method].needs_data:
        return spec
    return replace(spec, data=replace(spec.data, subset=None))


def check_job_data(spec: JobSpec, store: RunStore | None = None) -> SplitData:
    """The job's data, or :class:`DataError` saying why it cannot train (checked before a run is created; so is a
    backbone folder that does not exist, and, given the ``store`` its runs are named in, what the method itself
    checks: a distillation's teacher); no molecules for a method that does not train on it (its options name its
    input)."""
    if not METHODS[spec.method].needs_data:
        empty = MoleculeData([], np.zeros(0))
        return SplitData(empty, empty, empty, DataReport())
    check_backbone_folder(spec.model.backbone)
    data = load_split_data(spec.data)
    sizes = {"train": len(data.train), "val": len(data.val), "test": len(data.test)}
    short = [f"{part} {sizes[part]} (needs {need})" for part, need in MIN_SPLIT_SIZES.items() if sizes[part] < need]
    if short:
        raise DataError(f"too few molecules for a {spec.data.split} split of "
                        f"{sum(sizes.values())}: {', '.join(short)}; {data.report.summary()}")
    labels = data.train.labels
    if np.ptp(labels) <= 1e-6 * max(1.0, float(np.abs(labels).max())):  # below float32's resolution
        raise DataError(f"every training label is {labels[0]:g}" + (f" (they vary by {np.ptp(labels):.2g} only)"
                        if np.ptp(labels) else "") + ": nothing to learn")
    method_check = METHODS[spec.method].load_check()
    if method_check is not None and store is not None:
        method_check(spec, data, store)
    return data


@dataclass
class JobContext:
    """What a method needs to run and report: spec, store, run id, cancel flag and progress."""

    spec: JobSpec
    store: RunStore
    run_id: str
    cancel: threading.Event = field(default_factory=threading.Event)
    on_progress: ProgressFn | None = None
    mapper: Callable[[Callable[[Any], Any], Sequence[Any]], list[Any]] | None = None
    _last_write: float = 0.0
    _timed: bool = False  # whether the run's ETA start is recorded

    def map(self, fn: Callable[[Any], Any], items: Sequence[Any]) -> list[Any]:
        """``[fn(x) for x in items]`` — or fanned out as independent Ray tasks when the job runs on a
        cluster (sweep points). ``fn`` may use this context: it travels by store URL."""
        return self.mapper(fn, items) if self.mapper is not None else [fn(item) for item in items]

    def sweep(self, points: Sequence[Any], fit: Callable[[int], dict[str, float]],
              row: Callable[[Any, dict[str, float]], dict[str, Any]]) -> list[dict[str, float]]:
        """Fit every point of a sweep (``fit(i)`` returns the i-th fit's metrics; fanned out on a cluster) and
        record ``row(point, metrics)`` per point, in order, as the run's sweep table. Returns the metrics."""
        results = self.map(fit, range(len(points)))
        self.store.add_table(self.run_id, Tables.SWEEP, [row(p, m) for p, m in zip(points, results)])
        return results

    def __getstate__(self) -> dict:
        # A context sent to another worker reconnects to the store by URL; cancel and progress stay here.
        return {"spec": self.spec, "store": (self.store.url, str(self.store.home)), "run_id": self.run_id}

    def __setstate__(self, state: dict) -> None:
        JobContext.__init__(self, state["spec"], RunStore(*state["store"]), state["run_id"])

    @property
    def artifacts(self) -> Path:
        return self.store.artifact_dir(self.run_id)

    def progress(self, fraction: float, message: str, force: bool = False) -> None:
        """Report progress; store writes are throttled to two per second."""
        if self.on_progress is not None:
            self.on_progress(fraction, message)
        now = time.time()
        if not self._timed and fraction > 0:  # its own work began: the ETA counts from here, not from loading a model
            self._timed = True
            if "eta_from" not in self.store.get_run(self.run_id).info:  # a sweep point on another worker: not again
                self.store.set_info(self.run_id, eta_from=[now, fraction])
        if force or now - self._last_write > 0.5:
            self._last_write = now
            if self.store.set_progress(self.run_id, fraction, message):  # asked to stop, maybe by another manager
                self.cancel.set()

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise JobCancelledError("cancelled by user")


def train_and_evaluate(ctx: JobContext, data: SplitData, model_spec: ModelSpec | None = None,
                       stage: str = "train", span: tuple[float, float] = (0.0, 1.0),
                       epoch_indices: Callable[[int], np.ndarray] | None = None,
                       final: bool = True,
                       prepare: Callable[[RegressionModel], RegressionModel] | None = None,
                       train: TrainConfig | None = None) -> tuple[RegressionModel, dict[str, float]]:
    """Fit a regressor on ``data.train`` (selecting on ``data.val``), evaluate on ``data.test`` and store
    the epochs. The ``final`` model of a run also stores its test predictions and model folder.
    ``prepare`` adapts a fresh model before training (freezing, adapters); ``train`` replaces the spec's recipe
    (an ensemble member's seed). Returns the model and metrics."""
    spec = ctx.spec
    train = train or spec.train
    model = RegressionModel.from_spec(model_spec or spec.model, seed=train.seed)
    if prepare is not None:
        model = prepare(model)
    model = model.to(best_device())
    trainable, total = count_parameters(model)
    ctx.store.set_info(ctx.run_id, trainable_params=trainable, total_params=total,
                       trainable_pct=100.0 * trainable / total, device=str(best_device()),
                       threads=torch.get_num_threads(),
                       precision=resolve_precision(train.precision, best_device()))
    epochs = train.epochs
    lo, hi = span

    last_live = [0.0]

    def on_batch(epoch: int, batch: int, n_batches: int, running_mse: float) -> None:
        done = (epoch - 1 + batch / n_batches) / epochs
        ctx.progress(lo + (hi - lo) * done, f"{stage}: epoch {epoch}/{epochs}, batch {batch}/{n_batches}")
        if time.time() - last_live[0] > 2 and batch < n_batches:  # the live curve inside an epoch
            last_live[0] = time.time()
            ctx.store.add_table(ctx.run_id, Tables.LIVE, [{"stage": stage, "epoch": epoch - 1 + batch / n_batches,
                                                           "train_mse": running_mse}])

    def on_epoch(m: EpochMetrics) -> None:
        ctx.store.add_epoch(ctx.run_id, m.epoch, m.__dict__, stage=stage)

    callbacks = TrainCallbacks(on_batch, on_epoch, ctx.cancel)
    result = fit(model, data.train, data.val if len(data.val) else None, train, callbacks, epoch_indices)
    test_pred = predict_values(model, data.test.smiles)
    test = regression_metrics(data.test.labels, test_pred)
    best = result.history[result.best_epoch - 1] if result.best_epoch else result.history[-1]
    metrics = {**{f"test_{k}": v for k, v in test.items()}, "val_mse": best.val_mse, "val_r2": best.val_r2,
               "train_mse": best.train_mse, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
               "train_seconds": result.seconds, "seconds_per_epoch": result.seconds / max(len(result.history), 1)}
    if final:
        ctx.store.add_molecules(ctx.run_id, Kinds.PREDICTION, pd.DataFrame(
            {"smiles": data.test.smiles, "label": data.test.labels, "prediction": test_pred, "split": "test"}))
        model.save(ctx.artifacts / "model", data.train.smiles, data.train.labels, spec.data.standardization)
    return model, metrics
