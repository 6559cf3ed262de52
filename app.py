"""ChemLM Studio: Streamlit entry point (navigation and the shared sidebar)."""
import streamlit as st

from pages.common import device_label, manager, store

st.set_page_config(page_title="ChemLM Studio", page_icon="🧪", layout="wide")

pages = [
    st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/predict.py", title="Predict", icon=":material/science:"),
    st.Page("pages/influence.py", title="Influence", icon=":material/hub:"),
    st.Page("pages/curriculum.py", title="Curriculum", icon=":material/stairs:"),
    st.Page("pages/uncertainty.py", title="Uncertainty", icon=":material/blur_on:"),
    st.Page("pages/compare.py", title="Compare", icon=":material/leaderboard:"),
]
page = st.navigation(pages)

manager()  # start the job thread (and mark jobs of a dead process as interrupted) on first load
with st.sidebar:
    st.caption(f"**Device:** {device_label()}")
    st.caption(f"**Run store:** `{store().home}`")

    @st.fragment(run_every=3)
    def job_list() -> None:
        active = [r for r in store().runs() if r.status in ("queued", "running")]
        st.caption(f"**Jobs:** {len(active) or 'none'} active")
        for run in active:
            st.progress(run.progress, text=f"{run.id} · {run.method} · {run.status}")

    job_list()

page.run()
