"""Links that take a choice to another page: "Predict with this run", Home's "Try it", "Open the best trial's run".

Links, not buttons calling st.switch_page: a switch made on the server races the sidebar's live panel. A refresh the
browser sent for the old page runs after the new page has, and Streamlit leaves the window blank (seen in CI;
2 times in 10 with a 1 s refresh). A link navigates in the browser, so no stale refresh follows it. What it
carries rides in the URL's query; app.py turns it into session state before the page runs and drops it from the URL,
so that the user's own choices on the page are not overridden on the next rerun.
"""
import streamlit as st

from chemlm_engine.errors import RunNotFoundError
from chemlm_engine.spec import DEFAULT_REGRESSOR
from chemlm_engine.store import RunRecord
from views.common import store
from views.kept import saved

# A small batch that shows what Predict reports: a salt (standardised), an invalid SMILES, an unusual molecule.
EXAMPLE_SMILES = """CC(=O)Oc1ccccc1C(=O)O aspirin
Cn1cnc2c1c(=O)n(C)c(=O)n2C caffeine
CC(C)Cc1ccc(C(C)C(=O)O)cc1 ibuprofen
O=C([O-])c1ccccc1O.[Na+] sodium-salicylate
CN1CCC[C@H]1c1cccnc1 nicotine
C1CC broken-ring
FC(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)C(F)(F)S(=O)(=O)O PFOS"""
# ?preset=…: Home's "Try it". The example is pasted for the embedded default model that Home describes, whatever
# model and input mode Predict was left with.
PRESETS = {"example": {saved("predict_text"): EXAMPLE_SMILES, saved("predict_folder"): DEFAULT_REGRESSOR,
                       saved("predict_mode"): "Paste SMILES"}, "quick": {"quick": True, saved("quick"): True}}


def link(container, page: str, label: str, icon: str, help: str | None = None, disabled: bool = False,
         **carried: str) -> None:
    """A link to ``page`` that carries ``preset=…`` (a PRESETS key), ``predict=<run id>`` (that run's model on
    Predict) or ``open=<run id>`` (that run's details on Train)."""
    container.page_link(page, label=label, icon=icon, help=help, disabled=disabled, query_params=carried)


def stored_run(run_id: str | None) -> RunRecord | None:
    """The stored run ``run_id``, or None (no id, or the run was deleted)."""
    try:
        return store().get_run(run_id) if run_id else None
    except RunNotFoundError:
        return None


def receive() -> None:
    """What a link carried, as session state; an unknown preset is ignored, a run that no longer exists (a link
    kept from before it was deleted) is said, above the page, never silently replaced by another model."""
    carried = {name: st.query_params.get(name) for name in ("preset", "predict", "open")}
    for name in carried:
        st.query_params.pop(name, None)
    st.session_state.update(PRESETS.get(carried["preset"] or "", {}))
    predicted, opened = stored_run(carried["predict"]), stored_run(carried["open"])
    if predicted is not None and predicted.model_path:
        st.session_state[saved("predict_folder")] = predicted.model_path  # Predict checks that it is one of its choices
    elif carried["predict"]:
        st.warning(f"Run {carried['predict']} from this link no longer exists (or has no model): pick the model "
                   "to predict with below.")
    if opened is not None:
        st.session_state["detail-run"] = opened.id
    elif carried["open"]:
        st.warning(f"Run {carried['open']} from this link no longer exists.")
