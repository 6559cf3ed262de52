"""Predict: logD for pasted or uploaded SMILES, with uncertainty, the applicability domain and the user's columns."""
import hashlib

import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.depict import grid_image, molecule_image_uri
from chemlm_engine.predict import (DOMAIN_SIMILARITY, add_applicability_domain, is_ensemble, parse_pasted,
                                   predict_csv, predict_smiles, result_columns, user_table)
from chemlm_engine.errors import ChemLMError
from chemlm_engine.filekinds import TABLE_TYPES, is_sd_file
from chemlm_engine.sdfile import frame_rows, write_sd
from chemlm_engine.tables import write_csv, write_xlsx
from views.common import fmt3, load_model, model_choices, plain, training_reference
from views.uploads import column_pickers, upload_too_big
from views.kept import gone, kept, labelled_selectbox
from views.library_jobs import library_results, offer_library_job
from views.measured import against_measured
from views.why import DOMAIN_COLOURS, domain_flags, warm_explanations, why_this_prediction

PICTURED = 500  # result rows drawn with their structure and nearest training molecule

st.title("Predict logD")
choices = model_choices()
if not choices:
    st.warning("No model available yet: train one on the Train page.")
    st.stop()
# Keyed by folder, not label (a label may change); kept while other pages show, as are the input mode, text and option.
labels = {folder: label for label, folder in choices.items()}
folder = labelled_selectbox("Model", labels, **kept("predict_folder", labels))
if deleted := st.session_state.pop(gone("predict_folder"), None):
    st.warning(f"The model chosen before is gone (its run was deleted, in another tab?): {labels[folder]} is chosen "
               "now. Press Predict again to predict with it, or choose another.")

modes = ["Paste SMILES", "Upload a file"]
mode = st.radio("Input", modes, horizontal=True, **kept("predict_mode", modes))
text, upload, columns = "", None, {}
if mode == "Paste SMILES":
    text = st.text_area("One SMILES per line, optionally followed by a name (space or tab)", height=140,
                        **kept("predict_text"), placeholder="e.g.  CC(=O)Oc1ccccc1C(=O)O  aspirin")
else:
    upload = st.file_uploader("CSV with a SMILES column (every other column is kept in the results), a SMILES file "
                              "(.smi: a SMILES and a name per line), an SD file, an Excel workbook (.xlsx) or a "
                              "Parquet library; compressed too", type=[*TABLE_TYPES, "parquet"])
    if upload is not None:
        too_big = upload_too_big(upload)  # a library job keeps every column: it asks for the SMILES column only
        columns = column_pickers(upload, value=None if too_big else "measured")
        if too_big:
            if columns is not None:  # a readable file with its SMILES column
                offer_library_job(upload, folder, columns["smiles_column"], too_big)
            library_results()
            st.stop()  # nothing below applies to a library

ensemble = is_ensemble(folder)
passes = 0 if ensemble else 20 * st.checkbox("MC-dropout uncertainty (20 stochastic passes)",
                                              **kept("predict_mc", default=("value", True)))
if ensemble:
    st.caption("An ensemble (the default blends in descriptor trees) or its student: mean ± spread, 90 % interval.")

# Results belong to one input and setup (model, option); with no input (uploads are not kept) they stay with the setup.
# Another file, even one whose SMILES column is not chosen yet, is another input: the last file's results go.
has_input = bool(text.strip() or (upload and columns is not None))
uploaded = hashlib.sha256(upload.getvalue()).hexdigest() if upload else ""
setup = (folder, passes)
key = hashlib.sha256(repr((mode, text, uploaded, columns, setup)).encode()).hexdigest()
if st.session_state.get("predictions_key") != key and (has_input or upload is not None
                                                       or st.session_state.get("predictions_setup") != setup):
    st.session_state.pop("predictions", None)

# Never disabled: a click that also commits a freshly pasted text must not be lost.
clicked = st.button("Predict", type="primary")
if clicked and not has_input:  # an upload that cannot be predicted yet says why above
    st.warning("Paste SMILES or upload a CSV first." if upload is None else "This file cannot be predicted: see above.")
