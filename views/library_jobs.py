"""The Predict page's library jobs: an upload too big to predict while the page waits runs as a background job
(streamed to Parquet chunk by chunk, progress and Cancel in the jobs panel), downloadable when done."""
import time
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.columns import name_column, value_column
from chemlm_engine.depict import molecule_image_uri
from chemlm_engine.library import active_twin, annotated_library, kept_rows
from chemlm_engine.library_results import ORDERS, library_window, predictions_of
from chemlm_engine.spec import DEFAULT_REGRESSOR, FAST_REGRESSOR, JobSpec
from chemlm_engine.store import RunRecord
from chemlm_engine.filekinds import is_sd_file, saved_suffix
from chemlm_engine.tables import write_csv
from views.common import model_choices, plain, run_label, store, submit
from views.kept import kept
from views.live import announce, live_jobs
from views.measured import library_against_measured
from views.uploads import upload_columns
from views.why import DOMAIN_COLOURS, domain_flags, warm_explanations, why_this_prediction

CSV_ROWS = 200_000  # more rows: Parquet only (a CSV is built in the server's memory when it is downloaded)
HELD_BYTES = 20e6  # a Parquet output up to this size is passed to its download button as bytes, a larger one on click
SHOWN_ROWS = 100  # rows of a logD window shown with their structures (all of them download)


def offer_library_job(upload, folder: str, smiles_column: str | None, why: str) -> None:
    """Say why the page will not predict ``upload`` itself and offer the background job."""
    st.info(why)
    if measured := value_column([c for c in upload_columns(upload) if c != smiles_column]):
        st.caption(f"Your column {measured} is kept with the results: once they are ready, pick it under \"Library "
                   "predictions\" below for the metrics against it.")
    if folder == DEFAULT_REGRESSOR and Path(FAST_REGRESSOR).exists():
        st.caption("For a large library: the embedded one-pass student (Model, above) predicts about twice as fast "
                   "at the default's accuracy (README, \"One forward pass instead of five\").")
    if st.button("Predict it in the background", type="primary"):
        # the kind of file and its compression (library.smi.gz): the job reads it as the page did
        source = store().save_upload(upload.getvalue(), saved_suffix(upload.name))
        options = {"model": folder, "source": str(source), "smiles_column": smiles_column}
        if running := active_twin(store().runs(), options):  # a second click on the same file and model
            st.info(f"This file is being predicted with this model already: run {running.id}, below.")
        elif queued := submit(JobSpec(method="predict", name=f"predict {upload.name}", options=options)):
            kept = kept_rows(store(), options)
            announce(queued[0], "You queued this prediction: when done, its results are on the Predict page under "
                     "Library predictions." + (f" It continues after the {kept:,} rows a stopped run of this file "
                                               "and model predicted." if kept else ""))


def library_summary(run: RunRecord) -> str:
    """What a finished library prediction made: rows, invalid ones, the model and its speed."""
    model = {folder: label for label, folder in model_choices().items()}.get(run.info["model"], run.info["model"])
    resumed = int(run.metrics.get("resumed_rows") or 0)
    kept = f" ({resumed:,} of them kept from a stopped run)" if resumed else ""
    return (f"{int(run.metrics['rows']):,} rows ({int(run.metrics['invalid']):,} invalid) by {model} at "
            f"{run.metrics['molecules_per_s']:.0f} molecules/s{kept}; one row per input row, in order.")


def _stopped(since: float) -> None:
    """Say what a library job cancelled or interrupted since ``since`` kept, and how to go on from it (unless a later
    job with the same file and model took over: the rows kept are then that one's to say)."""
    runs = [r for r in store().runs() if r.method == "predict"]
    for run in [r for r in runs if r.status in ("cancelled", "interrupted") and r.created_at > since][:3]:
        options = run.spec.get("options") or {}
        if any(r.created_at > run.created_at and r.spec.get("options") == options
               and r.status != "failed" for r in runs):
            continue
        kept = kept_rows(store(), options)
        st.info(f"The background prediction {run_label(run)} was {run.status}: " + (
            f"its first {kept:,} rows are kept (whole chunks: rows of the chunk it stopped in are predicted again). "
            "Upload the same file with the same model and predict it in the background again: it continues after "
            "them." if kept else "it stopped before a chunk of rows was "
            "complete, so nothing was kept."))


