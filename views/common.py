"""Shared Streamlit plumbing for the pages: one store and one JobManager per process, cached models."""
from __future__ import annotations

import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import plotly.express as px
import streamlit as st
import torch

from chemlm_engine.spec import DEFAULT_REGRESSOR, FAST_REGRESSOR, DataSpec, JobSpec, holds_model, model_kind
from chemlm_engine.predict import Ensemble, TrainingReference, load_predictor
from chemlm_engine.compare import launched_trusting
from chemlm_engine.errors import ChemLMError
from chemlm_engine.jobs import SplitData, check_job_data, load_split_data
from chemlm_engine.manager import JobManager
from chemlm_engine.model import RegressionModel
from chemlm_engine.store import RunRecord, RunStore, default_home

# The default first; its one-pass student with the same trees: 1.9x faster without native bf16, as accurate (README).
SHIPPED_MODELS = {DEFAULT_REGRESSOR: "Embedded default (assets/lipo-regressor)",
                  FAST_REGRESSOR: "Embedded one-pass student, faster (assets/lipo-regressor-fast)"}
DEFAULT_MODEL_LABEL = SHIPPED_MODELS[DEFAULT_REGRESSOR]
# How often the live panels look at the store. 10 s: on 2 cores faster page redraws slow the job they watch
# (bench/app_speed.py); a machine with cores to spare (or the browser tests' tiny jobs) can poll faster.
LIVE_REFRESH_S = max(float(os.environ.get("CHEMLM_LIVE_REFRESH_S") or 10), 1.0)  # at least 1 s
REPEAT_S = 10.0  # a second click on the same launch within this is a double click (a loaded machine reruns slowly)
DOUBLE_CLICK = (f" Clicked again within {REPEAT_S:.0f} s: taken as a double click, nothing more queued (to run it "
                "twice, click again a little later).")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:])")


def plain(text: object) -> str:
    """Text from a user or a file (a run error naming a backbone, a column name) shown literally, not as
    Markdown: ``![x](http://host/…)`` in a column name would otherwise make the viewer's browser fetch it."""
    return _MARKDOWN.sub(r"\\\1", str(text))


@st.cache_resource
def get_store(home: str) -> RunStore:
    return RunStore(home=home)


@st.cache_resource
def get_manager(home: str, executor: str = "thread", ray_address: str | None = None) -> JobManager:
    """One JobManager per process, store and executor; it marks runs of dead processes as interrupted."""
    return JobManager(get_store(home), executor=executor, ray_address=ray_address)


UPLOAD_NAMES = "upload-names"  # session key: a launch form's uploads, saved under their content's hash, by their names


def submit(*specs: JobSpec) -> list[str] | None:
    """Queue jobs with the data the page already checked (it is not loaded again); a job that cannot train
    (too few molecules, constant labels, …) is an error on the page. The same jobs clicked again within
    ``REPEAT_S`` (a double click) are queued once: nothing is returned, and the first click's cards say so."""
    key = "".join(replace(spec, name="").to_json() for spec in specs)  # a pair's name is drawn anew on each click
    if (last := st.session_state.get("queued")) and last[0] == key and time.time() - last[1] < REPEAT_S:
        # in the cards' announcements (views.live.announce): a note here would be gone at the queue's own rerun
        announced = st.session_state.setdefault("announced", {})
        for run_id in last[2]:
            announced[run_id] = announced.get(run_id, "You queued this run.").split(DOUBLE_CLICK)[0] + DOUBLE_CLICK
        return []
    checked = [_check(spec.to_json()) for spec in specs]
    problem = next((problem for _, problem in checked if problem), None)
    if problem is not None:
        st.error(f"Cannot start: {plain(problem)}")
        return None
    try:
        queued = [manager().submit(spec, data) for spec, (data, _) in zip(specs, checked)]
    except ChemLMError as exc:
        st.error(f"Cannot start: {plain(exc)}")
        return None
    uploaded = st.session_state.get(UPLOAD_NAMES, {})
    for spec, run_id in zip(specs, queued):
        if spec.data.source in uploaded:
            store().set_info(run_id, data_file=uploaded[spec.data.source])
    st.session_state["queued"] = (key, time.time(), queued)
    return queued


def store() -> RunStore:
    return get_store(str(default_home()))


