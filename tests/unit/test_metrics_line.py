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
