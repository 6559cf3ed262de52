"""RDKit 2D descriptors as extra inputs of the regression head: computed once per molecule (cached in
this process; a large batch shared with helper processes, one per core), standardised with statistics of the
training split, saved with the model."""
from __future__ import annotations

import functools
import inspect
import json
import multiprocessing
import multiprocessing.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors

from .errors import ModelLoadError
from .guard import contiguous_shares, engine_main, exit_with, worker_processes

__all__ = ["DESCRIPTOR_NAMES", "HEAD_DESCRIPTORS", "LARGE_MOLECULE", "SIZE_LIMITED", "describe", "describe_mol",
           "size_warning", "start_helpers", "DescriptorScaler"]

# Every RDKit 2D descriptor but QED (a fifth of the cost alone) and Ipc (overflows to 1e30 and beyond).
_SKIPPED = {"qed", "Ipc"}


def _reusing_cache(fn):
    """The four EState-index descriptors recompute the (pure-Python, quadratic) EState indices unless told
    ``force=False``; then they share the indices cached on the molecule: same values, three fewer
    computations per molecule."""
    try:
        forced = "force" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return fn
    return functools.partial(fn, force=False) if forced else fn


_FUNCTIONS = [(name, _reusing_cache(fn)) for name, fn in Descriptors.descList if name not in _SKIPPED]
DESCRIPTOR_NAMES = [name for name, _ in _FUNCTIONS]
# What a new model's head and trees read: all of them but the 12 costliest (BCUT2D's eight, BertzCT, SPS, AvgIpc,
# BalabanJ: ~1.75 of 4.9 core-s per 1,000 drug-like molecules, bench/predict_steps.py), which the trees did not miss
# (-0.004 validation R², bench/descriptor_subset.py). A model keeps the list it was trained with (older ones: all).
_COSTLY = ("BCUT2D_", "BertzCT", "SPS", "AvgIpc", "BalabanJ")
HEAD_DESCRIPTORS = [name for name in DESCRIPTOR_NAMES if not name.startswith(_COSTLY)]

# Descriptors whose cost grows faster than the molecule (bench/molecule_size.py: exponents 1.6-3.4 between 130 and
# 5,000 heavy atoms; AvgIpc alone 3 s at 600 atoms, minutes at 5,000): computed only up to LARGE_MOLECULE
# heavy atoms and missing (the training median) above, with a warning. A size limit rather than a clock keeps a
# molecule's features, so its prediction, the same on every machine; 120 is above every Lipophilicity molecule
# (at most 115), so no model's training features change.
LARGE_MOLECULE = 120
_SIZE_LIMITED_MARKS = ("AvgIpc", "BalabanJ", "BertzCT", "BCUT2D_", "EState", "Chi2", "Chi3", "Chi4", "Kappa2",
                       "Kappa3", "Phi", "SPS")
SIZE_LIMITED = [name for name in DESCRIPTOR_NAMES if any(mark in name for mark in _SIZE_LIMITED_MARKS)]
# Standardised values are clipped here: a few descriptors have heavy tails that would dominate the head.
_CLIP = 10.0
_CACHE: dict[tuple[tuple[int, ...], str], np.ndarray] = {}  # (columns, SMILES); insertion-ordered: oldest leave first
# ~90 MB: a whole Lipophilicity-size job (fit, then transform, then each ensemble member), or many library chunks
# (every member describes the same chunk), while a library of any size streams in constant memory
_CACHE_LIMIT = 50_000
_SHARE_MIN = 16  # molecules per process at least: a smaller share is not worth a round trip to a helper (~10 ms)
_POOL: ProcessPoolExecutor | None = None
_POOL_LOCK = threading.Lock()  # the app's sessions and job threads may ask at once


@functools.lru_cache(maxsize=8)
def _columns(names: tuple[str, ...]) -> tuple[int, ...]:
    """Where ``names`` stand in :data:`DESCRIPTOR_NAMES` (a model saved with a name this RDKit lacks cannot run)."""
    where = {name: i for i, name in enumerate(DESCRIPTOR_NAMES)}
    unknown = [name for name in names if name not in where]
    if unknown:
        raise ModelLoadError(f"this model reads RDKit descriptors this RDKit does not have ({', '.join(unknown[:3])}"
                             "): retrain it with this RDKit")
    return tuple(where[name] for name in names)


