"""The run store's tables (SQLAlchemy ORM): runs, per-epoch metrics, named result tables, per-molecule
results. Only :mod:`~chemlm_engine.store` uses them; JSON columns hold dicts."""
from __future__ import annotations

from sqlalchemy import Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "RunRow", "EpochRow", "TableRow", "MoleculeRow"]


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
