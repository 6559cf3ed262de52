"""`predict`'s metrics line against a measured column."""
import pandas as pd


def test_the_metrics_line_counts_rows_as_a_whole_number(capsys):
    import numpy as np

    from chemlm_engine.cli_predict import _say_metrics

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"prediction": rng.normal(size=1093), "measured": rng.normal(size=1093)})
    frame.attrs["measured_column"] = "logD7.4 (exp)"
    _say_metrics(frame)
    assert capsys.readouterr().err.startswith("against measured (logD7.4 (exp)): n 1,093, mse ")  # not n 1.09e+03


def test_the_pages_metrics_line_counts_rows_whole_and_gives_each_metric_three_decimals():
    from views.measured import metrics_line

    line = metrics_line({"n": 5294, "r2": -0.7042, "rmse": 0.82, "mae": 0.5821, "coverage": 0.531})
    assert line == "**n** 5,294 · **R²** -0.704 · **RMSE** 0.820 · **MAE** 0.582 · **inside the 90% interval** 53%"
    assert metrics_line({"n": 12, "r2": 0.5, "rmse": 1.0, "mae": 0.9}).endswith("**MAE** 0.900")  # no intervals