def executor_choice() -> tuple[str, str]:
    """(executor, Ray address) picked in the sidebar; defaults from $CHEMLM_EXECUTOR / $CHEMLM_RAY_ADDRESS."""
    executor = st.session_state.get("executor", os.environ.get("CHEMLM_EXECUTOR", "process"))
    return executor, st.session_state.get("ray_address", os.environ.get("CHEMLM_RAY_ADDRESS", ""))


def manager() -> JobManager:
    executor, address = executor_choice()
    return get_manager(str(default_home()), executor, address or None)


@st.cache_resource(max_entries=4)
def load_model(folder: str) -> RegressionModel | Ensemble:
    """A model folder; its code runs only for a run the user launched with 'Trust remote code' ticked."""
    return load_predictor(folder, trust_remote_code=trusted(folder))


def trusted(folder: str) -> bool:
    """Whether ``folder``'s code may run: a run the user launched with 'Trust remote code' ticked made it."""
    return launched_trusting(store().runs(status="finished"), folder)


@st.cache_data(max_entries=8, show_spinner="Checking the data …")
def _check(spec_json: str) -> tuple[SplitData | None, str | None]:
    """The job's data checked once per spec (uploads are stored by content: a path names one file's data), or
    why it cannot train. A copy per call: a job never shares it with the page."""
    try:
        return check_job_data(JobSpec.from_json(spec_json), store()), None
    except ChemLMError as exc:
        return None, str(exc)


def job_problem(spec_json: str) -> str | None:
    """Why a job cannot train (too few molecules, constant labels, …), or ``None``: shown before Start."""
    return _check(spec_json)[1]


@st.cache_resource(max_entries=8)
def training_reference(folder: str) -> TrainingReference | None:
    """The training molecules saved with a model folder, with their fingerprints (None when it has none)."""
    return TrainingReference.load(folder)


def fmt3(value) -> str:
    """A metric for people: 3 significant digits."""
    return "–" if value is None or value != value else f"{value:.3g}"


def parity_plot(frame: pd.DataFrame, measured: str, predicted: str, title: str):
    lo = float(min(frame[measured].min(), frame[predicted].min()))
    hi = float(max(frame[measured].max(), frame[predicted].max()))
    figure = px.scatter(frame, x=measured, y=predicted, hover_data=[c for c in ("smiles", "row") if c in frame],
                        opacity=0.6, title=title, labels={measured: "measured", predicted: "predicted"})
    figure.add_shape(type="line", x0=lo, y0=lo, x1=hi, y1=hi, line={"dash": "dash", "color": "grey"})
    return figure


def device_label() -> str:
    if torch.cuda.is_available():
        return f"CUDA · {torch.cuda.get_device_name(0)}"
    return f"CPU · {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() > 1)}"


def model_choices() -> dict[str, str]:
    """Label -> model folder: the embedded models (when shipped) and every finished run with a model."""
    choices = {label: folder for folder, label in SHIPPED_MODELS.items() if holds_model(folder)}
    for run in store().runs(status="finished"):
        if model_kind(run.method) != "backbone" and run.model_path and Path(run.model_path).exists():
            choices[run_label(run)] = run.model_path
    return choices


def run_label(run: RunRecord) -> str:
    r2 = run.metrics.get("test_r2")
    score = f" · test R² {r2:.3f}" if isinstance(r2, float) else ""
    named = f"{run.name} · " if run.name else ""  # a renamed run is found by its name
    return f"{named}{run.id} · {run.method}{score}"


@st.cache_data(max_entries=8)
def split_data(data: DataSpec):
    """Training / validation / test parts of a dataset (cached)."""
    return load_split_data(data)


def molecule_cards(frame: pd.DataFrame, caption, per_row: int = 5) -> None:
    """Molecules as cards: the structure and ``caption(row)`` (Markdown) under it."""
    from chemlm_engine.depict import molecule_image_uri

    for start in range(0, len(frame), per_row):
        for column, (_, row) in zip(st.columns(per_row), frame.iloc[start:start + per_row].iterrows()):
            with column.container(border=True):
                st.image(molecule_image_uri(row["smiles"], (240, 170)) or "", width="stretch")
                st.markdown(caption(row))


def pool_caption(run: RunRecord) -> None:
    """What a run's pool file gave, no row left out without a word: its report, and the molecules left out because
    the job's own data holds them."""
    if report := run.info.get("pool_report"):
        st.caption(f"Your pool file: {report}; {run.info.get('pool_dropped_known', 0)} already in the job's own data "
                   "(training, validation or test), left out.")