if clicked and has_input and not deleted:  # the model just changed under the click: not what the user chose
    bar = st.progress(0.0, text="Loading the model and reading the molecules …")

    def report(done: int, total: int) -> None:
        bar.progress(done / max(total, 1), text=f"Predicted {done:,} of {total:,} molecules")

    try:
        model = load_model(folder)
        if mode == "Paste SMILES":
            smiles, names, lines = parse_pasted(text)
            result = predict_smiles(model, smiles, names, mc_passes=passes, progress=report)
            result["row"] = lines  # the line in the box, blank ones skipped
        else:
            result = predict_csv(model, upload, mc_passes=passes, progress=report, **columns)
        bar.progress(1.0, text="Checking the applicability domain …")
        st.session_state["predictions"] = add_applicability_domain(result, training_reference(folder))
        st.session_state["predictions_key"], st.session_state["predictions_setup"] = key, setup
        warm_explanations(folder)  # while the chemist reads the table: "Why?" then answers at once
    except ChemLMError as exc:
        st.error(plain(exc))
    bar.empty()

result = st.session_state.get("predictions")
if result is None:
    library_results()
    st.stop()
if not has_input:
    st.caption("The results of your last prediction (an uploaded file is not kept when you visit another page).")
ok = result[result["error"].isna()].copy()
bad = result[result["error"].notna()]
outside = int((ok["in_domain"] == False).sum())  # noqa: E712 - None (no training set) is not "outside"
cols = st.columns(4)
cols[0].metric("Predicted", f"{len(ok):,}")
cols[1].metric("Invalid", f"{len(bad):,}")
cols[2].metric("Outside the domain", f"{outside:,}", help=f"Tanimoto similarity below {DOMAIN_SIMILARITY} to every "
               "training molecule (Morgan radius 2): treat these predictions with care.")
cols[3].metric("Median logD", fmt3(ok["prediction"].median()) if len(ok) else "–")
notes = [f"{n:,} molecule{'s' * (n > 1)} {what}" for n, what in (
    (int(ok["warnings"].notna().sum()),
     "with a warning: read in part, or too large for some descriptors (the warnings column)"),
    (int(ok["standardization"].notna().sum()),
     "standardised as the training data was (what changed: the standardization column)")) if n]
if notes:
    st.info("; ".join(notes) + ".")
ok["domain"] = domain_flags(ok["in_domain"], ok["in_training"])
if "interval_low" in ok:
    ok["interval"] = [f"{lo:.2f} to {hi:.2f}" for lo, hi in zip(ok["interval_low"], ok["interval_high"])]
tabs = st.tabs(["Results", "Structures", f"Invalid rows ({len(bad)})", "Distribution"]
               + (["Against measured"] if "measured" in result else []))
