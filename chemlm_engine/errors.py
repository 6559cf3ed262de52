"""Domain errors raised by the engine; the app and CLI turn them into readable messages."""
from __future__ import annotations

__all__ = [
    "ChemLMError",
    "InvalidSmilesError",
    "DataError",
    "OutputError",
    "ConfigError",
    "StoreError",
    "ModelLoadError",
    "TrainingDivergedError",
    "SearchError",
    "JobCancelledError",
    "RunNotFoundError",
]


class ChemLMError(Exception):
    """Base class of every error the engine raises on purpose."""


class InvalidSmilesError(ChemLMError):
    """A SMILES string that RDKit cannot parse."""


class DataError(ChemLMError):
    """A data file or column that cannot be used (missing column, no valid rows, ...)."""


class OutputError(ChemLMError):
    """A result file that cannot be written (missing folder, a folder in its place, disk full, read-only)."""


class ConfigError(ChemLMError, ValueError):
    """A job setting that cannot work (unknown name, out of range, not finite)."""


class StoreError(ChemLMError):
    """The run store cannot be opened, read or written (disk full, not a database, ...)."""


class ModelLoadError(ChemLMError):
    """A model folder or hub id that cannot be loaded."""


class TrainingDivergedError(ChemLMError):
    """The loss became NaN or infinite, or the validation error exploded."""


class SearchError(ChemLMError):
    """A hyperparameter search none of whose trials finished an epoch."""


class JobCancelledError(ChemLMError):
    """A job was cancelled by the user."""


class RunNotFoundError(ChemLMError):
    """No run with the given id exists in the store."""
