"""The launch forms every job page shares: quick-try preset, data (with column pickers), backbone, epochs, cost."""
from __future__ import annotations

from pathlib import Path

import streamlit as st

from chemlm_engine.spec import DEFAULT_BACKBONE, EMBEDDED_BACKBONE, DataSpec, JobSpec, model_kind
from chemlm_engine.costs import estimate_cost
from chemlm_engine.data import read_csv
from chemlm_engine.errors import ChemLMError
from chemlm_engine.filekinds import TABLE_TYPES, saved_suffix
from views.common import UPLOAD_NAMES, job_problem, plain, run_label, store
from views.kept import kept, kept_here
from views.uploads import column_pickers


QUICK = {"subset": 300, "epochs": 3}  # the "quick try" preset of every launch form
# What a quick try sets among a method's own settings, on the Train page as on the method's page: a quick
# active-learning run's pool (~180 molecules) must outlast what it acquires, or every strategy acquires the same ones
QUICK_OPTIONS = {"search": {"num_samples": 4},
                 **{m: {"initial_size": 50, "acquire": 64} for m in ("uncertainty", "isal")}}


def quick_note(spec: dict) -> None:
    """Say so when a run is as small as a quick try: its numbers show the pipeline works, not how good the method is."""
    subset, epochs = spec.get("data", {}).get("subset") or 10**9, spec.get("train", {}).get("epochs", 99)
    if subset <= QUICK["subset"] and epochs <= QUICK["epochs"]:
        st.info(f"A small run ({subset:,} molecules, {epochs} epoch{'s' * (epochs != 1)}, the size of a quick try): "
                "it shows that the pipeline runs end to end. On so few molecules and epochs its R² says little about "
                "the method; launch the full run for a number worth comparing.")


def quick_toggle(what: str = f"{QUICK['subset']} molecules, {QUICK['epochs']} epochs") -> bool:
    """The quick-try switch (one value for every page); ``what``: what it shrinks on this page."""
    return st.toggle(f"Quick try ({what})", **kept("quick"),
                     help="A small, fast version of the job to see what it does before spending the full cost.")


def data_form(quick: bool, seed: bool = True) -> DataSpec | None:
    """Dataset (bundled or an uploaded CSV with its columns picked and its row report shown), split, seed,
    subset and standardisation as a ``DataSpec``; ``None`` while no usable file is uploaded."""
    # not kept: an uploaded file is not (Streamlit forgets it with the page), and a quick try starts from the bundled
    choice = st.radio("Dataset", ["Bundled Lipophilicity (4,200 molecules)", "Upload a file"], horizontal=True)
    source, columns = "lipophilicity", {}
    if choice == "Upload a file":
        upload = st.file_uploader("CSV (or SMILES / SD file) with a SMILES column and a label column", type=TABLE_TYPES)
        columns = column_pickers(upload, value="label") if upload is not None else None
        if columns is None:
            return None
        source = str(store().save_upload(upload.getvalue(), saved_suffix(upload.name)))
        st.session_state.setdefault(UPLOAD_NAMES, {})[source] = upload.name
        try:
            data, report = read_csv(source, columns["smiles_column"], columns["label_column"])
        except ChemLMError as exc:
            st.error(plain(exc))
            return None
        st.caption(f"{len(data)} molecules ready · {report.summary()}")
        if len(report.to_frame()):
            st.dataframe(report.to_frame(), hide_index=True, height=180)
    a, b, c = st.columns(3)
    split = a.radio("Split (80/10/10)", ["random", "scaffold"], horizontal=True,
                    **kept_here("split", choices=["random", "scaffold"]))
    split_seed = int(b.number_input("Seed", min_value=0, step=1, **kept_here("seed", ("value", 0)))) if seed else 0
    subset = QUICK["subset"] if quick else int(c.number_input("Random subset of N molecules (0 = all)", min_value=0,
                                                              step=100, **kept_here("subset", ("value", 0))))
    if quick:
        c.caption(f"Subset: {QUICK['subset']} molecules (quick try)")
    standardize = st.checkbox("Standardise molecules", **kept_here("standardize", ("value", True)),
                              help="Largest organic fragment, isotope labels dropped, neutralised (RDKit "
                                   "rdMolStandardize); recorded with the model: prediction repeats it.")
    tautomer = st.checkbox("… and use the canonical tautomer", disabled=not standardize, **kept_here("tautomer"))
    return DataSpec(source=source, split=split, split_seed=split_seed, subset=subset or None, standardize=standardize,
                    tautomer=tautomer and standardize, **columns)


