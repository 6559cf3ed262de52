"""Influence: which external molecules would help the model, which would hurt, and does selecting them pay?"""
import numpy as np
import pandas as pd
import plotly.express as px
import streamlit as st

from chemlm_engine.spec import JobSpec, model_kind
from chemlm_engine.store import Kinds, Tables
from chemlm_engine.filekinds import TABLE_TYPES, saved_suffix
from chemlm_engine.readings import against_control
from chemlm_engine.tables import write_csv
from chemlm_engine.methods.influence.solvers import DRIFT_LIMIT
from views.common import molecule_cards, plain, pool_caption, run_label, store, submit
from views.forms import cost_caption, pool_problem, quick_note, quick_toggle
from views.live import announce, live_jobs, status_text
from views.kept import run_selectbox


st.title("Influence-based data selection")
with st.expander("What the scores mean, and what to do with them", expanded=not store().runs()):
    st.markdown(
        "For every molecule of an external **pool** the score estimates how much adding it to the training data "
        "would lower the validation error: **positive scores help, negative scores hurt** (score = g_val · H⁻¹ "
        "g_z, Koh & Liang 2017). The job then retrains with the top-k molecules and, as controls, with k random "
        "ones and with the whole pool, so you see whether the ranking pays.\n\n"
        "- **Add** the most helpful molecules first when training data is expensive to measure or curate.\n"
        "- **Check** the most harmful ones and the **suspected mislabelled** (highest self-influence: the model "
        "would have to move far to fit that label) before trusting their measured values.\n"
        "- Scores are estimates from one model around its trained weights: they rank, they do not predict exact "
        "error changes. If the solver has not settled (a warning below), the ranking is noise.")

finished = [r for r in store().runs(status="finished")
            if model_kind(r.method) == "regressor" and not r.spec["model"].get("descriptors")]
with st.expander("Launch an influence job", expanded=not finished or st.session_state.get("quick", False)):
    if not finished:
        st.info("Train a base run first (Train page; a single model without descriptors): its data, split, "
                "recipe and seed are reused.")
    else:
        # the job keeps its base run's molecules and epochs: the quick try shrinks the scoring and the k-sweep
        quick = quick_toggle("2 k values, a faster solver; the base run's molecules and epochs")
        plain_first = {r.id: r for r in sorted(finished, key=lambda r: r.method != "baseline")}  # plain fine-tune 1st
        base = plain_first[st.selectbox("Base run (recipe, data, split and seed)", list(plain_first),
                                        format_func=lambda i: run_label(plain_first[i]), key="influence-base")]
        upload = st.file_uploader("External pool: CSV (or SMILES / SD file) with SMILES and labels (leave empty for "
                                  "the default held-out 30 % of the training split)", type=TABLE_TYPES)
        c1, c2, c3 = st.columns(3)
        corrupt = c1.slider("Corrupt this share of pool labels (±3σ)", 0.0, 0.5, 0.0, 0.05)
        scope = c2.selectbox("Parameters", ["last_layer", "head", "last_2", "all"],
                             help="Head + last encoder layer by default; 'all' tracks every trainable parameter "
                                  "(LoRA adapters), much slower.")
        solver = c3.selectbox("Inverse-HVP solver", ["lissa", "cg", "exact"], index=1 if quick else 0,
                              help="Quick try: conjugate gradients on the whole (small) training set settle in ~50 "
                                   "steps where LiSSA's sampled recursion does not; LiSSA scales to large sets.")
        c4, c5, c6, c7 = st.columns(4)
        lissa = {"disabled": solver != "lissa", "help": "LiSSA's own: the other solvers do not use it"}
        damping = c4.number_input("Damping", 0.0, 10.0, 0.01, format="%.3f")
        scale = c5.number_input("LiSSA scale", 0.1, 1e6, 50.0, **lissa)
        depth = int(c6.number_input("LiSSA depth", 1, 10000, 50 if quick else 200, **lissa))
        repeats = int(c7.number_input("LiSSA repeats", 1, 20, 1 if quick else 2, **lissa))
        ks = st.multiselect("k values for the sweep", [8, 16, 32, 64, 100, 200, 500],
                            default=[8, 16] if quick else [16, 32, 64, 100])
        skip = st.checkbox("Leave suspected mislabelled molecules out of the top-k",
                           help="A first-order score grows with the label error, so wrong labels can rank as "
                                "most helpful.")
        options = {"scope": scope, "solver": solver, "damping": damping, "scale": scale, "depth": depth,
                   "repeats": repeats, "k": ks, "corrupt_fraction": corrupt, "skip_suspects": skip}
        if upload is not None:
            options["pool"] = str(store().save_upload(upload.getvalue(), saved_suffix(upload.name)))
        spec = JobSpec.from_dict({**base.spec, "method": "influence", "options": options,
                                  "name": f"influence of {base.id}"})
        cost_caption([spec])
        problem = pool_problem(spec, upload is not None)
        if st.button("Launch", type="primary", disabled=not ks or bool(problem)) and (queued := submit(spec)):
            announce(queued[0], "You queued this run: it runs in the background, and this card follows it.",
                     follow="influence-run")

live_jobs(("influence",))
runs = [r for r in store().runs() if r.method == "influence"]
if not runs:
    st.stop()
run = run_selectbox("Influence run", runs, lambda r: f"{run_label(r)} · {r.status}", key="influence-run")
st.markdown(status_text(run))
quick_note(run.spec)
if run.status in ("failed", "diverged"):
    st.error(plain(run.error))
pool_caption(run)
scores = store().molecules(run.id, Kinds.INFLUENCE)
if scores.empty:
    st.stop()
