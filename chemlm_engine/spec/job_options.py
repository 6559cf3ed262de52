"""Options of the jobs that are not a fine-tuning method: pretraining a backbone, a hyperparameter search, a
library prediction (same base class and checks as :mod:`.options`)."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .options import MethodOptions, _check

__all__ = ["PretrainOptions", "SearchOptions", "PredictOptions"]


@dataclass(frozen=True)
class PretrainOptions(MethodOptions):
    """Pretraining a SMILES BERT: masked LM plus descriptor regression. The architecture is used only when a
    new model is created; the job's data (Lipophilicity by default) is left out of the corpus."""

    PATHS, OUTPUTS = ("corpus", "init_from"), ("output",)

    corpus: str | None = None  # CSV with a SMILES column; default: MOSES from the `molsets` package
    output: str | None = None  # model folder (resumes from its checkpoint); default: the run's own folder
    init_from: str | None = None  # masked-LM folder to continue from (its architecture and tokenizer)
    descriptor_targets: str = "basic"  # "basic" (8 MolBERT-style) or "rdkit" (~210 RDKit + ionisation at pH 7.4)
    target_dropout: float = 0.0  # share of each molecule's descriptor targets hidden from the loss
    randomize_smiles: bool = False  # a random spelling per draw: trains late positions, spelling invariance
    spellings_per_molecule: int = 0  # > 0: a prepared corpus spelt this many ways up front (feeds a GPU)
    micro_batch_size: int | None = None  # length-sorted groups of this size per step (less padding on a CPU)
    workers: int | None = None  # processes that canonicalise and describe the corpus once (default: all cores)
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    max_length: int = 256
    batch_size: int = 128
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    max_steps: int = 4500
    time_budget_s: float | None = None  # stop at the first step after this many seconds (a lent GPU's time)
    mask_probability: float = 0.15
    descriptor_weight: float = 1.0
    checkpoint_every: int = 250
    n_eval: int = 2000
    n_descriptor_stats: int = 10000
    seed: int = 0

    def validate(self) -> None:
        _check(0 < self.mask_probability < 1, "mask_probability must be in (0, 1)")
        _check(min(self.max_steps, self.batch_size, self.checkpoint_every, self.n_eval) >= 1,
               "max_steps, batch_size, checkpoint_every and n_eval must be positive")
        _check(self.hidden_size % self.num_heads == 0, "hidden_size must be a multiple of num_heads")
        _check(self.learning_rate > 0 and self.descriptor_weight >= 0,
               "learning_rate must be positive and descriptor_weight non-negative")
        _check(self.descriptor_targets in ("basic", "rdkit"), "descriptor_targets must be 'basic' or 'rdkit'")
        _check(0 <= self.target_dropout < 1, "target_dropout must be in [0, 1)")
        _check(self.micro_batch_size is None or self.micro_batch_size >= 1, "micro_batch_size must be positive")
        _check(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be positive")
        _check(self.spellings_per_molecule >= 0, "spellings_per_molecule must not be negative")

    def fits(self) -> int:
        return 0  # no regressor: its cost is counted in optimizer steps

    def cost_note(self) -> str | None:
        return f"plus {self.max_steps:,} pretraining steps (hours on a CPU)"


@dataclass(frozen=True)
class SearchOptions(MethodOptions):
    """A hyperparameter search (``chemlm tune``) as a job: the job's data, model and training are the base every
    trial varies; ``method`` is the method searched."""

    method: str = "baseline"
    num_samples: int = 20
    time_budget_s: float | None = None  # no new trial starts after this many seconds
    cpus_per_trial: int = 2

    @staticmethod
    def searchable(methods: Mapping[str, Any]) -> tuple[str, ...]:
        """The methods a search can tune: those whose run leaves one regressor."""
        return tuple(name for name, method in methods.items() if method.model == "regressor")

    def check_methods(self, methods: Mapping[str, Any]) -> None:
        searchable = self.searchable(methods)
        _check(self.method in searchable, f"option 'method' must be one of {', '.join(searchable)} (methods "
                                          f"that leave one regressor), not {self.method!r}")

    def validate(self) -> None:
        _check(self.num_samples >= 1 and self.cpus_per_trial >= 1, "num_samples and cpus_per_trial must be positive")
        _check(self.time_budget_s is None or self.time_budget_s > 0, "time_budget_s must be positive")

    def fits(self) -> int:
        return self.num_samples

    def cost_note(self) -> str | None:
        return ("less where ASHA stops weak trials after a quarter of the epochs; more for starting Ray (tens of "
                "seconds)")


@dataclass(frozen=True)
class PredictOptions(MethodOptions):  # a library predicted in the background (the Predict page's large uploads)
    PATHS = ("model", "source")

    model: str = ""  # model folder (a regressor or an ensemble)
    source: str = ""  # CSV or Parquet file
    smiles_column: str | None = None  # default: detected
    chunk_rows: int = 1000  # rows per chunk: progress, cancel and resume points

    def validate(self) -> None:
        missing = [name for name in ("model", "source") if not getattr(self, name)]
        _check(not missing, f"a library prediction needs the options {' and '.join(missing)} (a model folder and the "
                            "file to predict); from the command line: predict --input FILE --output OUT.parquet")
        _check(self.chunk_rows >= 1, f"option 'chunk_rows' must be ≥ 1, not {self.chunk_rows}")

    def fits(self) -> int:
        return 0
