"""Influence: which external molecules would help the model, which would hurt, and does selecting them pay?"""
import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.config import JobSpec
from chemlm_engine.store import Kinds, Tables
from chemlm_engine.depict import molecule_image_uri
from chemlm_engine.errors import ChemLMError
from views.common import manager, run_label, save_upload, store

st.title("Influence-based data selection")
st.caption("Score = g_val · H⁻¹ g_z: adding molecule z is predicted to change the validation loss by about "
           "−score / n. **Positive scores help, negative scores hurt.** The inverse-Hessian product is computed "
           "once (LiSSA, CG or exact); each molecule then costs one gradient and one dot product. "
           "**Self-influence** g_z · H⁻¹ g_z flags suspected mislabelled molecules: how far the model would have "
           "to move to fit a label (first-order influence cannot see random-sign label noise).")

finished = [r for r in store().runs(status="finished") if r.method not in ("influence",)]
with st.expander("Launch an influence job", expanded=not finished or not store().runs()):
    if not finished:
        st.info("Train a base run first (Train page): its data, split, recipe and seed are reused.")
    else:
        base = st.selectbox("Base run (recipe, data, split and seed)", finished, format_func=run_label)
        upload = st.file_uploader("External pool: CSV with SMILES and labels (leave empty for the default "
                                  "held-out 30 % of the training split)", type=["csv"])
        c1, c2, c3 = st.columns(3)
        corrupt = c1.slider("Corrupt this share of pool labels (±3σ)", 0.0, 0.5, 0.0, 0.05)
        scope = c2.selectbox("Parameters", ["last_layer", "head", "last_2", "all"],
                             help="Head + last encoder layer by default; 'all' tracks every trainable parameter "
                                  "(LoRA adapters), much slower.")
        solver = c3.selectbox("Inverse-HVP solver", ["lissa", "cg", "exact"])
        c4, c5, c6, c7 = st.columns(4)
        damping = c4.number_input("Damping", 0.0, 10.0, 0.01, format="%.3f")
        scale = c5.number_input("LiSSA scale", 0.1, 1e6, 50.0)
        depth = int(c6.number_input("LiSSA depth", 1, 10000, 200))
        repeats = int(c7.number_input("LiSSA repeats", 1, 20, 2))
        ks = st.multiselect("k values for the sweep", [16, 32, 64, 100, 200, 500], default=[16, 32, 64, 100])
        skip = st.checkbox("Leave suspected mislabelled molecules out of the top-k",
                           help="Suspects: self-influence above the validation split's 99th percentile. A "
                                "first-order score grows with the label error, so wrong labels can rank as "
                                "most helpful.")
        if st.button("Launch", type="primary"):
            options = {"scope": scope, "solver": solver, "damping": damping, "scale": scale, "depth": depth,
                       "repeats": repeats, "k": ks, "corrupt_fraction": corrupt, "skip_suspects": skip}
            if upload is not None:
                options["pool"] = str(save_upload(upload.getvalue()))
            try:
                spec = JobSpec.from_dict({**base.spec, "method": "influence", "options": options,
                                          "name": f"influence of {base.id}"})
                st.success(f"Queued run {manager().submit(spec)}.")
            except (ValueError, ChemLMError) as exc:
                st.error(str(exc))

runs = [r for r in store().runs() if r.method == "influence"]
if not runs:
    st.stop()
run = st.selectbox("Influence run", runs, format_func=lambda r: f"{run_label(r)} · {r.status}")
if run.status in ("queued", "running"):
    st.progress(run.progress, text=run.message)
if run.status == "failed":
    st.error(run.error)
scores = store().molecules(run.id, Kinds.INFLUENCE)
if scores.empty:
    st.stop()
m0, m1, m2 = st.columns(3)
m0.metric("Suspected mislabelled", f"{int(scores['suspect'].sum())} of {len(scores)}",
          help="Self-influence above the validation split's 99th percentile"
               + (" (left out of the top-k)" if run.spec.get("options", {}).get("skip_suspects") else ""))
if "mislabel_auroc" in run.metrics:
    m1.metric("Corrupted labels found by self-influence (AUROC, chance = 0.5)", f"{run.metrics['mislabel_auroc']:.3f}")
    m2.metric("… by a negative influence score (AUROC)", f"{run.metrics['mislabel_auroc_first_order']:.3f}")

a, b = st.columns(2)
a.plotly_chart(px.histogram(scores, x="score", color="corrupted" if scores["corrupted"].any() else None, nbins=50,
                            title="Influence scores (positive = helps)"))
trace = store().table(run.id, Tables.SOLVER)
if not trace.empty:
    b.plotly_chart(px.line(trace, x="step", y="norm", color="repeat", title="Inverse-HVP estimate norm per step"))

sweep = store().table(run.id, Tables.SWEEP)
if not sweep.empty:
    st.subheader("k-sweep: influence top-k vs random k vs all")
    c, d = st.columns(2)
    c.plotly_chart(px.line(sweep, x="k", y="test_mse", color="selection", markers=True))
    d.plotly_chart(px.line(sweep, x="k", y="test_r2", color="selection", markers=True))
    st.dataframe(sweep, hide_index=True)


def gallery(frame: pd.DataFrame, title: str) -> None:
    st.markdown(f"**{title}**")
    shown = frame.copy()
    shown.insert(0, "structure", [molecule_image_uri(s) for s in shown["smiles"]])
    st.dataframe(shown[["structure", "smiles", "label", "score", "rank", "self_influence", "suspect", "corrupted"]],
                 hide_index=True,
                 row_height=80, column_config={"structure": st.column_config.ImageColumn()})


ranked = scores.sort_values("rank")
left, right = st.columns(2)
with left:
    gallery(ranked.head(10), "Most helpful")
with right:
    gallery(ranked.tail(10).iloc[::-1], "Most harmful")
gallery(scores.sort_values("self_influence", ascending=False).head(10),
        "Suspected mislabelled (highest self-influence)")
st.subheader("All pool molecules")
st.dataframe(ranked[["rank", "smiles", "label", "score", "self_influence", "suspect", "corrupted"]], hide_index=True)
st.download_button("Download scores (CSV)", ranked.to_csv(index=False), f"influence-{run.id}.csv", "text/csv")
