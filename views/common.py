"""Shared Streamlit plumbing for the pages: one store and one JobManager per process, cached models."""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from chemlm_engine.config import DEFAULT_BACKBONE, DEFAULT_REGRESSOR, DataSpec, JobSpec
from chemlm_engine.data import read_csv
from chemlm_engine.ensemble import Ensemble, load_predictor
from chemlm_engine.errors import ChemLMError
from chemlm_engine.jobs import check_job_data, load_split_data
from chemlm_engine.manager import JobManager
from chemlm_engine.model import RegressionModel, load_training_set
from chemlm_engine.store import RunRecord, RunStore, default_home

DEFAULT_MODEL_LABEL = "Embedded default (assets/lipo-regressor)"


@st.cache_resource
def get_store(home: str) -> RunStore:
    return RunStore(home=home)


@st.cache_resource
def get_manager(home: str, executor: str = "thread", ray_address: str | None = None) -> JobManager:
    """One JobManager per process, store and executor; it marks runs of dead processes as interrupted."""
    return JobManager(get_store(home), executor=executor, ray_address=ray_address)


def submit(*specs: JobSpec) -> list[str] | None:
    """Queue jobs; a job that cannot train (too few molecules, constant labels, …) is an error on the page."""
    try:
        return [manager().submit(spec) for spec in specs]
    except ChemLMError as exc:
        st.error(f"Cannot start: {exc}")
        return None


def store() -> RunStore:
    return get_store(str(default_home()))


def executor_choice() -> tuple[str, str]:
    """(executor, Ray address) picked in the sidebar; defaults from $CHEMLM_EXECUTOR / $CHEMLM_RAY_ADDRESS."""
    executor = st.session_state.get("executor", os.environ.get("CHEMLM_EXECUTOR", "thread"))
    return executor, st.session_state.get("ray_address", os.environ.get("CHEMLM_RAY_ADDRESS", ""))


def manager() -> JobManager:
    executor, address = executor_choice()
    return get_manager(str(default_home()), executor, address or None)


@st.cache_resource(max_entries=4)
def load_model(folder: str) -> RegressionModel | Ensemble:
    """A model folder; its code runs only for a run the user launched with 'Trust remote code' ticked."""
    trusted = any(r.model_path == folder and r.spec.get("model", {}).get("trust_remote_code")
                  for r in store().runs(status="finished"))
    return load_predictor(folder, trust_remote_code=trusted)


@st.cache_data(max_entries=16, show_spinner="Checking the data …")
def job_problem(spec_json: str) -> str | None:
    """Why a job cannot train (too few molecules, constant labels, …), or ``None``: shown before Start."""
    try:
        check_job_data(JobSpec.from_json(spec_json))
    except ChemLMError as exc:
        return str(exc)
    return None


@st.cache_data(max_entries=8)
def training_smiles(folder: str) -> list[str]:
    saved = load_training_set(folder)
    return saved[0] if saved else []


def device_label() -> str:
    if torch.cuda.is_available():
        return f"CUDA · {torch.cuda.get_device_name(0)}"
    return f"CPU · {torch.get_num_threads()} threads"


def model_choices() -> dict[str, str]:
    """Label -> model folder: the embedded default (when shipped) and every finished run with a model."""
    choices = {}
    if any(Path(DEFAULT_REGRESSOR, name).exists() for name in ("regressor.json", "ensemble.json")):
        choices[DEFAULT_MODEL_LABEL] = DEFAULT_REGRESSOR
    for run in store().runs(status="finished"):
        if run.method != "pretrain" and run.model_path and Path(run.model_path).exists():
            choices[run_label(run)] = run.model_path
    return choices


def run_label(run: RunRecord) -> str:
    r2 = run.metrics.get("test_r2")
    score = f" · test R² {r2:.3f}" if isinstance(r2, float) else ""
    return f"{run.id} · {run.method}{score}"


def save_upload(data: bytes, suffix: str = ".csv") -> Path:
    """Keep an uploaded file in the run store so a background job (and a rerun) can read it."""
    folder = default_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / (hashlib.sha256(data).hexdigest()[:16] + suffix)
    if not path.exists():
        path.write_bytes(data)
    return path


def dataset_picker() -> str | None:
    """Bundled Lipophilicity or an uploaded CSV (with its row-level report shown); returns the
    ``DataSpec.source`` or ``None`` while no usable file is uploaded."""
    choice = st.radio("Dataset", ["Bundled Lipophilicity (4,200 molecules)", "Upload a CSV"], horizontal=True)
    if choice != "Upload a CSV":
        return "lipophilicity"
    upload = st.file_uploader("CSV with a SMILES column and a label column", type=["csv"])
    if upload is None:
        return None
    path = save_upload(upload.getvalue())
    try:
        data, report = read_csv(path)
    except ChemLMError as exc:
        st.error(str(exc))
        return None
    st.caption(f"{len(data)} molecules ready · {report.summary()}")
    if len(report.to_frame()):
        st.dataframe(report.to_frame(), hide_index=True, height=180)
    return str(path)


def backbone_picker() -> tuple[str, bool]:
    """Embedded ChemLM-mini, a local folder or a hub id; ``trust_remote_code`` only by explicit opt-in."""
    pretrained = {run_label(r): r.info["output"] for r in store().runs(status="finished")
                  if r.method == "pretrain" and Path(r.info.get("output", "")).is_dir()}
    kinds = ["Embedded ChemLM-mini", *(["A pretraining run"] if pretrained else []), "Local folder or hub id"]
    kind = st.radio("Backbone", kinds, horizontal=True)
    if kind == "Embedded ChemLM-mini":
        return DEFAULT_BACKBONE, False
    if kind == "A pretraining run":
        return pretrained[st.selectbox("Pretraining run", list(pretrained))], False
    backbone = st.text_input("Folder path or hub id", placeholder="ibm/MoLFormer-XL-both-10pct").strip()
    trust = st.checkbox("Trust remote code", help="Some hub models (MoLFormer-XL) ship their own Python code. "
                        "Enabling this runs that code on this machine: only do it for models you trust.")
    return backbone, trust


@st.cache_data(max_entries=8)
def split_data(source: str, split: str, seed: int):
    """Training / validation / test parts of a dataset (cached)."""
    return load_split_data(DataSpec(source=source, split=split, split_seed=seed))


def eta_text(run: RunRecord) -> str:
    """Elapsed time and a linear ETA from the stored progress fraction."""
    if run.started_at is None:
        return "waiting in the queue"
    elapsed = time.time() - run.started_at
    if run.progress <= 0.01:
        return f"{elapsed:.0f} s elapsed"
    remaining = elapsed * (1 - run.progress) / run.progress
    return f"{elapsed:.0f} s elapsed · about {remaining:.0f} s left"


def metrics_row(run: RunRecord) -> pd.DataFrame:
    keys = ["test_mse", "test_rmse", "test_mae", "test_r2", "val_mse", "best_epoch", "seconds_per_epoch"]
    return pd.DataFrame([{k: run.metrics.get(k) for k in keys}])
