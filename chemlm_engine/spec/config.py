"""Frozen, JSON-serialisable settings for every job. A run stores its full ``JobSpec``."""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..errors import ConfigError
from .options import MethodOptions, coerce
from .registry import METHODS, parse_options
from ..molecules import Standardization

# Where jobs run, in the app's sidebar and the CLI's --executor alike: a child process, a thread, a Ray task.
EXECUTORS = ("process", "thread", "ray")
O = TypeVar("O", bound=MethodOptions)

__all__ = ["ASSETS_DIR", "DEFAULT_BACKBONE", "EMBEDDED_BACKBONE", "DEFAULT_REGRESSOR", "FAST_REGRESSOR",
           "REGRESSOR_FILE", "ENSEMBLE_FILE", "holds_model", "DataSpec", "ModelSpec", "TrainConfig", "JobSpec",
           "EXECUTORS"]

ASSETS_DIR = Path(__file__).resolve().parents[2] / "assets"
# A team may fine-tune from its own backbone by default (a folder or hub id); the app's forms and the CLI follow.
EMBEDDED_BACKBONE = str(ASSETS_DIR / "chemlm-mini")
DEFAULT_BACKBONE = os.environ.get("CHEMLM_DEFAULT_BACKBONE") or EMBEDDED_BACKBONE
DEFAULT_REGRESSOR = str(ASSETS_DIR / "lipo-regressor")  # the shipped 5-member ensemble
FAST_REGRESSOR = str(ASSETS_DIR / "lipo-regressor-fast")  # its distilled student: one forward pass instead of five
# A model folder holds one of these: a fine-tuned regressor's settings, or an ensemble's members and calibration.
REGRESSOR_FILE, ENSEMBLE_FILE = "regressor.json", "ensemble.json"
log = logging.getLogger(__name__)


def holds_model(folder: str | Path) -> bool:
    """Whether ``folder`` is a model folder: a regressor's or an ensemble's (told without loading anything)."""
    return any(Path(folder, name).is_file() for name in (REGRESSOR_FILE, ENSEMBLE_FILE))


def _known(kind: type, raw: dict[str, Any], where: str) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = sorted(set(raw) - names)
    if unknown:
        log.warning("stored spec: %s field(s) %s unknown to this version, ignored", where, ", ".join(unknown))
    return {k: v for k, v in raw.items() if k in names}


@dataclass(frozen=True)
class DataSpec:
    """Which molecules, and how they are split. ``source`` is ``"lipophilicity"`` or a CSV path."""

    source: str = "lipophilicity"
    smiles_column: str | None = None
    label_column: str | None = None
    split: str = "random"
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    subset: int | None = None
    # RDKit standardisation before canonicalisation (largest organic fragment, neutralised; optionally the
    # canonical tautomer). Recorded in the model folder, so prediction repeats it.
    standardize: bool = True
    tautomer: bool = False

    def __post_init__(self) -> None:
        if self.split not in ("random", "scaffold"):
            raise ConfigError(f"split must be 'random' or 'scaffold', not {self.split!r}")
        if len(self.fractions) != 3 or not all(math.isfinite(f) and f >= 0 for f in self.fractions) or \
                abs(sum(self.fractions) - 1) > 1e-6:
            raise ConfigError(f"fractions must be three non-negative numbers summing to 1, got {self.fractions}")
        if self.subset is not None and self.subset < 10:
            raise ConfigError("subset must be at least 10 molecules")

    @property
    def standardization(self) -> Standardization:
        return Standardization(self.standardize, self.tautomer)


@dataclass(frozen=True)
class ModelSpec:
    """Backbone (local folder or hub id) and regression head."""

    backbone: str = DEFAULT_BACKBONE
    trust_remote_code: bool = False
    pooling: str = "mean"
    dropout: float = 0.1
    head_hidden: int = 256
    # The pooled embedding concatenated with standardised RDKit 2D descriptors (scaling fitted on training data).
    descriptors: bool = False
    # Test-time augmentation: predictions are the mean over the canonical and this many random SMILES spellings.
    tta: int = 0

    def __post_init__(self) -> None:
        if self.pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling must be 'cls' or 'mean', not {self.pooling!r}")
        if not 0 <= self.dropout < 1:  # also false for NaN
            raise ConfigError("dropout must be in [0, 1)")
        if not 0 <= self.tta <= 64:
            raise ConfigError("tta must be between 0 and 64 spellings")


PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class TrainConfig:
    """The fit loop's recipe."""

    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 1e-4
    head_learning_rate: float | None = 1e-3
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    grad_clip: float = 1.0
    patience: int = 0
    max_length: int = 256
    seed: int = 0
    # "auto": bf16 autocast where the hardware computes bf16 natively (CUDA, AVX512-BF16/AMX CPUs), else fp32.
    precision: str = "auto"
    # SMILES enumeration: every epoch each training molecule is read in a fresh random (non-canonical) spelling.
    augment: bool = False
    # Keep the weights of the best validation epoch (else the last epoch's: the validation split stays unused
    # by training, e.g. to calibrate an ensemble's intervals on it).
    select_best: bool = True
    # Layer-wise learning-rate decay: encoder layer k of L learns at learning_rate * layer_decay ** (L - k), the
    # embeddings at layer_decay ** L (1.0: one rate for the whole backbone).
    layer_decay: float = 1.0
    # An exponential moving average of the weights (decay per optimiser step; 0: off) is what is validated and kept.
    ema_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be positive")
        if self.patience < 0:
            raise ConfigError(f"patience must be 0 (off) or a number of epochs, not {self.patience}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {PRECISIONS}")
        numbers = {"learning_rate": self.learning_rate, "head_learning_rate": self.head_learning_rate,
                   "weight_decay": self.weight_decay, "warmup_ratio": self.warmup_ratio, "grad_clip": self.grad_clip}
        for name, value in numbers.items():
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{name} must be a finite number, not {value}")
        if self.learning_rate <= 0 or (self.head_learning_rate is not None and self.head_learning_rate <= 0):
            raise ConfigError("learning rates must be positive")
        if not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("warmup_ratio must be in [0, 1); weight_decay and grad_clip non-negative")
        if not 0 < self.layer_decay <= 1 or not 0 <= self.ema_decay < 1:
            raise ConfigError("layer_decay must be in (0, 1] and ema_decay in [0, 1)")


# What JobSpec.summary shows in columns of their own (or leaves out: seeds, the backbone's trust), per part
_SUMMARY_COLUMNS = {"data": {"source", "split", "split_seed", "subset", "standardize"},
                    "model": {"backbone", "descriptors", "trust_remote_code"},
                    "train": {"seed", "epochs", "learning_rate", "batch_size", "augment"}}


