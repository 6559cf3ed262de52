"""Predicting screening libraries: CSV, SMILES file or Parquet in, Parquet out, streamed so that memory stays flat
for any library size — in this process, or through Ray Data on a cluster (a model-holding actor per
worker). Both paths apply :func:`predict_frame` to each batch, so their outputs agree row for row: the prediction,
its interval and, as on the Predict page, the nearest training molecule and whether it is in the domain."""
from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .compare import launched_trusting
from .errors import ConfigError, DataError, OutputError
from .pipeline import JobContext, SplitData
from .predict.batch import predict_smiles
from .predict.domain import DOMAIN_COLUMNS, TrainingReference, add_applicability_domain
from .predict.ensemble import load_predictor
from .spec import PredictOptions
from .store import ACTIVE_STATUSES, RunRecord, RunStore
from .sdfile import write_sd
from .library_input import chunks, library_rows, smiles_column_of
from .outputs import written_aside

log = logging.getLogger(__name__)

__all__ = ["LibrarySummary", "predict_frame", "predict_library", "predict_library_ray", "run_library_job", "parts_of",
           "parts_rows", "job_parts", "kept_rows", "active_twin", "discard_kept", "annotated_library", "progress_text",
           "CHUNK_ROWS"]


@dataclass(frozen=True)
class LibrarySummary:
    rows: int
    invalid: int
    seconds: float
    output: str
    resumed_rows: int = 0  # written by an interrupted run before, not predicted again
    discarded_rows: int = 0  # written by an interrupted run for another input, model or version: predicted afresh

    @property
    def rows_per_second(self) -> float:
        return (self.rows - self.resumed_rows) / max(self.seconds, 1e-9)


OUTPUT_COLUMNS = ("canonical_smiles", "prediction", "error", "warnings", "standardization", *DOMAIN_COLUMNS)
_NOT_TEXT = {"prediction": pa.float64(), "similarity": pa.float64(), "nearest_training_label": pa.float64(),
             "in_domain": pa.bool_(), "in_training": pa.bool_()}
# What a part of an interrupted run holds: parts written by code with other columns are not mixed in.
# 2: with the applicability domain; 3: the input's row first, number columns as numbers; 4: with in_training
_PARTS_FORMAT = 4
_PROBLEM_COLUMN = "__row_problem__"  # row problems found reading a CSV (blank, ragged) travel to Ray workers in it
CHUNK_ROWS = 4096  # rows predicted and written at a time: the steps of progress, resume and memory


def _return_freed_memory() -> None:
    """Hand the heap's free pages back to the operating system (glibc; elsewhere nothing to do). Tensors and RDKit
    molecules of every size come and go with each chunk; glibc keeps what they freed, scattered, so a stream's
    resident memory crept up chunk after chunk (30,000 rows: 1.17 -> 1.71 GB; with this after each chunk, and
    oneDNN's kernel cache capped in ``inference``, 0.83 -> 0.93 GB at the same speed; bench/library_memory.py)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _malloc_trim():
    """glibc's ``malloc_trim``, or None where the C library has none (macOS, musl) or the process has no symbols to
    look it up in (Windows: ``CDLL(None)`` raises)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


_MALLOC_TRIM = _malloc_trim()


