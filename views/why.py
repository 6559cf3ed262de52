"""Why this prediction: the atoms (integrated gradients) and the training molecules (leave-one-out through the last
layer) behind one predicted row of the Predict page."""
import logging
import threading

import pandas as pd
import streamlit as st

from chemlm_engine.errors import ChemLMError
from chemlm_engine.predict import (DOMAIN_SIMILARITY, Explanation, explain, load_predictor, prepare_explanations,
                                   signed)
from views.common import load_model, molecule_cards, plain, trusted
from views.kept import kept

OUTSIDE = "⚠ outside"
log = logging.getLogger(__name__)


@st.cache_resource(show_spinner=False)
def _warming() -> dict[str, threading.Thread]:
    return {}


def warm_explanations(folder: str) -> None:
    """Build the model's attribution caches in the background (once per model and app process), so that "Why?"
    answers at once. A model of its own: a prediction with MC dropout must not switch dropout on under it."""
    def build(trust: bool) -> None:  # no st.* in here: it runs outside the page's script thread
        try:
            prepare_explanations(load_predictor(folder, trust_remote_code=trust), folder)
        except Exception as exc:  # noqa: BLE001 - only a head start: "Why?" builds what is missing, says errors
            log.warning("could not prepare the explanations of %s: %s", folder, exc)

    threads = _warming()
    if folder not in threads:
        threads[folder] = threading.Thread(target=build, args=(trusted(folder),), name="warm-explanations",
                                           daemon=True)
        threads[folder].start()


def explanations_warming(folder: str) -> bool:
    """Whether the background build of ``folder``'s attribution caches is still running."""
    thread = _warming().get(folder)
    return thread is not None and thread.is_alive()


@st.cache_resource(max_entries=32, show_spinner=False)
def explanation(folder: str, smiles: str) -> Explanation:
    """Why the model in ``folder`` predicts what it does for ``smiles`` (cached per molecule)."""
    return explain(load_model(folder), folder, smiles)



# The flags in charts: outside the domain the one warning colour, a training molecule not another
DOMAIN_COLOURS = {"✓ in domain": "#1f77b4", "inside": "#1f77b4", OUTSIDE: "#d62728", "outside": "#d62728",
                  "✓ training molecule": "#2ca02c", "–": "#7f7f7f", "unknown": "#7f7f7f"}


def domain_flags(in_domain: pd.Series, in_training: pd.Series | None = None) -> pd.Series:
    """The ``domain`` column the result tables show and :func:`why_this_prediction` reads ("–": not known); a
    molecule the model trained on says so (``in_training``: absent from library outputs of before 6 December)."""
    flags = in_domain.map({True: "✓ in domain", False: OUTSIDE}).fillna("–")
    return flags if in_training is None else flags.mask(in_training.eq(True), "✓ training molecule")


def why_this_prediction(ok: pd.DataFrame, folder: str, key: str = "why-row") -> None:
    """A row picker (widget ``key``) over the predicted rows ``ok`` of model ``folder``, and the chosen row's
    explanation."""
    st.subheader("Why this prediction?")
    def label(i) -> str:
        return "choose a row" if i is None else (f"row {ok.loc[i, 'row']} · "
                                                 f"{ok.loc[i, 'name'] or ok.loc[i, 'canonical_smiles']} · "
                                                 f"logD {ok.loc[i, 'prediction']:.2f}")

    rows = [None, *ok.index]
    why = st.selectbox("Explain a result row", rows, format_func=label, **kept(key, rows))  # kept across pages
    if why is None:
        return
    first = explanations_warming(folder)
    with st.spinner("Finishing the model's attribution cache (built once per model, started after your prediction) …"
                    if first else "Attributing …"):
        try:
            reason = explanation(folder, ok.loc[why, "canonical_smiles"])
        except ChemLMError as exc:
            st.error(plain(exc))
            st.stop()
    if isinstance(ok.loc[why, "warnings"], str):  # the explanation is of what the model read
        st.warning(plain(ok.loc[why, "warnings"]))
    if ok.loc[why, "domain"] == OUTSIDE:
        st.warning(f"Outside the applicability domain: no training molecule is similar (best Tanimoto "
                   f"{ok.loc[why, 'similarity']:.2f} < {DOMAIN_SIMILARITY}). The model extrapolates here, and the "
                   "training molecules below explain what it learned, not a close precedent.")
    left, right = st.columns([2, 3])
    left.image(reason.picture, caption="Atoms: not attributed for a molecule too large to draw" if reason.atoms is None
               else "Atoms: red raises the predicted logD, blue lowers it (integrated gradients from the baseline, "
               "the prediction with every atom masked: atoms, bonds and rings add up to logD − baseline; bonds and "
               f"rings together {signed(reason.atoms['other'])})")
    right.markdown("**Training molecules behind it.** Contribution = how much this prediction would drop (or rise) "
                   "if the model had been trained without that molecule (leave-one-out through its last layer, in "
                   f"logD units). One molecule among {len(reason.training):,} moves a fit little, so the sizes are "
                   "small: **read the ranking**, not the size.")
    top = reason.top(5)
    meaning = {"pushes up": "training molecules without which this prediction would drop most: mostly ones that "
                            "look alike to the model and whose measured logD lies above its fit",
               "pushes down": "the same, the other way",
               "nearest": "the closest analogues by Tanimoto, with their measured logD: what a chemist would compare "
                          "with. An analogue can push either way: its contribution follows the model's error on it "
                          "and the features it shares, not its similarity alone"}
    for role in ("pushes up", "pushes down", "nearest"):
        st.markdown(f"**{role.capitalize()}**: {meaning[role]}.")
        molecule_cards(top[top["role"] == role], lambda r: f"contribution **{signed(r['contribution'], 3)}**  \n"
                       f"measured logD {r['label']:.2f} · similarity {r['similarity']:.2f}")
