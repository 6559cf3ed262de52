"""Compare: finished runs grouped by their full configuration, mean ± std over seeds, paired Δ to a reference."""
import plotly.express as px
import streamlit as st

from chemlm_engine.compare import (METRICS, MIN_SEEDS, readable, reference_choices, repeated_seeds, runs_table,
                                   suite_specs, summarize)
from chemlm_engine.spec import JobSpec, ModelSpec, TrainConfig
from views.common import store, submit
from views.forms import backbone_picker, cost_caption, data_form, epochs_input, quick_toggle
from views.kept import kept
from views.live import METRIC_LABELS, announce, live_jobs

st.title("Compare methods")
st.caption(f"Runs are grouped by everything in their configuration except the seed. A difference is called only "
           f"from ≥ {MIN_SEEDS} seeds that both configurations share (paired t-test, 95 % CI); one run ranks nothing.")

with st.expander("Run the full comparison"):
    st.caption("Queues full fine-tuning, MLM then regression, curriculum, uncertainty sampling and its random "
               "control, LoRA, BitFit, IA3 and pooled IA3 — each for every seed, on the same split.")
    quick = quick_toggle()
    left, right = st.columns(2)
    with left:
        data = data_form(quick, seed=False)
        n_seeds = int(st.number_input("Seeds (0, 1, …)", 1, 10, 3))
    with right:
        backbone, trust = backbone_picker()
        epochs = epochs_input(quick)
    if data is not None and backbone:
        base = JobSpec(data=data, model=ModelSpec(backbone=backbone, trust_remote_code=trust),
                       train=TrainConfig(epochs=epochs))
        specs = suite_specs(base, list(range(n_seeds)))
        cost_caption(specs)
        if st.button("Queue the suite", type="primary") and (queued := submit(*specs)):
            announce(queued[0], f"You queued {len(specs)} runs, this one first; results appear below as they finish.")

live_jobs()
table = runs_table(store().runs(status="finished"))
if table.empty:
    st.info("No finished training runs yet (library predictions fit nothing to compare): queue the suite above, or "
            "train on the Train page.")
    st.stop()
choices = reference_choices(table)
reference = st.selectbox("Reference configuration", choices, format_func=readable,
                         **kept("compare_reference", choices))
metric = st.radio("Metric", list(METRICS), horizontal=True, format_func=METRIC_LABELS.get,
                  **kept("compare_metric", METRICS))
summary = summarize(table, reference, metric)


def spread(mean: float, std: float) -> str:
    return f"{mean:.3g}" if std != std else f"{mean:.3g} ± {std:.2g}"


shown = summary.assign(**{METRIC_LABELS[m]: [spread(a, b) for a, b in zip(summary[m], summary[f"{m}_std"])]
                          for m in METRICS})
shown[f"Δ {METRIC_LABELS[metric]}"] = [
    "" if p == 0 or d != d else f"{d:+.3g}" + ("" if lo != lo else f" [{lo:+.2g}, {hi:+.2g}]")
    for p, d, lo, hi in zip(summary["pairs"], summary[f"delta_{metric}"], summary[f"ci_low_{metric}"],
                            summary[f"ci_high_{metric}"])]
shown["p"] = ["" if p != p else f"{p:.3f}" for p in summary[f"p_value_{metric}"]]  # no "None" where untested
shown["pairs"] = ["–" if v == "reference" else f"{n}" for n, v in zip(summary["pairs"], summary["verdict"])]  # not 0
# what answers "is it better?" first (the chosen metric, its paired Δ and p), so that a laptop's width shows it
st.dataframe(shown, hide_index=True, column_order=[
    "differs", "seeds", "verdict", METRIC_LABELS[metric], f"Δ {METRIC_LABELS[metric]}", "p", "pairs",
    *(METRIC_LABELS[m] for m in METRICS if m != metric), "trainable_params"], column_config={
    "differs": st.column_config.TextColumn("what differs from the reference", width="medium"),
    "verdict": st.column_config.TextColumn(f"vs the reference ({METRIC_LABELS[metric]})", width="medium"),
    "p": st.column_config.TextColumn("p (paired t)"),
    "trainable_params": st.column_config.NumberColumn("trainable params", format="%d")})
st.caption("Means ± std are over each configuration's own seeds; Δ, its 95 % interval and p pair a configuration "
           "with the reference on the seeds both have (pairs), so a mean and a Δ can disagree when the reference has "
           "seeds the other lacks. Rows: most seeds first, then by the metric (R² high to low, errors low to high).")
# bars across, their labels on the left: long rotated labels under upright bars squeezed the bars into a corner
named_by = "differs" if summary["differs"].any() else "config"
figure = px.bar(summary, y=named_by, x=metric, error_x=f"{metric}_std", hover_data=["seeds"], orientation="h",
                title=f"{METRIC_LABELS[metric]}: mean ± std over seeds (no bar for std with one seed)",
                labels={named_by: "", metric: METRIC_LABELS[metric]}, height=180 + 40 * len(summary))
# every configuration named (plotly would drop labels it finds crowded), in the table's order from the top
st.plotly_chart(figure.update_yaxes(autorange="reversed", tickmode="array", tickvals=summary[named_by].tolist()))
with st.expander("Full configurations"):
    st.dataframe(summary[["differs", "config"]], hide_index=True)
if repeats := repeated_seeds(table):
    st.caption(f"{repeats} run{'s repeat' if repeats > 1 else ' repeats'} a configuration on a seed it already has "
               "(a curriculum pair's baseline beside a plain run, a run started twice): the newest of each counts.")
with st.expander(f"All {len(table)} runs"):
    st.dataframe(table, hide_index=True)
