"""Train: launch runs in the background, watch them live, inspect, rename, delete or predict with finished runs."""
import plotly.express as px
import streamlit as st

from chemlm_engine.compare import status_words
from chemlm_engine.descriptors import HEAD_DESCRIPTORS
from chemlm_engine.spec import DEFAULT_REGRESSOR, METHODS, JobSpec, ModelSpec, TrainConfig, model_kind
from chemlm_engine.errors import ChemLMError, RunNotFoundError
from chemlm_engine.library import discard_kept
from chemlm_engine.store import ACTIVE_STATUSES, Kinds
from chemlm_engine.filekinds import TABLE_TYPES, saved_suffix
from views.common import DEFAULT_MODEL_LABEL, job_problem, parity_plot, plain, run_label, store, submit
from views.forms import QUICK_OPTIONS, cost_caption, epochs_input, launch_form, quick_note, run_name
from views.kept import kept_here, labelled_selectbox
from views.library_jobs import library_summary
from views.links import link
from views.live import announce, live_jobs, live_status, metrics_row, runs_overview, status_text

st.title("Train")

# -- a new run ------------------------------------------------------------------------------------
st.subheader("New run")
quick, data, backbone, trust, right = launch_form()
with right:
    # a library prediction is launched from the Predict page, with the file it reads
    trainable = [m for m in METHODS if model_kind(m) != "predictions"]
    method = st.selectbox("Method", trainable, format_func=lambda m: METHODS[m].label,
                          **kept_here("method", choices=trainable),
                          help="Method settings take their defaults here; the Curriculum, Uncertainty and Influence "
                               "pages set them.")
    c1, c2, c3 = st.columns([1, 1.4, 1])  # the learning rate's 1.00e-04 needs the room
    epochs = epochs_input(quick, container=c1)
    learning_rate = float(c2.number_input("Learning rate", 1e-6, 1e-1, format="%.2e",  # 1.23e-04: as typed
                                          **kept_here("learning-rate", ("value", 1e-4))))
    batch_size = int(c3.number_input("Batch size", 1, 512, **kept_here("batch-size", ("value", 32))))
    descriptors = st.checkbox("RDKit 2D descriptors in the head", **kept_here("descriptors"),
                              help=f"The pooled embedding plus {len(HEAD_DESCRIPTORS)} standardised RDKit descriptors "
                                   "(the shipped model's configuration: +0.08 R² on the random split, see the README).")
    options = {}
    if METHODS[method].needs_teacher:  # which ensemble the student learns from
        teachers = {DEFAULT_MODEL_LABEL: DEFAULT_REGRESSOR,
                    **{run_label(r): r.id for r in store().runs(status="finished") if r.method == "ensemble"}}
        options["teacher"] = teachers[st.selectbox(
            "Teacher ensemble", list(teachers), help="Distil it on the data, split and seed it was trained with: "
            "a teacher that trained on this job's test molecules is refused.")]
        if transfer := st.file_uploader("Transfer molecules (optional CSV, SMILES or SD file; no labels needed)",
                                        type=TABLE_TYPES,
                                        help="The teacher labels them for the student too, e.g. the library you will "
                                             "screen: the student then follows the teacher there."):
            options["transfer"] = str(store().save_upload(transfer.getvalue(), saved_suffix(transfer.name)))

    if quick:
        options.update(QUICK_OPTIONS.get(method, {}))  # as the method's own page sets them

spec, problem = None, "Upload a file that has usable molecules (above) or pick the bundled data." if data is None else \
    "Name a backbone folder or hub id." if not backbone else \
    "Pretraining has no quick try: it prepares the 1.6 M MOSES molecules first, then trains for hours on a CPU. " \
    "Turn the quick try off to launch it." if quick and model_kind(method) == "backbone" else None
if problem is None:
    try:
        spec = JobSpec(method=method, data=data, options=options, name=run_name(data, backbone),
                       model=ModelSpec(backbone=backbone, trust_remote_code=trust, descriptors=descriptors),
                       train=TrainConfig(epochs=epochs, learning_rate=learning_rate, batch_size=batch_size,
                                         seed=data.split_seed))
        problem = job_problem(spec.to_json())
    except ChemLMError as exc:
        problem = str(exc)
if problem:
    st.warning(f"Cannot start: {plain(problem)}")
else:
    cost_caption([spec])
if st.button("Start training", type="primary", disabled=problem is not None) and (queued := submit(spec)):
    announce(queued[0], "You queued this run: it trains in the background, and this card follows it.",
             follow="detail-run")  # and so does the run detail below

live_jobs()  # refreshes itself; reruns the page when a run finishes, so the sections below update

# -- runs -------------------------------------------------------------------------------------------
runs = store().runs()
st.subheader("Runs")
if not runs:
    st.caption("No runs yet.")
    st.stop()
runs_overview(runs)



def _picked_elsewhere(run_id: str, what: str) -> bool:
    """Whether a click came from the controls of a run other than the one picked (a slow rerun still showed them):
    then it does nothing, and says so."""
    if (picked := st.session_state.get("detail-run")) in (None, run_id):
        return False
    st.session_state["detail-note"] = (f"Not {what}: the click reached run {run_id}'s controls while the page was "
                                       f"changing to run {picked}. Nothing changed; try again.")
    return True


