"""Running jobs in the background: ``JobManager`` queues jobs (one at a time by default) and runs each in a
process of its own, on a thread of this process, or as a task on a Ray cluster (:mod:`~chemlm_engine.cluster`),
with one interface: submit, cancel, active, wait. It sits above the executors, so imports point one way
(jobs <- cluster <- manager).

Why a process: a training loop shares the interpreter lock with whatever else runs in its process. In the
Streamlit server (page reruns every few seconds, charts, websocket traffic) a job on a thread got only 0.4x
of the CLI's speed (``bench/app_speed.py``); in a process of its own it trains as fast as the CLI."""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.forkserver
import queue
import threading
import time
from typing import cast

from .spec import EXECUTORS, JobSpec
from .errors import JobCancelledError
from .guard import engine_main
from .jobs import check_job_data, run_job
from .pipeline import SplitData, as_recorded
from .store import ACTIVE_STATUSES, RunStore

__all__ = ["JobManager", "EXECUTORS"]

log = logging.getLogger(__name__)


# Job processes fork from a server process that is a fresh interpreter (no lock, thread or CUDA state of the app
# inherited) and imported the engine once: after the first job, a job starts in a fraction of a second instead of
# importing torch and transformers again (~6 s). Where there is no forkserver (Windows), a fresh interpreter each.
_FORKSERVER = "forkserver" in multiprocessing.get_all_start_methods()
_JOBS = multiprocessing.get_context("forkserver") if _FORKSERVER else multiprocessing.get_context("spawn")
if _FORKSERVER:
    _JOBS.set_forkserver_preload(["chemlm_engine.jobs"])


def _run_in_child(spec_json: str, url: str, home: str, run_id: str, cancel, data: SplitData) -> None:
    try:
        run_job(JobSpec.from_json(spec_json), RunStore(url, home), run_id, cancel=cancel, data=data)
    except (JobCancelledError, KeyboardInterrupt):
        pass  # recorded by run_job


class JobManager:
    """Runs submitted jobs in order, each in a child process (``executor="process"``: what the app uses) or on
    a thread of this process (``"thread"``), or as Ray tasks on a cluster (``"ray"``, see
    :mod:`chemlm_engine.cluster`); same interface. ``workers`` jobs run at once.

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
        self._queue: queue.Queue[tuple[str, JobSpec, SplitData] | None] = queue.Queue()
        self._cancel: dict[str, threading.Event] = {}  # a process-shared Event for the process executor
        self._children: dict[str, multiprocessing.process.BaseProcess] = {}
        self._closing = False
        self._running: set[str] = set()
        self._lock = threading.Lock()
        self._ray = None
        if executor == "ray":
            from .cluster import RayJobs

            self._ray = RayJobs(store, ray_address, cpus_per_job)
            workers = 0
        if executor == "process":
            atexit.register(self._stop_children)  # a job process must not outlive the app
            if _FORKSERVER:
                with engine_main():  # the server imports the engine now, while the user fills in the first form
                    multiprocessing.forkserver.ensure_running()
        self._threads = [threading.Thread(target=self._work, name=f"chemlm-job-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, spec: JobSpec, data: SplitData | None = None) -> str:
        """Check the job's data (raises :class:`DataError` if it cannot train; ``data``: already checked by the
        caller with :func:`check_job_data`), queue it; returns its run id. The checked data goes with the job:
        the worker does not load it again (on Ray, where a worker may be another machine, the task loads it)."""
        data = data if data is not None else check_job_data(spec, self.store)
        spec = as_recorded(spec, data)  # its paths absolute: a worker process or Ray task may work in another folder
        run_id = self.store.create_run(spec.to_dict(), spec.method, spec.name)
        if self._ray is not None:
            self._ray.submit(run_id, spec)
            return run_id
        with self._lock:
            # the process-shared Event has threading.Event's interface (is_set, set, wait)
            self._cancel[run_id] = cast(threading.Event, _JOBS.Event()) if self.executor == "process" \
                else threading.Event()
        self._queue.put((run_id, spec, data))
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
        self.store.request_cancel(run_id)  # honoured by whichever manager or worker holds the run

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
        self._stop_children()

    def _stop_children(self) -> None:
        """Stop job processes still running (their runs become ``interrupted``) and start no more."""
        with self._lock:
            self._closing = True
            children = list(self._children.values())
        for child in children:
            child.terminate()

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            run_id, spec, data = item
            with self._lock:
                event = self._cancel[run_id]
                if event.is_set() or self.store.get_run(run_id).status != "queued":  # cancelled, here or elsewhere
                    self._cancel.pop(run_id, None)
                    continue
                self._running.add(run_id)
            try:
                if self.executor == "process":
                    self._run_child(run_id, spec, event, data)
                else:
                    run_job(spec, self.store, run_id, cancel=event, data=data)
            except JobCancelledError:
                log.info("run %s cancelled", run_id)
            except BaseException:  # already recorded as failed with its traceback; keep serving jobs
                log.exception("run %s failed", run_id)
            finally:
                with self._lock:
                    self._running.discard(run_id)
                    self._cancel.pop(run_id, None)

    def _run_child(self, run_id: str, spec: JobSpec, cancel, data: SplitData) -> None:
        child = _JOBS.Process(target=_run_in_child, name=f"chemlm-{run_id}",
                               args=(spec.to_json(), self.store.url, str(self.store.home), run_id, cancel, data))
        with self._lock:
            if self._closing:  # shutting down: the job never starts
                self.store.interrupt(run_id, "the app stopped before the job started")
                return
            with engine_main():
                child.start()
            self._children[run_id] = child
        child.join()
        with self._lock:
            self._children.pop(run_id, None)
        if self.store.get_run(run_id).status in ACTIVE_STATUSES:  # killed before run_job could record it
            self.store.interrupt(run_id, f"the job process stopped (exit code {child.exitcode})")
