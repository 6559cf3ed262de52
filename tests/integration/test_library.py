"""Library prediction streamed to Parquet: one row per input, resumable after an interruption."""
import json
from pathlib import Path

import pandas as pd
import pytest

from chemlm_engine import library
from chemlm_engine.library import job_parts, kept_rows, predict_library
from chemlm_engine.model import RegressionModel
from chemlm_engine.molecules import one_enantiomer


def _interrupt_at(rows: int):
    """A progress callback that stops the run once ``rows`` are done: Ctrl+C, a killed worker, a closed laptop."""
    def progress(done: int, total: int) -> None:
        if done >= rows:
            raise KeyboardInterrupt
    return progress


def test_an_interrupted_library_resumes_without_predicting_written_rows_again(regressor_dir, lipo, tmp_path,
                                                                             monkeypatch):
    source = tmp_path / "library.csv"
    smiles = lipo.smiles[:90] + ["not a smiles", ""]  # 92 rows: 10 chunks of 10 (the last one 2)
    pd.DataFrame({"id": [f"m{i}" for i in range(92)], "smiles": smiles}).to_csv(source, index=False)
    whole = predict_library(regressor_dir, source, tmp_path / "whole.parquet", chunk_rows=10)

    predicted: list[int] = []
    real = library.predict_frame
    monkeypatch.setattr(library, "predict_frame", lambda model, chunk, *a: predicted.append(len(chunk)) or
                        real(model, chunk, *a))
    returned: list[int] = []  # each predicted chunk hands the memory it freed back to the system
    monkeypatch.setattr(library, "_return_freed_memory", lambda: returned.append(len(predicted)))

    output = tmp_path / "out.parquet"
    with pytest.raises(KeyboardInterrupt):
        predict_library(regressor_dir, source, output, chunk_rows=10, progress=_interrupt_at(41))
    assert not output.exists() and sum(predicted) == 50 and returned == [1, 2, 3, 4]  # stopped within the fifth
    predicted.clear()
    heard: list[int] = []
    summary = predict_library(regressor_dir, source, output, chunk_rows=10, progress=lambda done, _: heard.append(done))
    assert sum(predicted) == 52 and summary.resumed_rows == 40  # only what was not written yet
    assert heard[0] == 40 and heard == sorted(heard) and heard[-1] == 92  # the kept rows are done from the start
    assert returned[4:] == [1, 2, 3, 4, 5, 6]
    out = pd.read_parquet(output)
    assert summary.rows == len(out) == 92 and summary.invalid == whole.invalid == 2
    valid = out["error"].isna()  # the applicability domain, as on the Predict page; none for an invalid row
    assert out.loc[valid, "similarity"].between(0, 1).all() and out.loc[valid, "in_domain"].notna().all()
    assert out.loc[~valid, "similarity"].isna().all() and out.loc[~valid, "in_domain"].isna().all()
    assert (out.loc[valid, "in_domain"] == (out.loc[valid, "similarity"] >= 0.3)).all()
    pd.testing.assert_frame_equal(out, pd.read_parquet(tmp_path / "whole.parquet"))  # one row per input, in order
    assert not Path(f"{output}.parts").exists()


def test_a_changed_library_starts_afresh_instead_of_mixing_two_inputs(regressor_dir, lipo, tmp_path, caplog):
    source, output = tmp_path / "library.csv", tmp_path / "out.parquet"
    source.write_text("smiles\n" + "\n".join(lipo.smiles[:30]) + "\n")
    with pytest.raises(KeyboardInterrupt):
        predict_library(regressor_dir, source, output, chunk_rows=10, progress=_interrupt_at(21))
    manifest = Path(f"{output}.parts") / "manifest.json"
    written = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({k: v for k, v in written.items() if k != "format"}))  # parts of older code
    summary = predict_library(regressor_dir, source, output, chunk_rows=10)
    assert summary.resumed_rows == 0 and "similarity" in pd.read_parquet(output)  # not mixed in: other columns
    with pytest.raises(KeyboardInterrupt):
        predict_library(regressor_dir, source, output, chunk_rows=10, progress=_interrupt_at(21))
    source.write_text("smiles\n" + "\n".join(lipo.smiles[100:125]) + "\n")  # edited in between
    said: list[bool] = []
    with caplog.at_level("WARNING"):
        summary = predict_library(regressor_dir, source, output, chunk_rows=10, progress=lambda *_: said.append(
            "the 20 rows an interrupted run had written were for another input" in caplog.text))
    assert summary.resumed_rows == 0 and summary.discarded_rows == 20  # said, not silently redone
    assert said[0]  # at the start, before any row is predicted (not hours later)
    assert pd.read_parquet(output)["smiles"].tolist() == lipo.smiles[100:125]


def test_a_library_saved_again_with_the_same_bytes_resumes(regressor_dir, lipo, tmp_path):
    import os
    import time

    source, output = tmp_path / "library.csv", tmp_path / "out.parquet"
    source.write_text("smiles\n" + "\n".join(lipo.smiles[:30]) + "\n")
    with pytest.raises(KeyboardInterrupt):
        predict_library(regressor_dir, source, output, chunk_rows=10, progress=_interrupt_at(21))
    later = time.time() + 60
    os.utime(source, (later, later))  # the app saves an upload again, touching it, on every click
    assert predict_library(regressor_dir, source, output, chunk_rows=10).resumed_rows == 20


