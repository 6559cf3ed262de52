"""Reading a finished library prediction (one Parquet file, one row per input row) without loading it whole: the
distribution of its predictions, the rows in a logD window a chemist screens for, and the few columns that its
metrics against a measured column of the input read."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["WINDOW_BATCH", "ORDERS", "predictions_of", "library_window", "input_columns", "measured_frame"]

_WHOLE_NUMBERS = {pa.int64(): pd.Int64Dtype()}  # a blank cell in a column of whole numbers: still whole numbers
WINDOW_BATCH = 65_536  # rows read at a time: memory stays flat for any library
# How the first rows of a window are chosen: a column and its direction (None: input order)
ORDERS = {"input order": None, "highest logD first": ("prediction", "descending"),
          "lowest logD first": ("prediction", "ascending"), "most certain first": ("uncertainty", "ascending")}


def predictions_of(output: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Every predicted row's logD and its place against the applicability domain ("inside", "outside", or
    "unknown" where the model saved no training set); rows without a prediction are left out."""
    table = pq.read_table(output, columns=["prediction"])
    predicted = table.column("prediction").is_valid()
    values = table.column("prediction").filter(predicted).to_numpy(zero_copy_only=False).astype(np.float64)
    if "in_domain" not in pq.read_schema(output).names:  # written before the applicability domain was
        return values, np.full(len(values), "unknown")
    inside = pq.read_table(output, columns=["in_domain"]).column("in_domain").filter(predicted).cast(pa.bool_())
    known = inside.is_valid().to_numpy(zero_copy_only=False)
    flags = pc.fill_null(inside, False).to_numpy(zero_copy_only=False).astype(bool)
    return values, np.where(known, np.where(flags, "inside", "outside"), "unknown")


def library_window(output: str | Path, low: float, high: float, inside_only: bool = False,
                   limit: int | None = None, order: str = "input order") -> tuple[pd.DataFrame, int]:
    """The rows predicted between ``low`` and ``high`` (inclusive; inside the applicability domain only if asked),
    with their 1-based ``row`` first: the first ``limit`` of them (None: all) in one of the :data:`ORDERS` (input
    order where the file lacks its column: one model has no members' spread), and how many there are."""
    names = pq.read_schema(output).names
    numbered = "row" in names  # written with the input's row first; an older file: counted here
    sort = ORDERS[order]
    if sort is not None and sort[0] not in names:
        sort = None
    found = pd.DataFrame(columns=names if numbered else ["row", *names])
    count = start = 0
    for batch in pq.ParquetFile(output).iter_batches(batch_size=WINDOW_BATCH):
        rows = _in_window(batch, low, high, inside_only)
        count += len(rows)
        if sort is not None and limit is not None and len(rows) > limit:  # only this batch's best can be among them
            keys = batch.column(sort[0]).take(pa.array(rows))
            rows = rows[pc.array_sort_indices(keys, order=sort[1]).to_numpy()[:limit]]
        wanted = rows if sort is not None or limit is None else rows[:max(0, limit - len(found))]
        if len(wanted):
            chosen = batch.take(pa.array(wanted)).to_pandas(types_mapper=_WHOLE_NUMBERS.get)
            if not numbered:
                chosen.insert(0, "row", wanted + start + 1)
            found = chosen if found.empty else pd.concat([found, chosen], ignore_index=True)
            if sort is not None:
                found = found.sort_values([sort[0], "row"], ascending=[sort[1] == "ascending", True],
                                          ignore_index=True)
                found = found if limit is None else found.head(limit)
        start += batch.num_rows
    return found, count


def _in_window(batch: pa.RecordBatch, low: float, high: float, inside_only: bool) -> np.ndarray:
    """Positions of the batch's rows predicted in ``[low, high]`` (and inside the domain, if asked and known)."""
    prediction = batch.column("prediction")
    keep = pc.and_(pc.greater_equal(prediction, low), pc.less_equal(prediction, high))
    if inside_only and "in_domain" in batch.schema.names:
        keep = pc.and_(keep, pc.equal(batch.column("in_domain"), True))
    return pc.indices_nonzero(pc.fill_null(keep, False)).to_numpy()


def input_columns(output: str | Path) -> list[str]:
    """The input file's own columns as the prediction kept them (between ``row`` and its results; one named as a
    result column is kept as "NAME (input)"). ``output``: a Parquet file or Ray's folder of parts."""
    names = pq.ParquetDataset(output).schema.names
    end = names.index("canonical_smiles") if "canonical_smiles" in names else len(names)
    return [n for n in names[:end] if n != "row"]


def measured_frame(output: str | Path, measured: str) -> pd.DataFrame:
    """What :func:`~chemlm_engine.predict.batch.measured_metrics` reads of a library prediction against its input's
    column ``measured`` (named as in the input, or as :func:`input_columns` lists it): the predictions, intervals,
    ``in_training`` and ``measured`` (numbers; ``attrs["measured_note"]`` says which cells were not), with the
    1-based ``row``. Reads those few columns only: any size of library."""
    from .predict.batch import read_measured  # torch and RDKit come with it: only when asked

    dataset = pq.ParquetDataset(output)
    names = dataset.schema.names
    kept = f"{measured} (input)" if f"{measured} (input)" in names else measured
    wanted = [c for c in ("row", "prediction", "interval_low", "interval_high", "in_training") if c in names]
    frame = dataset.read(columns=[kept, *wanted]).to_pandas()
    frame["measured"], note = read_measured(frame.pop(kept))
    frame.attrs.update(measured_column=measured.removesuffix(" (input)"), **({"measured_note": note} if note else {}))
    return frame
