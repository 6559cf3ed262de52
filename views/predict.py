"""Predict: logD for pasted or uploaded SMILES, with structures and an applicability-domain check."""
import streamlit as st

from chemlm_engine.depict import molecule_image_uri
from chemlm_engine.ensemble import is_ensemble
from chemlm_engine.errors import ChemLMError
from chemlm_engine.tables import write_csv
from chemlm_engine.predict import DOMAIN_SIMILARITY, add_applicability_domain, parse_pasted, predict_csv, \
    predict_smiles
from views.common import load_model, model_choices, training_smiles

st.title("Predict logD")

choices = model_choices()
if not choices:
    st.warning("No model available yet: train one on the Train page.")
    st.stop()
model_label = st.selectbox("Model", list(choices))
folder = choices[model_label]

mode = st.radio("Input", ["Paste SMILES", "Upload CSV"], horizontal=True)
text, upload = "", None
if mode == "Paste SMILES":
    text = st.text_area("One SMILES per line, optionally followed by a name (space or tab)", height=160,
                        placeholder="CC(=O)Oc1ccccc1C(=O)O aspirin\nCn1cnc2c1c(=O)n(C)c(=O)n2C caffeine")
else:
    upload = st.file_uploader("CSV with a SMILES column", type=["csv"])

ensemble = is_ensemble(folder)
if ensemble:
    st.caption("An ensemble: the prediction is its members' mean, ± their spread, with a calibrated 90 % interval.")
    passes = 0
else:
    passes = 20 if st.checkbox("MC-dropout uncertainty (20 stochastic passes)", value=True) else 0

if st.button("Predict", type="primary"):
    try:
        model = load_model(folder)
        if mode == "Paste SMILES":
            smiles, names = parse_pasted(text)
            if not smiles:
                st.warning("Paste at least one SMILES.")
                st.stop()
            result = predict_smiles(model, smiles, names, mc_passes=passes)
        elif upload is not None:
            result = predict_csv(model, upload, mc_passes=passes)
        else:
            st.warning("Upload a CSV first.")
            st.stop()
        st.session_state["predictions"] = add_applicability_domain(result, training_smiles(folder))
    except ChemLMError as exc:
        st.error(str(exc))

result = st.session_state.get("predictions")
if result is not None:
    n_bad = int(result["error"].notna().sum())
    st.caption(f"{len(result) - n_bad} predicted · {n_bad} invalid · similarity below {DOMAIN_SIMILARITY} "
               "to every training molecule is flagged as outside the applicability domain")
    shown = result.copy()
    shown.insert(0, "structure", [molecule_image_uri(s) for s in shown["canonical_smiles"]])
    n_warned = int(result["warnings"].notna().sum())
    n_standardized = int(result["standardization"].notna().sum())
    if n_warned or n_standardized:
        st.info(f"{n_warned} molecule(s) with warnings (the model cannot read them exactly as written) · "
                f"{n_standardized} standardised (salts removed, charges neutralised) — see the columns below.")
    order = ["structure", "name", "input", "prediction", "uncertainty", "interval_low", "interval_high", "error",
             "warnings", "standardization", "canonical_smiles", "similarity", "in_domain", "nearest_training_smiles"]
    st.dataframe(shown, hide_index=True, row_height=90, column_order=order, column_config={
        "structure": st.column_config.ImageColumn("structure", width="medium"),
        "prediction": st.column_config.NumberColumn("predicted logD", format="%.2f"),
        "uncertainty": st.column_config.NumberColumn("± (ensemble std)" if ensemble else "± (MC-dropout std)",
                                                     format="%.2f"),
        "interval_low": st.column_config.NumberColumn("90 % interval from", format="%.2f"),
        "interval_high": st.column_config.NumberColumn("to", format="%.2f"),
        "similarity": st.column_config.NumberColumn("Tanimoto to nearest", format="%.2f"),
        "in_domain": st.column_config.CheckboxColumn("in domain"),
    })
    st.download_button("Download CSV", write_csv(result), "predictions.csv", "text/csv")
