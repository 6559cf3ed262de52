"""Search: hyperparameters of a recipe on the validation split (Ray Tune: random search, ASHA), trials live."""
import json

import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.compare import status_words
from chemlm_engine.spec import METHODS, JobSpec, ModelSpec, TrainConfig, searchable
from chemlm_engine.store import ACTIVE_STATUSES, RunRecord
from views.common import LIVE_REFRESH_S, plain, run_label, store, submit
from views.forms import QUICK_OPTIONS, cost_caption, epochs_input, launch_form, run_name
from views.links import link, stored_run
from views.live import announce, live_jobs
from views.kept import run_selectbox

SETTINGS = ("learning_rate", "head_hidden", "dropout", "batch_size", "descriptors")  # + each method's SEARCH

st.title("Hyperparameter search")
st.caption("Random search over learning rate, head size, dropout, batch size and RDKit descriptors in the head "
           "(LoRA: its rank), judged on the **validation split only**; ASHA stops a trial whose validation MSE falls "
           "behind after a quarter of the epochs. Every trial is a run; the test split never chooses.")
searches = [r for r in store().runs() if r.method == "search"]

with st.expander("Launch a search", expanded=not searches or st.session_state.get("quick", False)):
    quick, data, backbone, trust, right = launch_form()
    with right:
        method = st.selectbox("Method searched", searchable())
        c1, c2 = st.columns(2)
        samples = int(c1.number_input("Trials", 1, 500, QUICK_OPTIONS["search"]["num_samples"] if quick else 20))
        epochs = epochs_input(quick, container=c2)
    spec = None
    if data is not None and backbone:
        spec = JobSpec(method="search", options={"method": method, "num_samples": samples}, data=data,
                       name=run_name(data, backbone), model=ModelSpec(backbone=backbone, trust_remote_code=trust),
                       train=TrainConfig(epochs=epochs, seed=data.split_seed))
        cost_caption([spec])
    if st.button("Launch", type="primary", disabled=spec is None) and (queued := submit(spec)):
        announce(queued[0], "You queued this search: its trials appear below as they start.", follow="search-run")

live_jobs(("search",))
# `chemlm tune` groups its trials by name, with no search run of its own: point to them rather than say "none"
from_cli = sorted({r.info["search"] for r in store().runs() if isinstance(r.info.get("search"), str)} -
                  {r.id for r in searches})
if from_cli:
    st.caption(f"Searches run with `chemlm tune` ({', '.join(from_cli[:5])}): their trials are runs named "
               "\"NAME trial\" on the Train and Compare pages; the command printed the best one.")
if not searches:
    st.info("No search launched from this page yet.")
    st.stop()
search = run_selectbox("Search", searches, lambda r: f"{run_label(r)} · {r.status}", key="search-run")


def trials_frame(search: RunRecord) -> pd.DataFrame:
    """One row per trial of ``search``: its settings, best validation R² and MSE so far, epochs, status."""
    rows = []
    for run in store().runs():
        if run.info.get("search") != search.id:
            continue
        epochs = store().epochs(run.id)
        scored = epochs[epochs["val_mse"].notna()] if "val_mse" in epochs else epochs.iloc[:0]
        # the results and the epochs (where ASHA stopped a trial) first: many settings push columns off screen
        rows.append({"run": run.id, "status": status_words(run), "epochs": len(scored),
                     "val_r2": scored["val_r2"].max() if len(scored) else None,
                     "val_mse": scored["val_mse"].min() if len(scored) else None, **run.info.get("trial_config", {})})
    return pd.DataFrame(rows)


@st.fragment(run_every=LIVE_REFRESH_S)
def trials_view(search: RunRecord) -> None:
    """The trials, refreshed while the search runs: settings against validation R², and the table."""
    trials = trials_frame(store().get_run(search.id))
    if trials.empty:
        st.caption("No trial has started yet.")
        return
    scored = trials.dropna(subset=["val_r2"])
    method = search.spec.get("options", {}).get("method", "baseline")
    own = list(METHODS[method].options.SEARCH) if method in METHODS else []
    settings = [s for s in (*SETTINGS, *own) if s in trials and trials[s].nunique() > 1]
    if len(scored) and settings:
        x = st.radio("Setting", settings, horizontal=True, key="search-x")
        chart = px.scatter(scored, x=x, y="val_r2", color="status", hover_data=["run", "epochs"],
                           log_x=x == "learning_rate", labels={"val_r2": "best validation R²"},
                           title=f"{len(trials)} trials: {x} against validation R²")
        st.plotly_chart(chart.update_xaxes(exponentformat="e"))  # 1e-5, not plotly's SI "10μ"
    st.dataframe(trials.sort_values("val_mse"), hide_index=True,
                 column_config={"learning_rate": st.column_config.NumberColumn(format="%.1e")})


trials_view(search)
if search.status in ACTIVE_STATUSES:
    st.stop()
if search.status != "finished":
    st.error(plain(search.error or search.message))
    st.stop()
best = search.metrics["best_run_id"]
st.success(f"Best on validation: trial {best} (validation MSE {search.metrics['best_val_mse']:.3f}).")
best_spec = json.dumps(search.info["best_spec"], indent=1)
refit = search.info.get("refit_spec")
a, b = st.columns(2)
link(a, "views/train.py", "Open the best trial's run", ":material/model_training:", open=best)
b.download_button("Download its spec (JSON)", best_spec, f"best-spec-{search.id}.json", "application/json")
# on a row of its own: in a third column its label was cut at a laptop's width
if refit and st.button("Train it on training + validation, test once") and (
        queued := submit(JobSpec.from_dict({**refit, "name": f"refit of search {search.id}"}))):
    store().set_info(search.id, refit_run=queued[0])  # said below once it has ended, however soon that is
    announce(queued[0], f"You queued the best recipe for {refit['train']['epochs']} epochs (the best trial's) on "
             "training + validation. Every trial was scored on the test split too, but none was chosen by it "
             "(validation only): report this run's test metrics as the search's result.")
    st.rerun()  # its live card above follows it
if (refitted := stored_run(search.info.get("refit_run"))) is not None:
    r2 = refitted.metrics.get("test_r2")
    a, b = st.columns([3, 1])
    a.markdown(f"**Refit on training + validation:** run {refitted.id} · {status_words(refitted)}"
               + (f" · **test R² {r2:.3f}**: the search's result" if isinstance(r2, float) else ""))
    link(b, "views/train.py", "Open the refit", ":material/model_training:", open=refitted.id)
st.caption("Retrain it anywhere with `chemlm train --spec best-spec.json`; `chemlm tune` also writes "
           "`best-spec.refit.json`, the same on training + validation.")
