"""What a job is: its settings (data, model, training, executor) and the registry of methods with their typed
options. The lowest package but one: it imports only the errors and molecule standardisation, so every other
layer — store, models, methods, jobs, the app — may use it."""
from .config import (ASSETS_DIR, DEFAULT_BACKBONE, DEFAULT_REGRESSOR, EMBEDDED_BACKBONE, ENSEMBLE_FILE, EXECUTORS,
                     FAST_REGRESSOR, PRECISIONS, REGRESSOR_FILE, DataSpec, JobSpec, ModelSpec, TrainConfig, holds_model)
from .job_options import PredictOptions, PretrainOptions, SearchOptions
from .options import (DIFFICULTIES, PACINGS, BaselineOptions, CurriculumOptions, DistillOptions, EnsembleOptions,
                      InfluenceOptions, IsalOptions, LoraOptions, MethodOptions, MlmOptions, UncertaintyOptions)
from .registry import METHODS, Method, model_kind, parse_options, searchable

__all__ = ["ASSETS_DIR", "DEFAULT_BACKBONE", "DEFAULT_REGRESSOR", "EMBEDDED_BACKBONE", "FAST_REGRESSOR", "EXECUTORS",
           "REGRESSOR_FILE", "ENSEMBLE_FILE", "holds_model", "PRECISIONS", "DataSpec", "JobSpec", "ModelSpec",
           "TrainConfig", "DIFFICULTIES", "METHODS", "PACINGS", "BaselineOptions", "CurriculumOptions",
           "DistillOptions", "EnsembleOptions", "InfluenceOptions", "IsalOptions", "LoraOptions", "Method",
           "MethodOptions", "MlmOptions", "PredictOptions", "PretrainOptions", "SearchOptions", "UncertaintyOptions",
           "model_kind", "parse_options", "searchable"]
