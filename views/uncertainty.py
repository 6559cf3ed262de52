"""Active learning: which molecules to measure next — ISAL (expected influence) and MC-dropout uncertainty
sampling against random, and whether the uncertainty is informative."""

import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.spec import METHODS, JobSpec, ModelSpec, TrainConfig, UncertaintyOptions
from chemlm_engine.store import Kinds, Tables
from chemlm_engine.filekinds import TABLE_TYPES, saved_suffix
from chemlm_engine.tables import write_csv
from chemlm_engine.depict import molecule_image_uri
from chemlm_engine.readings import against_control
from views.common import pool_caption, run_label, store, submit
from views.forms import (QUICK_OPTIONS, backbone_picker, cost_caption, data_form, epochs_input, pool_problem,
                         quick_note, quick_toggle, run_name)
from views.live import announce, live_jobs, status_text
from views.kept import run_selectbox

ACTIVE = tuple(m for m, entry in METHODS.items() if issubclass(entry.options, UncertaintyOptions))
NAMES = {"isal": "ISAL", "uncertainty": "uncertainty sampling", "random": "random"}  # strategies, in words
SCORES = {"isal": "expected gain", "uncertainty": "uncertainty"}  # what each strategy ranks by
st.title("Active learning")
st.caption("Start from a small labelled subset, then add pool molecules: **ISAL** takes those whose label is "
           "expected to lower the validation loss most (their influence, with the label taken as the mean of the "
           "model's MC-dropout predictions); **uncertainty sampling** the ones with the largest MC-dropout spread; "
           "**random** is the control both must beat.")

with st.expander("Launch an active-learning run",
                 expanded=not store().runs() or st.session_state.get("quick", False)):
    quick = quick_toggle()
    left, right = st.columns(2)
    with left:
        data = data_form(quick)
        upload = st.file_uploader("Your candidates (CSV, SMILES or SD file; labels optional)", type=TABLE_TYPES,
                                  help="Without labels the run trains on all of the training split and ranks your "
                                       "candidates once: what to measure next. With labels for every molecule, "
                                       "acquisition from them is simulated (labels revealed when acquired).")
        quick_options = QUICK_OPTIONS["uncertainty"]
        initial = int(st.number_input("Initial labelled molecules", 10, 10000,
                                      quick_options["initial_size"] if quick else 500,
                                      help="Ignored for unlabelled candidates: they are ranked by a model of all "
                                           "the training split."))
    with right:
        backbone, trust = backbone_picker()
        sizes = [32, 96] if quick else [25, 64, 128, 256, 512, 1000]
        method = st.radio("Method", ACTIVE, horizontal=True, format_func=lambda m: NAMES.get(m, m))
        strategies = METHODS[method].options.STRATEGIES  # the method's own first, then its controls
        sweep = st.checkbox(f"N-sweep ({', '.join(map(str, sizes))}) with the controls at every N",
                            value=upload is None,
                            help=f"Answers 'does {strategies[0]} beat {' and '.join(strategies[1:])}?': every "
                                 "strategy acquires N molecules from the same initial model, for every N.")
        c1, c2, c3 = st.columns(3)
        acquire = int(c1.number_input("Acquire N", 1, 10000, quick_options["acquire"] if quick else 256,
                                      disabled=sweep))
        rounds = int(c2.number_input("Rounds", 1, 20, 1, disabled=sweep))
        passes = int(c3.number_input("MC passes T", 2, 200, 20))
        c4, c5 = st.columns(2)
        strategy = c4.radio("Strategy", strategies, horizontal=True, disabled=sweep)
        epochs = epochs_input(quick, container=c5)
    spec = None
    if data is not None and backbone:
        options: dict[str, object] = {"initial_size": initial, "passes": passes}
        options.update({"sweep": sizes} if sweep else
                       {"acquire": acquire, "rounds": rounds, "strategy": strategy})
        if upload is not None:
            options["pool"] = str(store().save_upload(upload.getvalue(), saved_suffix(upload.name)))
        spec = JobSpec(method=method, options=options, data=data, name=run_name(data, backbone),
                       model=ModelSpec(backbone=backbone, trust_remote_code=trust),
                       train=TrainConfig(epochs=epochs, seed=data.split_seed))
        cost_caption([spec])
    problem = pool_problem(spec, upload is not None)
    if st.button("Launch", type="primary", disabled=spec is None or bool(problem)) and (queued := submit(spec)):
        announce(queued[0], "You queued this run: it runs in the background, and this card follows it.",
                 follow="al-run")

live_jobs(ACTIVE)
# queued and running ones too: a launch shows its own run, whose results appear here when it finishes
runs = [r for r in store().runs() if r.method in ACTIVE and r.status in ("queued", "running", "finished")]
if not runs:
    st.info("No active-learning run yet.")
    st.stop()
# newest first, active and random controls last: the page opens on a run whose list to measure is worth reading
runs.sort(key=lambda r: (r.status != "finished", r.spec.get("options", {}).get("strategy") == "random"))
run = run_selectbox("Run", runs, lambda r: run_label(r) + ("" if r.status == "finished" else f" · {r.status}"),
                    key="al-run")
