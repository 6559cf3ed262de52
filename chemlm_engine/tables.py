"""User tables in and out. Every data row of an input file becomes exactly one row, in order: a blank row before
data is kept (its problem is "empty"; the blank lines that end a file are none), a row with more fields than the header
is reported, never read shifted. Encoding (UTF-8 with or without BOM, UTF-16 with BOM) and delimiter (comma,
semicolon, tab) are sniffed. A SMILES file (``.smi``, as ZINC, Enamine and RDKit write them) is a table too: per line a
SMILES (or CXSMILES) and an optional name after whitespace; its first line is a header only if it is not a molecule.
So are an SD file (a row per record, see :mod:`~chemlm_engine.sdfile`) and an Excel workbook (its first sheet, see
:mod:`~chemlm_engine.sheets`). Written CSV quotes every field holding a line break, so a bare ``\\r`` round-trips."""
from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import DataError, OutputError
from .filekinds import DAMAGED, file_name, is_excel, is_parquet, is_sd_file, is_smiles_file, open_bytes
from .molecules import is_molecule, split_smiles_line
from .sdfile import count_sd_records, sd_records
from .sheets import count_sheet_rows, sheet_records, write_sheet

__all__ = ["Table", "read_table", "iter_table", "count_rows", "columns_of", "write_csv", "defuse", "FORMULA_STARTS",
           "pick_column", "DELIMITERS", "write_xlsx", "EXCEL_ROWS", "numbers"]

DELIMITERS = ",;\t"
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_SNIFF_BYTES = 64 * 1024


@dataclass
class Table:
    """Text cells (``frame``, one row per data row) and, per row, what is wrong with it (``None``: nothing)."""

    frame: pd.DataFrame
    problems: list[str | None]
    first_row: int = 1  # 1-based number of the frame's first row among the file's data rows


def _encoding(head: bytes) -> str:
    for bom, name in _BOMS:
        if head.startswith(bom):
            return name
    return "utf-8"


def _delimiter(sample: str) -> str:
    """Of comma, semicolon and tab, the one that splits the rows into as many fields as the header, two or more
    (quotes respected), and among those the header into most; else commas. csv.Sniffer judged by quotes alone: a cell
    ``Säure, "x"`` made a semicolon file one column."""
    lines = sample.splitlines()
    lines = lines[:-1] if len(lines) > 1 else lines  # the sample may end inside a row

    def fit(delimiter: str) -> tuple[bool, float, int, bool]:
        try:
            widths = [len(row) for row in csv.reader(lines, delimiter=delimiter) if row]
        except csv.Error:  # e.g. a cell over csv's field size limit
            return False, 0.0, 0, False
        if not widths:
            return False, 0.0, 0, delimiter == ","
        agree = sum(width == widths[0] for width in widths) / len(widths)
        return widths[0] > 1, agree, widths[0], delimiter == ","
    return max(DELIMITERS, key=fit)


def _is_header(line: str) -> bool:
    """Whether a SMILES file's first line names its columns: its first word is neither a molecule nor looks like
    one (a broken first molecule such as ``C1CC`` is a row with its error, not a header)."""
    word = split_smiles_line(line)[0]
    return bool(word) and not is_molecule(word) and not set(word) & set("()[]=#@+\\/%0123456789")


def _smiles_records(text: IO[str]) -> Iterator[tuple[list[str], str | None]]:
    """A SMILES file as records: a header (the file's first line if :func:`_is_header`, else ``smiles name``),
    then per line the SMILES and the rest of the line, cut into the header's further columns."""
    lines = iter(text)
    first = next(lines, "")
    header = first.split()
    if not _is_header(first):
        header, lines = ["smiles"], itertools.chain([first], lines)
    header += ["name"] * (len(header) == 1)  # what follows a SMILES is its name unless the header says otherwise
    yield header, None
    for line in lines:
        smiles, rest = split_smiles_line(line)
        yield ([smiles, *rest.split(maxsplit=len(header) - 2)] if smiles else []), None