@dataclass(frozen=True)
class JobSpec:
    """One job: a method applied to data with a model and recipe. ``options`` holds the settings given for the
    method in their plain JSON form (the rest take their defaults), validated against its options class."""

    method: str = "baseline"
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainConfig = field(default_factory=TrainConfig)
    options: dict[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        parse_options(self.method, self.options)  # fails early: unknown key, wrong type, out of range

    @property
    def method_options(self) -> MethodOptions:
        """The typed options (see :data:`~chemlm_engine.spec.registry.METHODS`)."""
        return parse_options(self.method, self.options)

    def options_of(self, kind: type[O]) -> O:
        """The typed options, checked to be of ``kind``: for code that knows which method it serves."""
        options = self.method_options
        if not isinstance(options, kind):
            raise ConfigError(f"method {self.method!r} has {type(options).__name__}, not {kind.__name__}")
        return options

    def with_absolute_paths(self) -> JobSpec:
        """This spec with every file or folder it names relative to the working folder made absolute: a run
        recorded from one folder is re-run, inspected or built on from any other (the app, another shell)."""
        kinds = self.method_options
        options = {key: _absolute(value, always=key in kinds.OUTPUTS) if key in (*kinds.PATHS, *kinds.OUTPUTS)
                   and isinstance(value, str) else value for key, value in self.options.items()}
        source = self.data.source if self.data.source == DataSpec.source else _absolute(self.data.source)
        return dataclasses.replace(self, data=dataclasses.replace(self.data, source=source), options=options,
                                   model=dataclasses.replace(self.model, backbone=_absolute(self.model.backbone)))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> dict[str, Any]:
        """The configuration as flat table columns: what distinguishes one kind of run from another (the seed
        aside). ``options`` lists those that differ from their defaults (JSON), so equal settings compare equal;
        ``other`` every other setting that differs from its default (pooling=cls, dropout=0.2, …)."""
        options = self.method_options.changed()
        training = {"backbone": Path(self.model.backbone).name or self.model.backbone,
                    "dataset": Path(self.data.source).name, "split": self.data.split, "seed": self.train.seed,
                    "subset": self.data.subset, "epochs": self.train.epochs, "learning_rate": self.train.learning_rate,
                    "batch_size": self.train.batch_size, "descriptors": self.model.descriptors,
                    "augment": self.train.augment, "standardize": self.data.standardize, "other": self._other()}
        if not METHODS[self.method].needs_data:  # its options name what it reads (a library): no recipe to show
            training = dict.fromkeys(training)
        elif METHODS[self.method].model == "backbone":  # a pretraining's settings are its options, not a fine-tuning's
            training.update(dict.fromkeys(("backbone", "epochs", "learning_rate", "batch_size", "descriptors",
                                           "augment")))
        return {"method": self.method, **training, "options": json.dumps(options, sort_keys=True) if options else ""}

    def _other(self) -> str:
        """The settings :meth:`summary` has no column of, where they differ from their defaults (seeds aside)."""
        defaults = {"data": DataSpec(), "model": ModelSpec(), "train": TrainConfig()}
        changed = [f"{key}={value}" for part, shown in _SUMMARY_COLUMNS.items()  # exact: it tells configurations apart
                   for key, value in dataclasses.asdict(getattr(self, part)).items()
                   if key not in shown and value != getattr(defaults[part], key)]
        return ", ".join(changed)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobSpec:
        """The spec as stored. Fields a newer or older version wrote and this one does not know are left out
        (logged); missing ones take their defaults, so any stored run can still be listed and compared."""
        if not isinstance(options := raw.get("options", {}), dict):  # a list or a string: not name = value pairs
            raise ConfigError(f"options must be a JSON object of settings, not {json.dumps(options)}")
        data = _known(DataSpec, raw.get("data", {}), "data")
        if "fractions" in data:
            data["fractions"] = tuple(data["fractions"])
        return cls(method=raw.get("method", "baseline"), data=DataSpec(**data),
                   model=ModelSpec(**_known(ModelSpec, raw.get("model", {}), "model")),
                   train=TrainConfig(**_known(TrainConfig, raw.get("train", {}), "train")),
                   options=dict(options), name=raw.get("name", ""))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> JobSpec:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path) -> JobSpec:
        """A spec a user hands in (``chemlm train --spec``): unlike a stored one, a file that is not a spec is an
        error, not the default job (a stored spec's unknown fields are dropped so that old runs still list)."""
        try:
            raw = json.loads(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read the spec {path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ConfigError(f"the spec {path} is not JSON: {exc}") from None
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(raw) - set(fields)) if isinstance(raw, dict) else []
        if not isinstance(raw, dict) or unknown or "method" not in raw:
            found = f" (unknown: {', '.join(unknown)})" if unknown else ""
            raise ConfigError(f"{path} is not a job spec{found}: a JSON object of {', '.join(fields)}, as `chemlm "
                              "tune` writes it")
        for part, kind in (("data", DataSpec), ("model", ModelSpec), ("train", TrainConfig)):
            _check_section(path, part, kind, raw.get(part, {}))
        return cls.from_dict(raw)


def _absolute(name: str, always: bool = False) -> str:
    """``name`` as an absolute path where it names an existing file or folder (``always``: a folder to be written);
    else as it is (a hub id, a run id)."""
    return os.path.abspath(name) if name and (always or os.path.exists(name)) else name


def _check_section(path: str | Path, part: str, kind: type, section: Any) -> None:
    """A hand-written spec's section, as strictly as options are checked: no misspelt setting is silently dropped
    (a stored spec's are, so that old runs still list), and every value has its setting's type."""
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: {part} must be a JSON object of settings, not {json.dumps(section)}")
    hints = typing.get_type_hints(kind)
    if unknown := sorted(set(section) - set(hints)):
        raise ConfigError(f"{path}: {part} has no setting {', '.join(unknown)} (misspelt?); its settings: "
                          f"{', '.join(hints)}")
    for name, value in section.items():
        coerce(f"{part}.{name}", value, hints[name], what=f"{path}: setting")
