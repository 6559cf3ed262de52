"""Prediction with a trained model: SMILES or a table in, one row per input out (prediction, interval, warnings,
standardisation), the applicability domain against the training set, the ensemble with its conformal
calibration, and why a prediction came out as it did."""
from .batch import (PREDICTION_COLUMNS, measured_metrics, measured_notes, molecule_warnings, parse_pasted,
                    predict_csv, predict_smiles, result_columns, training_rows_note, unread_measured, user_table)
from .domain import DOMAIN_SIMILARITY, TrainingReference, add_applicability_domain, nearest_neighbours
from .ensemble import Conformal, Ensemble, is_ensemble, load_predictor
from .explain import Explanation, explain, prepare_explanations, signed

__all__ = ["PREDICTION_COLUMNS", "measured_metrics", "measured_notes", "molecule_warnings", "parse_pasted",
           "predict_csv", "predict_smiles", "result_columns", "training_rows_note", "unread_measured", "user_table",
           "DOMAIN_SIMILARITY", "TrainingReference", "add_applicability_domain", "nearest_neighbours", "Conformal",
           "Ensemble", "is_ensemble", "load_predictor",
           "Explanation", "explain", "prepare_explanations", "signed"]