def run_name(data: DataSpec, backbone: str) -> str:
    """A run's name as launched: the uploaded file's own name and a backbone other than the default, so that runs on
    other files or backbones tell apart in every list of runs (the name can be changed later)."""
    parts = [st.session_state.get(UPLOAD_NAMES, {}).get(data.source, "")]
    if backbone != DEFAULT_BACKBONE:
        parts.append(Path(backbone).name or backbone)
    return " · ".join(part for part in parts if part)


def epochs_input(quick: bool, default: int = 20, container=st, least: int = 1) -> int:
    if quick:
        container.caption(f"Epochs: {QUICK['epochs']} (quick try)")
        return QUICK["epochs"]
    return int(container.number_input("Epochs", least, 500, **kept_here("epochs", ("value", default))))


def cost_caption(specs: list[JobSpec]) -> None:
    """What a launch will run and roughly how long it takes on this machine, before it starts."""
    plan = estimate_cost(specs, store())
    st.info(f"**This launch:** {plan.describe()}", icon=":material/timer:")


def backbone_picker() -> tuple[str, bool]:
    """The default backbone (the embedded ChemLM-mini unless set), a local folder or a hub id;
    ``trust_remote_code`` only by explicit opt-in."""
    pretrained = {run_label(r): r.info["output"] for r in store().runs(status="finished")
                  if model_kind(r.method) == "backbone" and Path(r.info.get("output", "")).is_dir()}
    default = "Embedded ChemLM-mini" if DEFAULT_BACKBONE == EMBEDDED_BACKBONE else \
        f"Default ({Path(DEFAULT_BACKBONE).name})"  # $CHEMLM_DEFAULT_BACKBONE
    kinds = [default, *(["A pretraining run"] if pretrained else []), "Local folder or hub id"]
    kind = st.radio("Backbone", kinds, horizontal=True, **kept_here("backbone-kind", choices=kinds))
    if kind == default:
        return DEFAULT_BACKBONE, False
    if kind == "A pretraining run":
        return pretrained[st.selectbox("Pretraining run", list(pretrained),
                                       **kept_here("pretraining-run", choices=list(pretrained)))], False
    backbone = st.text_input("Folder path or hub id", placeholder="ibm/MoLFormer-XL-both-10pct",
                             **kept_here("backbone-path")).strip()
    trust = st.checkbox("Trust remote code", help="Some hub models (MoLFormer-XL) ship their own Python code. "
                        "Enabling this runs that code on this machine: only do it for models you trust.")
    return backbone, trust


def launch_form():
    """The top of a launch form: the quick-try preset, the data on the left, the backbone on the right.
    Returns ``(quick, data, backbone, trust_remote_code, right column)`` for the method's own inputs."""
    quick = quick_toggle()
    left, right = st.columns(2)
    with left:
        data = data_form(quick)
    with right:
        backbone, trust = backbone_picker()
    return quick, data, backbone, trust, right


def pool_problem(spec: JobSpec | None, uploaded: bool) -> str | None:
    """Why a job cannot use the pool file just uploaded (no SMILES or label column, no molecule, …), said on the
    page before Launch; ``None`` when it can, or when nothing was uploaded."""
    problem = job_problem(spec.to_json()) if spec is not None and uploaded else None
    if problem:
        st.error(f"Cannot start: {plain(problem)}")
    return problem
