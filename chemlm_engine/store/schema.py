"""The run store's tables (SQLAlchemy ORM): runs, per-epoch metrics, named result tables, per-molecule
results, and the names methods store results under. Only :mod:`~chemlm_engine.store.runs` uses the rows; JSON
columns hold dicts."""
from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, Float, ForeignKey, Integer, String, Text, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..errors import StoreError

__all__ = ["Base", "RunRow", "EpochRow", "TableRow", "MoleculeRow", "Tables", "Kinds", "SCHEMA_VERSION", "MIGRATIONS",
           "prepare_schema", "sqlite_pragmas"]

# The layout these classes describe. A database records the version it was written with; an older one is brought
# up by MIGRATIONS[v] for each v above its version (in one transaction), a newer one is refused.
SCHEMA_VERSION = 1
MIGRATIONS: dict[int, Callable[[Connection], None]] = {}


class Tables:
    """Names of the non-epoch result tables methods write (``add_table``) and pages read (``table``)."""

    SWEEP = "sweep"  # one row per point of a k / N / rank sweep
    SOLVER = "solver"  # the inverse-HVP solver's trace
    CURRICULUM_PLAN = "curriculum_plan"  # admissible molecules per epoch
    MLM_LOSS = "mlm_loss"  # masked-LM loss during unsupervised fine-tuning
    PRETRAIN_LOSS = "pretrain_loss"  # losses and speed during pretraining
    LIVE = "live"  # running training MSE inside epochs (at most one row per 2 s), for the live chart
    TRIALS = "trials"  # a hyperparameter search's trials: run id, settings, best validation MSE, epochs run


class Kinds:
    """Kinds of per-molecule results (``add_molecules`` / ``molecules``)."""

    PREDICTION = "prediction"  # the final model's test-split predictions
    INFLUENCE = "influence"  # pool molecules with influence score, rank and self-influence
    POOL_UNCERTAINTY = "pool_uncertainty"  # MC-dropout std of the pool under the initial model
    POOL_ISAL = "pool_isal"  # expected influence of each pool molecule (ISAL) under the initial model
    ACQUIRED = "acquired"  # molecules active learning selected, per round
    TEST_UNCERTAINTY = "test_uncertainty"  # test predictions with MC-dropout std


class Base(DeclarativeBase):
    pass


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    method: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), index=True)
    spec: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    started_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    traceback: Mapped[str | None] = mapped_column(Text, nullable=True)
    metrics: Mapped[str] = mapped_column(Text, default="{}")
    info: Mapped[str] = mapped_column(Text, default="{}")
    versions: Mapped[str] = mapped_column(Text, default="{}")
    data_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    pid: Mapped[int | None] = mapped_column(Integer, nullable=True)
    host: Mapped[str | None] = mapped_column(String(200), nullable=True)


class _OfRun:
    """Rows that belong to one run."""

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"), index=True)


class EpochRow(_OfRun, Base):
    __tablename__ = "epoch_metrics"
    stage: Mapped[str] = mapped_column(String(50), default="train")
    epoch: Mapped[int] = mapped_column(Integer)
    values: Mapped[str] = mapped_column(Text)


class TableRow(_OfRun, Base):
    __tablename__ = "result_tables"
    name: Mapped[str] = mapped_column(String(50), index=True)
    values: Mapped[str] = mapped_column(Text)


class MoleculeRow(_OfRun, Base):
    __tablename__ = "molecule_results"
    kind: Mapped[str] = mapped_column(String(50), index=True)
    split: Mapped[str] = mapped_column(String(20), default="")
    smiles: Mapped[str] = mapped_column(Text)
    label: Mapped[float | None] = mapped_column(Float, nullable=True)
    prediction: Mapped[float | None] = mapped_column(Float, nullable=True)
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[str] = mapped_column(Text, default="{}")


class MetaRow(Base):
    __tablename__ = "store_meta"
    key: Mapped[str] = mapped_column(String(50), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


def prepare_schema(engine: Engine) -> int:
    """Create missing tables and bring the database to :data:`SCHEMA_VERSION`; returns the version it had. A
    database from before versions were recorded has layout 1."""
    Base.metadata.create_all(engine)
    with engine.begin() as connection:
        found = connection.execute(select(MetaRow.value).where(MetaRow.key == "schema_version")).scalar()
        version = int(found) if found is not None else 1
        if version > SCHEMA_VERSION:
            raise StoreError(f"the run store {engine.url} was written by a newer ChemLM Studio (schema {version}; this "
                             f"version reads {SCHEMA_VERSION} and older): upgrade chemlm_engine, or use another "
                             "CHEMLM_HOME")
        for step in range(version + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[step](connection)
        if found is None:
            connection.execute(insert(MetaRow).values(key="schema_version", value=str(SCHEMA_VERSION)))
        elif version < SCHEMA_VERSION:
            connection.execute(update(MetaRow).where(MetaRow.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    return version


def sqlite_pragmas(dbapi_connection, _record) -> None:
    """WAL journal (readers never wait for a writer), set on every new SQLite connection."""
    import sqlite3

    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError:  # a full disk or read-only medium: reading must still work
        pass
    finally:
        cursor.close()