def test_a_library_job_streams_to_its_run_and_stops_within_a_chunk_when_cancelled(regressor_dir, lipo, tmp_path, store):
    import threading

    from chemlm_engine.errors import JobCancelledError
    from chemlm_engine.jobs import run_job
    from chemlm_engine.spec import JobSpec

    source = tmp_path / "library.csv"
    source.write_text("smiles\n" + "\n".join(lipo.smiles[:45]) + "\n")
    spec = JobSpec(method="predict", options={"model": str(regressor_dir), "source": str(source), "chunk_rows": 10})
    run = store.get_run(run_job(spec, store))
    assert run.status == "finished" and run.metrics["rows"] == 45 and "n_train" not in run.info  # no training data
    assert pd.read_parquet(run.info["output"])["smiles"].tolist() == lipo.smiles[:45]
    cancel, heard = threading.Event(), []

    def cancel_at_40_percent(fraction: float, message: str) -> None:
        heard.append(fraction)
        if fraction >= 0.4:
            cancel.set()  # what the app's Cancel does (through the store for a process worker)

    with pytest.raises(JobCancelledError):
        run_job(spec, store, cancel=cancel, progress=cancel_at_40_percent)
    assert max(heard) < 0.5  # stopped inside the second chunk: the third was not predicted
    stopped = next(r for r in store.runs() if r.status == "cancelled")
    assert not (store.home / stopped.id).exists()  # no half-written output kept
    assert kept_rows(store, spec.options) == 10  # but its finished chunks wait in the store, keyed by the options
    again = store.get_run(run_job(spec, store))  # the user starts the same file with the same model again
    assert again.metrics["resumed_rows"] == 10 and again.metrics["rows"] == 45
    pd.testing.assert_frame_equal(pd.read_parquet(again.info["output"]), pd.read_parquet(run.info["output"]))
    assert not job_parts(store, spec.options).exists()  # gone once the file is whole
    other = JobSpec(method="predict", options={**spec.options, "chunk_rows": 15})
    assert kept_rows(store, other.options) == 0 and job_parts(store, other.options) != job_parts(store, spec.options)


def test_predictions_come_back_in_input_order_whatever_the_lengths(regressor_dir, lipo):
    import numpy as np

    from chemlm_engine.inference import predict_values
    from chemlm_engine.predict import Ensemble, predict_smiles

    model = RegressionModel.load(regressor_dir, "cpu")
    smiles = sorted(lipo.smiles[:120], key=len, reverse=True)[::2] + lipo.smiles[120:180]  # long, short, mixed
    frame = predict_smiles(model, smiles)  # chunks of 16 by length: the order is restored row for row
    alone = np.array([predict_values(model, [one_enantiomer(s)])[0] for s in frame["canonical_smiles"]])
    np.testing.assert_allclose(frame["prediction"].to_numpy(), alone, rtol=1e-4, atol=1e-5)
    pair = Ensemble([model, RegressionModel.load(regressor_dir, "cpu")])
    np.testing.assert_allclose(predict_smiles(pair, smiles)["prediction"].to_numpy(), alone, rtol=1e-4, atol=1e-5)


def test_a_molecule_named_by_several_rows_is_predicted_once_and_its_rows_agree(regressor_dir, lipo, monkeypatch):
    """A merged library repeats molecules, and standardisation turns salts into their parent: the forward passes
    run once per distinct molecule, every row still gets its own output row."""
    from chemlm_engine.predict import Ensemble, predict_smiles

    model = RegressionModel.load(regressor_dir, "cpu")
    pair = Ensemble([model, RegressionModel.load(regressor_dir, "cpu")])
    forwarded: list[str] = []
    real = pair.predict
    monkeypatch.setattr(pair, "predict", lambda smiles, *a: forwarded.extend(smiles) or real(smiles, *a))
    amine, salt = lipo.smiles[3], f"{lipo.smiles[3]}.Cl"
    rows = [amine, lipo.smiles[4], salt, "C1CC", amine, lipo.smiles[5]]
    heard: list[tuple[int, int]] = []
    frame = predict_smiles(pair, rows, progress=lambda done, total: heard.append((done, total)))
    assert len(frame) == 6 and frame["error"].notna().tolist() == [False, False, False, True, False, False]
    read_as = {one_enantiomer(s) for s in frame["canonical_smiles"].dropna()}  # the model's input: one enantiomer
    assert sorted(forwarded) == sorted(read_as)  # three molecules among five rows
    assert len(forwarded) == 3 and heard[-1] == (3, 3)
    same = frame.loc[[0, 2, 4]]
    assert same["prediction"].nunique() == 1 and same["uncertainty"].nunique() == 1
    assert frame.loc[2, "standardization"] == "removed Cl"


def test_an_empty_parquet_library_writes_an_empty_output_with_the_columns(regressor_dir, tmp_path):
    """As a header-only CSV does: zero rows in, zero rows out, the output's columns all there (it crashed)."""
    source, output = tmp_path / "empty.parquet", tmp_path / "out.parquet"
    pd.DataFrame({"smiles": pd.Series([], dtype=str), "ID": pd.Series([], dtype=str)}).to_parquet(source)
    assert predict_library(regressor_dir, source, output).rows == 0
    written = pd.read_parquet(output)
    assert len(written) == 0 and {"row", "smiles", "ID", "prediction", "in_domain"} <= set(written.columns)
