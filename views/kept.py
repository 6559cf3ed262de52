"""Choices that outlive a visit to another page: Predict's model, input mode, pasted SMILES and MC-dropout option,
Compare's reference and metric, Curriculum's difficulty and pacing, and the quick try that several pages share.

Streamlit forgets a widget's value once a run does not show it, and its ``persist_state`` did not always keep it:
the sidebar's live panel reruns on a timer, and a pasted text came back empty about one return to Predict in
fifteen (the browser test's steps with a 1 s refresh; in CI the page came back in upload mode). So the value also
lives under a plain session key, which no widget cleanup touches, and is handed to the widget before it renders:
when Streamlit has dropped or changed its state, and when the widget comes back after a run that did not show it.
"""
from collections.abc import Callable, Collection, Sequence
from typing import Any

import streamlit as st

from chemlm_engine.store import RunRecord

_RUN = "kept-run"  # full runs of the app so far (app.py counts them; the sidebar's timed fragment does not)
_PAGE = "kept-page"  # the page of this run: a widget key several pages share (the quick try) is new on each


def saved(key: str) -> str:
    """The plain session key holding widget ``key``'s kept value: set it to choose a value from another page."""
    return f"kept-{key}"


def new_run(page: str = "") -> None:
    """Count a full run of the app, showing ``page`` (call once per run, before the page)."""
    st.session_state[_RUN] = st.session_state.get(_RUN, 0) + 1
    st.session_state[_PAGE] = page


def kept(key: str, choices: Collection[Any] | None = None, default: tuple[str, Any] | None = None) -> dict[str, Any]:
    """``key`` and ``on_change`` for a widget whose value is kept; a kept value no longer among ``choices`` (a
    deleted model) is dropped, and the widget shows its default. ``default``: the widget's default as ``(argument,
    value)``, e.g. ``("value", 20)``, passed only while no value is kept (Streamlit warns when a widget gets a
    default and a value set by the app)."""
    value = st.session_state.get(saved(key))
    now = st.session_state.get(_RUN, 0), st.session_state.get(_PAGE, "")  # this run of the app, and its page
    # Not shown by the last run (another page, the other input mode): the browser mounts it afresh and may show its
    # default even where the server's state already holds the value (a click that came back with a stale state).
    shown = f"shown-in-run-{key}"  # not under saved()'s prefix: no widget key can name it
    returning = st.session_state.get(shown) != (now[0] - 1, now[1])  # or shown last run, but on another page
    st.session_state[shown] = now
    if choices is not None and value not in choices:  # none kept, or a model deleted since
        st.session_state.pop(saved(key), None)
        if value is not None and choices:  # deleted since (in another tab?): the browser would still show it
            st.session_state[gone(key)] = value
            st.session_state[key] = next(iter(choices))  # so the widget shows the default it now uses
        elif st.session_state.get(key) not in choices:
            st.session_state.pop(key, None)
    elif value is not None and (returning or st.session_state.get(key) != value):
        st.session_state[key] = value  # only then: a value set here is sent to the browser, over what is typed

    def save() -> None:
        st.session_state[saved(key)] = st.session_state[key]

    if default is not None and saved(key) not in st.session_state:
        return {"key": key, "on_change": save, default[0]: default[1]}
    return {"key": key, "on_change": save}


def kept_here(name: str, default: tuple[str, Any] | None = None,
              choices: Collection[Any] | None = None) -> dict[str, Any]:
    """:func:`kept` for a widget of a form that several pages show (data, backbone, epochs …): each page keeps its own
    choice."""
    return kept(f"{st.session_state.get(_PAGE, '')}:{name}", choices, default)


def gone(key: str) -> str:
    """The session key set (to the value) when widget ``key``'s kept value was no longer among its choices."""
    return f"gone-{key}"


def labelled_selectbox(label: str, labels: dict[Any, str], key: str, **kwargs: Any) -> Any:
    """A selectbox of ``labels``' keys shown by their labels, which may change while one is chosen (a run renamed,
    finished): the browser holds the chosen label, which then matches no option, and Streamlit would fall back to
    the first option. So the chosen key is handed to the widget on every run (the browser always shows its label as
    it is now), and a label the browser sends that matches nothing keeps the key chosen before."""
    chosen = f"chosen-{key}"
    if (current := st.session_state.get(key)) in labels:
        st.session_state[key] = current
    elif st.session_state.get(chosen) in labels:
        st.session_state[key] = st.session_state[chosen]
    st.session_state[chosen] = st.selectbox(label, list(labels), format_func=labels.get, key=key, **kwargs)
    return st.session_state[chosen]


def run_selectbox(label: str, runs: Sequence[RunRecord], label_of: Callable[[RunRecord], str],
                  key: str) -> RunRecord:
    """:func:`labelled_selectbox` over runs (keyed by id, shown by ``label_of``): the chosen run."""
    by_id = {run.id: run for run in runs}
    return by_id[labelled_selectbox(label, {run.id: label_of(run) for run in runs}, key=key)]