def library_results() -> None:
    """Library jobs running (progress, Cancel) and finished (downloads)."""
    live_jobs(("predict",))
    day_ago = time.time() - 86_400
    for failed in [r for r in store().runs(status="failed") if r.method == "predict" and r.created_at > day_ago][:3]:
        st.error(f"The background prediction {run_label(failed)} failed: {plain(failed.error)} (its run, with the "
                 "whole message, is on the Train page)")
    _stopped(day_ago)
    done = [r for r in store().runs(status="finished")
            if r.method == "predict" and r.info.get("output") and Path(r.info["output"]).exists()]
    if not done:
        return
    with st.expander(f"Library predictions ({len(done)})", expanded=True):
        # keyed by the newest: one that finishes is shown at once, not the one chosen before it existed
        run = st.selectbox("Library prediction", done, format_func=run_label, key=f"library-run-{done[0].id}")
        output = Path(run.info["output"])
        rows = int(run.metrics["rows"])
        st.caption(library_summary(run))
        a, b, c = st.columns(3)
        # The file's bytes, not a deferred callable: a deferred button was seen disabled for a minute in the test
        # suite (never alone); a large one is read on click, not held in memory on every rerun (a million rows ~100 MB).
        parquet = output.read_bytes() if output.stat().st_size <= HELD_BYTES else output.read_bytes
        a.download_button("Download (Parquet)", parquet, f"predictions-{run.id}.parquet",
                          "application/vnd.apache.parquet", key="library-parquet")
        if rows <= CSV_ROWS:
            # nullable types: a blank in a column of whole numbers leaves the others 12, not 12.0
            whole = lambda: write_csv(pd.read_parquet(output, dtype_backend="numpy_nullable"))  # noqa: E731
            b.download_button("Download (CSV)", whole, f"predictions-{run.id}.csv", "text/csv", key="library-csv")
        source = (run.spec.get("options") or {}).get("source") or ""  # a spec from elsewhere may lack it
        if rows <= CSV_ROWS and is_sd_file(source) and Path(source).exists():
            c.download_button("Download (SD file)", lambda: _sd_copy(output, source),
                              f"predictions-{run.id}.sdf", "chemical/x-mdl-sdfile", key="library-sdf")
        library_against_measured(run, output)
        _browse(run, output)


def _sd_copy(output: Path, source: str) -> bytes:
    """The SD file with its results, written once beside the run's Parquet record by record (a copy built in memory
    took 3.4 GB for 200,000 records, `bench/sd_writeback.py`), then read for the download."""
    copy = output.with_suffix(".sdf")
    if not copy.exists():
        annotated_library(output, source, copy)
    return copy.read_bytes()


@st.cache_data(max_entries=4, show_spinner=False)
def _predictions(output: str, written: float) -> tuple[np.ndarray, np.ndarray]:  # written: a new file, a new entry
    return predictions_of(output)


@st.cache_data(max_entries=8, show_spinner="Reading the rows in the window …")
def _window(output: str, written: float, low: float, high: float, inside_only: bool, limit: int | None,
            order: str) -> tuple[pd.DataFrame, int]:
    return library_window(output, low, high, inside_only, limit, order)


def _window_csv(output: Path, window: tuple[float, float], inside_only: bool, order: str) -> str | None:
    return write_csv(library_window(output, *window, inside_only, order=order)[0])


