"""Molecule data: the bundled Lipophilicity set, user CSVs with row-level reports, splits, length bins."""
from __future__ import annotations

import contextlib
import hashlib
import importlib.resources
import io
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from rdkit import rdBase
from rdkit.Chem.Scaffolds import MurckoScaffold

from .columns import LABEL_COLUMNS, SMILES_COLUMNS, name_column, value_column
from .errors import DataError, OutputError
from .guard import prepare_all
from .molecules import Standardization
from .tables import numbers, pick_column, read_table
from .outputs import written_aside

__all__ = ["RowIssue", "DataReport", "MoleculeData", "Split", "load_lipophilicity", "lipophilicity_csv", "read_csv",
           "molecules_from_frame", "label_outliers", "random_split", "scaffold_split", "make_split", "length_bins",
           "data_hash", "MAX_ABS_LABEL"]

@dataclass(frozen=True)
class RowIssue:
    """One problem with one input row (1-based ``row`` as a user counts data rows)."""

    row: int
    input: str
    reason: str


@dataclass
class DataReport:
    """What happened to every input row that did not become a training molecule as given."""

    n_rows: int = 0
    invalid: list[RowIssue] = field(default_factory=list)
    unlabeled: list[RowIssue] = field(default_factory=list)
    duplicates: list[RowIssue] = field(default_factory=list)
    standardized: list[RowIssue] = field(default_factory=list)
    outliers: list[RowIssue] = field(default_factory=list)
    to_measure: int = 0  # rows kept without a label: candidates (where labels are not required)

    def to_frame(self) -> pd.DataFrame:
        """All issues as one table with a ``kind`` column."""
        rows = [{"kind": kind, "row": i.row, "input": i.input, "reason": i.reason}
                for kind, issues in (("invalid", self.invalid), ("unlabeled", self.unlabeled),
                                     ("duplicate", self.duplicates), ("label outlier", self.outliers),
                                     ("standardised", self.standardized)) for i in issues]
        return pd.DataFrame(rows, columns=["kind", "row", "input", "reason"])

    def summary(self) -> str:
        text = (f"{self.n_rows} rows: {len(self.invalid)} invalid SMILES, {len(self.unlabeled)} unlabeled, "
                f"{len(self.duplicates)} duplicate{'s' * (len(self.duplicates) != 1)} merged, "
                f"{len(self.standardized)} standardised"
                + (f"; {self.to_measure} without a label, kept as candidates to measure" if self.to_measure else ""))
        if self.outliers:
            text += f"; {len(self.outliers)} label outlier(s): " + "; ".join(
                f"row {i.row} {i.reason}" for i in self.outliers[:3]) + (" ..." if len(self.outliers) > 3 else "")
        return text


@dataclass
class MoleculeData:
    """Canonical SMILES with labels (one entry per unique molecule)."""

    smiles: list[str]
    labels: np.ndarray
    names: list[str] | None = None

    def __len__(self) -> int:
        return len(self.smiles)

    def subset(self, idx: Sequence[int] | np.ndarray) -> MoleculeData:
        idx = [int(i) for i in idx]
        return MoleculeData([self.smiles[i] for i in idx], self.labels[idx],
                            None if self.names is None else [self.names[i] for i in idx])

    def concat(self, other: MoleculeData) -> MoleculeData:
        names = None if self.names is None or other.names is None else self.names + other.names
        return MoleculeData(self.smiles + other.smiles, np.concatenate([self.labels, other.labels]), names)


