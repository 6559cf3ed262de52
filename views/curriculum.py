"""Curriculum: SMILES-length bins, the pacing schedule, and curriculum vs baseline runs side by side."""
import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.spec import JobSpec, ModelSpec, TrainConfig
from chemlm_engine.data import length_bins
from chemlm_engine.readings import pair_reading
from chemlm_engine.methods.curriculum import DIFFICULTIES, PACINGS, curriculum_for, find_pairs, paired_specs
from views.common import split_data, store, submit
from views.forms import cost_caption, epochs_input, launch_form, quick_note, run_name
from views.kept import kept
from views.live import METRIC_LABELS, announce, live_jobs, sig3

st.title("Curriculum learning")
st.caption("Easy molecules first: each epoch admits molecules up to a difficulty threshold that rises from "
           "the easiest to the hardest training molecule.")

quick, data, backbone, trust, right = launch_form()
with right:
    measure = st.selectbox("Difficulty", DIFFICULTIES, format_func=lambda d: d.replace("_", " "),
                           help="Token count uses the tokenizer of the chosen backbone.",
                           **kept("curriculum_difficulty", DIFFICULTIES))
    pacing = st.selectbox("Pacing", PACINGS, **kept("curriculum_pacing", PACINGS))
    c1, c2 = st.columns(2)
    epochs = epochs_input(quick, container=c1, least=2)  # one epoch admits every molecule at once: no curriculum
    batch_size = int(c2.number_input("Batch size", 1, 512, 32))
if data is None:
    st.stop()

splits = split_data(data)
spec = JobSpec(method="curriculum", options={"difficulty": measure, "pacing": pacing}, data=data,
               name=run_name(data, backbone), model=ModelSpec(backbone=backbone, trust_remote_code=trust),
               train=TrainConfig(epochs=epochs, batch_size=batch_size, seed=data.split_seed))
cost_caption(list(paired_specs(spec)))
if st.button("Launch curriculum and baseline runs", type="primary", disabled=not backbone):
    for run_id in submit(*paired_specs(spec)) or []:
        announce(run_id, "You queued a curriculum run and a baseline with the same data, seed and epochs.")
live_jobs(("curriculum", "baseline"))

results, plan_tab = st.tabs(["Curriculum vs baseline", "SMILES length and pacing"])  # results first: no scrolling
with plan_tab:
    everything = splits.train.smiles + splits.val.smiles + splits.test.smiles
    bins = length_bins(everything, 20)
    bins["bin"] = [f"{a}–{b}" for a, b in zip(bins.bin_start, bins.bin_end)]
    a, b = st.columns([3, 2])
    title = f"{len(everything):,} molecules, {len(bins)} equal-width bins of whole characters"  # at most 20
    a.plotly_chart(px.bar(bins, x="bin", y="frequency", title=title))
    b.dataframe(bins[["bin", "frequency", "cumulative_frequency"]], hide_index=True, height=420)
    st.caption("The data and plan of the launch form above, before it runs (a run's own: its per-epoch table on "
               "the Train page).")
    plan = pd.DataFrame(curriculum_for(spec, splits.train.smiles).plan())
    a, b = st.columns(2)
    a.plotly_chart(px.line(plan, x="epoch", y="threshold", markers=True,  # whole epochs on the axis
                           title=f"Pacing on the training split: admissible {measure.replace('_', ' ')}")
                   .update_xaxes(dtick=1))
    b.plotly_chart(px.bar(plan, x="epoch", y="admissible", title="Admissible training molecules"))
    st.caption(f"An epoch admits at least one batch ({batch_size} molecules, the easiest), even where fewer lie "
               "below its threshold.")
with results:
    pairs = find_pairs(store().runs())
    if not pairs:
        st.caption("No curriculum run yet: launch one with its baseline above.")
    else:
        chosen = st.selectbox("Pair", list(pairs), format_func=lambda p: " / ".join(
            f"{r.method} {r.status}" for r in pairs[p]) + f" · launched {pairs[p][0].id[:15]}"
            + (f" · {pairs[p][0].name}" if pairs[p][0].name else ""))
        curves, table = [], []
        for run in pairs[chosen]:
            epochs_frame = store().epochs(run.id, stage="train")
            if not epochs_frame.empty:
                curves.append(epochs_frame.assign(method=run.method))
            table.append({"method": run.method, "status": run.status,
                          **{label: "—" if sig3(run.metrics.get(key)) is None else f"{sig3(run.metrics.get(key)):g}"
                             for key, label in METRIC_LABELS.items()}})  # text: "—", not "None", where none
        st.dataframe(pd.DataFrame(table), hide_index=True)
        mse = {run.method: run.metrics.get("test_mse") for run in pairs[chosen]}
        said = (f" {pair_reading('curriculum', mse['curriculum'], 'its baseline', mse['baseline'])}"
                if mse.get("curriculum") is not None and mse.get("baseline") is not None else "")
        st.caption("R², RMSE, MAE and MSE on the test split, val MSE on the validation split." + said)
        quick_note(pairs[chosen][0].spec)
        if curves:
            frame = pd.concat(curves).melt(id_vars=["epoch", "method"], value_vars=["train_mse", "val_mse"],
                                           var_name="curve", value_name="MSE")
            st.plotly_chart(px.line(frame, x="epoch", y="MSE", color="method", line_dash="curve", markers=True)
                            .update_xaxes(dtick=1))
            st.caption("The curriculum's training MSE is over the molecules its epoch admitted (the easy ones "
                       "first), the baseline's over all of them: compare the validation curves.")
