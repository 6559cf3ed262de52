"""Compare: finished runs grouped by method, mean ± std over seeds, and the full comparison suite."""
import plotly.express as px
import streamlit as st

from chemlm_engine.compare import METRICS, best_rows, runs_table, suite_specs, summarize
from chemlm_engine.config import DataSpec, JobSpec, ModelSpec, TrainConfig
from views.common import backbone_picker, store, submit

st.title("Compare methods")

with st.expander("Run the full comparison"):
    st.caption("Queues full fine-tuning, MLM then regression, curriculum, uncertainty sampling and its random "
               "control, LoRA, BitFit, IA3 and pooled IA3 — each for every seed, on the same split.")
    c1, c2, c3 = st.columns(3)
    n_seeds = int(c1.number_input("Seeds", 1, 10, 3))
    split = c2.radio("Split", ["random", "scaffold"], horizontal=True)
    epochs = int(c3.number_input("Epochs", 1, 500, 20))
    backbone, trust = backbone_picker()
    if st.button("Queue the suite", type="primary", disabled=not backbone):
        base = JobSpec(data=DataSpec(split=split), model=ModelSpec(backbone=backbone, trust_remote_code=trust),
                       train=TrainConfig(epochs=epochs))
        specs = suite_specs(base, list(range(n_seeds)))
        if submit(*specs):
            st.success(f"Queued {len(specs)} runs; results appear below as they finish.")


@st.fragment(run_every=10)
def comparison() -> None:
    table = runs_table(store().runs(status="finished"))
    if table.empty:
        st.info("No finished runs yet.")
        return
    f1, f2, f3 = st.columns(3)
    filters = {"dataset": f1, "split": f2, "backbone": f3}
    for column, container in filters.items():
        options = sorted(table[column].dropna().unique())
        chosen = container.multiselect(column.capitalize(), options, default=options, key=f"filter-{column}")
        table = table[table[column].isin(chosen)]
    summary = summarize(table)
    if summary.empty:
        st.caption("No run matches the filters.")
        return
    best = best_rows(summary)
    st.caption("Best per metric: " + ", ".join(f"{m.replace('test_', '')} → **{g}**" for m, g in best.items()))
    columns = ["group", "runs", *[c for m in METRICS for c in (m, f"{m}_std")], "trainable_params", "duration_s"]
    styled = summary[columns].style.format(precision=3).format({"trainable_params": "{:,.0f}", "duration_s": "{:.0f}"})
    styled = styled.highlight_min(subset=["test_mse", "test_rmse", "test_mae"], color="#c8e6c9")
    styled = styled.highlight_max(subset=["test_r2"], color="#c8e6c9")
    st.dataframe(styled, hide_index=True)
    metric = st.radio("Chart", list(METRICS), horizontal=True, key="chart-metric")
    st.plotly_chart(px.bar(summary, x="group", y=metric, error_y=f"{metric}_std",
                           title=f"{metric} (mean ± std over seeds)"))
    with st.expander(f"All {len(table)} runs"):
        st.dataframe(table, hide_index=True)


comparison()
