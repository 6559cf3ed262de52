"""Predictions against the user's measured values: the metrics, what they leave out, and the parity plot, for the
page's own results and for a finished library (read from its Parquet output: a few columns, any size)."""
from pathlib import Path

import pandas as pd
import streamlit as st

from chemlm_engine.columns import value_column
from chemlm_engine.library_results import input_columns, measured_frame
from chemlm_engine.predict import measured_metrics, measured_notes, unread_measured
from chemlm_engine.store import RunRecord
from views.common import parity_plot
from views.kept import kept

PLOTTED = 5_000  # points of a parity plot at most: beyond, a seeded sample of the rows the metrics count
NONE = "(none)"


def metrics_line(metrics: dict[str, float], promised: float = 0.9) -> str:
    """The metrics in one line: the count whole, the others to three decimals (logD units, and R²)."""
    return " · ".join([f"**n** {metrics['n']:,}", *(f"**{name}** {metrics[key]:.3f}" for name, key in (
        ("R²", "r2"), ("RMSE", "rmse"), ("MAE", "mae")))] + (
        [f"**inside the {promised:.0%} interval** {metrics['coverage']:.0%}"] if "coverage" in metrics else []))


def measured_summary(metrics: dict[str, float], promised: float = 0.9) -> None:
    """The metrics against a user's measured values; where the intervals hold clearly fewer of them than promised
    (beyond two binomial standard errors), the likely reason in words."""
    st.markdown(metrics_line(metrics, promised))
    if metrics.get("coverage", 1.0) < promised - 2 * (promised * (1 - promised) / metrics["n"]) ** 0.5:
        st.warning(f"Only {metrics['coverage']:.0%} of your measured values lie inside their {promised:.0%} interval, "
                   "fewer than chance explains: the intervals were calibrated on data like the training data, and "
                   "yours differ (another assay or protocol, another series). Read them as too narrow for your data.")


def against_measured(frame: pd.DataFrame, title: str, key: str | None = None) -> None:
    """Metrics and parity plot of ``frame``'s predictions against its ``measured`` column."""
    metrics = measured_metrics(frame)
    if unread_measured(frame):
        st.warning(f"{unread_measured(frame)}.")
    if metrics["n"] < 2:
        st.caption("Fewer than two rows have both a prediction and a measured value"
                   + (" and a molecule the model was not trained on." if metrics.get("in_training") else "."))
        return
    measured_summary(metrics)
    for note in measured_notes(frame, metrics):
        if note != unread_measured(frame):  # a warning above
            st.caption(f"{note[0].upper()}{note[1:]}.")
    scored = frame[frame["prediction"].notna() & frame["measured"].notna()]
    if "in_training" in scored:
        scored = scored[scored["in_training"].ne(True)]  # the rows the numbers above count
    shown = scored.sample(PLOTTED, random_state=0) if len(scored) > PLOTTED else scored
    if len(shown) < len(scored):
        st.caption(f"The plot shows {len(shown):,} of these {len(scored):,} rows, drawn at random; the numbers above "
                   "count them all.")
    st.plotly_chart(parity_plot(shown, "measured", "prediction", title), key=key)


@st.cache_data(max_entries=4, show_spinner="Reading the measured values …")
def _library_measured(output: str, written: float, column: str) -> pd.DataFrame:  # written: a new file, a new entry
    return measured_frame(output, column)


def library_against_measured(run: RunRecord, output: Path) -> None:
    """The library's metrics against a column of its file, picked here (preset to one named as measured values are,
    as the page presets it for a file it predicts itself)."""
    columns = input_columns(output)
    choices = [NONE, *columns]
    picker = kept(f"library-measured-{run.id}", choices)
    st.session_state.setdefault(picker["key"], value_column(columns) or NONE)
    column = st.selectbox("Measured value column of your file (optional)", choices, **picker,
                          help="Metrics and a parity plot of the predictions against it; the model's own training "
                               "molecules are left out of them.")
    if column != NONE:
        with st.container(border=True):
            against_measured(_library_measured(str(output), output.stat().st_mtime, column), "Your library",
                             key=f"library-parity-{run.id}")