def _browse(run: RunRecord, output: Path) -> None:
    """The library's predicted logD distribution, and its rows in a logD window (structures, download)."""
    written = output.stat().st_mtime
    values, domain = _predictions(str(output), written)
    if not len(values):
        st.caption("No row of this library could be predicted (the downloads say why, row by row).")
        return
    low, high = float(np.floor(values.min() * 10) / 10), float(np.ceil(values.max() * 10) / 10)
    edges = np.linspace(low, high, 41)
    bars = pd.DataFrame([{"logD": (a + b) / 2, "molecules": n, "domain": place}
                         for place in ("inside", "outside", "unknown")
                         for a, b, n in zip(edges, edges[1:], np.histogram(values[domain == place], edges)[0])])
    st.plotly_chart(px.bar(bars[bars["molecules"] > 0], x="logD", y="molecules", color="domain", height=260,
                           color_discrete_map=DOMAIN_COLOURS,
                           labels={"logD": "predicted logD"}).update_layout(margin={"t": 10, "b": 0}),
                    key=f"library-distribution-{run.id}")
    a, b, c = st.columns([5, 3, 2], vertical_alignment="bottom")
    high = max(high, low + 0.1)
    keep_window = kept(f"library-window-{run.id}")  # the window and filter outlive a visit to another page
    st.session_state.setdefault(keep_window["key"], (low, high))
    window = a.slider("Predicted logD window", low, high, step=0.1, **keep_window)
    inside_only = b.checkbox("Inside the domain only", disabled=not (domain != "unknown").any(),
                             help="Only molecules inside the applicability domain: a training molecule is similar.",
                             **kept(f"library-inside-{run.id}"))
    order = c.selectbox("Rows shown", list(ORDERS), **kept(f"library-order-{run.id}"),
                        help="Which of the window's rows the table shows (the download holds all, in this order).")
    shown, count = _window(str(output), written, *window, inside_only, SHOWN_ROWS, order)
    st.caption(f"{count:,} of {len(values):,} predicted molecules in the window"
               + (f"; the first {len(shown):,} ({order}) below" if count else ""))
    if not count:
        return
    shown.insert(1, "structure", [molecule_image_uri(s, (200, 140)) for s in shown["canonical_smiles"]])
    results = shown.columns.get_loc("canonical_smiles")  # the file's own columns come before it
    own = list(shown.columns[2:results])
    known = shown["in_domain"] if "in_domain" in shown else pd.Series(None, index=shown.index, dtype=object)
    shown["domain"] = domain_flags(known, shown.get("in_training"))
    name = name_column(list(own))  # the file's name or ID column
    # as in the page's own results: what a chemist reads first, then the file's other columns (its SMILES among them)
    columns = ["row", "structure", name, "prediction", "uncertainty", "interval_low", "interval_high", "domain",
               "similarity", *own, "warnings"]
    st.dataframe(shown, hide_index=True, row_height=80, height=min(90 + 81 * len(shown), 520),
                 column_order=[c for c in dict.fromkeys(columns) if c in shown.columns], column_config={
                     "structure": st.column_config.ImageColumn("structure", width=120),
                     "prediction": st.column_config.NumberColumn("logD", format="%.2f"),
                     "uncertainty": st.column_config.NumberColumn("±", format="%.2f"),
                     "interval_low": st.column_config.NumberColumn("90 % from", format="%.2f"),
                     "interval_high": st.column_config.NumberColumn("to", format="%.2f"),
                     "similarity": st.column_config.NumberColumn("similarity", format="%.2f")})
    if count <= CSV_ROWS:  # built on click, from the file, not kept in the page
        st.download_button(f"Download the {count:,} rows in the window (CSV)",
                           partial(_window_csv, output, window, inside_only, order),
                           f"predictions-{run.id}-logD-{window[0]:g}-to-{window[1]:g}{'-in-domain' * inside_only}.csv",
                           "text/csv",
                           key="library-window-csv")
    else:
        st.caption(f"Over {CSV_ROWS:,} rows in the window: narrow it to download them as CSV, or take the whole "
                   "library as Parquet (above).")
    warm_explanations(run.info["model"])  # a finished library is read now: "Why?" should answer at once
    # picked by row number, not by place in the table: another order or window keeps the molecule, or drops it
    why_this_prediction(shown.assign(name=shown[name].fillna("").astype(str) if name else "").set_index(
        "row", drop=False), run.info["model"], key=f"library-why-{run.id}")
