"""What kind of file an input is, by its name (``library.smi.gz``: a SMILES file, gzip-compressed), and its bytes,
decompressed as they stream: the one place that knows the file kinds every reader and uploader accepts."""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
from pathlib import Path
from typing import IO

from .errors import DataError

__all__ = ["SMILES_FILE_SUFFIXES", "SD_FILE_SUFFIXES", "EXCEL_SUFFIXES", "COMPRESSIONS", "TABLE_TYPES", "DAMAGED",
           "file_name", "open_bytes", "kind_suffix", "saved_suffix", "is_smiles_file", "is_sd_file", "is_excel",
           "is_parquet", "is_compressed"]

SMILES_FILE_SUFFIXES = (".smi", ".smiles", ".ism", ".can")
SD_FILE_SUFFIXES = (".sdf", ".sd", ".mol")
EXCEL_SUFFIXES = (".xlsx", ".xlsm")
# Large libraries come compressed (ChEMBL's chemreps .txt.gz, Enamine's .cxsmiles.bz2): read as they stream.
COMPRESSIONS = {".gz": gzip, ".bz2": bz2, ".xz": lzma}
# The file extensions read as tables (an uploader offers them; Parquet apart: only the library path reads it).
TABLE_TYPES = ("csv", "tsv", "txt", "cxsmiles", *(suffix[1:] for suffix in (*SMILES_FILE_SUFFIXES, *SD_FILE_SUFFIXES,
                                                                           *EXCEL_SUFFIXES, *COMPRESSIONS)))
DAMAGED = (OSError, EOFError, lzma.LZMAError)  # what reading a damaged or truncated compressed file raises


def file_name(source: str | Path | IO) -> Path | None:
    name = source if isinstance(source, (str, Path)) else getattr(source, "name", None)  # an upload has its name
    return Path(name) if isinstance(name, (str, Path)) else None


def _compression(source: str | Path | IO):
    """The module that decompresses ``source`` (gzip, bz2, lzma: by its name's last suffix), or None."""
    name = file_name(source)
    return COMPRESSIONS.get(name.suffix.lower()) if name is not None else None


def open_bytes(source: str | Path | IO) -> IO[bytes]:
    """The file's bytes, decompressed on the fly when its name says it is compressed."""
    module = _compression(source)
    if isinstance(source, (str, Path)):
        try:
            return module.open(source, "rb") if module else open(source, "rb")
        except OSError as exc:
            raise DataError(f"cannot open {source}: {exc.strerror}") from None
    data = source.getvalue() if hasattr(source, "getvalue") else source.read()  # an upload read twice reads it whole
    data = data.encode("utf-8") if isinstance(data, str) else data
    return module.open(io.BytesIO(data), "rb") if module else io.BytesIO(data)


def kind_suffix(source: str | Path | IO) -> str:
    """The suffix that says what the file holds (``.smi`` for ``library.smi.gz``)."""
    name = file_name(source)
    if name is None:
        return ""
    return Path(name.stem).suffix.lower() if _compression(source) else name.suffix.lower()


def is_smiles_file(source: str | Path | IO) -> bool:
    return kind_suffix(source) in SMILES_FILE_SUFFIXES


def is_sd_file(source: str | Path | IO) -> bool:
    return kind_suffix(source) in SD_FILE_SUFFIXES


def is_excel(source: str | Path | IO) -> bool:
    return kind_suffix(source) in EXCEL_SUFFIXES


def is_parquet(source: str | Path | IO) -> bool:
    return kind_suffix(source) in (".parquet", ".pq") and not is_compressed(source)  # Parquet compresses inside


def is_compressed(source: str | Path | IO) -> bool:
    return _compression(source) is not None


def saved_suffix(name: str) -> str:
    """The suffix a saved copy of the file ``name`` keeps so that it is read as its kind (``.smi.gz``, ``.sdf``)."""
    suffixes = Path(name).suffixes[-2:]
    return "".join(suffixes if suffixes[-1:] and suffixes[-1].lower() in COMPRESSIONS else suffixes[-1:]) or ".csv"
