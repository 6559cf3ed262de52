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


def test_the_notes_account_for_every_predicted_row_the_metrics_leave_out_and_warn_on_few():
    """QA: 12 rows, n 3, 6 training molecules, 2 cells not numbers — and the blank row said nowhere; R² on n = 3."""
    from chemlm_engine.predict.batch import measured_metrics, measured_notes, read_measured

    cells = pd.Series(["1.0", "2.0", "0.5", "n.d.", ">4", "", "1", "2", "3", "4", "5", "6"])
    frame = pd.DataFrame({"prediction": [1.2, 1.7, 0.9, 1.0, 2.0, 3.0, 1, 2, 3, 4, 5, 6],
                          "in_training": [False] * 6 + [True] * 6})
    frame["measured"], frame.attrs["measured_note"] = read_measured(cells)
    metrics = measured_metrics(frame)
    assert metrics["n"] == 3 and metrics["in_training"] == 6
    notes = measured_notes(frame, metrics)
    assert notes[0].startswith("6 rows are molecules the model trained on")
    assert notes[1].startswith("2 measured values are not a number (e.g. 'n.d.')")
    assert notes[2] == ("3 predicted rows have no measured value (a blank cell, or one that is not a number): not in "
                        "these numbers")  # 3 + 6 + 3 = 12
    assert notes[3] == "only 3 rows are scored: on so few, one more row can move R² a long way"
    trained = frame.iloc[6:].copy()
    trained.attrs = {}  # none of its cells is text
    assert measured_notes(trained, measured_metrics(trained)) == [
        "6 rows are molecules the model trained on, or a stereoisomer of one (in_training): not in these numbers"]