def _unique(names: Sequence[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i, name in enumerate(names):
        name = name.strip() or f"column_{i + 1}"
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


def _records(text: IO[str], delimiter: str) -> Iterator[tuple[list[str], str | None]]:
    """CSV records with, for each, what is wrong with it. A record whose quoting the csv module cannot
    close (an unbalanced quote would otherwise swallow every later line into one field) is reported as
    one row, split on the delimiter as plain text, and reading resumes on the line after it."""
    pending: list[str] = []  # the physical lines of the record being read

    def recorded(lines: Iterator[str]) -> Iterator[str]:
        for line in lines:
            pending.append(line)
            yield line

    lines: Iterator[str] = iter(text)
    while True:
        try:
            for fields in csv.reader(recorded(lines), delimiter=delimiter, strict=True):
                pending.clear()
                yield fields, None
            return
        except csv.Error as exc:
            if not pending:
                raise
            bad, rest = pending[0], pending[1:]
            pending.clear()
            yield (bad.rstrip("\r\n").split(delimiter),
                   f"cannot read this row as CSV: {exc} (an unbalanced quote?)")
            lines = itertools.chain(rest, lines)


def _text_records(binary: IO[bytes], smiles_file: bool) -> tuple[Iterator[tuple[list[str], str | None]], str]:
    """A CSV's or SMILES file's records (see :func:`_records`, :func:`_smiles_records`) and the text's encoding."""
    head = binary.read(_SNIFF_BYTES)
    binary.seek(0)
    encoding = _encoding(head)
    try:
        sample = head.decode(encoding, errors="strict" if len(head) < _SNIFF_BYTES else "ignore")
    except UnicodeDecodeError:
        raise DataError("the file is not UTF-8 or UTF-16 text (an Excel file? name it .xlsx; another encoding?): "
                        "save it as CSV UTF-8") from None
    if "\x00" in sample:
        raise DataError("the file holds binary data, not CSV text: save it as CSV UTF-8")
    text = io.TextIOWrapper(binary, encoding=encoding, newline="")
    return (_smiles_records(text) if smiles_file else _records(text, _delimiter(sample))), encoding


def _between_data(records: Iterator[tuple[list[str], str | None]]) -> Iterator[tuple[list[str], str | None]]:
    """The records with each blank one as ``([], "empty")``, where data follows it: the blank lines that end a file
    are no rows (as a workbook's trailing empty rows are none)."""
    blank = 0
    for fields, problem in records:
        if problem is None and not any(f.strip() for f in fields):
            blank += 1
            continue
        yield from [([], "empty")] * blank
        blank = 0
        yield fields, problem


def iter_table(source: str | Path | IO, chunk_rows: int = 4096) -> Iterator[Table]:
    """Read a CSV, SMILES, SD or Excel file (path or file object) in chunks of ``chunk_rows`` rows (module doc)."""
    binary = open_bytes(source)
    encoding = "utf-8"
    try:
        if is_sd_file(source):
            records = sd_records(binary)
        elif is_excel(source):
            records = sheet_records(binary)
        else:
            records, encoding = _text_records(binary, is_smiles_file(source))
        header, problem = next(records, ([], None))
        if problem:
            raise DataError(f"cannot read the header row: {problem}")
        if not header:
            raise DataError("the file is empty (no header row)")
        columns = _unique(header)
        rows: list[list[str]] = []
        problems: list[str | None] = []
        first = 1
        for fields, problem in _between_data(records):
            if problem is None and len(fields) > len(columns):
                problem = f"{len(fields)} fields but the header has {len(columns)} (a stray delimiter?)"
            rows.append((fields + [""] * len(columns))[:len(columns)])
            problems.append(problem)
            if len(rows) == chunk_rows:
                yield Table(pd.DataFrame(rows, columns=columns, dtype=str), problems, first)
                first += len(rows)
                rows, problems = [], []
        if rows or first == 1:
            yield Table(pd.DataFrame(rows, columns=columns, dtype=str), problems, first)
    except UnicodeDecodeError as exc:
        raise DataError(f"the file is not {encoding} text ({exc.reason} at byte {exc.start}): "
                        "save it as CSV UTF-8") from None
    except csv.Error as exc:
        raise DataError(f"cannot read CSV: {exc}") from None
    except DAMAGED as exc:
        raise DataError(f"cannot read {file_name(source) or 'the file'}: {exc}") from None
    finally:
        binary.close()


def count_rows(path: str | Path | IO) -> int:
    """How many data rows :func:`iter_table` will read from ``path`` (or a named file object), counted fast."""
    try:
        with open_bytes(path) as handle:
            if is_sd_file(path):
                return count_sd_records(handle)
            if is_excel(path):
                return count_sheet_rows(handle)
            first = handle.readline()
            lines = trailing = 0  # the blank lines that end the file are no rows (_between_data)
            for line in handle:
                lines, trailing = lines + 1, trailing + 1 if not line.strip(b" \t\r\n,;\x00") else 0
            lines += bool(first) - trailing
    except DAMAGED as exc:  # named as iter_table names it (an upload by its file name, not its object)
        raise DataError(f"cannot read {file_name(path) or 'the file'}: {exc}") from None
    if not is_smiles_file(path):
        return max(lines - 1, 0)  # the header row
    return lines - _is_header(first.decode("utf-8-sig", errors="replace"))


def columns_of(source: str | Path | IO) -> list[str]:
    """The column names of a CSV, SMILES, SD or Parquet file (a path, or a file object with the file's name)."""
    if not is_parquet(source):
        return list(next(iter_table(source, chunk_rows=1)).frame.columns)  # the header row only
    try:
        return pq.read_schema(source).names
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read {file_name(source) or 'the Parquet file'}: {exc}") from None


def read_table(source: str | Path | IO) -> Table:
    """The whole CSV as one :class:`Table`."""
    return next(iter_table(source, chunk_rows=1 << 62))


# A spreadsheet runs a cell starting with one of these as a formula (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_COMMA_NUMBER = re.compile(r"[+-]?\d*,\d+")  # -0,3: a number where the decimal separator is a comma


def defuse(value: object) -> object:
    """``value`` with a leading ``'`` when a spreadsheet would run it as a formula (``=HYPERLINK(…)``); a number
    (``-1.5``, or ``-1,5`` in a decimal-comma locale) stays as it is; the original is the cell without the ``'``."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _COMMA_NUMBER.fullmatch(value):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _defused(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its text cells and column names defused (:func:`defuse`)."""
    out = frame.rename(columns=defuse)
    for i in range(frame.shape[1]):
        if not pd.api.types.is_numeric_dtype(frame.dtypes.iloc[i]):
            out.isetitem(i, frame.iloc[:, i].map(defuse))
    return out


def write_csv(frame: pd.DataFrame, target: str | Path | IO | None = None) -> str | None:
    """CSV with CRLF line ends (RFC 4180), so the writer quotes any field holding ``\\r`` or ``\\n``; text
    cells and column names that a spreadsheet would run as formulas are defused (:func:`defuse`)."""
    return _defused(frame).to_csv(target, index=False, lineterminator="\r\n")


EXCEL_ROWS = 1_048_575  # a sheet's rows below its header


def write_xlsx(frame: pd.DataFrame, target: str | Path | IO | None = None) -> bytes | None:
    """An Excel workbook of one sheet (no decimal-comma or leading-zero surprises: :func:`~.sheets.write_sheet`); its
    bytes when no ``target`` is given."""
    if len(frame) > EXCEL_ROWS:
        raise OutputError(f"{len(frame):,} rows do not fit a sheet (at most {EXCEL_ROWS:,}): write .csv or .parquet")
    out = io.BytesIO()
    write_sheet(frame, out if target is None else target)
    return out.getvalue() if target is None else None


# A one-column header that is not the column asked for: often a title above the table (sheets.py skips one only where
# a later row names a SMILES column as the known names do).
_TITLE_HINT = (" (a title above the table? The header is the first filled row, or in a workbook the first of its first "
               "ten that names a column smiles: delete the rows above the header, or name the column SMILES)")
_COLUMN_OPTIONS = {"SMILES": "train's --data and predict's --input can also be told it: --smiles-column",
                   "label": "train's --data can also be told it: --label-column"}


def pick_column(columns: Sequence[str], wanted: str | None, candidates: Sequence[str], what: str) -> str:
    """``wanted`` if given (it must exist), else the first of ``candidates`` present (case-insensitive)."""
    if wanted is not None:
        if wanted not in columns:
            raise DataError(f"{what} column {wanted!r} not found; columns are {list(columns)}"
                            + (_TITLE_HINT if len(columns) == 1 else ""))
        return wanted
    lower = {c.lower(): c for c in columns}
    for name in candidates:
        if name in columns:
            return name
        if name.lower() in lower:
            return lower[name.lower()]
    if any(is_molecule(split_smiles_line(name)[0]) for name in columns):
        raise DataError(f"no {what} column found: the first line ({', '.join(columns)}) is a molecule, not a header; "
                        f"add a header line (e.g. smiles,name) or give a SMILES file the extension .smi")
    hint = _COLUMN_OPTIONS.get(what)  # where a command can be told the column; pools and corpora cannot
    raise DataError(f"no {what} column found (looked for {', '.join(candidates)}); columns are {list(columns)}: "
                    f"rename yours to {candidates[0]}" + (f" ({hint})" if hint else ""))


def numbers(cells: pd.Series) -> pd.Series:
    """A column of measured values as floats (blank or text cells: NaN). Values written with decimal commas
    (``-0,52``, as a spreadsheet in most of Europe saves them) are read as such, unless they could be thousands
    separators instead: when a number in the column has a decimal point, or every comma has three digits after it."""
    values = pd.to_numeric(cells, errors="coerce")
    text = cells.astype(str).str.strip()
    commas = text[values.isna() & text.str.fullmatch(_COMMA_NUMBER)]
    if (commas.empty or text[values.notna()].str.contains(".", regex=False).any()
            or (commas.str.split(",").str[-1].str.len() == 3).all()):
        return values.astype(float)
    return values.fillna(pd.to_numeric(commas.str.replace(",", ".", regex=False))).astype(float)
