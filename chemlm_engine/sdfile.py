"""SD files (``.sdf``, as vendors, ChEMBL and PubChem ship libraries; a single ``.mol`` too) read as table records:
per record its molecule as SMILES, its title as ``name``, then its data fields, in the first readable record's order.
Records are read without sanitising (linear in the molecule): chemistry (valences, standardisation) is checked later,
per molecule, by the guarded preparation every SMILES goes through, so an SD record and a SMILES line get the same
errors. A record RDKit cannot parse at all is a row with its problem."""
from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from rdkit import Chem, rdBase

__all__ = ["SD_FILE_SUFFIXES", "sd_records", "count_sd_records"]

SD_FILE_SUFFIXES = (".sdf", ".sd", ".mol")
UNREADABLE = "cannot read this SD record (not a valid molfile)"
_END = b"$$$$"


def _molecules(binary: IO[bytes]) -> Iterator[Chem.Mol | None]:
    supplier = Chem.ForwardSDMolSupplier(binary, sanitize=False, removeHs=False)
    while True:
        try:
            with rdBase.BlockLogs():
                mol = next(supplier)
        except StopIteration:
            return
        except SystemError as exc:  # reading the file failed (a damaged compressed file): raise that error itself
            raise (exc.__cause__ or exc) from None
        yield mol


def _smiles(mol: Chem.Mol) -> tuple[str, str | None]:
    """The record's molecule as written (explicit hydrogens folded in; stereo from wedges or 3D kept)."""
    try:
        with rdBase.BlockLogs():
            mol.UpdatePropertyCache(strict=False)
            return Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False), canonical=False), None
    except Exception as exc:  # noqa: BLE001 - RDKit raises several types for what it cannot write
        return "", f"cannot write this SD record's molecule as SMILES: {exc}"


def _fields(mol: Chem.Mol, data: list[str]) -> tuple[list[str], str | None]:
    smiles, problem = _smiles(mol)
    values = [smiles, mol.GetProp("_Name") if mol.HasProp("_Name") else ""]
    for name in data:
        try:
            values.append(mol.GetProp(name))
        except (KeyError, UnicodeDecodeError):  # a field this record lacks (or cannot decode) stays blank
            values.append("")
    return values, problem


def sd_records(binary: IO[bytes]) -> Iterator[tuple[list[str], str | None]]:
    """A header (``smiles``, ``name`` and the data fields of the first readable record), then per record its fields
    and what is wrong with it (``None``: nothing); fields that only later records have are not read."""
    data: list[str] | None = None
    unreadable_first = 0  # records before the first readable one: the header waits for it
    for mol in _molecules(binary):
        if data is None:
            if mol is None:
                unreadable_first += 1
                continue
            data = list(mol.GetPropNames())
            yield ["smiles", "name", *data], None
            yield from [([], UNREADABLE)] * unreadable_first
        yield ([], UNREADABLE) if mol is None else _fields(mol, data)
    if data is None and unreadable_first:
        yield ["smiles", "name"], None
        yield from [([], UNREADABLE)] * unreadable_first


def count_sd_records(binary: IO[bytes]) -> int:
    """How many records :func:`sd_records` will read: one per ``$$$$`` line, and a last one left unterminated."""
    records, open_record = 0, False
    for line in binary:
        if line.startswith(_END):
            records, open_record = records + 1, False
        elif line.strip():
            open_record = True
    return records + open_record
