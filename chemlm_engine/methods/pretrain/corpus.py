"""The pretraining corpus: MOSES from the installed `molsets` package, canonicalised, de-duplicated and
described (MolBERT-style descriptor targets with their scaling) once, in parallel; a seeded resumable stream."""
from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors
from sklearn.preprocessing import StandardScaler

from ...descriptors import DESCRIPTOR_NAMES, describe_mol
from ...errors import DataError
from ...ionisation import count_ionisable


# "basic": eight fast MolBERT-style descriptors (~0.3 ms per molecule), ChemLM-mini's targets. No ionisable-group
# counts: MOSES holds no carboxylic acids and basic amines in only 0.25 % of molecules, so they would teach nothing.
DESCRIPTORS: dict[str, Callable[[Chem.Mol], float]] = {
    "MolLogP": Crippen.MolLogP,  # type: ignore[attr-defined]  # RDKit sets these at import
    "TPSA": rdMolDescriptors.CalcTPSA,
    "MolWt": Descriptors.MolWt,  # type: ignore[attr-defined]
    "NumHDonors": Lipinski.NumHDonors,  # type: ignore[attr-defined]
    "NumHAcceptors": Lipinski.NumHAcceptors,  # type: ignore[attr-defined]
    "NumRotatableBonds": rdMolDescriptors.CalcNumRotatableBonds,
    "NumAromaticRings": rdMolDescriptors.CalcNumAromaticRings,
    "FractionCSP3": rdMolDescriptors.CalcFractionCSP3,
}
# "rdkit" adds what decides logD at pH 7.4 on a drug-like corpus that has charged forms and acids / bases (#24).
IONISATION_TARGETS: dict[str, Callable[[Chem.Mol], float]] = {
    "acid_groups": lambda mol: count_ionisable(mol)[0],
    "base_groups": lambda mol: count_ionisable(mol)[1],
    "formal_charge": Chem.GetFormalCharge,  # of the spelled state: the corpus holds pH 7.4 forms
    "charged_atoms": lambda mol: sum(a.GetFormalCharge() != 0 for a in mol.GetAtoms()),
}
TARGET_SETS = ("basic", "rdkit")
# Standardised targets are winsorised here: heavy tails (BertzCT, Chi indices of large molecules) would dominate.
_WINSOR = 5.0


def target_names(targets: str = "basic") -> list[str]:
    """Names of a target set: ``basic`` (the eight :data:`DESCRIPTORS`) or ``rdkit`` (every RDKit 2D descriptor
    the regression head reads, ~210, plus :data:`IONISATION_TARGETS`)."""
    if targets == "basic":
        return list(DESCRIPTORS)
    if targets == "rdkit":
        return DESCRIPTOR_NAMES + list(IONISATION_TARGETS)
    raise ValueError(f"unknown descriptor targets {targets!r}: one of {', '.join(TARGET_SETS)}")


def compute_targets(mol: Chem.Mol, targets: str = "basic") -> np.ndarray:
    """The targets of one molecule, as float32; NaN where a value is missing (the loss skips it)."""
    if targets == "basic":
        return np.array([fn(mol) for fn in DESCRIPTORS.values()], dtype=np.float32)
    target_names(targets)
    ionisation = [fn(mol) for fn in IONISATION_TARGETS.values()]
    return np.concatenate([describe_mol(mol), ionisation]).astype(np.float32)