with tabs[0]:
    shown = ok.copy()
    # Pictures for the first PICTURED rows only: all 4,200 of a file took 40 s on every rerun of the page (drawing)
    drawn = shown.head(PICTURED)
    shown.insert(0, "structure", pd.Series([molecule_image_uri(s, (200, 140)) for s in drawn["canonical_smiles"]],
                                           index=drawn.index))
    shown["nearest"] = pd.Series([molecule_image_uri(s, (200, 140)) for s in drawn["nearest_training_smiles"]],
                                 index=drawn.index)
    if len(shown) > PICTURED:
        st.caption(f"Structures are drawn for the first {PICTURED:,} rows (the Structures tab and \"Why this "
                   "prediction?\" show any molecule); every row is in the table and the downloads.")
    shown[["warnings", "standardization"]] = shown[["warnings", "standardization"]].fillna("")  # not "None"
    # the file's other columns (project, series …); its SMILES and name columns are already "input" and "name"
    user = [c for c in result.attrs.get("input_columns", [])
            if not (shown[c].equals(shown["input"]) or shown[c].equals(shown["name"]))]
    # what a chemist reads first fits a laptop screen; the nearest molecule's value before its picture
    first = ["row", "structure", "name", "prediction", "uncertainty", "interval", "domain",
             *(["measured"] if "measured" in result else []), "similarity", "nearest_training_label", "nearest",
             *user]
    rest = ["warnings", "standardization", "input", "canonical_smiles"]
    # room for the rows, the header and a horizontal scrollbar (more room looked like an empty row)
    st.dataframe(shown, hide_index=True, row_height=80, height=min(52 + 81 * len(shown), 620),
                 column_order=[c for c in dict.fromkeys(first + rest) if c in shown.columns], column_config={
                     "row": st.column_config.NumberColumn("row", width="small"),
                     "structure": st.column_config.ImageColumn("structure", width=120),  # 4 more columns at 900 px
                     "prediction": st.column_config.NumberColumn("logD", format="%.2f"),
                     "uncertainty": st.column_config.NumberColumn("±", format="%.2f", help="MC-dropout std" if not
                                                                  ensemble else "Members' std (distilled: predicted)"),
                     "interval": st.column_config.TextColumn("90 % interval"),
                     "similarity": st.column_config.NumberColumn("similarity", format="%.2f",
                                                                 help="Tanimoto to the nearest training molecule"),
                     "nearest": st.column_config.ImageColumn("nearest training molecule", width=120),
                     "nearest_training_label": st.column_config.NumberColumn("nearest's measured logD", format="%.2f"),
                     "measured": st.column_config.NumberColumn("measured", format="%.2f")})
with tabs[1]:
    page = ok.head(40)
    st.caption(f"The first {len(page)} predicted molecules (name: logD +/- uncertainty, and whether it is outside "
               "the applicability domain).")
    if len(page):
        spread = page["uncertainty"] if "uncertainty" in page else [None] * len(page)
        # plain ASCII: the drawing's font has no ·, ± or ⚠ (they vanished from the legends)
        legends = [f"{n or f'row {r}'}: {p:.2f}" + (f" +/- {u:.2f}" if pd.notna(u) else "")
                   + " (outside domain)" * (d[0] == "⚠")
                   for n, r, p, u, d in zip(page["name"], page["row"], page["prediction"], spread, page["domain"])]
        st.image(grid_image(page["canonical_smiles"].tolist(), legends))
with tabs[2]:
    if len(bad):
        # the reason before the input: a 5,000-character SMILES pushed it out of view
        st.dataframe(bad[["row", "name", "error", "input"]], hide_index=True, width="stretch",
                     column_config={"error": st.column_config.TextColumn("why it cannot be predicted", width="large")})
    else:
        st.caption("Every row was predicted.")
with tabs[3]:
    st.plotly_chart(px.histogram(ok, x="prediction", color="domain", nbins=40, height=320,
                                 color_discrete_map=DOMAIN_COLOURS,
                                 labels={"prediction": "predicted logD"}))
if "measured" in result:
    with tabs[4]:
        against_measured(ok, "Your data")
# one picker per input and setup: new results start unchosen (a row number of the old ones would be another
# molecule; the browser kept showing the old label on a reused picker), the same results keep their choice
why_this_prediction(ok, folder, key=f"why-row-{st.session_state['predictions_key'][:16]}")
st.download_button("Download all rows (CSV: your columns as in your file, then the results)",
                   write_csv(user_table(result)), "predictions.csv", "text/csv", on_click="ignore")
# built on click, not on every rerun: a workbook of 5,000 rows takes ~1 s
st.download_button("Download all rows (Excel workbook)", lambda: write_xlsx(user_table(result)), "predictions.xlsx",
                   "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", on_click="ignore")
if upload is not None and is_sd_file(upload):  # the records as uploaded (coordinates, fields), the results added
    st.download_button("Download as an SD file (your records, each with its results as chemlm_* fields)",
                       write_sd(upload, *frame_rows(result[result_columns(result)])), "predictions.sdf",
                       "chemical/x-mdl-sdfile", on_click="ignore")
library_results()  # below what was just predicted, which a chemist reads first