@dataclass(frozen=True)
class Split:
    """Index arrays into a :class:`MoleculeData`."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


# A label further than this many robust standard deviations (1.4826 MAD) from the median is reported.
OUTLIER_SIGMAS = 6.0


# Models keep the label mean and spread in float32 (largest value 3.4e38): 1e300 would overflow there.
MAX_ABS_LABEL = 1e30


def label_outliers(labels: np.ndarray) -> np.ndarray:
    """Indices of labels far outside the rest (median ± ``OUTLIER_SIGMAS`` robust standard deviations)."""
    labels = np.asarray(labels, dtype=np.float64)
    if len(labels) < 5:
        return np.zeros(0, dtype=int)
    median = np.median(labels)
    spread = 1.4826 * np.median(np.abs(labels - median))
    if spread == 0:
        spread = np.std(labels)
    if spread == 0:
        return np.zeros(0, dtype=int)
    return np.flatnonzero(np.abs(labels - median) > OUTLIER_SIGMAS * spread)


def molecules_from_frame(frame: pd.DataFrame, smiles_col: str | None = None, label_col: str | None = None,
                         name_col: str | None = None, standardization: Standardization = Standardization(),
                         problems: list[str | None] | None = None,
                         labels_required: bool = True) -> tuple[MoleculeData, DataReport]:
    """Validate, standardise, canonicalise and de-duplicate a table of SMILES and labels.

    Invalid SMILES (and rows with a ``problems`` entry, such as blank or ragged rows), missing / non-numeric
    labels and duplicate molecules are reported row by row; duplicates are merged into their first
    occurrence with the mean label. Label outliers are kept and reported. Without ``labels_required`` (candidates
    to be measured) the label column may be absent and a missing label is kept as NaN.
    """
    smiles_col = pick_column(list(frame.columns), smiles_col, SMILES_COLUMNS, "SMILES")
    try:
        others = [c for c in frame.columns if c != smiles_col]
        label_col = pick_column(list(frame.columns), label_col or value_column(others), LABEL_COLUMNS, "label")
    except DataError:
        if labels_required or label_col is not None:
            raise
        label_col, frame = "__no_label__", frame.assign(__no_label__=np.nan)
    report = DataReport(n_rows=len(frame))
    labels = numbers(frame[label_col])
    first_row: dict[str, int] = {}
    grouped: dict[str, list[float]] = {}
    names: dict[str, str] = {}
    texts = ["" if pd.isna(raw) else str(raw) for raw in frame[smiles_col]]
    for pos, (text, prepared, raw_label, label) in enumerate(zip(texts, prepare_all(texts, standardization),
                                                                 frame[label_col], labels)):
        row = pos + 1
        problem = problems[pos] if problems is not None else None
        if problem is not None or prepared.smiles is None:
            report.invalid.append(RowIssue(row, text, problem or prepared.error or "invalid"))
            continue
        canonical = prepared.smiles
        if prepared.changes:
            report.standardized.append(RowIssue(row, text, "; ".join(prepared.changes)))
        missing = pd.isna(raw_label) or str(raw_label).strip() == ""
        if missing and not labels_required:
            label = np.nan
            report.to_measure += 1
        elif pd.isna(label) or not np.isfinite(label) or abs(label) > MAX_ABS_LABEL:
            why = "missing label" if missing else \
                f"label {raw_label!r} is not a number" if not np.isfinite(label) else \
                f"label {raw_label!r} is out of range (|label| > {MAX_ABS_LABEL:g})"
            report.unlabeled.append(RowIssue(row, text, why))
            continue
        if canonical in grouped:
            report.duplicates.append(RowIssue(row, text, f"same molecule as row {first_row[canonical]}; "
                                                         "labels averaged"))
        else:
            first_row[canonical] = row
            grouped[canonical] = []
            names[canonical] = str(frame[name_col].iloc[pos]) if name_col else str(row)
        grouped[canonical].append(float(label))
    if not grouped:
        raise DataError(f"no usable molecules: {report.summary()}")
    smiles = list(grouped)
    values = np.array([np.mean(grouped[s]) for s in smiles], dtype=np.float64)
    for i in np.flatnonzero(np.isfinite(values))[label_outliers(values[np.isfinite(values)])]:
        row = first_row[smiles[i]]
        report.outliers.append(RowIssue(row, smiles[i], f"label {values[i]:.4g} is far from the others "
                                        f"(median {np.median(values):.3g})"))
    return MoleculeData(smiles, values, [names[s] for s in smiles]), report


def read_csv(source: str | Path | IO, smiles_col: str | None = None, label_col: str | None = None,
             standardization: Standardization = Standardization(),
             labels_required: bool = True) -> tuple[MoleculeData, DataReport]:
    """Read a user CSV (path or file object); see :func:`molecules_from_frame`. A molecule's name is its file's
    name / ID column (:func:`name_column`) where there is one, else its row number."""
    table = read_table(source)
    return molecules_from_frame(table.frame, smiles_col, label_col, name_column(list(table.frame.columns)),
                                standardization=standardization, problems=table.problems,
                                labels_required=labels_required)


def cache_dir() -> Path:
    """Where derived data is cached: ``$CHEMLM_CACHE``, else ``$XDG_CACHE_HOME/chemlm`` (``~/.cache/chemlm``)."""
    if os.environ.get("CHEMLM_CACHE"):
        return Path(os.environ["CHEMLM_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "chemlm"


# Standardising Lipophilicity's 4,200 molecules takes 3 s, paid by every CLI command, app server and worker process
# that trains: the result is kept on disk, keyed by everything it depends on (the file, the settings, RDKit and the
# code that reads molecules), and written only when no row failed (a limit hit on a busy machine is not kept).
_READERS = ("data.py", "molecules.py", "guard.py")


def _lipophilicity_cache(text: str, standardization: Standardization) -> Path:
    key = hashlib.sha256(text.encode())
    key.update(json.dumps([standardization.to_dict(), rdBase.rdkitVersion]).encode())
    for name in _READERS:
        key.update((Path(__file__).parent / name).read_bytes())
    return cache_dir() / f"lipophilicity-{key.hexdigest()[:20]}.json"


def lipophilicity_csv() -> str:
    """The bundled Lipophilicity CSV's text, as the ``chemloader`` package ships it (not standardised)."""
    return (importlib.resources.files("chemloader") / "datasets" / "_local" / "Lipophilicity.csv").read_text()


