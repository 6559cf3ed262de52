"""Curriculum: SMILES-length bins, the pacing schedule, and curriculum vs baseline runs side by side."""
import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.config import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.data import length_bins
from chemlm_engine.methods.curriculum import DIFFICULTIES, PACINGS, curriculum_for, find_pairs, paired_specs
from views.common import backbone_picker, dataset_picker, split_data, store, submit

st.title("Curriculum learning")
st.caption("Easy molecules first: each epoch admits molecules up to a difficulty threshold that rises from "
           "the easiest to the hardest training molecule.")

left, right = st.columns(2)
with left:
    source = dataset_picker()
    split = st.radio("Split (80/10/10)", ["random", "scaffold"], horizontal=True)
    seed = int(st.number_input("Seed", min_value=0, value=0))
with right:
    backbone, trust = backbone_picker()
    measure = st.selectbox("Difficulty", DIFFICULTIES, format_func=lambda d: d.replace("_", " "),
                           disabled=False, help="Token count uses the tokenizer of the chosen backbone.")
    pacing = st.selectbox("Pacing", PACINGS)
    c1, c2 = st.columns(2)
    epochs = int(c1.number_input("Epochs", 1, 500, 20))
    batch_size = int(c2.number_input("Batch size", 1, 512, 32))
if source is None:
    st.stop()

data = split_data(source, split, seed)
everything = data.train.smiles + data.val.smiles + data.test.smiles
st.subheader("SMILES length")
bins = length_bins(everything, 20)
bins["bin"] = [f"{a:.0f}–{b:.0f}" for a, b in zip(bins.bin_start, bins.bin_end)]
a, b = st.columns([3, 2])
a.plotly_chart(px.bar(bins, x="bin", y="frequency", title=f"{len(everything)} molecules, 20 equal-width bins"))
b.dataframe(bins[["bin", "frequency", "cumulative_frequency"]], hide_index=True, height=420)

st.subheader("Pacing on the training split")
spec = JobSpec(method="curriculum", options={"difficulty": measure, "pacing": pacing},
               data=DataSpec(source=source, split=split, split_seed=seed),
               model=ModelSpec(backbone=backbone, trust_remote_code=trust),
               train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=seed))
plan = pd.DataFrame(curriculum_for(spec, data.train.smiles).plan())
a, b = st.columns(2)
a.plotly_chart(px.line(plan, x="epoch", y="threshold", markers=True, title=f"Admissible {measure.replace('_', ' ')}"))
b.plotly_chart(px.bar(plan, x="epoch", y="admissible", title="Admissible training molecules"))

if st.button("Launch curriculum and baseline runs", type="primary", disabled=not backbone):
    if submit(*paired_specs(spec)):
        st.success("Queued a curriculum run and a baseline with the same data, seed and epochs.")

st.subheader("Curriculum vs baseline")
pairs = find_pairs(store().runs())
if not pairs:
    st.caption("No pair launched yet.")
    st.stop()
chosen = st.selectbox("Pair", list(pairs), format_func=lambda p: f"{p} · " + " / ".join(
    f"{r.method} {r.status}" for r in pairs[p]))
curves, table = [], []
for run in pairs[chosen]:
    epochs_frame = store().epochs(run.id, stage="train")
    if not epochs_frame.empty:
        curves.append(epochs_frame.assign(method=run.method))
    table.append({"method": run.method, "status": run.status, **{k: run.metrics.get(k) for k in
                  ("test_mse", "test_rmse", "test_mae", "test_r2", "best_epoch")}})
if curves:
    frame = pd.concat(curves).melt(id_vars=["epoch", "method"], value_vars=["train_mse", "val_mse"],
                                   var_name="curve", value_name="MSE")
    st.plotly_chart(px.line(frame, x="epoch", y="MSE", color="method", line_dash="curve", markers=True))
st.dataframe(pd.DataFrame(table), hide_index=True)