def predict_frame(model, frame: pd.DataFrame, smiles_column: str, problems: list[str | None] | None = None,
                  reference: TrainingReference | None = None,
                  progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
    """The input rows with ``canonical_smiles``, ``prediction``, ``error`` (why a row has no prediction),
    ``warnings``, ``standardization`` and the applicability domain against ``reference`` (the model's training
    molecules; empty without) appended; see :func:`~chemlm_engine.predict.batch.predict_smiles` (and its
    ``progress``)."""
    out = frame.reset_index(drop=True)
    if _PROBLEM_COLUMN in out.columns:
        problems = [p or None for p in out.pop(_PROBLEM_COLUMN)]
    result = add_applicability_domain(predict_smiles(model, out[smiles_column].tolist(), problems=problems,
                                                     progress=progress), reference)
    added = result.columns.drop(["row", "name", "input"])  # an ensemble adds uncertainty and interval
    out = out.rename(columns=lambda c: f"{c} (input)" if c in added else c)  # the user's own columns stay
    for column in added:
        out[column] = result[column].to_numpy()
    return out


def annotated_library(output: str | Path, source: str | Path, target: Path | None = None) -> bytes | None:
    """The SD file ``source`` with the results of its streamed prediction ``output`` (the file's own columns first, as
    :func:`predict_frame` writes them, then the results) added to each record: its bytes, or, given a ``target``,
    written there batch by batch (constant memory for any size; the file appears only once whole)."""
    results = pq.ParquetFile(output)
    names = results.schema_arrow.names
    columns = names[names.index("canonical_smiles"):]  # what the prediction added (a file's own copy is renamed)
    rows = (row for batch in results.iter_batches(columns=columns)
            for row in zip(*(batch.column(name).to_pylist() for name in columns)))
    if target is None:
        return write_sd(source, columns, rows)
    with written_aside(target) as aside:
        return write_sd(source, columns, rows, aside)


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """One schema for every batch (an all-valid batch would otherwise get null-typed text columns)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for name in OUTPUT_COLUMNS:
        kind = _NOT_TEXT.get(name, pa.string())
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(kind))
    return table


def _stage(source: Path, target: Path, column: str, chunk_rows: int = 65536) -> None:
    """Stream the input into one Parquet file for Ray Data, read by the same chunk reader as the local path (its
    ``row`` restores the input order), with the row-problem column of a text file."""
    writer: pq.ParquetWriter | None = None
    try:
        for chunk, problems in chunks(source, chunk_rows, column):
            frame = chunk.reset_index(drop=True)
            if problems is not None:
                frame[_PROBLEM_COLUMN] = [p or "" for p in problems]
            arrow = pa.Table.from_pandas(frame, preserve_index=False)
            writer = writer or pq.ParquetWriter(target, arrow.schema)
            writer.write_table(arrow.cast(writer.schema))
    finally:
        if writer is not None:
            writer.close()


def _parts_folder(folder: Path, manifest: dict) -> tuple[Path, int, int]:
    """``folder``, where an interrupted prediction left its finished chunks, and how many there are; a folder
    written for another input, model or chunk size is started afresh (the third number: the rows it held)."""
    discarded = 0
    if folder.exists():
        try:
            same = json.loads((folder / "manifest.json").read_text()) == manifest
        except (OSError, ValueError):
            same = False
        if same:
            return folder, len(list(folder.glob("part-*.parquet"))), 0
        try:
            discarded = parts_rows(folder)
        except (OSError, pa.ArrowException):  # damaged: its rows are not counted, the folder goes all the same
            pass
        shutil.rmtree(folder)
    try:
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(manifest))
    except OSError as exc:
        raise OutputError(f"cannot write {folder}: {exc.strerror or exc}") from None
    return folder, 0, discarded


def predict_library(model_dir: str | Path, source: str | Path, output: str | Path, smiles_column: str | None = None,
                    chunk_rows: int = CHUNK_ROWS, progress: Callable[[int, int], None] | None = None,
                    trust_remote_code: bool = False, parts: Path | None = None) -> LibrarySummary:
    """Predict every row of ``source`` chunk by chunk into one Parquet file; ``progress(rows_done, rows_total)``
    at the start (the rows an interrupted run wrote) and as each chunk goes on. Each finished chunk is kept (in
    ``parts``, by default ``OUTPUT.parts/``) until the file is complete, so a run interrupted at any point resumes
    where it stopped: rows already written are not predicted again."""
    source, output = Path(source), Path(output)
    if not source.exists():
        raise DataError(f"no such library file: {source}")
    column = smiles_column_of(source, smiles_column)
    # the input's bytes, not its modification time: the app saves an upload again (touching it) on every click
    with open(source, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()
    manifest = {"source": str(source.resolve()), "size": source.stat().st_size, "sha256": digest,
                "model": str(Path(model_dir).resolve()), "column": column, "chunk_rows": chunk_rows,
                "format": _PARTS_FORMAT}
    output.parent.mkdir(parents=True, exist_ok=True)
    parts, finished, discarded = _parts_folder(parts or parts_of(output), manifest)
    if discarded:  # said now, not hours later with the summary: the user may have meant to resume them
        log.warning("the %s rows an interrupted run had written were for another input, model or version of ChemLM "
                    "Studio: discarded, predicted afresh", f"{discarded:,}")
    model = load_predictor(model_dir, trust_remote_code=trust_remote_code)
    reference = TrainingReference.load(model_dir)
    report: Callable[[int, int], None] = progress or (lambda _done, _total: None)
    total, done, started, resumed = library_rows(source), 0, time.time(), parts_rows(parts)
    report(resumed, total)  # what an interrupted run wrote is done from the start
    for i, (chunk, problems) in enumerate(chunks(source, chunk_rows, column)):
        before, done = done, done + len(chunk)
        if i < finished:  # written by an interrupted run
            continue
        part = parts / f"part-{i:06d}.parquet"
        def within(m: int, of: int, b: int = before, n: int = len(chunk)) -> None:  # its molecules, in rows
            report(b + n * m // max(of, 1), total)
        predicted = predict_frame(model, chunk, column, problems, reference, within)
        pq.write_table(_to_arrow(predicted), part.with_suffix(".tmp"))
        part.with_suffix(".tmp").replace(part)  # a part exists only once it is whole
        _return_freed_memory()
        report(done, total)
    invalid = _join_parts(sorted(parts.glob("part-*.parquet")), output)
    shutil.rmtree(parts)
    return LibrarySummary(done, invalid, time.time() - started, str(output), resumed, discarded)


def _join_parts(parts: list[Path], output: Path) -> int:
    """The parts, in order, as one Parquet file (streamed part by part); returns the rows with an error."""
    writer: pq.ParquetWriter | None = None
    invalid = 0
    aside = output.with_name(output.name + ".tmp")
    try:
        for part in parts:
            table = pq.read_table(part)
            writer = writer or pq.ParquetWriter(aside, table.schema)
            writer.write_table(table.cast(writer.schema))
            invalid += len(table) - table.column("error").null_count
    finally:
        if writer is not None:
            writer.close()
    if writer is not None:  # an empty library writes no file, as before
        aside.replace(output)
    return invalid


def progress_text(done: int, total: int, chunk_rows: int) -> str:
    """A library job's progress, and what a Cancel now would keep: its whole chunks (the rows of the chunk it is in
    are predicted, then dropped)."""
    kept = done if done >= total else done - done % chunk_rows
    return f"predicted {done:,} of {total:,} rows" + (f" ({kept:,} kept if cancelled now)" if kept < done else "")


def run_library_job(ctx: JobContext, data: SplitData, opts: PredictOptions) -> dict[str, float]:
    """A library prediction as a background job (``data`` is empty: the options name the input), written to the
    run's ``predictions.parquet``; cancelled within a chunk (its finished chunks kept for a rerun)."""
    def report(done: int, total: int) -> None:
        ctx.progress(done / max(total, 1), progress_text(done, total, opts.chunk_rows))
        ctx.check_cancel()

    output = ctx.artifacts / "predictions.parquet"
    if kept := kept_rows(ctx.store, ctx.spec.options):  # a stopped run's rows: not this run's work, nor in its ETA
        ctx.store.set_info(ctx.run_id, progress_from=kept / max(library_rows(Path(opts.source)), 1))
    trusted = launched_trusting(ctx.store.runs(status="finished"), opts.model)  # as the Predict page loads it
    summary = predict_library(opts.model, opts.source, output, opts.smiles_column, opts.chunk_rows, report, trusted,
                              parts=job_parts(ctx.store, ctx.spec.options))
    ctx.store.set_info(ctx.run_id, output=str(output), model=opts.model)
    return {"rows": summary.rows, "invalid": summary.invalid, "molecules_per_s": summary.rows_per_second,
            "resumed_rows": summary.resumed_rows}


