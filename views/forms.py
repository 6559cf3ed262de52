"""The launch forms every job page shares: quick-try preset, data (with column pickers), backbone, epochs, cost."""
from __future__ import annotations

import io
import os
from pathlib import Path

import streamlit as st

from chemlm_engine.spec import DEFAULT_BACKBONE, EMBEDDED_BACKBONE, DataSpec, JobSpec, model_kind
from chemlm_engine.costs import estimate_cost
from chemlm_engine.data import LABEL_COLUMNS, SMILES_COLUMNS, read_csv
from chemlm_engine.errors import ChemLMError
from chemlm_engine.filekinds import TABLE_TYPES, is_compressed, is_excel, is_parquet, is_sd_file, saved_suffix
from chemlm_engine.molecules import is_molecule
from chemlm_engine.tables import columns_of, count_rows
from views.common import plain, run_label, store
from views.kept import kept

NAME_COLUMNS = ("name", "id", "compound_id", "compound", "cmpd_id", "molecule_id", "molecule", "chembl_id", "zinc_id",
                "idnumber", "title")
MEASURED_COLUMNS = ("measured", "measured_logd", "logd", "logd7.4", "logd_7.4", *LABEL_COLUMNS)


def _named(data: bytes, name: str) -> io.BytesIO:
    buffer = io.BytesIO(data)
    buffer.name = name  # read as its kind: CSV, SMILES file (.smi), SD file, Excel workbook or Parquet
    return buffer


@st.cache_data(max_entries=8)
def _header(data: bytes, name: str) -> list[str]:
    return columns_of(_named(data, name))


@st.cache_data(max_entries=8)
def _sheet_rows(data: bytes, name: str) -> int:
    return count_rows(_named(data, name))


# More rows than this run as a library job (chunked, constant memory, progress): the page holds the whole file and
# its results in memory and keeps the server busy until it is done. A bigger server may allow more.
PAGE_ROWS = int(os.environ.get("CHEMLM_PAGE_ROWS", 5_000))


def _rough_rows(upload) -> int:
    """An upload's rows, fast (every rerun of the page asks): its lines or SD records counted in its bytes at C speed,
    a workbook's rows read once."""
    data = upload.getvalue()
    if is_excel(upload):
        return _sheet_rows(data, upload.name)
    return data.count(b"\n$$$$") + data.startswith(b"$$$$") if is_sd_file(upload) else data.count(b"\n") - 1


def upload_too_big(upload) -> str | None:
    """Why an upload is too big for the page (with the command that predicts it), or ``None``. A Parquet or compressed
    file is a library: it is always predicted in the background."""
    if is_parquet(upload) or is_compressed(upload):
        why = f"A {'Parquet' if is_parquet(upload) else 'compressed'} file is predicted as a library."
    elif (rows := _rough_rows(upload)) > PAGE_ROWS:
        why = f"This file has about {rows:,} rows; the page predicts up to {PAGE_ROWS:,} while you wait."
    else:
        return None
    return (f"{why} Predict it in the background (chunk by chunk in constant memory, with progress and Cancel), or run "
            "`chemlm predict --input FILE --output predictions.parquet` (`--executor ray` spreads it over a cluster).")


def _plain_name(column: str) -> str:
    """A column name as the known names are written: "Compound ID", "Measured logD" read compound_id, measured_logd."""
    return "_".join(column.lower().replace("-", " ").split())


def _index(options: list[str], candidates: tuple[str, ...], default: int | None = 0) -> int | None:
    plain = [_plain_name(o) for o in options]
    return next((plain.index(c.lower()) for c in candidates if c.lower() in plain), default)


def column_pickers(upload, value: str | None = "measured") -> dict[str, str | None] | None:
    """Pickers for an uploaded table's SMILES, name and value columns, pre-set when the names are known;
    ``value="measured"`` is optional (Predict), ``"label"`` required (Train), ``None``: the SMILES column only.
    ``None`` (the reason shown) when the file cannot be read."""
    try:
        columns = _header(upload.getvalue(), upload.name)
    except ChemLMError as exc:
        st.error(plain(exc))
        return None
    optional = ["(none)", *columns]
    a, b, c = st.columns(3)
    picked = {"smiles_column": a.selectbox("SMILES column", columns, index=_index(columns, SMILES_COLUMNS, None),
                                           placeholder="Choose the column")}
    if value == "measured":
        name = b.selectbox("Name / ID column", optional, index=_index(optional, NAME_COLUMNS))
        measured = c.selectbox("Measured value column (optional)", optional,
                               index=_index(optional, MEASURED_COLUMNS))
        picked.update(name_column=None if name == "(none)" else name,
                      measured_column=None if measured == "(none)" else measured)
    elif value == "label":  # a known name, else the first column that is not the SMILES column
        other = next((i for i, c in enumerate(columns) if c != picked["smiles_column"]), 0)
        picked["label_column"] = b.selectbox("Label column", columns,
                                             index=_index(columns, (*LABEL_COLUMNS, *MEASURED_COLUMNS), other))
    if picked["smiles_column"] is None:  # never a guess: a column of IDs read as SMILES predicts "B" as boron
        st.warning(f"The first line ({', '.join(columns)}) is a molecule, not a header: add one (e.g. smiles,name)."
                   if any(map(is_molecule, columns)) else "Which column holds the SMILES? Choose it above.")
        return None
    return picked


