"""Running jobs in the background: ``JobManager`` queues jobs on threads of this process (one at a time by
default) or hands them to a Ray cluster (:mod:`~chemlm_engine.cluster`), with one interface: submit, cancel,
active, wait. It sits above both executors, so imports point one way (jobs <- cluster <- manager)."""
from __future__ import annotations

import logging
import queue
import threading
import time

from .config import JobSpec
from .errors import JobCancelledError
from .jobs import check_job_data, run_job
from .store import RunStore

__all__ = ["JobManager", "EXECUTORS"]

log = logging.getLogger(__name__)


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