if run.status != "finished":
    st.markdown(status_text(run))
    st.stop()
quick_note(run.spec)
pool = store().molecules(run.id, Kinds.POOL_UNCERTAINTY)
test = store().molecules(run.id, Kinds.TEST_UNCERTAINTY)
acquired = store().molecules(run.id, Kinds.ACQUIRED)

a, b = st.columns(2)
both = pd.concat([pool.assign(set="pool (initial model)"), test.assign(set="test (final model)")])
a.plotly_chart(px.histogram(both, x="score", color="set", barmode="overlay", nbins=40, histnorm="probability",
                            labels={"score": "MC-dropout std (logD units)"}, title="Uncertainty distributions"))
test["abs_error"] = (test["prediction"] - test["label"]).abs()
rho = run.metrics["uncertainty_error_spearman"]
b.plotly_chart(px.scatter(test, x="score", y="abs_error", hover_data=["smiles"], opacity=0.6,
                          labels={"score": "uncertainty (std)", "abs_error": "|error|"},
                          title=f"Test set: uncertainty vs error · Spearman ρ = {rho:.2f}"))

sweep_table = store().table(run.id, Tables.SWEEP)
if not sweep_table.empty:
    st.subheader(f"N-sweep: {' vs '.join(NAMES.get(s, s) for s in sweep_table['strategy'].unique())}")
    c, d = st.columns(2)
    axes = {"n": "molecules acquired from the pool", "test_mse": "test MSE", "test_r2": "test R²"}
    sizes = sorted(sweep_table["n"].unique())  # the sweep's own sizes on the (log) axis, not 40, 60, 80
    for column, metric in ((c, "test_mse"), (d, "test_r2")):
        column.plotly_chart(px.line(sweep_table, x="n", y=metric, color="strategy", markers=True, log_x=True,
                                    labels=axes).update_xaxes(tickvals=sizes))
    st.dataframe(sweep_table, hide_index=True)
    named = sweep_table.rename(columns={"n": "N"}).assign(strategy=sweep_table["strategy"].map(NAMES.get))
    own = NAMES[METHODS[run.method].options.STRATEGIES[0]]  # the run's strategy, against random (its control)
    if reading := against_control(named, "N", "strategy", own, "random"):
        st.caption(reading)

simulated = run.info.get("pool_labelled") is not False  # a pool with labels: the run simulated acquisition
st.subheader(f"Acquired in the simulation ({len(acquired)}): the pool's labels were known" if simulated
             else f"Measure these next ({len(acquired)} selected)")
st.caption("Your candidates, ranked by a model trained on all of the labelled training molecules, with its "
           "prediction and MC-dropout spread." if run.info.get("pool_labelled") is False else
           "In the order the method ranks them, with the model's prediction and its MC-dropout spread; "
           "'measured' is the pool's own label, revealed only once a molecule was acquired.")
shown = acquired.sort_values("score", ascending=False).head(200)
shown.insert(0, "structure", [molecule_image_uri(s) for s in shown["smiles"]])
gain = SCORES[METHODS[run.method].options.STRATEGIES[0]]
# ranked by the spread itself (uncertainty sampling): one column, not the same numbers twice
ranked_by_spread = "uncertainty" in acquired and acquired["score"].equals(acquired["uncertainty"])
if ranked_by_spread:
    acquired = acquired.drop(columns="score")
columns = [c for c in ("structure", "name", "score", "prediction", "uncertainty", "label", "round", "smiles")
           if c in shown and not (c == "score" and ranked_by_spread)
           and not (c == "label" and shown["label"].isna().all())]  # candidates: nothing measured yet
pool_caption(run)
if note := run.info.get("acquire_note"):
    st.info(f"Acquire: {note}.")
st.dataframe(shown[columns], hide_index=True, row_height=80,
             column_config={"structure": st.column_config.ImageColumn(width=120), "score": gain, "label": "measured",
                            "smiles": st.column_config.TextColumn("SMILES", width="medium"),  # last: it is long
                            "uncertainty": "± (MC std)", "name": st.column_config.TextColumn(
                                "name", help="The pool file's name / ID column, or its row number")})
listed = acquired.drop(columns=["kind", "split"], errors="ignore")
st.download_button(f"Download the {'acquired molecules' if simulated else 'molecules to measure next'} (CSV)",
                   # the pool file's ID first: how to find it again
                   write_csv(listed[[*(["name"] if "name" in listed else []), *listed.columns.drop("name", "ignore")]]
                             .rename(columns={"score": gain.replace(" ", "_"), "label": "measured"})),
                   f"measure-next-{run.id}.csv", "text/csv", type="primary")
st.download_button("Download the test set's uncertainties (CSV)",  # named as the list above names the spread
                   write_csv(test.rename(columns={"score": "uncertainty"})), f"uncertainty-{run.id}.csv",
                   "text/csv")
