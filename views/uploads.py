"""Uploaded tables on the pages: their columns (SMILES, name / ID, measured value picked, never guessed for the SMILES)
and whether the page or a background job predicts them."""
from __future__ import annotations

import io
import os

import streamlit as st

from chemlm_engine.columns import SMILES_COLUMNS, name_column, plain_column_name, value_column
from chemlm_engine.errors import ChemLMError
from chemlm_engine.filekinds import is_compressed, is_excel, is_parquet, is_sd_file
from chemlm_engine.molecules import is_molecule
from chemlm_engine.tables import columns_of, count_rows
from views.common import plain

def _named(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name  # read as its kind: CSV, SMILES file (.smi), SD file, Excel workbook or Parquet
    return buffer


@st.cache_data(max_entries=8)
def _header(data: bytes, name: str) -> list[str]:
    return columns_of(_named(data, name))


def upload_columns(upload) -> list[str]:
    """An uploaded table's column names (read once per file: cached)."""
    return _header(upload.getvalue(), upload.name)


@st.cache_data(max_entries=8)
def _sheet_rows(data: bytes, name: str) -> int:
    return count_rows(_named(data, name))


# More rows than this run as a library job (chunked, constant memory, progress): the page holds the whole file and
# its results in memory and keeps the server busy until it is done. A bigger server may allow more.
PAGE_ROWS = int(os.environ.get("CHEMLM_PAGE_ROWS", 5_000))


def _rough_rows(upload) -> int:
    """An upload's rows, fast (every rerun of the page asks): its lines or SD records counted in its bytes at C speed,
    a workbook's rows read once."""
    data = upload.getvalue()
    if is_excel(upload):
        return _sheet_rows(data, upload.name)
    return data.count(b"\n$$$$") + data.startswith(b"$$$$") if is_sd_file(upload) else data.count(b"\n") - 1


def upload_too_big(upload) -> str | None:
    """Why an upload is too big for the page (with the command that predicts it), or ``None``. A Parquet or compressed
    file is a library: it is always predicted in the background."""
    if is_parquet(upload) or is_compressed(upload):
        why = f"A {'Parquet' if is_parquet(upload) else 'compressed'} file is predicted as a library."
    elif (rows := _rough_rows(upload)) > PAGE_ROWS:
        why = f"This file has about {rows:,} rows; the page predicts up to {PAGE_ROWS:,} while you wait."
    else:
        return None
    return (f"{why} Predict it in the background (chunk by chunk in constant memory, with progress and Cancel), or run "
            "`chemlm predict --input FILE --output predictions.parquet` (`--executor ray` spreads it over a cluster).")


def _index(options: list[str], candidates: tuple[str, ...], default: int | None = 0) -> int | None:
    plain = [plain_column_name(o) for o in options]
    return next((plain.index(c.lower()) for c in candidates if c.lower() in plain), default)


def column_pickers(upload, value: str | None = "measured") -> dict[str, str | None] | None:
    """Pickers for an uploaded table's SMILES, name and value columns, pre-set when the names are known;
    ``value="measured"`` is optional (Predict), ``"label"`` required (Train), ``None``: the SMILES column only.
    ``None`` (the reason shown) when the file cannot be read."""
    try:
        columns = upload_columns(upload)
    except ChemLMError as exc:
        st.error(plain(exc))
        return None
    optional = ["(none)", *columns]
    a, b, c = st.columns(3)
    picked = {"smiles_column": a.selectbox("SMILES column", columns, index=_index(columns, SMILES_COLUMNS, None),
                                           placeholder="Choose the column")}
    if value == "measured":
        others = [c for c in columns if c != picked["smiles_column"]]  # never the SMILES again
        name = b.selectbox("Name / ID column", optional, index=optional.index(name_column(others) or "(none)"))
        measured = c.selectbox("Measured value column (optional)", optional,
                               index=optional.index(value_column(others) or "(none)"))
        picked.update(name_column=None if name == "(none)" else name,
                      measured_column=None if measured == "(none)" else measured)
    elif value == "label":  # named as a measured value, else the first column that is neither SMILES nor an ID
        others = [c for c in columns if c != picked["smiles_column"]]
        label = value_column(others) or next((c for c in others if c != name_column(others)), None) or columns[0]
        picked["label_column"] = b.selectbox("Label column", columns, index=columns.index(label))
    smiles = picked["smiles_column"]
    if smiles is None:  # never a guess: a column of IDs read as SMILES predicts "B" as boron
        st.warning("Which column holds the SMILES? Choose it above.")
        return None
    if is_molecule(smiles):  # "CCO": a file without a header (its first row would be lost), or a header like "CN"
        st.warning(f"This column's name, {smiles}, reads as a molecule: if the file has no header line, its first "
                   "row is taken as the header and not predicted; add one (e.g. smiles,name) to keep it.")
    return picked
