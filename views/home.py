"""Home: what ChemLM Studio does and how good the embedded model is."""
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from chemlm_engine.config import DEFAULT_REGRESSOR

st.title("ChemLM Studio")
st.markdown(
    "Fine-tune chemical language models (SMILES transformers) on molecular property regression — "
    "lipophilicity (logD at pH 7.4) first — and find out which training data helps.\n\n"
    "- **Train**: launch fine-tuning runs in the background, watch them live, open any run's metrics, "
    "parity plot and residuals.\n"
    "- **Predict**: paste or upload SMILES and get logD with the nearest training molecule as an "
    "applicability-domain check.")
st.page_link("views/train.py", label="Train a model", icon=":material/model_training:")
st.page_link("views/predict.py", label="Predict logD", icon=":material/science:")

st.subheader("Embedded default model")
metrics_file = Path(DEFAULT_REGRESSOR) / "metrics.json"
if metrics_file.exists():
    metrics = json.loads(metrics_file.read_text())
    st.write(metrics.get("description", ""))
    st.dataframe(pd.DataFrame([metrics["test"]]), hide_index=True)
else:
    st.info("No embedded regressor is shipped yet: choose a finished run on the Predict page.")