_ALL = _columns(tuple(DESCRIPTOR_NAMES))


def describe_mol(mol: Chem.Mol, columns: tuple[int, ...] = _ALL) -> np.ndarray:
    """Raw descriptors ``columns`` (of :data:`DESCRIPTOR_NAMES`) of one molecule, NaN where RDKit gives no finite
    value or the molecule is too large for a size-limited descriptor."""
    values = np.full(len(columns), np.nan, dtype=np.float64)
    large = mol.GetNumHeavyAtoms() > LARGE_MOLECULE
    with rdBase.BlockLogs():
        for i, column in enumerate(columns):
            name, fn = _FUNCTIONS[column]
            if large and name in SIZE_LIMITED:
                continue
            try:
                values[i] = fn(mol)
            except Exception:  # noqa: BLE001 - RDKit descriptor functions raise several types; NaN is handled
                continue
    values[~np.isfinite(values)] = np.nan
    return values


def _one(smiles: str, columns: tuple[int, ...]) -> np.ndarray:
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    return np.full(len(columns), np.nan, dtype=np.float64) if mol is None else describe_mol(mol, columns)


def _many(smiles: Sequence[str], columns: tuple[int, ...] = _ALL) -> np.ndarray:
    return np.stack([_one(s, columns) for s in smiles]) if smiles else np.empty((0, len(columns)))


def _pool() -> ProcessPoolExecutor | None:
    """Helper processes (spawned, so safe beside the app's threads), one per core beside this one, started on
    first use and kept; None on one core."""
    global _POOL
    with _POOL_LOCK:
        helpers = worker_processes() - 1
        if _POOL is None and helpers > 0:
            _POOL = ProcessPoolExecutor(helpers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=exit_with, initargs=(os.getpid(),))
            # A process that multiprocessing started (the app's job processes) joins its children when it exits,
            # before concurrent.futures' own exit hook would stop these idle helpers: stop them first (and before
            # the pool's queues close, priority 10), or that process never ends and every later job waits.
            multiprocessing.util.Finalize(None, _reset_pool, kwargs={"wait": True}, exitpriority=100)
            _submit(_POOL, [[]] * helpers)  # start them now, not when the first large batch waits
        return _POOL


def _submit(pool: ProcessPoolExecutor, shares: list[list[str]], columns: tuple[int, ...] = _ALL) -> list:
    # the pool starts a process on a submit that finds none idle: under engine_main, not under a page's __main__
    with engine_main():
        return [pool.submit(_many, share, columns) for share in shares]


def start_helpers() -> None:
    """Start the helper processes now (without waiting for them), so a first large request finds them ready."""
    _pool()


