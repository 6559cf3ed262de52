"""Scale-out on Ray: jobs as Ray tasks, sweeps fanned out as Ray tasks, pool influence scoring sharded
across workers. Ray is imported lazily: the app and the thread executor never need it.

The run store is shared, not gathered: every worker writes to the same SQLAlchemy URL (PostgreSQL on a
real cluster, the SQLite file on one machine) and artifact folder (``CHEMLM_HOME`` on a shared file
system). That keeps per-batch progress, per-epoch metrics and the partial record of a crashed job
visible live in the dashboard exactly as for local jobs; returning results to the driver would show
nothing until a job ends and lose what a dying worker had written.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from .spec import JobSpec
from .errors import ConfigError, JobCancelledError, OutputError
from .outputs import check_folder

__all__ = ["connect", "RayJobs", "ray_map", "empty_folder", "actors_fit"]


def connect(address: str | None = None, num_cpus: int | None = None) -> None:
    """Join the Ray cluster at ``address`` (``"auto"``, ``"ray://host:10001"``) or start a local one.

    A local Ray listens on loopback only, so no other machine can submit work to it; joining a real cluster
    is the deliberate way to serve a team (README)."""
    if address is None and "ray" not in sys.modules:
        # Read once, when Ray is imported: its node address becomes 127.0.0.1 (workers inherit it).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if not ray.is_initialized():  # workers import the installed package (`make setup` installs it editable)
        ray.init(address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)


def empty_folder(output_dir: Path) -> None:
    """:class:`OutputError` for an output that already holds something: Ray Data adds its parts beside what is there
    (a rerun into the same folder held every row twice)."""
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise OutputError(f"{output_dir} already holds {'files' if output_dir.is_dir() else 'a file'}: Ray adds its "
                          "parts beside what is there; remove it or name another folder")
    check_folder(output_dir)  # the folder it goes in, where the input is staged too


def actors_fit(workers: int, cpus_per_worker: int) -> None:
    """:class:`ConfigError` where ``workers`` actors would take every CPU of the local Ray: Ray Data's read and write
    tasks, which need one more, would wait forever (``--workers 2`` on 2 CPUs hung without a word)."""
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    spare = int(cpus - 1) // cpus_per_worker
    if workers > spare:
        raise ConfigError(f"{workers} worker{'s' * (workers > 1)} of {cpus_per_worker} CPU leave none of this "
                          f"machine's {cpus:g} CPUs to read the file, and Ray Data would wait forever: "
                          + (f"use --workers {spare}" if spare else "a local Ray needs 2 CPUs or more"))


def _gpus_per_task() -> int:
    import ray

    return 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0


def _cancel_board():
    """A named actor holding the cancelled run ids; workers poll it (one per cluster namespace)."""
    import ray

    @ray.remote(num_cpus=0)
    class CancelBoard:
        def __init__(self) -> None:
            self.ids: set[str] = set()

        def cancel(self, run_id: str) -> None:
            self.ids.add(run_id)

        def is_cancelled(self, run_id: str) -> bool:
            return run_id in self.ids

    return CancelBoard.options(name="chemlm-cancel-board", get_if_exists=True, lifetime="detached").remote()


def _watch_cancel(board, run_id: str, event: threading.Event, done: threading.Event, every: float = 0.5) -> None:
    import ray

    while not done.wait(every):
        if ray.get(board.is_cancelled.remote(run_id)):
            event.set()
            return


def _run_on_worker(spec: dict, url: str, home: str, run_id: str, board, threads: int) -> str:
    """Body of a job's Ray task: the same ``run_job`` as locally, with a cancel flag fed by the board."""
    from .jobs import run_job
    from .store import RunStore

    torch.set_num_threads(threads)
    cancel, done = threading.Event(), threading.Event()
    threading.Thread(target=_watch_cancel, args=(board, run_id, cancel, done), daemon=True).start()
    try:
        run_job(JobSpec.from_dict(spec), RunStore(url, home), run_id, cancel=cancel,
                mapper=lambda fn, items: ray_map(fn, items, threads))
        return "finished"
    except JobCancelledError:
        return "cancelled"
    finally:
        done.set()


class RayJobs:
    """The Ray side of :class:`~chemlm_engine.jobs.JobManager`: one Ray task per job (one GPU each when
    the cluster has GPUs), cancel through a shared board, and failure capture for workers that die
    before ``run_job`` could record it (whenever :meth:`active` is asked: the app's job list does)."""

    def __init__(self, store, address: str | None = None, cpus_per_job: int = 1) -> None:
        import ray

        connect(address)
        self.store, self.cpus_per_job = store, cpus_per_job
        self.board = _cancel_board()
        self._task = ray.remote(_run_on_worker)
        self._refs: dict[str, Any] = {}
        self._lock = threading.Lock()

    def submit(self, run_id: str, spec: JobSpec) -> None:
        ref = self._task.options(num_cpus=self.cpus_per_job, num_gpus=_gpus_per_task(), max_retries=0).remote(
            spec.to_dict(), self.store.url, str(self.store.home), run_id, self.board, self.cpus_per_job)
        with self._lock:
            self._refs[run_id] = ref

    def cancel(self, run_id: str) -> None:
        import ray

        self.board.cancel.remote(run_id)
        with self._lock:
            ref = self._refs.get(run_id)
        if ref is not None and self.store.get_run(run_id).status == "queued":
            ray.cancel(ref)  # not started: drop it from the cluster's queue

    def active(self) -> list[str]:
        """Run ids whose tasks have not ended. Ended tasks are reconciled here (no background thread:
        one calling Ray after ``ray.shutdown()`` kills the process)."""
        import ray

        with self._lock:
            refs = dict(self._refs)
            if refs:
                ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=0)
                for run_id in [k for k, v in refs.items() if v in ready]:
                    self._record_end(run_id, self._refs.pop(run_id))
            return list(self._refs)

    def _record_end(self, run_id: str, ref) -> None:
        """A task that died without recording its end (worker crash, cancel before start) is recorded here."""
        import ray

        try:
            ray.get(ref)
        except Exception as exc:  # noqa: BLE001 - any task error ends up in the store
            status = self.store.get_run(run_id).status
            if status == "queued" and isinstance(exc, ray.exceptions.TaskCancelledError):
                self.store.cancel(run_id, "cancelled before it started")
            elif status in ("queued", "running"):
                self.store.fail(run_id, f"{type(exc).__name__}: {exc}", str(exc))


def ray_map(fn: Callable[[Any], Any], items: Sequence[Any], cpus: int = 1) -> list[Any]:
    """``[fn(x) for x in items]`` with every call a Ray task (one GPU each where there are GPUs)."""
    import ray

    task: Any = ray.remote(lambda x: fn(x)).options(num_cpus=cpus, num_gpus=_gpus_per_task(), max_retries=0)
    return ray.get([task.remote(item) for item in items])