def job_parts(store: RunStore, options: dict) -> Path:
    """Where a library job's finished chunks wait until its file is whole: in the store, keyed by the job's options
    (file, model, column, chunk size), not in its run folder (discarded when a run is cancelled), so that a new job
    for the same file and model continues where a cancelled or interrupted one stopped."""
    key = hashlib.sha256(json.dumps(options, sort_keys=True).encode()).hexdigest()[:16]
    return store.home / "library-parts" / key


def active_twin(runs: list[RunRecord], options: dict) -> RunRecord | None:
    """A queued or running library prediction with these options (the same file, model and column), if any."""
    return next((r for r in runs if r.method == "predict" and r.status in ACTIVE_STATUSES
                 and r.spec.get("options") == options), None)


def discard_kept(store: RunStore, run: RunRecord) -> None:
    """Forget what a stopped library job kept for a later one (its user deletes it), unless another unfinished job
    with its options (queued, running, or stopped too: its rows may be among those kept) is still listed."""
    options = run.spec.get("options", {})
    others = [r for r in store.runs() if r.id != run.id and r.method == "predict" and r.status != "finished"
              and r.spec.get("options") == options]
    if run.method == "predict" and run.status != "finished" and not others:
        shutil.rmtree(job_parts(store, options), ignore_errors=True)


