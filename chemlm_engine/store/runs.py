"""The run store: runs, per-epoch metrics and per-molecule results in SQLAlchemy (SQLite by default).

Pages and the CLI only read it; jobs write it. SQLite runs in WAL mode so reads never wait for a writer.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pandas as pd
from sqlalchemy import CursorResult, create_engine, delete, event, select, update
from sqlalchemy.exc import ArgumentError, DatabaseError, NoSuchModuleError
from sqlalchemy.orm import Session

from ..spec.config import JobSpec
from ..errors import ConfigError, OutputError, RunNotFoundError, StoreError
from .schema import EpochRow, Kinds, MoleculeRow, RunRow, TableRow, Tables, prepare_schema, sqlite_pragmas
from .uploads import prune_uploads, save_upload

__all__ = ["RunStore", "RunRecord", "default_home", "RUN_STATUSES", "Tables", "Kinds"]

RUN_STATUSES = ("queued", "running", "finished", "failed", "diverged", "cancelled", "interrupted")
ACTIVE_STATUSES = ("queued", "running")


def default_home() -> Path:
    """``$CHEMLM_HOME`` or ``./runs``: where the database and run artifacts live."""
    return Path(os.environ.get("CHEMLM_HOME", "runs")).resolve()


@dataclass(frozen=True)
class RunRecord:
    """A run as plain data (safe to hand to any thread)."""

    id: str
    name: str
    method: str
    status: str
    spec: dict[str, Any]
    created_at: float
    started_at: float | None
    finished_at: float | None
    progress: float
    message: str
    error: str | None
    traceback: str | None
    metrics: dict[str, Any]
    info: dict[str, Any]
    versions: dict[str, str]
    data_hash: str | None
    model_path: str | None
    pid: int | None

    @property
    def duration(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.finished_at or time.time()) - self.started_at


def _record(row: RunRow) -> RunRecord:
    return RunRecord(row.id, row.name, row.method, row.status, json.loads(row.spec), row.created_at, row.started_at,
                     row.finished_at, row.progress, row.message, row.error, row.traceback, json.loads(row.metrics),
                     json.loads(row.info), json.loads(row.versions), row.data_hash, row.model_path, row.pid)


def _clean(value: Any) -> Any:
    """JSON-safe floats (NaN -> None)."""
    if isinstance(value, float) and value != value:
        return None
    return value


class RunStore:
    """Runs and their results. ``url`` is any SQLAlchemy URL; default ``sqlite:///$CHEMLM_HOME/runs.db``."""

    def __init__(self, url: str | None = None, home: str | Path | None = None) -> None:
        self.home = Path(home) if home is not None else default_home()
        if self.home.exists() and not self.home.is_dir():
            raise StoreError(f"the run store folder {self.home} is a file: point CHEMLM_HOME at a folder")
        if url is None:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(f"cannot create the run store folder {self.home} ({exc.strerror}): point "
                                 "CHEMLM_HOME at a folder you can write") from None
            url = f"sqlite:///{self.home / 'runs.db'}"
        self.url = url
        try:
            self.engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}
                                        if url.startswith("sqlite") else {})
        except (ArgumentError, NoSuchModuleError) as exc:
            raise StoreError(f"cannot open the run store {url!r}: {exc}; give a SQLAlchemy URL such as "
                             "sqlite:///path/to/runs.db") from None
        except ImportError as exc:  # a known database whose driver is not installed (postgresql+psycopg)
            raise StoreError(f"cannot open the run store {url!r}: its driver is not installed ({exc})") from None
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", sqlite_pragmas)
        try:
            prepare_schema(self.engine)
        except DatabaseError as exc:
            raise StoreError(f"cannot open the run store {url}: {exc.orig}") from None

    @contextlib.contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """A session (in a transaction when writing); database failures become one clear :class:`StoreError`."""
        try:
            with Session(self.engine) as session:
                if write:
                    with session.begin():
                        yield session
                else:
                    yield session
        except DatabaseError as exc:
            raise StoreError(f"run store {self.url}: {exc.orig} "
                             f"({'writing' if write else 'reading'}; is the disk full or the file damaged?)") from None

    def artifact_dir(self, run_id: str) -> Path:
        path = self.home / run_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def save_upload(self, data: bytes, suffix: str = ".csv") -> Path:
        """Keep an uploaded file beside the runs so a background job (and a page rerun) can read it."""
        return save_upload(self.home / "uploads", data, suffix)

    def prune_uploads(self) -> list[Path]:
        """Delete kept uploads that no run names (see :func:`uploads.prune_uploads`); returns what was deleted."""
        with self._session() as session:
            specs = "\n".join(session.scalars(select(RunRow.spec)))
        return prune_uploads(self.home / "uploads", specs)

    # -- writing -------------------------------------------------------------------------------
    def create_run(self, spec: dict[str, Any], method: str, name: str = "") -> str:
        run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        with self._session(write=True) as session:
            session.add(RunRow(id=run_id, name=name, method=method, status="queued", spec=json.dumps(spec),
                             created_at=time.time(), progress=0.0, message="queued",
                             pid=os.getpid(), host=socket.gethostname()))
        return run_id

    def _update(self, run_id: str, **values: Any) -> None:
        with self._session(write=True) as session:
            session.execute(update(RunRow).where(RunRow.id == run_id).values(**values))

    def start(self, run_id: str, versions: dict[str, str]) -> bool:
        """Mark a queued run running; False, and nothing changed, when it is no longer queued (a page or another
        manager cancelled it after its worker looked): a cancel is never overwritten by a late start."""
        with self._session(write=True) as session:
            queued = update(RunRow).where(RunRow.id == run_id, RunRow.status == "queued")
            started = session.execute(queued.values(status="running", started_at=time.time(), pid=os.getpid(),
                                                    host=socket.gethostname(), versions=json.dumps(versions),
                                                    message="starting"))
            return bool(cast(CursorResult, started).rowcount)

    def set_progress(self, run_id: str, fraction: float, message: str = "") -> bool:
        """Record progress; returns whether someone asked to cancel the run (see :meth:`request_cancel`)."""
        with self._session(write=True) as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise RunNotFoundError(run_id)
            row.progress, row.message = float(min(max(fraction, 0.0), 1.0)), message
            return bool(json.loads(row.info).get("cancel_requested"))

    def request_cancel(self, run_id: str) -> None:
        """Cancel through the store, so any manager or worker honours it: a queued run is cancelled now (a worker
        skips a run that is no longer queued); a running one is asked to stop, and stops at its next progress
        report (within about a second)."""
        with self._session(write=True) as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise RunNotFoundError(run_id)
            if row.status == "queued":
                row.status, row.finished_at, row.message = "cancelled", time.time(), "cancelled before it started"
            elif row.status == "running":
                row.info = json.dumps({**json.loads(row.info), "cancel_requested": True})

    def set_info(self, run_id: str, **info: Any) -> None:
        """Merge keys into the run's ``info`` (data hash, parameter counts, sizes ...)."""
        with self._session(write=True) as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise RunNotFoundError(run_id)
            merged = {**json.loads(row.info), **{k: _clean(v) for k, v in info.items()}}
            row.info = json.dumps(merged)
            if "data_hash" in info:
                row.data_hash = info["data_hash"]

    def add_epoch(self, run_id: str, epoch: int, values: dict[str, Any], stage: str = "train") -> None:
        with self._session(write=True) as session:
            session.add(EpochRow(run_id=run_id, stage=stage, epoch=epoch,
                               values=json.dumps({k: _clean(v) for k, v in values.items()})))

    def add_table(self, run_id: str, name: str, rows: list[dict[str, Any]]) -> None:
        """Append rows to the run's named result table (see :class:`Tables`); epochs go to ``add_epoch``."""
        with self._session(write=True) as session:
            session.add_all(TableRow(run_id=run_id, name=name,
                                      values=json.dumps({k: _clean(_plain(v)) for k, v in row.items()}))
                            for row in rows)

    def add_molecules(self, run_id: str, kind: str, frame: pd.DataFrame) -> None:
        """Store per-molecule rows; ``frame`` has ``smiles`` and any of label, prediction, score, split;
        other columns go to ``extra``."""
        known = {"smiles", "label", "prediction", "score", "split"}
        extra_cols = [c for c in frame.columns if c not in known]
        rows = []
        for rec in frame.to_dict("records"):
            rows.append(MoleculeRow(run_id=run_id, kind=kind, split=str(rec.get("split", "") or ""),
                                  smiles=str(rec["smiles"]), label=_num(rec.get("label")),
                                  prediction=_num(rec.get("prediction")), score=_num(rec.get("score")),
                                  extra=json.dumps({c: _clean(_plain(rec[c])) for c in extra_cols})))
        with self._session(write=True) as session:
            session.add_all(rows)

    def finish(self, run_id: str, metrics: dict[str, Any], model_path: str | None = None) -> None:
        self._update(run_id, status="finished", finished_at=time.time(), progress=1.0, message="finished",
                     metrics=json.dumps({k: _clean(v) for k, v in metrics.items()}), model_path=model_path)

    def fail(self, run_id: str, error: str, traceback: str, status: str = "failed") -> None:
        """Record a crash (or, with ``status="diverged"``, a training that blew up) with its traceback."""
        self._update(run_id, status=status, finished_at=time.time(), error=error, traceback=traceback,
                     message=status)

    def interrupt(self, run_id: str, message: str) -> None:
        """Mark a queued or running run interrupted; one that ended meanwhile keeps its status (a dying worker's
        late word, e.g. a search trial Ray stopped after the search cancelled it)."""
        with self._session(write=True) as session:
            session.execute(update(RunRow).where(RunRow.id == run_id, RunRow.status.in_(ACTIVE_STATUSES))
                            .values(status="interrupted", finished_at=time.time(), message=message))

    def cancel(self, run_id: str, message: str = "cancelled by user") -> None:
        self._update(run_id, status="cancelled", finished_at=time.time(), message=message)

    def mark_interrupted(self) -> list[str]:
        """Mark queued or running runs whose process (on this host) is dead as ``interrupted``."""
        this_host = socket.gethostname()
        with self._session(write=True) as session:
            rows = session.scalars(select(RunRow).where(RunRow.status.in_(ACTIVE_STATUSES))).all()
            dead = [r for r in rows if (r.host in (None, this_host)) and
                    (r.pid is None or not _alive(r.pid))]
            for row in dead:
                row.status, row.message, row.finished_at = "interrupted", "the process running it stopped", time.time()
            return [r.id for r in dead]

    def rename(self, run_id: str, name: str) -> None:
        self.get_run(run_id)  # RunNotFoundError for an unknown id
        self._update(run_id, name=name.strip())

    def delete(self, run_id: str) -> None:
        """Remove a run that is not active: its rows in every table and its files."""
        if self.get_run(run_id).status in ACTIVE_STATUSES:
            raise StoreError(f"run {run_id} is still active: cancel it first")
        with self._session(write=True) as session:
            for table in (EpochRow, TableRow, MoleculeRow):
                session.execute(delete(table).where(table.run_id == run_id))
            session.execute(delete(RunRow).where(RunRow.id == run_id))
        shutil.rmtree(self.home / run_id, ignore_errors=True)
        self.prune_uploads()

    def export_model(self, run_id: str, destination: str | Path, description: str = "") -> Path:
        """Copy a finished run's model folder to ``destination`` with ``metrics.json`` (spec, metrics, versions)."""
        record = self.get_run(run_id)
        if record.status != "finished" or not record.model_path:  # a library prediction finishes with no model
            why = f"status {record.status}" if record.status != "finished" else (
                f"a pretrain run writes a backbone, to {record.info['output']}: train on it with --backbone"
                if record.method == "pretrain" and record.info.get("output") else f"a {record.method} run makes none")
            raise RunNotFoundError(f"run {run_id} has no model to export ({why})")
        destination = Path(destination)
        if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):  # never two models
            raise OutputError(f"{destination} {'is not empty' if destination.is_dir() else 'is a file'}: export into "
                              "a new or empty folder")
        shutil.copytree(record.model_path, destination, dirs_exist_ok=True)
        test = {k[len("test_"):]: v for k, v in record.metrics.items() if k.startswith("test_")}
        (destination / "metrics.json").write_text(json.dumps(
            {"run_id": run_id, "description": description, "test": test, "metrics": record.metrics,
             "spec": record.spec, "versions": record.versions, "data_hash": record.data_hash}, indent=2))
        return destination

    # -- reading -------------------------------------------------------------------------------
    def get_run(self, run_id: str) -> RunRecord:
        with self._session() as session:
            row = session.get(RunRow, run_id)
            if row is None:
                raise RunNotFoundError(f"no run {run_id!r} in {self.url}")
            return _record(row)

    def runs(self, status: str | None = None) -> list[RunRecord]:
        with self._session() as session:
            query = select(RunRow).order_by(RunRow.created_at.desc())
            if status is not None:
                query = query.where(RunRow.status == status)
            return [_record(r) for r in session.scalars(query)]

    def epochs(self, run_id: str, stage: str | None = None) -> pd.DataFrame:
        with self._session() as session:
            query = select(EpochRow).where(EpochRow.run_id == run_id).order_by(EpochRow.id)
            if stage is not None:
                query = query.where(EpochRow.stage == stage)
            rows = [{"stage": e.stage, "epoch": e.epoch, **json.loads(e.values)} for e in session.scalars(query)]
        return pd.DataFrame(rows)

    def table(self, run_id: str, name: str) -> pd.DataFrame:
        """A named result table of the run, rows in the order they were added."""
        with self._session() as session:
            query = select(TableRow).where(TableRow.run_id == run_id, TableRow.name == name).order_by(TableRow.id)
            return pd.DataFrame([json.loads(r.values) for r in session.scalars(query)])

    def molecules(self, run_id: str, kind: str | None = None) -> pd.DataFrame:
        with self._session() as session:
            query = select(MoleculeRow).where(MoleculeRow.run_id == run_id).order_by(MoleculeRow.id)
            if kind is not None:
                query = query.where(MoleculeRow.kind == kind)
            rows = [{"kind": m.kind, "split": m.split, "smiles": m.smiles, "label": m.label,
                     "prediction": m.prediction, "score": m.score, **json.loads(m.extra)}
                    for m in session.scalars(query)]
        return pd.DataFrame(rows)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _num(value: Any) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if number != number else number


def _plain(value: Any) -> Any:
    """numpy scalars -> Python scalars for JSON."""
    return value.item() if hasattr(value, "item") else value
