"""Executing a job: ``run_job`` runs one ``JobSpec`` and writes everything to the store (the executors in
:mod:`~chemlm_engine.manager` and :mod:`~chemlm_engine.cluster` call it)."""
from __future__ import annotations

import logging
import platform
import shutil
import threading
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from .spec import DataSpec, JobSpec
from .data import data_hash
from .errors import JobCancelledError, TrainingDivergedError
from .spec import METHODS
from .pipeline import JobContext, ProgressFn, SplitData, as_recorded, check_job_data, load_split_data
from .store import RunStore

__all__ = ["run_job", "package_versions", "load_split_data", "check_job_data"]

log = logging.getLogger(__name__)


def package_versions() -> dict[str, str]:
    """Versions of the packages a result depends on."""
    versions = {"python": platform.python_version()}
    for name in ("torch", "transformers", "tokenizers", "peft", "rdkit", "scikit-learn", "numpy", "pandas"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def run_job(spec: JobSpec, store: RunStore, run_id: str | None = None, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None, mapper: Callable | None = None,
            data: SplitData | None = None) -> str:
    """Execute ``spec`` and record it in ``store``; returns the run id. ``mapper`` runs a sweep's
    independent points (default: one after the other, here; on a cluster: as Ray tasks).

    ``data`` is the job's data as :func:`check_job_data` returned it where the caller checked it already (the
    manager at submit): it is not loaded again. Without it and without ``run_id`` the data is checked first and
    a job that cannot train raises :class:`DataError` before any run is created. A cancelled job is stored as
    ``cancelled``, an interrupted one (SIGINT / SIGTERM) as ``interrupted``, a diverged one as ``diverged`` and a
    crashed one as ``failed`` with its traceback; all re-raise so the caller sees what happened, and none leaves a
    partial model folder.
    """
    checked = data
    if run_id is None:  # recorded here (a run the manager queued was recorded by it)
        checked = data if data is not None else check_job_data(spec, store)
        spec = as_recorded(spec, checked)
    run_id = run_id or store.create_run(spec.to_dict(), spec.method, spec.name)
    ctx = JobContext(spec, store, run_id, cancel or threading.Event(), progress, mapper)
    if not store.start(run_id, package_versions()):
        raise JobCancelledError(f"run {run_id} was not started: it is {store.get_run(run_id).status}")
    try:
        data = checked or check_job_data(spec)
        if METHODS[spec.method].needs_data:
            store.set_info(run_id, data_hash=data_hash(data.train.concat(data.val).concat(data.test)),
                           n_train=len(data.train), n_val=len(data.val), n_test=len(data.test),
                           data_report=data.report.summary() + (f" (the whole file; the run used a subset of "
                                                                f"{spec.data.subset:,})" if spec.data.subset else ""))
            report = data.report
            if spec.data.source != DataSpec.source and (report.invalid or report.unlabeled or report.duplicates):
                log.warning("data %s: %s", Path(spec.data.source).name, report.summary())  # said, not only stored
        ctx.check_cancel()
        metrics = METHODS[spec.method].load()(ctx, data, spec.method_options)
        model_dir = ctx.artifacts / "model"
        store.finish(run_id, metrics, str(model_dir) if model_dir.exists() else None)
        log.info("run %s finished: %s", run_id, metrics)
    except JobCancelledError as exc:
        _discard_artifacts(store, run_id)
        store.cancel(run_id, str(exc))
        raise
    except (KeyboardInterrupt, SystemExit) as exc:  # a signal, or a host ending the work (Ray Tune stops a trial so)
        _discard_artifacts(store, run_id)
        store.interrupt(run_id, "interrupted (SIGINT / SIGTERM)" if isinstance(exc, KeyboardInterrupt) else
                        f"stopped: its process is exiting (SystemExit {exc.code})")
        raise
    except BaseException as exc:
        _discard_artifacts(store, run_id)
        status = "diverged" if isinstance(exc, TrainingDivergedError) else "failed"
        store.fail(run_id, f"{type(exc).__name__}: {exc}", traceback.format_exc(), status=status)
        raise
    return run_id


def _discard_artifacts(store: RunStore, run_id: str) -> None:
    """A run that did not finish keeps no partial files (a half-written model folder would load wrong)."""
    shutil.rmtree(store.home / run_id, ignore_errors=True)
