"""Reading a finished library prediction (one Parquet file, one row per input row) without loading it whole: the
distribution of its predictions, and the rows in a logD window a chemist screens for."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

__all__ = ["WINDOW_BATCH", "predictions_of", "library_window"]

WINDOW_BATCH = 65_536  # rows read at a time: memory stays flat for any library


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
                   limit: int | None = None) -> tuple[pd.DataFrame, int]:
    """The rows predicted between ``low`` and ``high`` (inclusive; inside the applicability domain only if asked),
    in input order with their 1-based ``row`` first: the first ``limit`` of them (None: all), and how many there are."""
    found: list[pd.DataFrame] = []
    count = start = collected = 0
    for batch in pq.ParquetFile(output).iter_batches(batch_size=WINDOW_BATCH):
        prediction = batch.column("prediction")
        keep = pc.and_(pc.greater_equal(prediction, low), pc.less_equal(prediction, high))
        if inside_only and "in_domain" in batch.schema.names:
            keep = pc.and_(keep, pc.equal(batch.column("in_domain"), True))
        keep = pc.fill_null(keep, False)
        rows = pc.indices_nonzero(keep).to_numpy()
        wanted = len(rows) if limit is None else min(len(rows), limit - collected)
        if wanted > 0:
            chosen = batch.take(pa.array(rows[:wanted])).to_pandas()
            chosen.insert(0, "row", rows[:wanted] + start + 1)
            found.append(chosen)
            collected += wanted
        count += len(rows)
        start += batch.num_rows
    columns = ["row", *pq.read_schema(output).names]
    return (pd.concat(found, ignore_index=True) if found else pd.DataFrame(columns=columns)), count
