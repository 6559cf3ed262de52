"""Executing jobs: ``run_job`` runs one ``JobSpec`` and writes everything to the store; ``JobManager``
runs jobs on background threads (a queue, one at a time by default) with cancel and crash capture."""
from __future__ import annotations

import logging
import platform
import queue
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from importlib import metadata

import numpy as np

from .config import JobSpec
from .data import MoleculeData, data_hash
from .errors import JobCancelledError, TrainingDivergedError
from .methods.curriculum import run_curriculum
from .methods.ensemble import run_ensemble
from .methods.influence import run_influence
from .methods.mlm import run_mlm_then_regression
from .methods.peft import run_strategy
from .methods.uncertainty import run_uncertainty
from .pipeline import JobContext, ProgressFn, SplitData, check_job_data, load_job_data, train_and_evaluate
from .store import RunStore

__all__ = ["run_job", "JobManager", "EXECUTORS", "package_versions", "load_job_data", "check_job_data", "METHODS"]

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


def _baseline(ctx: JobContext, data: SplitData) -> dict[str, float]:
    """Full fine-tuning. Option ``train_on_val``: fit on training + validation for the fixed number
    of epochs (no model selection), as for a model that ships."""
    if ctx.spec.options.get("train_on_val"):
        data = replace(data, train=data.train.concat(data.val), val=MoleculeData([], np.zeros(0)))
    _, metrics = train_and_evaluate(ctx, data)
    return metrics


# Method name -> function(ctx, data) -> test metrics. Later methods add themselves here.
METHODS: dict[str, Callable[[JobContext, SplitData], dict[str, float]]] = {
    "baseline": _baseline,
    "mlm": run_mlm_then_regression,
    "curriculum": run_curriculum,
    "uncertainty": run_uncertainty,
    "bitfit": run_strategy,
    "lora": run_strategy,
    "ia3": run_strategy,
    "ia3-pooled": run_strategy,
    "influence": run_influence,
    "ensemble": run_ensemble,
}


def run_job(spec: JobSpec, store: RunStore, run_id: str | None = None, progress: ProgressFn | None = None,
            cancel: threading.Event | None = None, mapper: Callable | None = None) -> str:
    """Execute ``spec`` and record it in ``store``; returns the run id. ``mapper`` runs a sweep's
    independent points (default: one after the other, here; on a cluster: as Ray tasks).

    Without ``run_id`` the data is checked first and a job that cannot train raises :class:`DataError`
    before any run is created. A cancelled job is stored as ``cancelled``, an interrupted one (SIGINT /
    SIGTERM) as ``interrupted``, a diverged one as ``diverged`` and a crashed one as ``failed`` with its
    traceback; all re-raise so the caller sees what happened, and none leaves a partial model folder.
    """
    checked = check_job_data(spec) if run_id is None else None
    run_id = run_id or store.create_run(spec.to_dict(), spec.method, spec.name)
    ctx = JobContext(spec, store, run_id, cancel or threading.Event(), progress, mapper)
    store.start(run_id, package_versions())
    try:
        data = checked or check_job_data(spec)
        store.set_info(run_id, data_hash=data_hash(data.train.concat(data.val).concat(data.test)),
                       n_train=len(data.train), n_val=len(data.val), n_test=len(data.test),
                       data_report=data.report.summary())
        ctx.check_cancel()
        metrics = METHODS[spec.method](ctx, data)
        model_dir = ctx.artifacts / "model"
        store.finish(run_id, metrics, str(model_dir) if model_dir.exists() else None)
        log.info("run %s finished: %s", run_id, metrics)
    except JobCancelledError as exc:
        _discard_artifacts(store, run_id)
        store.cancel(run_id, str(exc))
        raise
    except KeyboardInterrupt:
        _discard_artifacts(store, run_id)
        store.interrupt(run_id, "interrupted (SIGINT / SIGTERM)")
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


EXECUTORS = ("thread", "ray")


class JobManager:
    """Runs submitted jobs on background threads, in order (``executor="thread"``, one per process), or
    as Ray tasks on a cluster (``executor="ray"``, see :mod:`chemlm_engine.cluster`); same interface.

    At start-up, runs left ``queued`` / ``running`` by a process that no longer exists are marked
    ``interrupted``.
    """

    def __init__(self, store: RunStore, workers: int = 1, executor: str = "thread",
                 ray_address: str | None = None, cpus_per_job: int = 1) -> None:
        if executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {EXECUTORS}, not {executor!r}")
        self.store = store
        self.executor = executor
        self.interrupted = store.mark_interrupted()
        self._queue: queue.Queue[tuple[str, JobSpec] | None] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._ray = None
        if executor == "ray":
            from .cluster import RayJobs

            self._ray = RayJobs(store, ray_address, cpus_per_job)
            workers = 0
        self._threads = [threading.Thread(target=self._work, name=f"chemlm-job-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, spec: JobSpec) -> str:
        """Check the job's data (raises :class:`DataError` if it cannot train), queue it; returns its run id."""
        check_job_data(spec)
        run_id = self.store.create_run(spec.to_dict(), spec.method, spec.name)
        if self._ray is not None:
            self._ray.submit(run_id, spec)
            return run_id
        with self._lock:
            self._cancel[run_id] = threading.Event()
        self._queue.put((run_id, spec))
        return run_id

    def cancel(self, run_id: str) -> None:
        """Cancel a queued job, or stop a running one within one batch."""
        if self._ray is not None:
            self._ray.cancel(run_id)
            return
        with self._lock:
            event = self._cancel.get(run_id)
        if event is not None:
            event.set()
        if self.store.get_run(run_id).status == "queued":
            self.store.cancel(run_id, "cancelled before it started")

    def active(self) -> list[str]:
        """Ids of jobs queued or running in this manager."""
        if self._ray is not None:
            return self._ray.active()
        with self._lock:
            return list(self._cancel)

    def wait(self, run_id: str, timeout: float = 600.0, poll: float = 0.1):
        """Block until a run leaves ``queued`` / ``running`` (tests, scripts); returns its record."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            record = self.store.get_run(run_id)
            if record.status not in ("queued", "running") and run_id not in self._running and \
                    run_id not in self.active():
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
