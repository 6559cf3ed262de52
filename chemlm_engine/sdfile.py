"""SD files (``.sdf``, as vendors, ChEMBL and PubChem ship libraries; a single ``.mol`` too) read as table records:
per record its molecule as SMILES, its title as ``name`` (``title`` beside a field called name), then the data
fields, in order of first appearance.
Records are read without sanitising (linear in the molecule): chemistry (valences, standardisation) is checked later,
per molecule, by the guarded preparation every SMILES goes through, so an SD record and a SMILES line get the same
errors. A record RDKit cannot parse at all is a row with its problem. Predictions go back into a copy of the file as
data fields of its records."""
from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO

import pandas as pd
from rdkit import Chem, rdBase

from .filekinds import open_bytes

__all__ = ["sd_records", "count_sd_records", "annotated_sd", "write_sd", "frame_rows"]

UNREADABLE = "cannot read this SD record (not a valid molfile)"
_END = b"$$$$"
_FIELD = re.compile(rb">[^<]*<(.+)>")  # a data field's header line: its name between the first < and the last >


def _records(binary: IO[bytes]) -> Iterator[list[bytes]]:
    """Each record's lines, its ``$$$$`` line last (when it has one); a record of blank lines only is none (RDKit
    skips it too). One splitter for reading, counting and annotating, so their records are the same."""
    record: list[bytes] = []
    for line in binary:
        record.append(line)
        if line.startswith(_END):
            if any(text.strip() for text in record[:-1]):
                yield record
            record = []
    if any(text.strip() for text in record):
        yield record


def _molecule(record: list[bytes]) -> Chem.Mol | None:
    with rdBase.BlockLogs():
        supplier = Chem.ForwardSDMolSupplier(io.BytesIO(b"".join(record)), sanitize=False, removeHs=False)
        return next(supplier, None)


def _smiles(mol: Chem.Mol) -> tuple[str, str | None]:
    """The record's molecule as written (explicit hydrogens folded in; stereo from wedges or 3D kept)."""
    try:
        with rdBase.BlockLogs():
            mol.UpdatePropertyCache(strict=False)
            return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False), canonical=False), None
    except Exception as exc:  # noqa: BLE001 - RDKit raises several types for what it cannot write
        return "", f"cannot write this SD record's molecule as SMILES: {exc}"


def _fields(mol: Chem.Mol, data: list[str]) -> tuple[list[str], str | None]:
    smiles, problem = _smiles(mol) if mol.GetNumAtoms() else ("", "this SD record's molfile has no atoms")
    values = [smiles, mol.GetProp("_Name") if mol.HasProp("_Name") else ""]
    for name in data:
        try:
            values.append(mol.GetProp(name))
        except (KeyError, UnicodeDecodeError):  # a field this record lacks (or cannot decode) stays blank
            values.append("")
    return values, problem


def _text_fields(record: list[bytes]) -> dict[str, str]:
    """A record's data fields read from its text, without parsing the molecule: the field header lines (``>  <name>``
    after ``M  END`` or a value's blank line) with RDKit's rule for the name (from the first ``<`` to the last ``>``),
    each followed by its value's lines."""
    fields: dict[str, list[str]] = {}
    in_data = expecting = False
    current: list[str] | None = None
    for line in record:
        if not in_data:
            in_data = expecting = line.startswith(b"M  END")
        elif expecting and (field := _FIELD.match(line)):
            current = fields.setdefault(field.group(1).decode("utf-8", "replace"), [])
            expecting = False
        elif not line.strip():  # a value ends with a blank line; the next field's header may follow
            current, expecting = None, True
        elif current is not None and not line.startswith(_END):
            current.append(line.decode("utf-8", "replace").rstrip("\r\n"))
    return {name: "\n".join(lines) for name, lines in fields.items()}


def _field_names(binary: IO[bytes]) -> tuple[list[str], int]:
    """The data fields of all records, in order of first appearance, and how many records there are."""
    names: dict[str, None] = {}
    count = 0
    for count, record in enumerate(_records(binary), 1):
        names.update(dict.fromkeys(_text_fields(record)))
    return list(names), count


