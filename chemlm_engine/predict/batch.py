"""Batch prediction: one output row per input, with the error for rows that cannot be predicted."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from ..columns import SMILES_COLUMNS, value_column
from ..descriptors import size_warning
from .domain import DOMAIN_COLUMNS, TRUNCATED
from .ensemble import Ensemble
from ..errors import DataError
from ..inference import mc_dropout, predict_values
from ..model import RegressionModel
from ..molecules import carbon_and_charge, one_enantiomer, split_smiles_line
from ..guard import prepare_all
from ..tables import numbers, pick_column, read_table
from ..training import regression_metrics

__all__ = ["predict_smiles", "predict_csv", "user_table", "result_columns", "parse_pasted", "token_warnings",
           "molecule_warnings", "measured_metrics", "measured_notes", "read_measured", "training_rows_note",
           "unread_measured",
           "PREDICTION_COLUMNS"]


def parse_pasted(text: str) -> tuple[list[str], list[str], list[int]]:
    """Split pasted text into SMILES, names and the numbers of their lines: one molecule per line (CXSMILES too),
    optional name after a space or tab; blank lines skipped (the line numbers say where each molecule was)."""
    smiles: list[str] = []
    names: list[str] = []
    lines: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        molecule, name = split_smiles_line(line)
        if molecule:
            smiles.append(molecule)
            names.append(name)
            lines.append(number)
    return smiles, names, lines


def token_warnings(tokenizer, smiles: Sequence[str], max_tokens: int) -> list[str | None]:
    """Per SMILES, what the model will not read as written: tokens outside its vocabulary (read as the
    unknown token, so e.g. ``[Gd+3]`` and ``[Xe]`` look alike to it) and truncation to ``max_tokens``."""
    if not smiles:
        return []
    encoded = tokenizer(list(smiles), return_offsets_mapping=True, verbose=False)
    unk = tokenizer.unk_token_id
    out: list[str | None] = []
    for text, ids, offsets in zip(smiles, encoded["input_ids"], encoded["offset_mapping"]):
        notes = []
        unknown = list(dict.fromkeys(text[a:b] for i, (a, b) in zip(ids, offsets) if i == unk and b > a))
        if unknown:
            notes.append(f"unknown to the model, read as {tokenizer.unk_token}: {', '.join(unknown)}")
        if len(ids) > max_tokens:
            notes.append(f"{TRUNCATED} {len(ids):,} tokens, the model reads only the first {max_tokens}")
        out.append("; ".join(notes) or None)
    return out


def molecule_warnings(model: RegressionModel | Ensemble, canonical: Sequence[str],
                      heavy_atoms: Sequence[int]) -> list[str | None]:
    """What the model cannot read exactly as written, per canonical SMILES: unknown tokens, truncation, for a
    descriptor model the descriptors skipped for a large molecule, and a molecule without carbon (a logD model of
    organic compounds extrapolates there: cisplatin standardises to ammonia)."""
    described = (model.members[0] if isinstance(model, Ensemble) else model).descriptor_names
    when = "after standardisation" if model.standardization.enabled else "as given"
    read = [carbon_and_charge(s) for s in canonical]
    notes = zip(token_warnings(model.tokenizer, canonical, model.max_tokens),
                (size_warning(n, described) if described else None for n in heavy_atoms),
                (None if organic else _INORGANIC for organic, _ in read),
                (_ion(charge, when) for _, charge in read))
    return ["; ".join(n for n in notes_of_one if n) or None for notes_of_one in notes]


_INORGANIC = ("no carbon atom: unlike every molecule the model learned from (organic compounds), so the prediction "
              "means little")


def _ion(charge: int, when: str) -> str | None:
    """A permanent ion (7 of Lipophilicity's 4,200 molecules are): a logD model has seen few, its number is rough."""
    return None if charge == 0 else (f"an ion (net charge {charge:+d} {when}): few molecules a logD model learns "
                                     "from are ions, so the prediction is rough")


PREDICTION_COLUMNS = ["row", "name", "input", "canonical_smiles", "prediction", "error", "warnings",
                      "standardization"]


ProgressFn = Callable[[int, int], None]  # (molecules predicted so far, molecules to predict)
_CHUNK = 256  # most molecules per progress report


def predict_smiles(model: RegressionModel | Ensemble, smiles: Sequence[str], names: Sequence[str] | None = None,
                   batch_size: int | None = None, mc_passes: int = 0,
                   problems: Sequence[str | None] | None = None, progress: ProgressFn | None = None) -> pd.DataFrame:
    """One row per input, in order: every valid SMILES predicted, every other one with its ``error``.

    Inputs are standardised as the model's training data was (``standardization`` says what changed,
    e.g. "removed [Na+]"); ``warnings`` says when the model cannot read a molecule as written (unknown
    tokens, truncation). ``problems`` marks rows already known to be unusable (blank or ragged CSV rows).
    Columns: ``row`` (1-based), ``name``, ``input``, ``canonical_smiles``, ``prediction``, ``error``,
    ``warnings``, ``standardization``; for an ensemble also ``uncertainty`` (the members' std) and, when it
    was calibrated, ``interval_low`` / ``interval_high`` (split-conformal); for a single model with
    ``mc_passes`` > 1 ``uncertainty`` is the MC-dropout std. ``progress`` hears after every chunk of molecules
    (distinct canonical SMILES: each is predicted once, however many rows name it).
    """
    inputs = ["" if raw is None or (isinstance(raw, float) and np.isnan(raw)) else str(raw) for raw in smiles]
    labels = [""] * len(inputs) if names is None else ["" if pd.isna(n) else str(n) for n in list(names)]
    if len(labels) != len(inputs):
        raise DataError(f"{len(labels)} names for {len(inputs)} SMILES")
    readable = [i for i in range(len(inputs)) if problems is None or problems[i] is None]
    parsed = dict(zip(readable, prepare_all([inputs[i] for i in readable], model.standardization)))
    rows, sizes = [], []
    for i, text in enumerate(inputs):
        problem = problems[i] if problems is not None else None
        prepared = parsed.get(i)
        rows.append({"row": i + 1, "name": labels[i], "input": text,
                     "canonical_smiles": prepared.smiles if prepared else None, "prediction": np.nan,
                     "error": problem if prepared is None else prepared.error, "warnings": None,
                     "standardization": "; ".join(prepared.changes) if prepared and prepared.changes else None})
        sizes.append(prepared.heavy_atoms if prepared else 0)
    frame = pd.DataFrame(rows, columns=PREDICTION_COLUMNS)
    valid = frame.index[frame["error"].isna()]
    canonical = frame.loc[valid, "canonical_smiles"].tolist()
    if canonical:
        frame.loc[valid, "warnings"] = molecule_warnings(model, canonical, [sizes[i] for i in valid])
    ensemble = isinstance(model, Ensemble)
    # A molecule listed twice (or as two salts of one parent, or as either enantiomer) is predicted once, and its
    # rows agree.
    read_as = {text: one_enantiomer(text) for text in set(canonical)}
    unique = list(dict.fromkeys(read_as[text] for text in canonical))
    mean, std = np.zeros(len(unique)), np.full(len(unique), np.nan)
    chunk = max(16, min(_CHUNK, -(-len(unique) // 10)))  # a small batch still counts up in ~10 steps
    if progress is not None:
        progress(0, len(unique))
    # Chunks of similar length, as one sorted pass would batch them: a library mixing short and very long molecules
    # pads less (on Lipophilicity's narrow lengths it measured the same, bench/predict_speed.py).
    order = np.argsort([len(s) for s in unique], kind="stable")
    for start in range(0, len(unique), chunk):
        part = order[start:start + chunk]
        smiles_part = [unique[i] for i in part]
        if isinstance(model, Ensemble):
            mean[part], std[part] = model.predict(smiles_part, batch_size)
        else:
            mean[part] = predict_values(model, smiles_part, batch_size)
            if mc_passes > 1:
                std[part] = mc_dropout(model, smiles_part, mc_passes)[1]
        if progress is not None:
            progress(min(start + chunk, len(unique)), len(unique))
    position = {text: i for i, text in enumerate(unique)}
    back = [position[read_as[text]] for text in canonical]
    mean, std = mean[back], std[back]
    frame.loc[valid, "prediction"] = mean
    if ensemble or mc_passes > 1:
        frame["uncertainty"] = np.nan
        frame.loc[valid, "uncertainty"] = std
    if isinstance(model, Ensemble) and model.conformal is not None:
        low, high = model.conformal.interval(mean, std)
        frame[["interval_low", "interval_high"]] = np.nan
        frame.loc[valid, "interval_low"], frame.loc[valid, "interval_high"] = low, high
    return frame


def predict_csv(model: RegressionModel | Ensemble, source: str | Path | IO, smiles_column: str | None = None,
                name_column: str | None = None, mc_passes: int = 0, measured_column: str | None = None,
                progress: ProgressFn | None = None, find_measured: bool = False) -> pd.DataFrame:
    """Predict a CSV's SMILES column (auto-detected unless named); see :func:`predict_smiles`. One output
    row per data row of the file (blank and ragged rows get their error); the file's other columns follow,
    as they were. ``measured_column`` (numbers; blank or text cells become missing) is also copied to
    ``measured``, for :func:`measured_metrics`; ``find_measured``: without one named, a column named as measured
    values are (``logD7.4 (exp)``, as the Predict page preselects it), recorded in ``attrs["measured_column"]``."""
    table = read_table(source)
    columns = list(table.frame.columns)
    column = pick_column(columns, smiles_column, SMILES_COLUMNS, "SMILES")
    if measured_column is None and find_measured:
        measured_column = value_column([c for c in columns if c not in (column, name_column)])
    for wanted, what in ((name_column, "name"), (measured_column, "measured")):
        if wanted is not None:
            pick_column(columns, wanted, (), what)  # an unknown column is a clear error
    names = table.frame[name_column].tolist() if name_column else None
    result = predict_smiles(model, table.frame[column].tolist(), names, mc_passes=mc_passes, problems=table.problems,
                            progress=progress)
    note = None
    if measured_column:
        result["measured"], note = read_measured(table.frame[measured_column])
    ours = {*result.columns, *DOMAIN_COLUMNS}  # the domain's are added later; a file's own keep their values
    passed = table.frame.rename(columns=lambda c: f"{c} (input)" if c in ours else c)
    out = pd.concat([result, passed], axis=1)
    out.attrs["input_columns"] = list(passed.columns)  # for user_table: the file's own columns, in its order
    out.attrs["measured_column"] = measured_column
    if note:
        out.attrs["measured_note"] = note
    return out


def read_measured(cells: pd.Series) -> tuple[np.ndarray, str | None]:
    """A file's column of measured values as numbers (:func:`~chemlm_engine.tables.numbers`), and what could not
    be read as one (None: every filled cell)."""
    values = numbers(cells).to_numpy()
    text = cells.astype("string").str.strip()  # a Parquet column of numbers holds no text: only its blanks
    unread = cells[np.isnan(values) & text.notna().to_numpy() & (text != "").fillna(False).to_numpy()]
    return values, (f"{len(unread):,} measured value{'s are' if len(unread) > 1 else ' is'} not a number (e.g. "
                    f"{unread.iloc[0]!r}), left out of the metrics" if len(unread) else None)


_PAGE_COPIES = ("name", "input", "measured")  # a prediction's copies of the file's own columns, for the page


def user_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A prediction table as it is saved: for a file, its own columns under their own names and in their order
    (joining back on your IDs works; no renamed copy of the SMILES, name or measured column), then the
    results; pasted or listed SMILES keep ``name`` and ``input``."""
    own = frame.attrs.get("input_columns")
    if not own:
        return frame
    # the file's "name", "input" or "measured" column back under its own name: the results' copies are not saved
    restored = {f"{c} (input)": c for c in _PAGE_COPIES if f"{c} (input)" in own and c not in own}
    return frame[["row", *own, *result_columns(frame)]].rename(columns=restored)


def result_columns(frame: pd.DataFrame) -> list[str]:
    """What a prediction added to a file's own columns (for an SD file: the fields written back into its records)."""
    own = frame.attrs.get("input_columns") or []
    return [c for c in frame.columns if c not in own and c not in ("row", *_PAGE_COPIES)]


def unread_measured(frame: pd.DataFrame) -> str | None:
    """What :func:`predict_csv` could not read as a number in the measured column (None: every filled cell)."""
    return frame.attrs.get("measured_note")


def measured_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """MSE / RMSE / MAE / R² (and n) of the predictions against a ``measured`` column, on rows that have both; with
    intervals also ``coverage``: the share of those measured values inside their interval. Rows whose molecule the
    model trained on (``in_training``) are left out, their number as ``in_training``: a model scored on its own
    training molecules looks far better than it is."""
    both = frame["prediction"].notna() & frame["measured"].notna()
    seen = both & frame["in_training"].eq(True) if "in_training" in frame else both & False  # None: not known
    both &= ~seen
    if both.sum() < 2:
        return {"n": int(both.sum()), **({"in_training": int(seen.sum())} if seen.any() else {})}
    measured = frame.loc[both, "measured"].to_numpy(float)
    metrics = {"n": int(both.sum()), **regression_metrics(measured, frame.loc[both, "prediction"].to_numpy(float))}
    if "interval_low" in frame:
        inside = (frame.loc[both, "interval_low"] <= measured) & (measured <= frame.loc[both, "interval_high"])
        metrics["coverage"] = float(inside.mean())
    return {**metrics, **({"in_training": int(seen.sum())} if seen.any() else {})}


FEW_SCORED = 10  # fewer rows scored against measured values than this: one more row moves the metrics by much


def measured_notes(frame: pd.DataFrame, metrics: dict[str, float]) -> list[str]:
    """What :func:`measured_metrics` left out, row for row, and how far to trust it, in the words both the command
    line and the page use."""
    notes = [training_rows_note(int(metrics["in_training"]))] if metrics.get("in_training") else []
    if unread := unread_measured(frame):
        notes.append(unread)
    if without := int((frame["prediction"].notna() & frame["measured"].isna()).sum()):
        notes.append(f"{without:,} predicted row{'s have' if without > 1 else ' has'} no measured value (a blank "
                     "cell, or one that is not a number): not in these numbers")
    if 2 <= metrics["n"] < FEW_SCORED:
        notes.append(f"only {metrics['n']} rows are scored: on so few, one more row can move R² a long way")
    return notes


def training_rows_note(seen: int) -> str:
    """What :func:`measured_metrics` left out as the model's own training molecules (``seen`` of them)."""
    return (f"{seen:,} {'row is a molecule' if seen == 1 else 'rows are molecules'} the model trained on, or a "
            "stereoisomer of one (in_training): not in these numbers")
