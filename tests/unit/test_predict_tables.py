"""The prediction table's extras: the nearest training molecule with its measured value, metrics for my data."""
import numpy as np
import pandas as pd

from chemlm_engine.predict import add_applicability_domain, measured_metrics


def test_the_nearest_training_molecule_comes_with_its_measured_value():
    frame = pd.DataFrame({"canonical_smiles": ["CCCO", None], "error": [None, "cannot parse"]})
    out = add_applicability_domain(frame, ["CCCCO", "c1ccccc1"], [1.5, 2.0])
    assert out.loc[0, "nearest_training_smiles"] == "CCCCO" and out.loc[0, "nearest_training_label"] == 1.5
    assert np.isnan(out.loc[1, "nearest_training_label"]) and out.loc[1, "in_domain"] is None


def test_measured_metrics_use_rows_with_both_values_only():
    frame = pd.DataFrame({"prediction": [1.0, 2.0, np.nan, 4.0], "measured": [1.0, 2.5, 3.0, np.nan]})
    metrics = measured_metrics(frame)
    assert metrics["n"] == 2 and np.isclose(metrics["mae"], 0.25) and np.isclose(metrics["mse"], 0.125)
    assert measured_metrics(frame.iloc[:1]) == {"n": 1}
