"""ChemLM Studio: Streamlit entry point (navigation and the shared sidebar)."""
import streamlit as st

from chemlm_engine.errors import ChemLMError
from chemlm_engine.spec import EXECUTORS
from views.common import LIVE_REFRESH_S, device_label, executor_choice, manager, plain, store
from views.kept import new_run
from views.links import receive

st.set_page_config(page_title="ChemLM Studio", page_icon="🧪", layout="wide")
# Narrow windows: a slimmer sidebar and narrower margins below 1,000 px, and option labels and buttons that
# never break mid-word.
st.html("<style>@media (max-width: 1000px) { section[data-testid='stSidebar'] { width: 220px !important; "
        "min-width: 220px !important; } [data-testid='stMainBlockContainer'] { padding-left: 1.5rem; "
        "padding-right: 1.5rem; } } div[role='radiogroup'] label p, .stButton button p, "
        ".stDownloadButton button p { white-space: nowrap; }</style>")

pages = [
    st.Page("views/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("views/train.py", title="Train", icon=":material/model_training:"),
    st.Page("views/predict.py", title="Predict", icon=":material/science:"),
    st.Page("views/influence.py", title="Influence", icon=":material/hub:"),
    st.Page("views/curriculum.py", title="Curriculum", icon=":material/stairs:"),
    st.Page("views/uncertainty.py", title="Active learning", icon=":material/blur_on:"),
    st.Page("views/compare.py", title="Compare", icon=":material/leaderboard:"),
    st.Page("views/search.py", title="Search", icon=":material/tune:"),
]
page = st.navigation(pages)
try:
    store()
except ChemLMError as exc:  # e.g. CHEMLM_HOME names a file: say so instead of a traceback
    st.error(f"The run store cannot be opened: {plain(exc)}")
    st.stop()

with st.sidebar:
    st.caption(f"**Device:** {device_label()}")
    st.caption(f"**Run store:** `{store().home}`")
    executor, address = executor_choice()
    with st.expander(f"Executor: {executor}", expanded=False):
        st.selectbox("Run jobs on", EXECUTORS, index=EXECUTORS.index(executor), key="executor",
                     help="process: this machine, one job at a time, each in a process of its own (as fast as the "
                          "CLI). thread: the same inside the app's process (slower while pages refresh). ray: every "
                          "job a Ray task (one GPU each when the cluster has GPUs), sweeps fanned out; the run store "
                          "must be shared.")
        st.text_input("Ray address", value=address, key="ray_address", placeholder="empty: start a local Ray",
                      disabled=st.session_state.get("executor", executor) != "ray")
try:
    manager()  # start the executor (and mark jobs of a dead process as interrupted) on first load
except Exception as exc:  # noqa: BLE001 - a cluster that cannot be reached must not take the app down
    st.sidebar.error(f"Cannot start the {executor_choice()[0]} executor: {plain(exc)}")

@st.fragment(run_every=LIVE_REFRESH_S)
def job_list() -> None:
    manager().active()  # lets the Ray executor record tasks that died without a word
    active = [r for r in store().runs() if r.status in ("queued", "running")]
    if active and store().mark_interrupted():  # a run whose process died elsewhere (a killed CLI): not "running"
        active = [r for r in store().runs() if r.status in ("queued", "running")]
    st.caption(f"**Jobs:** {len(active) or 'none'} active")
    for run in active:
        st.progress(run.progress, text=f"{run.name or f'{run.method} {run.id}'} · {run.status}")  # as its card names it


# Before the page: a page that ends with st.stop ends the script run, and nothing after it is drawn. A job the page
# queues now is listed at the panel's next refresh; the page's own live card shows it at once.
with st.sidebar:
    job_list()
new_run(page.url_path)  # a page hands a returning widget its kept value (views/kept.py)
receive()  # what a link from another page carried ("Predict with this run", "Try it", …)
page.run()