def _compute(smiles: list[str], columns: tuple[int, ...] = _ALL) -> np.ndarray:
    """Descriptors of many molecules, shared among this process and the helpers (a contiguous share each):
    RDKit's descriptor functions hold the interpreter lock, so threads cannot share the work; processes can."""
    shares = min(worker_processes(), len(smiles) // _SHARE_MIN)
    pool = _pool() if shares > 1 else None
    if pool is None:
        return _many(smiles, columns)
    parts = contiguous_shares(smiles, shares)
    try:
        futures = _submit(pool, parts[1:], columns)
    except BrokenProcessPool:
        _reset_pool()
        return _many(smiles, columns)
    done = [_many(parts[0], columns)]
    for part, future in zip(parts[1:], futures):
        try:
            done.append(future.result())
        except BrokenProcessPool:  # a helper died (killed, out of memory): start afresh next time
            _reset_pool()
            done.append(_many(part, columns))
    return np.concatenate(done)


def _reset_pool(wait: bool = False) -> None:
    """Stop the helpers (``wait``: until they have exited); the next large batch starts new ones."""
    global _POOL
    with _POOL_LOCK:
        pool, _POOL = _POOL, None
    if pool is not None:
        pool.shutdown(wait=wait, cancel_futures=True)


def size_warning(heavy_atoms: int, names: Sequence[str] = HEAD_DESCRIPTORS) -> str | None:
    """What a model reading descriptors ``names`` cannot compute for a molecule of this size (None when it computes
    everything)."""
    if heavy_atoms <= LARGE_MOLECULE:
        return None
    skipped = len(set(names) & set(SIZE_LIMITED))
    if not skipped:
        return None
    return (f"large molecule ({heavy_atoms:,} heavy atoms, over {LARGE_MOLECULE}): {skipped} descriptors "
            "whose cost grows faster than the molecule were skipped (the training median used instead)")


def describe(smiles: Sequence[str], names: Sequence[str] = DESCRIPTOR_NAMES) -> np.ndarray:
    """Raw descriptors ``names``, shape ``(len(smiles), len(names))``, NaN where RDKit gives no finite value.
    Computed once per molecule and list of names (the last :data:`_CACHE_LIMIT` are cached in this process)."""
    columns = _columns(tuple(names))
    missing = [s for s in dict.fromkeys(smiles) if (columns, s) not in _CACHE]
    fresh = dict(zip(missing, _compute(missing, columns)))
    out = np.empty((len(smiles), len(columns)), dtype=np.float64)
    for row, text in enumerate(smiles):  # before caching the fresh ones, which may push these out
        values = fresh.get(text)
        out[row] = _CACHE[columns, text] if values is None else values
    for text, values in fresh.items():
        _CACHE[columns, text] = values
        if len(_CACHE) > _CACHE_LIMIT:
            del _CACHE[next(iter(_CACHE))]
    return out


@dataclass
class DescriptorScaler:
    """Per-descriptor median (fills missing values), mean and scale of the training split."""

    names: list[str]
    median: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    FILE = "descriptors.json"

    @classmethod
    def fit(cls, smiles: Sequence[str], names: Sequence[str] = HEAD_DESCRIPTORS) -> DescriptorScaler:
        from sklearn.preprocessing import StandardScaler  # here: the helper process need not import scikit-learn

        raw = describe(smiles, names)
        median = np.nan_to_num(np.nanmedian(raw, axis=0), nan=0.0) if len(raw) else np.zeros(raw.shape[1])
        filled = np.where(np.isnan(raw), median, raw)
        fitted = StandardScaler().fit(filled)  # a constant descriptor keeps scale 1
        return cls(list(names), median, fitted.mean_, fitted.scale_)

    def transform(self, smiles: Sequence[str]) -> np.ndarray:
        """Standardised, clipped float32 features; missing values become the training median (0 after scaling)."""
        raw = describe(smiles, self.names)
        filled = np.where(np.isnan(raw), self.median, raw)
        return np.clip((filled - self.mean) / self.scale, -_CLIP, _CLIP).astype(np.float32)

    @property
    def size(self) -> int:
        return len(self.names)

    def save(self, folder: str | Path) -> None:
        payload = {"names": self.names, "median": self.median.tolist(), "mean": self.mean.tolist(),
                   "scale": self.scale.tolist()}
        (Path(folder) / self.FILE).write_text(json.dumps(payload))

    @classmethod
    def load(cls, folder: str | Path) -> DescriptorScaler | None:
        path = Path(folder) / cls.FILE
        if not path.exists():
            return None
        try:
            raw = json.loads(path.read_text())
            names = list(raw["names"])
            median, mean, scale = (np.asarray(raw[k], dtype=np.float64) for k in ("median", "mean", "scale"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from None
        shapes_agree = median.shape == mean.shape == scale.shape == (len(names),)
        if not (shapes_agree and np.isfinite([median, mean, scale]).all() and (scale > 0).all()):
            raise ModelLoadError(f"{path} is damaged (lengths, non-finite values or a zero scale): export the model "
                                 "again")
        _columns(tuple(names))  # each one known to this RDKit
        start_helpers()  # a model that reads descriptors was loaded: it will compute them
        return cls(names, median, mean, scale)

