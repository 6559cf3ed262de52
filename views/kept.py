"""Choices that outlive a visit to another page: the Predict page's model, input mode and pasted SMILES.

Streamlit forgets a widget's value once a run does not show it, and its ``persist_state`` did not always keep it:
the sidebar's live panel reruns on a timer, and a pasted text came back empty about one return to Predict in
fifteen (the browser test's steps with a 1 s refresh; in CI the page came back in upload mode). So the value also
lives under a plain session key, which no widget cleanup touches, and is handed to the widget before it renders.
"""
from collections.abc import Collection
from typing import Any

import streamlit as st


def saved(key: str) -> str:
    """The plain session key holding widget ``key``'s kept value: set it to choose a value from another page."""
    return f"kept-{key}"


def kept(key: str, choices: Collection[Any] | None = None) -> dict[str, Any]:
    """``key`` and ``on_change`` for a widget whose value is kept; a kept value no longer among ``choices`` (a
    deleted model) is dropped, and the widget shows its default."""
    value = st.session_state.get(saved(key))
    if choices is not None and value not in choices:  # none kept, or a model deleted since
        st.session_state.pop(saved(key), None)
        if st.session_state.get(key) not in choices:
            st.session_state.pop(key, None)
    elif value is not None and st.session_state.get(key) != value:  # dropped by Streamlit, or chosen elsewhere
        st.session_state[key] = value  # only then: a value set here is sent to the browser, over what is typed

    def save() -> None:
        st.session_state[saved(key)] = st.session_state[key]

    return {"key": key, "on_change": save}
