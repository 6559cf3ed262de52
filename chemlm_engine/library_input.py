"""Reading a screening library in chunks: its SMILES column, its rows, and its own columns typed as a table holds
them. A text file (CSV, SMILES, SD, Excel) is read as text; a column whose every filled cell is a plain number (no
leading zero: IDs such as 00007 stay text) is a number column in the results, as in an Excel output. The types
are decided over the whole file, so every chunk has the same ones. A Parquet file keeps its own types."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from .columns import SMILES_COLUMNS
from .filekinds import is_parquet
from .sheets import PLAIN_NUMBER
from .tables import columns_of, count_rows, iter_table, pick_column

__all__ = ["smiles_column_of", "library_rows", "number_columns", "chunks"]

_SCAN_ROWS = 65_536  # rows read at a time while the types are decided


def smiles_column_of(path: Path, wanted: str | None = None) -> str:
    """The SMILES column of a library file (auto-detected unless named)."""
    return pick_column(columns_of(path), wanted, SMILES_COLUMNS, "SMILES")


def library_rows(path: Path) -> int:
    """The rows of a library file."""
    return pq.ParquetFile(path).metadata.num_rows if is_parquet(path) else count_rows(path)


def number_columns(path: Path, smiles_column: str) -> dict[str, str]:
    """The columns of a text library that hold numbers only: name -> ``"Int64"`` (whole numbers) or ``"float64"``.
    A column with no filled cell stays text (nothing says what it holds), and so does the SMILES column."""
    if is_parquet(path):
        return {}
    candidates: set[str] | None = None  # the columns all of whose cells so far are plain numbers or blank
    filled: set[str] = set()
    fraction: set[str] = set()
    for table in iter_table(path, _SCAN_ROWS):
        if candidates is None:
            candidates = set(table.frame.columns) - {smiles_column}
        for name in list(candidates):
            cells = table.frame[name][table.frame[name] != ""]
            if not cells.str.fullmatch(PLAIN_NUMBER).all():
                candidates.discard(name)
                continue
            if len(cells):
                filled.add(name)
            if cells.str.contains(".", regex=False).any():
                fraction.add(name)
    return {name: "float64" if name in fraction else "Int64" for name in (candidates or set()) & filled}


def chunks(path: Path, rows: int, smiles_column: str) -> Iterator[tuple[pd.DataFrame, list[str | None] | None]]:
    """Batches of input rows, each with its 1-based ``row`` first as every prediction output has it (a column of the
    file's own named so becomes ``row (input)``) and the number columns as numbers (:func:`number_columns`); with
    their reading problems (text files: blank or ragged rows; Parquet: none)."""
    done = 0

    def numbered(frame: pd.DataFrame) -> pd.DataFrame:
        nonlocal done
        frame = frame.rename(columns={"row": "row (input)"})
        frame.insert(0, "row", range(done + 1, done + 1 + len(frame)))
        done += len(frame)
        return frame

    if is_parquet(path):
        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=rows):
            yield numbered(batch.to_pandas()), None
        if not parquet.metadata.num_rows:  # as a header-only CSV: one empty chunk, so an empty output with columns
            yield numbered(parquet.schema_arrow.empty_table().to_pandas()), None
        return
    numbers = number_columns(path, smiles_column)
    for table in iter_table(path, rows):
        frame = table.frame
        for name, kind in numbers.items():
            frame[name] = pd.to_numeric(frame[name].mask(frame[name] == "")).astype(kind)
        yield numbered(frame), table.problems
