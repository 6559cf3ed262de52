"""Home: what each page is for, a one-click example for each, and how good the embedded model is."""
import json
from pathlib import Path

import pandas as pd
import streamlit as st

from chemlm_engine.spec import DEFAULT_REGRESSOR
from views.links import link
from views.live import sig3

st.title("ChemLM Studio")
st.markdown("Fine-tune chemical language models (SMILES transformers) on molecular property regression — "
            "lipophilicity (logD at pH 7.4) first — and find out which training data helps.")

PAGES = [
    ("views/predict.py", "Predict", ":material/science:", "logD for pasted or uploaded SMILES, with uncertainty, "
     "a 90 % interval and the nearest training molecule; your CSV columns stay in the download.", "example"),
    ("views/train.py", "Train", ":material/model_training:", "fine-tune a model in the background and watch it "
     "live; the cost is shown before you start.", "quick"),
    ("views/influence.py", "Influence", ":material/hub:", "which extra molecules would help the model, which would "
     "hurt, and which labels look wrong.", "quick"),
    ("views/curriculum.py", "Curriculum", ":material/stairs:", "short SMILES first: the pacing plan, then a "
     "curriculum run against its baseline.", "quick"),
    ("views/uncertainty.py", "Active learning", ":material/blur_on:", "which molecules to measure next: ISAL "
     "(expected influence) and uncertainty sampling against random.", "quick"),
    ("views/compare.py", "Compare", ":material/leaderboard:", "runs grouped by configuration, mean ± std over seeds, "
     "paired differences with a test.", ""),
    ("views/search.py", "Search", ":material/tune:", "a recipe's hyperparameters on the validation split (Ray Tune, "
     "ASHA), every trial a run.", "quick"),
]
for path, title, icon, purpose, preset in PAGES:
    left, right = st.columns([5, 1], vertical_alignment="center")
    left.page_link(path, label=f"**{title}**", icon=icon)  # a link label is one line: the purpose goes below it
    left.caption(purpose)
    if preset:
        link(right, path, "Try it", ":material/play_arrow:", preset=preset,
             help="Opens the page filled with a small example" if preset == "example"
             else "Opens the page with the quick-try preset (300 molecules, 3 epochs)")

st.subheader("Embedded default model")
metrics_file = Path(DEFAULT_REGRESSOR) / "metrics.json"
if metrics_file.exists():
    metrics = json.loads(metrics_file.read_text())
    st.write(metrics.get("description", ""))
    names = {"r2": "R²", "rmse": "RMSE", "mae": "MAE", "mse": "MSE", "coverage": "90 % interval coverage",
             "mean_width": "mean interval width"}
    extra = metrics.get("metrics", {})
    shown = {**metrics["test"], **{key: extra[name] for key, name in (("coverage", "interval_coverage"),
                                                                      ("mean_width", "interval_width"))
                                   if extra.get(name) is not None}}
    st.dataframe(pd.DataFrame([{names.get(k, k): sig3(v) for k, v in shown.items()}]), hide_index=True)
else:
    st.info("No embedded regressor is shipped yet: choose a finished run on the Predict page.")
