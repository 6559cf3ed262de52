"""Excel workbooks (``.xlsx``: how chemists keep compound lists) read as table records: the first sheet, its first
filled row the header (below a title or notes: the first that names a SMILES column), every later row a record with
its cells as text (the values Excel last computed, not formulas). Read as they stream (openpyxl's read-only mode), so
a long sheet takes constant memory. Blank rows inside the sheet are rows (the reader calls them empty); blank rows
after the last filled one are formatting, not rows. Results are written back as a workbook whose text cells are text,
never formulas, and whose plain numbers are numbers."""
from __future__ import annotations

import contextlib
import itertools
import math
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pandas as pd

from .columns import SMILES_COLUMNS, plain_column_name
from .errors import DataError
from .filekinds import file_name

__all__ = ["sheet_records", "count_sheet_rows", "write_sheet", "PLAIN_NUMBER"]

_SMILES_NAMES = {plain_column_name(name) for name in SMILES_COLUMNS}
_HEADER_SEARCH = 10  # filled rows looked through for a header that names a SMILES column
PLAIN_NUMBER = re.compile(r"-?(0|[1-9]\d{0,14})(\.\d+)?")  # no leading zero (an ID), no more digits than a float


def _text(cell) -> str:
    """A cell's value as text; a whole number under a zero-padding format ("00000", the way IDs are kept) with the
    zeros Excel shows, so that the ID joins back (7 as 00007)."""
    value = cell.value
    if value is None:
        return ""
    padding = getattr(cell, "number_format", "") or ""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and set(padding) == {"0"} \
            and float(value).is_integer() and value >= 0:
        return str(int(value)).zfill(len(padding))
    return str(value)


def _sheet_rows(binary: IO[bytes]) -> Iterator[list[str]]:
    """Every row of the first sheet as text, less trailing empty cells (a blank row is ``[]``)."""
    from openpyxl import load_workbook  # here: importing openpyxl costs every process that never reads a workbook
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        book = load_workbook(binary, read_only=True, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise DataError(f"cannot read {file_name(binary) or 'the Excel workbook'} ({exc}): save it again as .xlsx, "
                        "or as CSV UTF-8") from None
    try:
        sheet = book.worksheets[0]
        for row in sheet.iter_rows(min_col=sheet.min_column):  # the sheet's recorded extent may hold empty columns
            cells = [_text(cell) for cell in row]
            while cells and not cells[-1].strip():  # the sheet's width is its widest row's, not this row's fields
                cells.pop()
            yield cells
    finally:
        book.close()


def _names_smiles(cells: list[str]) -> bool:
    return any(plain_column_name(cell) in _SMILES_NAMES for cell in cells)


def _rows(binary: IO[bytes]) -> Iterator[list[str]]:
    """The table's rows: its header first — the first filled row, or the first of the next few that names a SMILES
    column (a title or notes above the table are not its header) — then every row to the last filled one, from the
    header's first filled cell on (a table that starts in column B starts there)."""
    rows = _sheet_rows(binary)
    ahead: list[list[str]] = []  # the rows up to the header's search limit, held back while it is looked for
    for cells in rows:
        ahead.append(cells)
        if _names_smiles(cells) or sum(map(bool, ahead)) == _HEADER_SEARCH:
            break
    filled = [i for i, cells in enumerate(ahead) if cells]
    if not filled:
        return
    start = next((i for i in filled if _names_smiles(ahead[i])), filled[0])
    left = next(i for i, text in enumerate(ahead[start]) if text.strip())  # the table's first column
    blank = 0  # blank rows since the last filled one: rows only between filled ones
    for cells in itertools.chain(ahead[start:], rows):
        cells = cells[left:]
        if not cells:
            blank += 1
            continue
        yield from [[]] * blank
        blank = 0
        yield cells


def sheet_records(binary: IO[bytes]) -> Iterator[tuple[list[str], str | None]]:
    """A header (the first row), then per row its cells; none has a problem of its own (a blank row is ``[]``)."""
    for cells in _rows(binary):
        yield cells, None


def count_sheet_rows(binary: IO[bytes]) -> int:
    """How many data rows :func:`sheet_records` will read (the header not counted)."""
    return max(sum(1 for _ in _rows(binary)) - 1, 0)


def write_sheet(frame: pd.DataFrame, target: str | Path | IO) -> None:
    """``frame`` as a workbook of one sheet, streamed (openpyxl's write-only mode). A text cell that reads as a plain
    number (the file's own columns are read as text) is stored as that number, so that it sums and sorts; IDs with
    leading zeros (00007) and all other text stay text, with no apostrophe shown, and a text starting with ``=`` is
    stored as text, never run as a formula."""
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell
    from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE

    book = Workbook(write_only=True)
    sheet = book.create_sheet()

    def cell(value: object) -> object:
        if isinstance(value, str):
            storable = ILLEGAL_CHARACTERS_RE.sub("", value)  # control characters a workbook cannot hold
            if PLAIN_NUMBER.fullmatch(storable):
                return float(storable) if "." in storable else int(storable)
            text = WriteOnlyCell(sheet, storable)
            text.data_type = "s"  # openpyxl would store "=HYPERLINK(…)" as a formula
            return text
        if hasattr(value, "item"):  # numpy scalars
            value = value.item()
        return None if isinstance(value, float) and math.isnan(value) or value is pd.NA else value

    try:
        sheet.append([cell(str(name)) for name in frame.columns])
        for row in frame.itertuples(index=False, name=None):
            sheet.append([cell(value) for value in row])
        book.save(target)
    except OSError:  # a full disk: openpyxl's half-written sheet would print another traceback when collected
        for stream in (getattr(sheet, "_rows", None), getattr(getattr(sheet, "_writer", None), "xf", None)):
            with contextlib.suppress(Exception):
                if stream is not None:
                    stream.close()
        raise