drift = run.metrics.get("solver_norm_drift")
if drift is not None and drift > DRIFT_LIMIT:
    solver = {"lissa": "LiSSA", "cg": "conjugate-gradient"}.get(run.metrics.get("solver", "lissa"), "solver's")
    st.warning(f"The {solver} estimate had not settled: its norm still moved "
               f"{drift:.0%} over the last fifth of the steps. Rerun with more depth (or a larger scale / damping), "
               "or with the CG solver, before acting on these scores.")
elif drift is not None:
    st.success(f"The inverse-HVP estimate settled (its norm moved {drift:.1%} over the last fifth of the steps): the "
               "ranking reflects this model, not solver noise.")
m0, m1, m2 = st.columns(3)
threshold, reference = run.metrics.get("suspect_threshold"), run.metrics.get("n_reference")
m0.metric("Suspected mislabelled", f"{int(scores['suspect'].sum())} of {len(scores)}",
          help="Self-influence above the 99th percentile of the validation split's"
               + (f" {int(reference)} molecules ({threshold:.3g})" if reference else "")
               + " (left out of the top-k)" * bool(run.spec["options"].get("skip_suspects")))
if "mislabel_auroc" in run.metrics:
    m1.metric("Corrupted labels found (AUROC)", f"{run.metrics['mislabel_auroc']:.3f}",
              help="How well self-influence ranks the corrupted labels above the others (chance = 0.5)")
    m2.metric("… by a negative score (AUROC)", f"{run.metrics['mislabel_auroc_first_order']:.3f}",
              help="How well a negative influence score (predicted to hurt) finds them (chance = 0.5)")
    st.caption(f"For this check {int(scores['corrupted'].sum())} of the {len(scores)} pool labels were corrupted "
               "(moved by ±3 standard deviations): the flag above is a threshold, the AUROC a ranking of all of them.")
if reference and reference < 100:
    st.caption(f"The flag's threshold is read from {int(reference)} validation molecules only (their 99th percentile "
               "is about their largest): read it as rough, and the self-influence ranking as the better guide.")


def cards(frame: pd.DataFrame, title: str) -> None:
    """Molecule cards: structure, rank, score, measured label and flags."""
    st.markdown(f"**{title}**")
    molecule_cards(frame, lambda row: (
        f"**#{int(row['rank'])}** · score {row['score']:.3g}  \nlogD {row['label']:.2f} · self-infl. "
        f"{row['self_influence']:.3g}" + (" · ⚠ suspect" if row["suspect"] else "")
        + (" · corrupted" if row["corrupted"] else "")))


ranked = scores.sort_values("rank")
tabs = st.tabs(["Most helpful", "Most harmful", "Highest self-influence", "Scores and the k-sweep", "All molecules"])
with tabs[0]:
    cards(ranked.head(10), "Adding these is predicted to lower the validation error most")
with tabs[1]:
    cards(ranked.tail(10).iloc[::-1], "Adding these is predicted to raise it: check their labels and chemistry")
with tabs[2]:
    cards(scores.sort_values("self_influence", ascending=False).head(10),
          "The labels to check first (⚠: over the suspect threshold)")
with tabs[3]:
    a, b = st.columns(2)
    a.plotly_chart(px.histogram(scores, x="score", color="corrupted" if scores["corrupted"].any() else None,
                                nbins=50, title="Influence scores (positive = helps)"))
    trace = store().table(run.id, Tables.SOLVER)
    if not trace.empty:
        b.plotly_chart(px.line(trace, x="step", y="norm", color="repeat", title="Inverse-HVP estimate norm per step"))
    sweep = store().table(run.id, Tables.SWEEP)
    if not sweep.empty:
        st.markdown("**k-sweep**: retrained with the influence top-k, k random pool molecules, or the whole pool")
        if set(sweep["k"]) == {run.metrics.get("n_pool")}:  # each k asked for was cut to the pool's size
            st.warning(f"Every k was the whole pool of {sweep['k'].iloc[0]} molecules: influence top-k, random k and "
                       "the whole pool trained on the same molecules, so this sweep cannot tell them apart. Use a "
                       "larger pool, or k below its size.")
        for column, metric in zip(st.columns(2), ("test_mse", "test_r2")):
            chart = px.line(sweep, x="k", y=metric, color="selection", markers=True)
            if (base := run.metrics.get(f"base_{metric}")) is not None:  # k = 0: what every selection must beat
                chart.add_hline(base, line_dash="dash", line_color="grey", annotation_text="no pool molecule")
            column.plotly_chart(chart)
        if not run.spec["options"].get("pool"):  # the pool was held out of the base run's training split
            st.caption("Dashed: the model trained without any pool molecule, on the training split less the "
                       "held-out pool (so not the base run's own test score, which trained on all of it).")
        st.dataframe(sweep, hide_index=True)
        arms = {"influence": "influence top-k", "random": "random k"}
        whole = sweep["k"] >= run.metrics.get("n_pool", np.inf)  # every selection trained on the same molecules
        if reading := against_control(sweep[~whole].replace({"selection": arms}), "k", "selection", *arms.values()):
            st.caption(reading + (" k = the whole pool is left out of this reading: there top-k and random k are the "
                                  "same molecules, and their difference is the retraining's noise." if whole.any()
                                  else ""))
        if "best_k" in run.metrics:
            st.caption(f"The run's own test metrics (its label, the Compare page) are those of the top-k retrain at "
                       f"k = {int(run.metrics['best_k'])}, the k with the lowest validation MSE.")
with tabs[4]:
    st.dataframe(ranked[["rank", "smiles", "label", "score", "self_influence", "suspect", "corrupted"]],
                 hide_index=True)
st.download_button("Download scores (CSV)", write_csv(ranked.dropna(axis="columns", how="all")),  # no empty columns
                   f"influence-{run.id}.csv",
                   "text/csv", on_click="ignore")
