"""Predicting screening libraries: CSV or Parquet in, Parquet out, streamed so that memory stays flat
for any library size — in this process, or through Ray Data on a cluster (a model-holding actor per
worker). Both paths apply :func:`predict_frame` to each batch, so their outputs agree row for row."""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv  # noqa: F401 - pa.csv for Ray's CSV reader
import pyarrow.parquet as pq

from .data import SMILES_COLUMNS, _pick_column
from .errors import DataError
from .model import RegressionModel
from .predict import predict_smiles

__all__ = ["LibrarySummary", "predict_frame", "predict_library", "predict_library_ray", "smiles_column_of"]


@dataclass(frozen=True)
class LibrarySummary:
    rows: int
    invalid: int
    seconds: float
    output: str

    @property
    def rows_per_second(self) -> float:
        return self.rows / max(self.seconds, 1e-9)


def predict_frame(model: RegressionModel, frame: pd.DataFrame, smiles_column: str) -> pd.DataFrame:
    """The input rows with ``canonical_smiles``, ``prediction`` and ``error`` (the reason a SMILES is
    invalid; its prediction is then empty) appended."""
    result = predict_smiles(model, frame[smiles_column].astype(str).tolist())
    out = frame.reset_index(drop=True).copy()
    for column in ("canonical_smiles", "prediction", "error"):
        out[column] = result[column].to_numpy()
    return out


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """One schema for every batch (an all-valid batch would otherwise get a null-typed ``error``)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name, kind in (("canonical_smiles", pa.string()), ("prediction", pa.float64()), ("error", pa.string())):
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    return table


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".pq")


def smiles_column_of(path: Path, wanted: str | None = None) -> str:
    """The SMILES column of a library file (auto-detected unless named)."""
    columns = pq.read_schema(path).names if _is_parquet(path) else list(pd.read_csv(path, nrows=0).columns)
    return _pick_column(columns, wanted, SMILES_COLUMNS, "SMILES")


def _row_count(path: Path) -> int:
    if _is_parquet(path):
        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as handle:
        return max(sum(1 for _ in handle) - 1, 0)


def _chunks(path: Path, rows: int) -> Iterator[pd.DataFrame]:
    if _is_parquet(path):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=rows):
            yield batch.to_pandas()
    else:
        yield from pd.read_csv(path, chunksize=rows, dtype=str, keep_default_na=False)


def predict_library(model_dir: str | Path, source: str | Path, output: str | Path, smiles_column: str | None = None,
                    chunk_rows: int = 4096,
                    progress: Callable[[int, int], None] | None = None) -> LibrarySummary:
    """Predict every row of ``source`` chunk by chunk into one Parquet file, written as it goes;
    ``progress(rows_done, rows_total)`` after each chunk."""
    source, output = Path(source), Path(output)
    if not source.exists():
        raise DataError(f"no such library file: {source}")
    column = smiles_column_of(source, smiles_column)
    model = RegressionModel.load(model_dir)
    total, done, invalid, started = _row_count(source), 0, 0, time.time()
    output.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    try:
        for chunk in _chunks(source, chunk_rows):
            table = _to_arrow(predict_frame(model, chunk, column))
            writer = writer or pq.ParquetWriter(output, table.schema)
            writer.write_table(table)
            done += len(chunk)
            invalid += len(chunk) - table.column("error").null_count
            if progress is not None:
                progress(done, total)
    finally:
        if writer is not None:
            writer.close()
    return LibrarySummary(done, invalid, time.time() - started, str(output))


class _LibraryPredictor:
    """Ray Data actor: loads the model once, then predicts batch after batch."""

    def __init__(self, model_dir: str, smiles_column: str, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model, self.column = RegressionModel.load(model_dir), smiles_column

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        return _to_arrow(predict_frame(self.model, batch, self.column))


def predict_library_ray(model_dir: str | Path, source: str | Path, output_dir: str | Path,
                        smiles_column: str | None = None, workers: int = 1, batch_rows: int = 4096,
                        cpus_per_worker: int = 1, address: str | None = None) -> LibrarySummary:
    """Stream ``source`` through Ray Data: ``map_batches`` over ``workers`` model-holding actors (one GPU
    each where the cluster has GPUs), written incrementally as Parquet files under ``output_dir`` in
    input order. Ray Data shows its own progress bar. Size the cluster for the actors *and* Ray Data's
    read tasks (one CPU each): on a 2-CPU Ray, one worker."""
    import ray

    from .cluster import _gpus_per_task, connect

    source = Path(source).resolve()
    if not source.exists():
        raise DataError(f"no such library file: {source}")
    column = smiles_column_of(source, smiles_column)
    connect(address)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    started = time.time()
    if _is_parquet(source):
        dataset = ray.data.read_parquet(str(source))
    else:  # every column as text, as in the local path
        dataset = ray.data.read_csv(str(source), convert_options=pa.csv.ConvertOptions(
            column_types={name: pa.string() for name in pd.read_csv(source, nrows=0).columns},
            strings_can_be_null=False))
    predicted = dataset.map_batches(_LibraryPredictor, fn_constructor_args=(str(Path(model_dir).resolve()), column,
                                                                           cpus_per_worker),
                                    batch_size=batch_rows, batch_format="pandas",
                                    compute=ray.data.ActorPoolStrategy(size=workers),
                                    num_cpus=cpus_per_worker, num_gpus=_gpus_per_task())
    predicted.write_parquet(str(output_dir))
    errors = pq.read_table(str(output_dir), columns=["error"]).column("error")
    return LibrarySummary(len(errors), len(errors) - errors.null_count, time.time() - started, str(output_dir))
