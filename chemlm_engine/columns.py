"""Which column of a user's table holds what: the SMILES, the measured value (a label to train on, or to compare
predictions with) and the molecule's name or ID, found by their names as chemists write them."""
from __future__ import annotations

import re
from collections.abc import Sequence

__all__ = ["SMILES_COLUMNS", "LABEL_COLUMNS", "NAME_COLUMNS", "VALUE_COLUMNS", "plain_column_name", "name_column",
           "value_column"]

SMILES_COLUMNS = ("smiles", "SMILES", "Smiles", "canonical_smiles")
LABEL_COLUMNS = ("exp", "label", "Label", "y", "target", "logD", "logd")
VALUE_COLUMNS = ("exp", "label", "y", "target", "logd", "measured", "measured_logd", "logd7.4", "logd_7.4")  # plain
NAME_COLUMNS = ("name", "id", "compound_id", "compound", "cmpd_id", "molecule_id", "molecule", "chembl_id", "zinc_id",
                "idnumber", "title", "cmpd_chemblid", "chemblid")  # CMPD_CHEMBLID: MoleculeNet's own files


def plain_column_name(column: str) -> str:
    """A column name as the known names are written: "Compound ID", "Measured logD" read compound_id, measured_logd."""
    return "_".join(column.lower().replace("-", " ").split())


# Words that name a measured value inside a longer column name; "clogP" (computed) and "Target Name" (ChEMBL's
# protein) are not among them.
_VALUE_WORDS = {"logd", "logp", "measured", "exp", "experimental"}


def value_column(columns: Sequence[str]) -> str | None:
    """The column of measured values (a label to train on): a known name first (exp, label, logD, measured_logd …),
    else one named with a word such as logD or exp ("logD7.4 (exp)", "Measured LogD pH 7.4")."""
    plain = [plain_column_name(c) for c in columns]
    known = next((plain.index(name) for name in VALUE_COLUMNS if name in plain), None)
    if known is not None:
        return columns[known]
    return next((c for c, p in zip(columns, plain) if _VALUE_WORDS & set(re.findall(r"[a-z]+", p))), None)


def name_column(columns: Sequence[str]) -> str | None:
    """The column of names or IDs: a known name first, else one named like an ID (vendor_id, Catalog ID)."""
    plain = [plain_column_name(c) for c in columns]
    known = next((plain.index(name) for name in NAME_COLUMNS if name in plain), None)
    return columns[known] if known is not None else next((c for c, p in zip(columns, plain) if p.endswith("_id")), None)