def kept_rows(store: RunStore, options: dict) -> int:
    """Rows that a stopped library job with these options predicted and kept (a new job does not redo them)."""
    return parts_rows(job_parts(store, options))


def parts_of(output: Path) -> Path:
    """Where a library run writing ``output`` keeps its finished chunks until the file is whole."""
    return output.with_name(output.name + ".parts")


def parts_rows(parts: Path) -> int:
    """Rows in the whole parts of a parts folder (0 if there is none): what an interrupted run kept."""
    return sum(pq.ParquetFile(part).metadata.num_rows for part in parts.glob("part-*.parquet")) if parts.is_dir() \
        else 0


class _LibraryPredictor:
    """Ray Data actor: loads the model once, then predicts batch after batch."""

    def __init__(self, model_dir: str, smiles_column: str, threads: int, trust_remote_code: bool) -> None:
        import torch

        torch.set_num_threads(threads)
        self.model = load_predictor(model_dir, trust_remote_code=trust_remote_code)
        self.reference = TrainingReference.load(model_dir)
        self.column = smiles_column

    def __call__(self, batch: pd.DataFrame) -> pa.Table:
        table = _to_arrow(predict_frame(self.model, batch, self.column, reference=self.reference))
        _return_freed_memory()
        return table


def predict_library_ray(model_dir: str | Path, source: str | Path, output_dir: str | Path,
                        smiles_column: str | None = None, workers: int = 1, batch_rows: int = 4096,
                        cpus_per_worker: int = 1, address: str | None = None,
                        trust_remote_code: bool = False) -> LibrarySummary:
    """Stream ``source`` through Ray Data: ``map_batches`` over ``workers`` model-holding actors (one GPU
    each where the cluster has GPUs), written incrementally as Parquet files under ``output_dir``; every row
    carries ``input_row`` (readers may list the files in any order: sort by it). Ray Data shows its own progress
    bar. Size the cluster for the actors *and* Ray Data's read tasks (one CPU each): on a 2-CPU Ray, one worker."""
    from .cluster import _gpus_per_task, actors_fit, connect, empty_folder

    source = Path(source).resolve()
    if not source.exists():
        raise DataError(f"no such library file: {source}")
    if workers < 1:
        raise ConfigError(f"--workers must be 1 or more, not {workers}")
    column = smiles_column_of(source, smiles_column)
    empty_folder(Path(output_dir))
    connect(address)  # before anything imports Ray: a local Ray then listens on loopback only
    import ray

    if address is None:  # a cluster may be sized, or grow, as its owner decides
        actors_fit(workers, cpus_per_worker)
    ray.data.DataContext.get_current().execution_options.preserve_order = True
    started = time.time()
    staged = Path(output_dir).with_name(f".{Path(output_dir).name}.{uuid.uuid4().hex[:8]}.input.parquet")
    try:  # beside the output (a cluster's shared folder), under a name no file of the user's has
        _stage(source, staged, column)
        predictor = (str(Path(model_dir).resolve()), column, cpus_per_worker, trust_remote_code)
        ray.data.read_parquet(str(staged)).map_batches(
            _LibraryPredictor, fn_constructor_args=predictor, batch_size=batch_rows, batch_format="pandas",
            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=cpus_per_worker,
            num_gpus=_gpus_per_task()).write_parquet(str(output_dir))
    finally:  # interrupted or failed too: it is a whole copy of the library
        staged.unlink(missing_ok=True)
    errors = pq.read_table(str(output_dir), columns=["error"]).column("error")
    return LibrarySummary(len(errors), len(errors) - errors.null_count, time.time() - started, str(output_dir))