def _delete(run_id: str) -> None:
    """Delete's callback, given the run on screen when it was clicked: never whichever run the rerun selects (the
    newest, when another tab deleted the one shown)."""
    if _picked_elsewhere(run_id, "deleted"):
        return
    try:
        run = store().get_run(run_id)
        discard_kept(store(), run)  # a stopped library prediction's finished chunks, kept for a rerun
        store().delete(run_id)
        st.toast(f"Deleted run {run_id}.")
        st.session_state["detail-note"] = None
    except RunNotFoundError:
        st.session_state["detail-note"] = f"Not deleted: run {run_id} was deleted already (in another tab?)."
    except ChemLMError as exc:
        st.session_state["detail-note"] = f"Not deleted: {exc}"
    st.session_state.pop("detail-shown", None)


def _rename(run_id: str, key: str) -> None:
    """Rename's callback: only an edit renames (a stale field in another tab never writes its text back)."""
    if _picked_elsewhere(run_id, "renamed"):
        return
    try:
        store().rename(run_id, st.session_state[key])
    except ChemLMError as exc:
        st.session_state["detail-note"] = f"Not renamed: {exc}"


st.subheader("Run detail")
labels = {r.id: f"{run_label(r)} · {status_words(r)}" for r in runs}
if (gone := st.session_state.get("detail-shown")) is not None and gone not in labels:
    st.session_state["detail-note"] = f"Run {gone}, shown here before, was deleted elsewhere."
if note := st.session_state.pop("detail-note", None):
    st.warning(plain(note))
run = store().get_run(labelled_selectbox("Run", labels, key="detail-run"))
st.session_state["detail-shown"] = run.id
if run.status in ACTIVE_STATUSES:
    live_status(run.id)
else:
    st.markdown(status_text(run))
if run.status == "finished":  # a cancelled or failed run has no R² to say little
    quick_note(run.spec)
if run.status in ("failed", "diverged"):
    st.error(plain(run.error))
    st.code(run.traceback or "", language="text")
if model_kind(run.method) == "predictions":  # a library prediction: no training metrics, its own numbers
    if run.status == "finished" and run.metrics:
        st.caption(f"{library_summary(run)} Its downloads: Predict page, \"Library predictions\".")
elif run.metrics:
    st.dataframe(metrics_row(run), hide_index=True)
a, b, c = st.columns([3, 2, 1.3], vertical_alignment="bottom")
st.session_state[f"name-{run.id}"] = run.name  # as stored now: another tab may have renamed it
a.text_input("Name", key=f"name-{run.id}", on_change=_rename, args=(run.id, f"name-{run.id}"))
cannot = ("A pretraining run gives a backbone: fine-tune it on the Train page first." if model_kind(run.method) ==
          "backbone" else f"Available when the run has finished (it is {run.status})." if run.status != "finished"
          else None if run.model_path else "This run saved no model.")
link(b, "views/predict.py", "Predict with this run", ":material/science:", help=cannot, predict=run.id,
     disabled=cannot is not None)
# asked once more (it cannot be undone), one per run: an open one would offer the next run at one click after a Delete
with c.popover("Delete run", disabled=run.status in ("queued", "running"), key=f"delete-{run.id}"):
    st.caption(f"Run {run.id}: its rows and files (and uploads no other run needs) go for good.")
    st.button("Yes, delete it", type="primary", on_click=_delete, args=(run.id,))

epochs_frame = store().epochs(run.id)
if not epochs_frame.empty:
    curves = epochs_frame.melt(id_vars=["stage", "epoch"], value_vars=["train_mse", "val_mse"], var_name="curve",
                               value_name="MSE").replace({"curve": {"train_mse": "training", "val_mse": "validation"}})
    # a colour per stage once there are more stages than dash patterns read apart (an influence run's k-sweep: 12)
    stages = epochs_frame["stage"].nunique()
    by_stage = stages > 2
    st.plotly_chart(px.line(curves, x="epoch", y="MSE", color="stage" if by_stage else "curve",
                            line_dash="curve" if by_stage else "stage", markers=True,
                            height=max(300, 40 * stages + 80),  # the legend: two lines a stage, all in view
                            color_discrete_sequence=px.colors.qualitative.Dark24, title="Loss by epoch")
                    .update_xaxes(dtick=1), key="losses")
    with st.expander(f"Per-epoch metrics ({len(epochs_frame)} rows)"):
        # the schedule's rate as the epoch ended (a linear decay reaches 0 after the last), not the one it trained at
        st.dataframe(epochs_frame.rename(columns={"learning_rate": "learning rate at epoch end"}), hide_index=True)
preds = store().molecules(run.id, Kinds.PREDICTION)
if not preds.empty:
    preds["residual"] = preds["prediction"] - preds["label"]
    left, right = st.columns(2)
    left.plotly_chart(parity_plot(preds, "label", "prediction", "Parity (test split)"), key="parity")
    right.plotly_chart(px.histogram(preds, x="residual", nbins=40, title="Residuals (predicted − measured)"),
                       key="residuals")
with st.expander("Full spec, versions and run info"):
    st.json({"spec": run.spec, "info": run.info, "versions": run.versions, "model_path": run.model_path})