QUICK = {"subset": 300, "epochs": 3}  # the "quick try" preset of every launch form


def quick_note(spec: dict) -> None:
    """Say so when a run is a quick try: its numbers show the pipeline works, not how good the method is."""
    if (spec.get("data", {}).get("subset") or 10**9) <= QUICK["subset"] and \
            spec.get("train", {}).get("epochs", 99) <= QUICK["epochs"]:
        st.info("A quick try: it shows that the pipeline runs end to end. On so few molecules and epochs its R² "
                "says little about the method; launch the full run for a number worth comparing.")


def quick_toggle(what: str = f"{QUICK['subset']} molecules, {QUICK['epochs']} epochs") -> bool:
    """The quick-try switch (one value for every page); ``what``: what it shrinks on this page."""
    return st.toggle(f"Quick try ({what})", **kept("quick"),
                     help="A small, fast version of the job to see what it does before spending the full cost.")


def data_form(quick: bool, seed: bool = True) -> DataSpec | None:
    """Dataset (bundled or an uploaded CSV with its columns picked and its row report shown), split, seed,
    subset and standardisation as a ``DataSpec``; ``None`` while no usable file is uploaded."""
    choice = st.radio("Dataset", ["Bundled Lipophilicity (4,200 molecules)", "Upload a file"], horizontal=True)
    source, columns = "lipophilicity", {}
    if choice == "Upload a file":
        upload = st.file_uploader("CSV (or SMILES / SD file) with a SMILES column and a label column", type=TABLE_TYPES)
        columns = column_pickers(upload, value="label") if upload is not None else None
        if columns is None:
            return None
        source = str(store().save_upload(upload.getvalue(), saved_suffix(upload.name)))
        try:
            data, report = read_csv(source, columns["smiles_column"], columns["label_column"])
        except ChemLMError as exc:
            st.error(plain(exc))
            return None
        st.caption(f"{len(data)} molecules ready · {report.summary()}")
        if len(report.to_frame()):
            st.dataframe(report.to_frame(), hide_index=True, height=180)
    a, b, c = st.columns(3)
    split = a.radio("Split (80/10/10)", ["random", "scaffold"], horizontal=True)
    split_seed = int(b.number_input("Seed", min_value=0, value=0, step=1)) if seed else 0
    subset = QUICK["subset"] if quick else int(c.number_input("Random subset of N molecules (0 = all)", min_value=0,
                                                              value=0, step=100))
    if quick:
        c.caption(f"Subset: {QUICK['subset']} molecules (quick try)")
    standardize = st.checkbox("Standardise molecules", value=True,  # the details in the help: a label that fits
                              help="Largest organic fragment, isotope labels dropped, neutralised (RDKit "
                                   "rdMolStandardize); recorded with the model: prediction repeats it.")
    tautomer = st.checkbox("… and use the canonical tautomer", value=False, disabled=not standardize)
    return DataSpec(source=source, split=split, split_seed=split_seed, subset=subset or None, standardize=standardize,
                    tautomer=tautomer and standardize, **columns)


def epochs_input(quick: bool, default: int = 20, container=st) -> int:
    if quick:
        container.caption(f"Epochs: {QUICK['epochs']} (quick try)")
        return QUICK["epochs"]
    return int(container.number_input("Epochs", 1, 500, default))


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
    kind = st.radio("Backbone", kinds, horizontal=True)
    if kind == default:
        return DEFAULT_BACKBONE, False
    if kind == "A pretraining run":
        return pretrained[st.selectbox("Pretraining run", list(pretrained))], False
    backbone = st.text_input("Folder path or hub id", placeholder="ibm/MoLFormer-XL-both-10pct").strip()
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
