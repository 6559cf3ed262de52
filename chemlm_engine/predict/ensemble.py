"""Deep ensembles: N regressors (different seeds) in one folder, sharing a tokenizer. The prediction is the
members' mean, the uncertainty their spread, and a split-conformal interval calibrated on held-out
molecules turns that spread into an interval with the stated coverage. A distilled ensemble is one student
regressor with a :class:`SpreadModel` in place of the members' spread: one forward pass instead of N. An ensemble
may also blend the members' mean with gradient-boosted trees (:class:`~.trees.Trees`); the spread stays the
members'."""
from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelLoadError
from ..spec import ENSEMBLE_FILE
from ..model import RegressionModel, best_device, check_format, save_training_set
from ..inference import encode_spellings, last_layer_inputs, predict_values, prediction_precision
from .trees import Trees

__all__ = ["Conformal", "Ensemble", "SpreadModel", "load_predictor", "is_ensemble", "ENSEMBLE_FILE"]

# 2: a distilled ensemble's spread model; 3: trees blended in (the others still write 1)
ENSEMBLE_FORMAT = "chemlm-ensemble", 3


@dataclass(frozen=True)
class Conformal:
    """Normalised split-conformal interval: ``mean ± quantile · (std + epsilon)``.

    The score of a calibration molecule is ``|y − mean| / (std + epsilon)``; ``quantile`` is its
    ⌈(n+1)·coverage⌉-th smallest value, which gives at least ``coverage`` of new molecules from the same
    distribution inside their interval. ``epsilon`` (the calibration set's median spread) keeps intervals of
    molecules the members agree on from collapsing to zero.
    """

    coverage: float
    quantile: float
    epsilon: float
    n_calibration: int

    @classmethod
    def calibrate(cls, labels: np.ndarray, mean: np.ndarray, std: np.ndarray, coverage: float = 0.9) -> Conformal:
        if not 0 < coverage < 1:
            raise ValueError("coverage must be in (0, 1)")
        n = len(labels)
        rank = math.ceil((n + 1) * coverage)
        if rank > n:
            raise ValueError(f"{n} calibration molecules are too few for {coverage:.0%} intervals")
        epsilon = float(np.median(std)) or 1e-6
        scores = np.sort(np.abs(np.asarray(labels) - mean) / (std + epsilon))
        return cls(coverage, float(scores[rank - 1]), epsilon, n)

    def __post_init__(self) -> None:
        if not (0 < self.coverage < 1 and math.isfinite(self.quantile) and self.quantile >= 0
                and math.isfinite(self.epsilon) and self.epsilon > 0):
            raise ValueError(f"not a calibration: coverage {self.coverage}, quantile {self.quantile}, "
                             f"epsilon {self.epsilon}")

    def interval(self, mean: np.ndarray, std: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        half = self.quantile * (np.asarray(std) + self.epsilon)
        return mean - half, mean + half


@dataclass(frozen=True)
class SpreadModel:
    """A ridge from a student's last-layer inputs to the log of its teacher ensemble's spread (label units)."""

    coef: list[float]
    intercept: float

    @classmethod
    def fit(cls, inputs: np.ndarray, spread: np.ndarray, alpha: float = 1.0) -> SpreadModel:
        """``inputs``: :func:`~chemlm_engine.inference.last_layer_inputs` (its bias column is left to the ridge)."""
        from sklearn.linear_model import Ridge

        ridge = Ridge(alpha=alpha).fit(inputs[:, :-1], np.log(np.maximum(spread, 1e-6)))
        return cls([float(c) for c in ridge.coef_], float(ridge.intercept_))

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        return np.exp(inputs[:, :-1] @ np.asarray(self.coef) + self.intercept)


class Ensemble:
    """Members trained alike with different seeds; :meth:`predict` gives mean and spread (std, ddof=1). With a
    ``spread`` model it is a distilled ensemble: one member, whose last-layer inputs also give the spread. With
    ``trees`` the mean is blended with theirs (:meth:`Trees.blend`)."""

    def __init__(self, members: Sequence[RegressionModel], conformal: Conformal | None = None,
                 spread: SpreadModel | None = None, trees: Trees | None = None) -> None:
        if not members or (spread is not None and len(members) != 1):
            raise ValueError("an ensemble needs at least one member; a distilled one exactly one")
        if trees is not None and not 0 < trees.weight <= 1:
            raise ValueError(f"the trees' weight must be in (0, 1], not {trees.weight}")
        self.members = list(members)
        first = self.members[0]  # members that read SMILES alike are handed one tokenisation
        self._one_tokenisation = all(m.max_tokens == first.max_tokens and m.spec.tta == first.spec.tta
                                     and m.tokenizer.get_vocab() == first.tokenizer.get_vocab() for m in self.members)
        self.conformal = conformal
        self.spread = spread
        self.trees = trees

    @property
    def tokenizer(self):
        return self.members[0].tokenizer

    @property
    def max_tokens(self) -> int:
        return self.members[0].max_tokens

    @property
    def standardization(self):
        return self.members[0].standardization

    def predict(self, smiles: Sequence[str], batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Prediction and spread in label units: the members' mean (blended with the trees' when there are trees)
        and their standard deviation (descriptors computed once: cached)."""
        mean, std = self.members_predict(smiles, batch_size)
        return (mean if self.trees is None else self.trees.blend(mean, list(smiles))), std

    def members_predict(self, smiles: Sequence[str], batch_size: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The members' mean and standard deviation alone, without the trees."""
        if self.spread is not None:
            return self._distilled(list(smiles), batch_size)
        smiles = list(smiles)
        encoded = encode_spellings(self.members[0], smiles) if self._one_tokenisation and smiles else None
        values = np.stack([predict_values(m, smiles, batch_size, encoded=encoded) for m in self.members])
        std = values.std(axis=0, ddof=1) if len(self.members) > 1 else np.zeros(values.shape[1])
        return values.mean(axis=0), std

    def _distilled(self, smiles: list[str], batch_size: int | None) -> tuple[np.ndarray, np.ndarray]:
        """The student's prediction and the spread model's, from one pass to its last-layer inputs."""
        if not smiles:
            return np.zeros(0), np.zeros(0)
        student, spread = self.members[0], self.spread
        assert spread is not None
        inputs = last_layer_inputs(student, smiles, batch_size)
        layer = student.output_layer
        theta = np.append(layer.weight.detach().double().cpu().numpy().ravel(), float(layer.bias.detach()))
        return (inputs @ theta) * float(student.label_std) + float(student.label_mean), spread.predict(inputs)

    def save(self, folder: str | Path, training_smiles: list[str] | None = None,
             training_labels: np.ndarray | None = None) -> Path:
        """One folder: ``ensemble.json``, the shared tokenizer and training set, ``member-i/`` regressor
        folders with bf16 backbone weights (half the size; members run in fp32 or bf16 autocast anyway)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for i, member in enumerate(self.members):
            names.append(f"member-{i}")
            member.save(folder / names[-1], with_tokenizer=False, bf16_backbone=True)
        self.tokenizer.save_pretrained(folder)
        if training_smiles is not None:
            save_training_set(folder, training_smiles, training_labels)
        version = 3 if self.trees else 2 if self.spread else 1
        meta = {"format": f"{ENSEMBLE_FORMAT[0]}/{version}", "members": names,
                "conformal": asdict(self.conformal) if self.conformal else None,
                **({"spread": asdict(self.spread)} if self.spread else {}),
                **({"trees": {"file": self.trees.save(folder), "weight": self.trees.weight}} if self.trees else {})}
        (folder / ENSEMBLE_FILE).write_text(json.dumps(meta, indent=2))
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str | None = None,
             trust_remote_code: bool = False) -> Ensemble:
        folder = Path(folder)
        try:
            meta = json.loads((folder / ENSEMBLE_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {folder / ENSEMBLE_FILE}: {exc}") from None
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{folder / ENSEMBLE_FILE} is damaged: not a JSON object")
        check_format(meta, *ENSEMBLE_FORMAT, folder / ENSEMBLE_FILE)
        try:
            conformal = Conformal(**meta["conformal"]) if meta.get("conformal") else None
            spread = SpreadModel(**meta["spread"]) if meta.get("spread") else None
            tree_weight = float(meta["trees"]["weight"]) if meta.get("trees") else None
            names = meta["members"]
            if not names or not all(isinstance(n, str) and re.fullmatch(r"member-\d+", n) for n in names):
                raise ValueError(f"members {names!r} are not member-N folders")
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ModelLoadError(f"{folder / ENSEMBLE_FILE} is damaged: {exc!r}") from None
        members = [RegressionModel.load(folder / name, device, trust_remote_code) for name in names]
        trees = None if tree_weight is None else Trees.load(folder, tree_weight)
        try:
            return cls(members, conformal, spread, trees)
        except ValueError as exc:
            raise ModelLoadError(f"{folder / ENSEMBLE_FILE} is damaged: {exc}") from None


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).exists()


def load_predictor(folder: str | Path, device: torch.device | str | None = None,
                   trust_remote_code: bool = False) -> RegressionModel | Ensemble:
    """A regressor or an ensemble folder, whichever ``folder`` holds, in its device's prediction precision
    (:func:`~chemlm_engine.inference.prediction_precision`: int8 linear layers on a CPU without AMX)."""
    folder = Path(folder)
    predictor = (Ensemble.load(folder, device or best_device(), trust_remote_code) if is_ensemble(folder)
                 else RegressionModel.load(folder, device, trust_remote_code))
    for member in predictor.members if isinstance(predictor, Ensemble) else [predictor]:
        member.inference_precision = prediction_precision(next(member.parameters()).device)
    return predictor
