"""The Predict page's library jobs: an upload too big to predict while the page waits runs as a background job
(streamed to Parquet chunk by chunk, progress and Cancel in the jobs panel), downloadable when done."""
from pathlib import Path

import pandas as pd
import streamlit as st

from chemlm_engine.library import active_twin, annotated_library, kept_rows
from chemlm_engine.spec import DEFAULT_REGRESSOR, FAST_REGRESSOR, JobSpec
from chemlm_engine.store import RunRecord
from chemlm_engine.filekinds import is_sd_file, saved_suffix
from chemlm_engine.tables import write_csv
from views.common import model_choices, run_label, store, submit
from views.live import live_jobs

CSV_ROWS = 200_000  # more rows: Parquet only (a CSV is built in the server's memory when it is downloaded)


def offer_library_job(upload, folder: str, smiles_column: str | None, why: str) -> None:
    """Say why the page will not predict ``upload`` itself and offer the background job."""
    st.info(why)
    if folder == DEFAULT_REGRESSOR and Path(FAST_REGRESSOR).exists():
        st.caption("For a large library: the embedded one-pass student (Model, above) predicts about twice as fast "
                   "at the default's accuracy (README, \"One forward pass instead of five\").")
    if st.button("Predict it in the background", type="primary"):
        # the kind of file and its compression (library.smi.gz): the job reads it as the page did
        source = store().save_upload(upload.getvalue(), saved_suffix(upload.name))
        options = {"model": folder, "source": str(source), "smiles_column": smiles_column}
        if running := active_twin(store().runs(), options):  # a second click (the first one's message is gone)
            st.info(f"This file is being predicted with this model already: run {running.id}, below.")
        elif queued := submit(JobSpec(method="predict", name=f"predict {upload.name}", options=options)):
            kept = kept_rows(store(), options)
            st.success(f"Queued run {queued[0]}: follow it below; its results are downloadable here when done."
                       + (f" It continues after the {kept:,} rows a stopped run of this file and model predicted."
                          if kept else ""))


def library_summary(run: RunRecord) -> str:
    """What a finished library prediction made: rows, invalid ones, the model and its speed."""
    model = {folder: label for label, folder in model_choices().items()}.get(run.info["model"], run.info["model"])
    resumed = int(run.metrics.get("resumed_rows") or 0)
    kept = f" ({resumed:,} of them kept from a stopped run)" if resumed else ""
    return (f"{int(run.metrics['rows']):,} rows ({int(run.metrics['invalid']):,} invalid) by {model} at "
            f"{run.metrics['molecules_per_s']:.0f} molecules/s{kept}; one row per input row, in order.")


def library_results() -> None:
    """Library jobs running (progress, Cancel) and finished (downloads)."""
    live_jobs(("predict",))
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
        # suite (never alone); the CSV, built on click, stays deferred.
        a.download_button("Download (Parquet)", output.read_bytes(), f"predictions-{run.id}.parquet",
                          "application/vnd.apache.parquet", key="library-parquet")
        if rows <= CSV_ROWS:
            b.download_button("Download (CSV)", lambda: write_csv(pd.read_parquet(output)), f"predictions-{run.id}.csv",
                              "text/csv", key="library-csv")
        source = (run.spec.get("options") or {}).get("source") or ""  # a spec from elsewhere may lack it
        if rows <= CSV_ROWS and is_sd_file(source) and Path(source).exists():
            c.download_button("Download (SD file)", lambda: annotated_library(output, source),
                              f"predictions-{run.id}.sdf", "chemical/x-mdl-sdfile", key="library-sdf")