@dataclass
class DescriptorScaler:
    """Standardisation of descriptor targets, fitted on training molecules only (missing values ignored),
    winsorised at ±5 standard deviations."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> DescriptorScaler:
        fitted = StandardScaler().fit(values)  # NaN ignored; a constant descriptor keeps scale 1
        return cls(np.nan_to_num(fitted.mean_).astype(np.float32), np.nan_to_num(fitted.scale_, nan=1.0)
                   .astype(np.float32))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return np.clip((values - self.mean) / self.std, -_WINSOR, _WINSOR)


def _describe(raw: str, targets: str = "basic") -> tuple[str, np.ndarray] | None:
    """Canonical SMILES and raw targets of one molecule; ``None`` when RDKit cannot parse it."""
    mol = Chem.MolFromSmiles(raw)
    return None if mol is None else (Chem.MolToSmiles(mol), compute_targets(mol, targets))


def _describe_all(smiles: Sequence[str], targets: str = "basic") -> list[tuple[str, np.ndarray] | None]:
    with rdBase.BlockLogs():
        return [_describe(raw, targets) for raw in smiles]


@dataclass
class PreparedCorpus:
    """A corpus canonicalised with its raw descriptors computed once; invalid and excluded molecules removed."""

    smiles: list[str]
    descriptors: np.ndarray
    invalid: int = 0
    excluded: int = 0
    targets: str = "basic"

    def save(self, path: str | Path) -> None:
        import pandas as pd

        frame = pd.DataFrame(self.descriptors, columns=target_names(self.targets))
        frame.insert(0, "smiles", self.smiles)
        frame.attrs = {"invalid": self.invalid, "excluded": self.excluded, "targets": self.targets}
        frame.to_parquet(path)

    @classmethod
    def load(cls, path: str | Path, targets: str = "basic") -> PreparedCorpus:
        import pandas as pd

        frame = pd.read_parquet(path)
        names = target_names(targets)
        if list(frame.columns[1:]) != names:
            raise ValueError(f"{path} holds other descriptor targets than {targets!r} (with this RDKit): prepare it "
                             "again")
        return cls(frame["smiles"].tolist(), frame[names].to_numpy(np.float32),
                   int(frame.attrs.get("invalid", 0)), int(frame.attrs.get("excluded", 0)), targets)


def prepare_corpus(smiles: Sequence[str], exclude: set[str] | None = None, workers: int | None = None,
                   chunk_size: int = 20_000, targets: str = "basic") -> PreparedCorpus:
    """Canonicalise and describe every molecule once, in ``workers`` processes (RDKit is the bottleneck of
    pretraining on a GPU otherwise); drops invalid SMILES, molecules in ``exclude`` and duplicates."""
    chunks = [smiles[i:i + chunk_size] for i in range(0, len(smiles), chunk_size)]
    workers = workers or os.cpu_count() or 1
    width = len(target_names(targets))  # checks the name first
    describe = functools.partial(_describe_all, targets=targets)
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(describe, chunks))
    else:
        parts = [describe(chunk) for chunk in chunks]
    exclude = exclude or set()
    seen: set[str] = set()
    keep_smiles, keep_rows, invalid, excluded = [], [], 0, 0
    for described in (d for part in parts for d in part):
        if described is None:
            invalid += 1
        elif described[0] in exclude:
            excluded += 1
        elif described[0] not in seen:
            seen.add(described[0])
            keep_smiles.append(described[0])
            keep_rows.append(described[1])
    descriptors = np.stack(keep_rows) if keep_rows else np.zeros((0, width), np.float32)
    return PreparedCorpus(keep_smiles, descriptors, invalid, excluded, targets)


class MoleculeStream:
    """Canonical, de-duplicated-against-``exclude`` molecules in a seeded order, resumable by cursor.

    From a :class:`PreparedCorpus` molecules are taken as they are; from raw SMILES they are canonicalised and
    described on the fly.
    """

    def __init__(self, corpus: Sequence[str] | PreparedCorpus, seed: int, exclude: set[str] | None = None,
                 targets: str = "basic") -> None:
        self.smiles: Sequence[str]
        self.descriptors: np.ndarray | None = None
        self.targets, self.excluded, self.invalid = targets, 0, 0
        if isinstance(corpus, PreparedCorpus):
            self.smiles, self.descriptors, self.targets = corpus.smiles, corpus.descriptors, corpus.targets
            self.excluded, self.invalid = corpus.excluded, corpus.invalid
        else:
            self.smiles = corpus
        if not len(self.smiles):
            raise DataError(f"no molecule to pretrain on: the corpus is empty after {self.invalid:,} invalid SMILES "
                            f"and {self.excluded:,} of the fine-tuning data's molecules (always left out) were removed")
        self.order = np.random.default_rng(seed).permutation(len(self.smiles))
        self.exclude = exclude or set()
        self.cursor = 0
        self.held = 0  # the first positions of the order, drawn by hold_out: never drawn again when the order wraps

    def hold_out(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """The first ``n`` usable molecules, kept out of every later draw (an evaluation set)."""
        taken = self.take(n)
        self.held = self.cursor if self.cursor < len(self.order) else 0  # all of a tiny corpus: nothing left to hold
        return taken

    def _ids(self, positions: np.ndarray) -> np.ndarray:
        """Corpus indices at cursor positions: past the end the order wraps around, without the held-out start."""
        n, held = len(self.order), self.held
        wrapped = np.where(positions < n, positions, held + (positions - n) % (n - held))
        return self.order[wrapped]

    def take(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """Next ``n`` usable molecules (wrapping around at the end) with their raw descriptors and, for a
        prepared corpus, their positions in it."""
        if self.descriptors is not None:
            ids = self._ids(np.arange(self.cursor, self.cursor + n))
            self.cursor += n
            return [self.smiles[i] for i in ids], self.descriptors[ids], ids
        out: list[str] = []
        desc: list[np.ndarray] = []
        with rdBase.BlockLogs():
            while len(out) < n:
                if not out and self.cursor >= len(self.order) and self.invalid + self.excluded >= self.cursor:
                    raise DataError("no molecule to pretrain on: every SMILES of the corpus is invalid or one of the "
                                    "fine-tuning data's molecules (always left out)")
                described = _describe(self.smiles[int(self._ids(np.array([self.cursor]))[0])], self.targets)
                self.cursor += 1
                if described is None:
                    self.invalid += 1
                elif described[0] in self.exclude:
                    self.excluded += 1
                else:
                    out.append(described[0])
                    desc.append(described[1])
        return out, np.stack(desc), None


def moses_corpus_path() -> Path:
    """Path of MOSES' ``train.csv.gz`` inside the installed ``molsets`` package (never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'molsets' is not installed: run `make pretrain-deps`")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data" / "train.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"MOSES training file not found at {path}")
    return path


def load_moses_smiles() -> list[str]:
    """The ~1.6 M MOSES training SMILES."""
    import pandas as pd

    return pd.read_csv(moses_corpus_path())["SMILES"].tolist()
