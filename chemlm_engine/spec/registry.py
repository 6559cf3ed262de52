"""The method registry: one entry per method with its label, its frozen options dataclass (validated in
``__post_init__``, peft style) and its run function.

Config, jobs, compare, the pages and the CLI all read :data:`METHODS`. Run functions are named as entry
points (``module:function``) and imported only when a job runs, so this module — read by
:mod:`~chemlm_engine.spec.config` — imports nothing heavy and imports keep pointing one way.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from typing import Any

from ..errors import ConfigError
from .job_options import PredictOptions, PretrainOptions, SearchOptions
from .options import (BaselineOptions, CurriculumOptions, DistillOptions, EnsembleOptions, InfluenceOptions,
                      IsalOptions, LoraOptions, MethodOptions, MlmOptions, UncertaintyOptions)

__all__ = ["METHODS", "Method", "model_kind", "parse_options", "searchable"]


@dataclass(frozen=True)
class Method:
    """A registry entry: what users read, what the method accepts, and what runs it."""

    label: str
    options: type[MethodOptions]
    run: str  # entry point "module:function(ctx, data, opts: options) -> test metrics"
    model: str = "regressor"  # what a finished run leaves: "regressor", "ensemble", "backbone", "scores", "predictions"
    needs_base_run: bool = False  # launched from a finished single regressor (its data, recipe and seed)
    needs_data: bool = True  # trains on the spec's data (checked before the run); False: the options name its input
    needs_teacher: bool = False  # learns from a finished ensemble (option ``teacher``), which the form offers
    check: str = ""  # entry point "module:function(spec, data, store)" raising why the job cannot run, before a run

    def load(self) -> Callable:
        """Import the run function (only a job needs it)."""
        return EntryPoint(name="", value=self.run, group="chemlm.methods").load()

    def load_check(self) -> Callable | None:
        """Import the method's own check before a run (None: the data check is all)."""
        return EntryPoint(name="", value=self.check, group="chemlm.methods").load() if self.check else None


_PEFT = "chemlm_engine.methods.peft:run_strategy"
_ACTIVE_CHECK = "chemlm_engine.methods.uncertainty:check_active_learning"
METHODS: dict[str, Method] = {
    "baseline": Method("baseline (full fine-tuning)", BaselineOptions, "chemlm_engine.methods.baseline:run_baseline"),
    "mlm": Method("MLM then regression (masked LM on the task SMILES first)", MlmOptions,
                  "chemlm_engine.methods.mlm:run_mlm_then_regression"),
    "curriculum": Method("curriculum (short SMILES first)", CurriculumOptions,
                         "chemlm_engine.methods.curriculum:run_curriculum",
                         check="chemlm_engine.methods.curriculum:check_epochs"),
    "isal": Method("ISAL: influence selection for active learning", IsalOptions,
                   "chemlm_engine.methods.uncertainty:run_active_learning", check=_ACTIVE_CHECK),
    "uncertainty": Method("uncertainty sampling (active learning)", UncertaintyOptions,
                          "chemlm_engine.methods.uncertainty:run_active_learning", check=_ACTIVE_CHECK),
    "bitfit": Method("BitFit (biases + head)", MethodOptions, _PEFT),
    "lora": Method("LoRA (low-rank adapters on q, k, v)", LoraOptions, _PEFT),
    "ia3": Method("IA3 (keys, values, feed-forward)", MethodOptions, _PEFT),
    "ia3-pooled": Method("IA3 pooled (one scaling vector)", MethodOptions, _PEFT),
    "influence": Method("influence selection (held-out pool)", InfluenceOptions,
                        "chemlm_engine.methods.influence.job:run_influence", model="scores", needs_base_run=True,
                        check="chemlm_engine.methods.influence.job:check_pool"),
    "ensemble": Method("deep ensemble (conformal intervals)", EnsembleOptions,
                       "chemlm_engine.methods.ensemble:run_ensemble", model="ensemble"),
    "distill": Method("distilled ensemble (one student, the members' spread, conformal intervals)", DistillOptions,
                      "chemlm_engine.methods.distill:run_distill", model="ensemble", needs_teacher=True,
                      check="chemlm_engine.methods.distill:check_teacher"),
    "search": Method("hyperparameter search (Ray Tune, ASHA, validation split)", SearchOptions,
                     "chemlm_engine.tune:run_search_job", model="scores"),
    "pretrain": Method("pretraining a new backbone (masked LM + descriptors)", PretrainOptions,
                       "chemlm_engine.methods.pretrain.job:run_pretraining", model="backbone",
                       check="chemlm_engine.methods.pretrain.job:check_corpus"),
    "predict": Method("library prediction (streamed to Parquet)", PredictOptions,
                      "chemlm_engine.library:run_library_job", model="predictions", needs_data=False),
}


def model_kind(method: str) -> str:
    """What a finished run of ``method`` leaves (see :attr:`Method.model`); ``"unknown"`` for a method this version
    does not have (a run stored by another version)."""
    return METHODS[method].model if method in METHODS else "unknown"


def parse_options(method: str, raw: Mapping[str, Any] | None = None) -> MethodOptions:
    """The typed options of ``method`` from their JSON form (``ConfigError`` for an unknown method or key)."""
    if method not in METHODS:
        raise ConfigError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    options = METHODS[method].options.from_dict(raw or {})
    options.check_methods(METHODS)
    return options


def searchable() -> tuple[str, ...]:
    """Methods a hyperparameter search can tune (see :meth:`SearchOptions.searchable`)."""
    return SearchOptions.searchable(METHODS)