@lru_cache(maxsize=2)
def _lipophilicity(standardization: Standardization) -> tuple[MoleculeData, DataReport]:
    text = lipophilicity_csv()
    cached = _lipophilicity_cache(text, standardization)
    try:
        raw = json.loads(cached.read_text())
        kept = raw["report"]
        report = DataReport(kept.pop("n_rows"), to_measure=kept.pop("to_measure", 0))
        for kind, issues in kept.items():
            setattr(report, kind, [RowIssue(**issue) for issue in issues])
        return MoleculeData(raw["smiles"], np.asarray(raw["labels"], dtype=np.float64), raw["names"]), report
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not cached yet, or unreadable: read it afresh
    data, report = molecules_from_frame(pd.read_csv(io.StringIO(text)), "smiles", "exp", name_col="CMPD_CHEMBLID",
                                        standardization=standardization)
    if not report.invalid:
        payload = {"smiles": data.smiles, "labels": data.labels.tolist(), "names": data.names, "report": asdict(report)}
        with contextlib.suppress(OSError, OutputError):  # a read-only home: the next process reads it afresh too
            cached.parent.mkdir(parents=True, exist_ok=True)
            with written_aside(cached) as aside:  # whole or not at all, whichever process writes last
                aside.write_text(json.dumps(payload))
    return data, report


def load_lipophilicity(standardization: Standardization = Standardization()) -> tuple[MoleculeData, DataReport]:
    """MoleculeNet Lipophilicity (logD at pH 7.4) as shipped in the ``chemloader`` package."""
    data, report = _lipophilicity(standardization)
    return data.subset(range(len(data))), report


def _sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int]:
    if any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise DataError(f"split fractions must be non-negative and sum to 1, got {fractions}")
    n_train = int(round(fractions[0] * n))
    n_val = int(round(fractions[1] * n))
    return n_train, n_val


def random_split(n: int, fractions: tuple[float, float, float] = (0.8, 0.1, 0.1), seed: int = 0) -> Split:
    """Shuffle ``range(n)`` with ``seed`` and cut it into train / validation / test."""
    n_train, n_val = _sizes(n, fractions)
    order = np.random.default_rng(seed).permutation(n)
    return Split(np.sort(order[:n_train]), np.sort(order[n_train:n_train + n_val]),
                 np.sort(order[n_train + n_val:]))


def murcko_scaffold(smiles: str) -> str:
    """Bemis–Murcko scaffold SMILES ('' for acyclic molecules)."""
    return MurckoScaffold.MurckoScaffoldSmiles(smiles=smiles, includeChirality=False)


def scaffold_split(smiles: Sequence[str], fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                   seed: int = 0) -> Split:
    """Bemis–Murcko scaffold split: no scaffold is shared between parts.

    Balanced like chemprop's: scaffold sets too big for validation or test go to training first,
    the rest in a seeded random order, so the split varies with the seed.
    """
    n_train, n_val = _sizes(len(smiles), fractions)
    groups: dict[str, list[int]] = {}
    for i, smi in enumerate(smiles):
        groups.setdefault(murcko_scaffold(smi), []).append(i)
    sets = list(groups.values())
    n_test = len(smiles) - n_train - n_val
    big = [s for s in sets if len(s) > n_val / 2 or len(s) > n_test / 2]
    small = [s for s in sets if not (len(s) > n_val / 2 or len(s) > n_test / 2)]
    rng = np.random.default_rng(seed)
    rng.shuffle(big)
    rng.shuffle(small)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for group in big + small:
        if len(train) + len(group) <= n_train:
            train.extend(group)
        elif len(val) + len(group) <= n_val:
            val.extend(group)
        else:
            test.extend(group)
    return Split(np.sort(np.array(train, dtype=int)), np.sort(np.array(val, dtype=int)),
                 np.sort(np.array(test, dtype=int)))


def make_split(data: MoleculeData, kind: str = "random", fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
               seed: int = 0) -> Split:
    """Dispatch to :func:`random_split` or :func:`scaffold_split`."""
    if kind == "random":
        return random_split(len(data), fractions, seed)
    if kind == "scaffold":
        return scaffold_split(data.smiles, fractions, seed)
    raise DataError(f"unknown split {kind!r}; use 'random' or 'scaffold'")


def length_bins(smiles: Sequence[str], n_bins: int = 20) -> pd.DataFrame:
    """At most ``n_bins`` equal-width SMILES-length bins of whole characters (a bin holds the lengths ``bin_start``
    to ``bin_end``, both included): frequency and cumulative frequency."""
    lengths = np.array([len(s) for s in smiles])
    width = max(1, -(-(int(lengths.max()) - int(lengths.min()) + 1) // n_bins))
    edges = int(lengths.min()) + width * np.arange(n_bins + 1)
    counts, _ = np.histogram(lengths, bins=edges)
    used = int(np.flatnonzero(counts).max()) + 1  # no empty bins after the longest molecule
    counts, edges = counts[:used], edges[:used + 1]
    return pd.DataFrame({"bin_start": edges[:-1], "bin_end": edges[1:] - 1, "frequency": counts,
                         "cumulative_frequency": np.cumsum(counts)})


def data_hash(data: MoleculeData) -> str:
    """SHA-256 over the canonical SMILES and labels, to tie a run to its exact data."""
    digest = hashlib.sha256()
    for smi, label in zip(data.smiles, data.labels):
        digest.update(f"{smi}\t{label:.6g}\n".encode())
    return digest.hexdigest()[:16]
