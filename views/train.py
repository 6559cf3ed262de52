"""Train: launch runs in the background, watch them live, inspect finished runs."""
import plotly.express as px
import streamlit as st

from chemlm_engine.config import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.errors import ChemLMError
from chemlm_engine.methods.registry import METHODS
from chemlm_engine.store import Kinds
from views.common import (backbone_picker, dataset_picker, eta_text, job_problem, manager, metrics_row, run_label,
                          store)

st.title("Train")

# -- a new run ------------------------------------------------------------------------------------
st.subheader("New run")
left, right = st.columns(2)
with left:
    source = dataset_picker()
    split = st.radio("Split (80/10/10)", ["random", "scaffold"], horizontal=True)
    seed = int(st.number_input("Seed", min_value=0, value=0, step=1))
    subset = int(st.number_input("Use a random subset of N molecules (0 = all)", min_value=0, value=0, step=100))
    standardize = st.checkbox("Standardise molecules (largest organic fragment, neutralised)", value=True,
                              help="RDKit rdMolStandardize, recorded with the model: prediction repeats it.")
    tautomer = st.checkbox("… and use the canonical tautomer", value=False, disabled=not standardize)
with right:
    backbone, trust = backbone_picker()
    method = st.selectbox("Method", list(METHODS), format_func=lambda m: METHODS[m].label,
                          help="Method settings take their defaults here; the Curriculum, Uncertainty and Influence "
                               "pages set them.")
    c1, c2, c3 = st.columns(3)
    epochs = int(c1.number_input("Epochs", 1, 500, 20))
    learning_rate = float(c2.number_input("Learning rate", 1e-6, 1e-1, 1e-4, format="%.0e"))
    batch_size = int(c3.number_input("Batch size", 1, 512, 32))
    descriptors = st.checkbox("RDKit 2D descriptors in the head", value=False,
                              help="The pooled embedding plus 215 standardised RDKit descriptors (the shipped model's "
                                   "configuration: +0.08 R² on the random split, see the README).")

spec, problem = None, "Upload a CSV or pick the bundled data." if source is None else \
    "Name a backbone folder or hub id." if not backbone else None
if problem is None:
    try:
        spec = JobSpec(method=method, data=DataSpec(source=source, split=split, split_seed=seed, subset=subset or None,
                                                    standardize=standardize, tautomer=tautomer and standardize),
                       model=ModelSpec(backbone=backbone, trust_remote_code=trust, descriptors=descriptors),
                       train=TrainConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size, seed=seed))
        problem = job_problem(spec.to_json())
    except ChemLMError as exc:
        problem = str(exc)
if problem:
    st.warning(f"Cannot start: {problem}")
if st.button("Start training", type="primary", disabled=problem is not None):
    try:
        run_id = manager().submit(spec)
        st.success(f"Queued run {run_id}. It trains in the background; follow it below.")
    except ChemLMError as exc:
        st.error(str(exc))


# -- live view --------------------------------------------------------------------------------------
@st.fragment(run_every=2)
def live_jobs() -> None:
    st.subheader("Running jobs")
    active = [r for r in store().runs() if r.status in ("queued", "running")]
    if not active:
        st.caption("No job is running.")
    for run in active:
        with st.container(border=True):
            cols = st.columns([5, 1])
            cols[0].markdown(f"**{run_label(run)}** · {run.status} · {eta_text(run)}")
            if cols[1].button("Cancel", key=f"cancel-{run.id}"):
                manager().cancel(run.id)
            st.progress(run.progress, text=run.message)
            epochs = store().epochs(run.id)
            if not epochs.empty:  # the fit now running (a sweep or an ensemble trains several)
                stage = epochs["stage"].iloc[-1]
                epochs = epochs[epochs["stage"] == stage]
                st.caption(f"fit: {stage}")
                curves = epochs.melt(id_vars="epoch", value_vars=["train_mse", "val_mse"], var_name="curve",
                                     value_name="MSE")
                st.plotly_chart(px.line(curves, x="epoch", y="MSE", color="curve", markers=True, height=260),
                                key=f"curve-{run.id}")


live_jobs()


# -- runs -------------------------------------------------------------------------------------------
@st.fragment(run_every=5)
def runs_table() -> None:
    st.subheader("Runs")
    frame = store().runs_frame()
    if frame.empty:
        st.caption("No runs yet.")
        return
    st.dataframe(frame.drop(columns=["name"]), hide_index=True, height=240,
                 column_config={"duration_s": st.column_config.NumberColumn("duration (s)", format="%.0f")})


runs_table()

@st.fragment(run_every=5)
def run_detail() -> None:
    """Refreshes by itself, so a run that finishes while the page is open shows its results."""
    runs = store().runs()
    if not runs:
        return
    st.subheader("Run detail")
    labels = {r.id: f"{run_label(r)} · {r.status}" for r in runs}
    run = store().get_run(st.selectbox("Run", list(labels), format_func=labels.get, key="detail-run"))
    st.markdown(f"**Status:** {run.status} · {run.message}")
    if run.status in ("failed", "diverged"):
        st.error(run.error)
        st.code(run.traceback or "", language="text")
    if run.metrics:
        st.dataframe(metrics_row(run), hide_index=True)
    epochs = store().epochs(run.id)
    if not epochs.empty:
        st.markdown("**Per-epoch metrics**")
        st.dataframe(epochs, hide_index=True)
    preds = store().molecules(run.id, Kinds.PREDICTION)
    if not preds.empty:
        preds["residual"] = preds["prediction"] - preds["label"]
        a, b = st.columns(2)
        lo, hi = float(min(preds.label.min(), preds.prediction.min())), float(max(preds.label.max(),
                                                                                 preds.prediction.max()))
        parity = px.scatter(preds, x="label", y="prediction", hover_data=["smiles"], opacity=0.6,
                            title="Parity (test split)", labels={"label": "measured", "prediction": "predicted"})
        parity.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, line={"dash": "dash", "color": "grey"})
        a.plotly_chart(parity, key="parity")
        b.plotly_chart(px.histogram(preds, x="residual", nbins=40, title="Residuals (predicted − measured)"),
                       key="residuals")
    with st.expander("Full spec, versions and run info"):
        st.json({"spec": run.spec, "info": run.info, "versions": run.versions, "model_path": run.model_path})


run_detail()
