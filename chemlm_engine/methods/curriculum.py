"""Curriculum learning: easy molecules first. Difficulty is the SMILES length by default (heavy-atom
and token counts are offered too); a pacing function raises the admissible threshold each epoch."""
from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from rdkit import Chem

from ..spec import JobSpec
from ..pipeline import JobContext, SplitData, train_and_evaluate
from ..errors import ConfigError
from ..store import RunRecord, RunStore, Tables
from ..training import length_bucketed_batches
from ..spec import DIFFICULTIES, PACINGS, CurriculumOptions

__all__ = ["DIFFICULTIES", "PACINGS", "difficulty", "pacing_thresholds", "CurriculumSampler", "curriculum_for",
           "paired_specs", "find_pairs", "run_curriculum"]
_PAIR = "curriculum-pair:"  # the name both runs of a curriculum-vs-baseline pair share


def difficulty(smiles: Sequence[str], measure: str = "smiles_length", tokenizer=None) -> np.ndarray:
    """Difficulty of each molecule: SMILES length, heavy-atom count, or token count (needs ``tokenizer``)."""
    if measure == "smiles_length":
        return np.array([len(s) for s in smiles], dtype=float)
    if measure == "heavy_atoms":
        return np.array([Chem.MolFromSmiles(s).GetNumHeavyAtoms() for s in smiles], dtype=float)
    if measure == "tokens":
        if tokenizer is None:
            raise ValueError("token-count difficulty needs the model's tokenizer")
        return np.array([len(ids) for ids in tokenizer(list(smiles), add_special_tokens=False)["input_ids"]],
                        dtype=float)
    raise ValueError(f"unknown difficulty {measure!r}; choose from {', '.join(DIFFICULTIES)}")


def pacing_thresholds(easiest: float, hardest: float, epochs: int, pacing: str = "linear",
                      steps: int = 4) -> np.ndarray:
    """Admissible difficulty per epoch (1..E): from ``easiest`` at epoch 1 to ``hardest`` at epoch E.

    linear: ``easiest + (hardest - easiest) * (e - 1) / (E - 1)``; sqrt rises faster early on;
    step raises it in ``steps`` equal stages.
    """
    if pacing not in PACINGS:
        raise ValueError(f"unknown pacing {pacing!r}; choose from {', '.join(PACINGS)}")
    if epochs == 1:
        return np.array([hardest], dtype=float)
    progress = np.arange(epochs) / (epochs - 1)
    if pacing == "sqrt":
        progress = np.sqrt(progress)
    elif pacing == "step":
        progress = np.floor(progress * steps) / steps
    return easiest + (hardest - easiest) * progress


@dataclass
class CurriculumSampler:
    """Indices of the admissible training molecules for each epoch (1-based) — pass it to ``fit`` as
    ``epoch_indices``; the fit loop then cuts them into length-bucketed batches. At least one full
    batch (the easiest molecules) is always admitted."""

    difficulties: np.ndarray
    epochs: int
    batch_size: int
    pacing: str = "linear"
    steps: int = 4

    def __post_init__(self) -> None:
        self.thresholds = pacing_thresholds(float(self.difficulties.min()), float(self.difficulties.max()),
                                            self.epochs, self.pacing, self.steps)
        self._by_difficulty = np.argsort(self.difficulties, kind="stable")

    def __call__(self, epoch: int) -> np.ndarray:
        admitted = np.flatnonzero(self.difficulties <= self.thresholds[epoch - 1])
        minimum = min(self.batch_size, len(self.difficulties))
        if len(admitted) < minimum:
            admitted = np.sort(self._by_difficulty[:minimum])
        return admitted

    def batches(self, epoch: int, lengths: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
        """The length-bucketed batches the fit loop would draw in ``epoch``."""
        return length_bucketed_batches(self(epoch), lengths, self.batch_size, rng)

    def plan(self) -> list[dict[str, float]]:
        """Threshold and number of admissible molecules per epoch (for charts)."""
        return [{"epoch": e, "threshold": float(self.thresholds[e - 1]), "admissible": int(len(self(e)))}
                for e in range(1, self.epochs + 1)]


def curriculum_for(spec: JobSpec, train_smiles: Sequence[str]) -> CurriculumSampler:
    """The curriculum a ``curriculum`` spec trains with on these training molecules (the backbone's tokenizer
    is loaded only for token-count difficulty)."""
    opts = spec.options_of(CurriculumOptions)
    tokenizer = None
    if opts.difficulty == "tokens":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(spec.model.backbone, trust_remote_code=spec.model.trust_remote_code)
    return CurriculumSampler(difficulty(train_smiles, opts.difficulty, tokenizer), spec.train.epochs,
                             spec.train.batch_size, opts.pacing, opts.pacing_steps)


def paired_specs(spec: JobSpec) -> tuple[JobSpec, JobSpec]:
    """A curriculum run and its baseline (same data, model, recipe and seed), named as one pair (and as ``spec``
    was: its file, its backbone)."""
    name = f"{_PAIR}{uuid.uuid4().hex[:6]}" + (f" · {spec.name}" if spec.name else "")
    return replace(spec, name=name), replace(spec, method="baseline", options={}, name=name)


def find_pairs(runs: Sequence[RunRecord]) -> dict[str, list[RunRecord]]:
    """Pair id -> its runs, the curriculum run first: those launched together by :func:`paired_specs` (known by the
    name in their spec, which a rename leaves alone), then each curriculum run launched otherwise (the Compare
    suite, the CLI) with the newest finished plain fine-tune of the same data, model, recipe and seed where there is
    one (``runs`` newest first, as the store lists them)."""
    pairs: dict[str, list[RunRecord]] = {}
    alone = []
    for run in runs:
        launched_as = str(run.spec.get("name", ""))
        if launched_as.startswith(_PAIR):
            pairs.setdefault(launched_as[len(_PAIR):], []).append(run)
        else:
            alone.append(run)
    for run in alone:
        if run.method == "curriculum":
            twin = next((r for r in alone if r.method == "baseline" and r.status == "finished"
                         and _same_recipe(r.spec, run.spec)), None)
            pairs[run.id] = [run, *([twin] if twin else [])]
    return {key: sorted(pair, key=lambda r: r.method != "curriculum") for key, pair in pairs.items()}


def _same_recipe(a: dict, b: dict) -> bool:
    return all(a.get(part) == b.get(part) for part in ("data", "model", "train"))


def check_epochs(spec: JobSpec, data: SplitData, store: RunStore) -> None:
    """Before a run: a curriculum paces its molecules over epochs; with one, every molecule is admitted at once."""
    if spec.train.epochs < 2:
        raise ConfigError("a curriculum needs at least 2 epochs: with 1 it admits every molecule at once, which is "
                          "plain fine-tuning (method baseline)")


def run_curriculum(ctx: JobContext, data: SplitData, opts: CurriculumOptions) -> dict[str, float]:
    """Curriculum learning (options: :class:`~chemlm_engine.spec.options.CurriculumOptions`)."""
    sampler = curriculum_for(ctx.spec, data.train.smiles)
    ctx.store.add_table(ctx.run_id, Tables.CURRICULUM_PLAN, list(sampler.plan()))
    _, metrics = train_and_evaluate(ctx, data, epoch_indices=sampler)
    return metrics