def _unreadable(record: list[bytes], data: list[str]) -> list[str]:
    """A record RDKit cannot parse: no molecule, but its title and data fields as written."""
    fields = _text_fields(record)
    return ["", record[0].decode("utf-8", "replace").rstrip("\r\n"), *(fields.get(name, "") for name in data)]


def sd_records(binary: IO[bytes]) -> Iterator[tuple[list[str], str | None]]:
    """A header (``smiles``, the title's column and every data field any record has, in order of first appearance),
    then per record its fields (blank where it lacks one) and what is wrong with it (``None``: nothing). The title's
    column is ``name``, or ``title`` where a data field is called name: the file's own field keeps its name. The file
    is read twice: once for the field names, so that a field only later records have (a merged library) is read too."""
    data, records = _field_names(binary)
    if not records:
        return
    binary.seek(0)
    yield ["smiles", next(t for t in ("name", "title", "record title") if t not in data), *data], None
    for record in _records(binary):
        mol = _molecule(record)
        yield (_unreadable(record, data), UNREADABLE) if mol is None else _fields(mol, data)


def count_sd_records(binary: IO[bytes]) -> int:
    """How many records :func:`sd_records` will read."""
    return sum(1 for _ in _records(binary))


def _tag(name: str, value: object) -> bytes | None:
    """One data field (``>  <name>``, its value, a blank line), or None for a missing value."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    text = f"{value:.6g}" if isinstance(value, float) else str(value)
    return f">  <{name}>\n{' '.join(text.splitlines())}\n\n".encode()


def _without_fields(body: list[bytes], prefix: bytes) -> list[bytes]:
    """A record's lines less its data fields named ``prefix…`` (each to the blank line that ends it)."""
    kept, dropping = [], False
    for line in body:
        if field := _FIELD.match(line):
            dropping = field[1].startswith(prefix)
        elif dropping and not line.strip():
            dropping = False
            continue
        if not dropping:
            kept.append(line)
    return kept


def annotated_sd(binary: IO[bytes], columns: Sequence[str], rows: Iterable[tuple],
                 prefix: str = "chemlm_") -> Iterator[bytes]:
    """The SD file's records byte for byte (coordinates, data fields, unreadable ones too), each followed by its row
    of ``rows`` (values in the order of ``columns``) as data fields named ``prefix + column`` (missing values left
    out), in order: one row per record, as :func:`sd_records` read them. Fields named ``prefix…`` that the file
    already has (an earlier prediction's) are replaced, not repeated beside the new ones."""
    rows = iter(rows)
    names = [prefix + column for column in columns]
    for record in _records(binary):
        row = next(rows, None)
        if row is None:
            raise ValueError("the SD file has more records than there are rows to add")
        body, end = (record[:-1], record[-1]) if record[-1].startswith(_END) else (record, _END + b"\n")
        body = _without_fields(body, prefix.encode())
        yield from body
        if not body[-1].endswith(b"\n"):  # a last record that ends without a line break
            yield b"\n"
        yield from (tag for tag in map(_tag, names, row) if tag is not None)
        yield end
    if next(rows, None) is not None:
        raise ValueError("the SD file has fewer records than there are rows to add")


def write_sd(source: str | Path | IO, columns: Sequence[str], rows: Iterable[tuple],
             target: Path | None = None) -> bytes | None:
    """A copy of the SD file ``source`` with a row of ``rows`` added to each record as data fields (see
    :func:`annotated_sd`): its bytes, or, given a ``target``, written there record by record (any size)."""
    with open_bytes(source) as original:
        records = annotated_sd(original, columns, rows)
        if target is None:
            return b"".join(records)
        with open(target, "wb") as out:
            out.writelines(records)
    return None


def frame_rows(frame: pd.DataFrame) -> tuple[list[str], Iterator[tuple]]:
    """A table's columns and rows as :func:`write_sd` takes them."""
    return list(frame.columns), frame.itertuples(index=False, name=None)
