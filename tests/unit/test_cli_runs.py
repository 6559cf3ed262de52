"""``chemlm runs``: a run named by its id or its unique name; rename and delete from the command line."""
import json
import os
import subprocess
import sys

from typer.testing import CliRunner

from chemlm_engine.cli import app
from chemlm_engine.errors import ConfigError, RunNotFoundError, StoreError
from chemlm_engine.spec import JobSpec
from chemlm_engine.store import RunStore

runner = CliRunner()


def _finished(store: RunStore, name: str) -> str:
    run = store.create_run(JobSpec().to_dict(), "baseline", name)
    store.start(run, {})
    store.finish(run, {"test_r2": 0.5})
    return run


def test_a_run_is_shown_renamed_and_deleted_by_its_id_or_its_unique_name(tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path))
    store = RunStore()
    first, second = _finished(store, "qa-base"), _finished(store, "other")
    shown = runner.invoke(app, ["runs", "show", "qa-base"])
    assert shown.exit_code == 0 and json.loads(shown.output)["id"] == first
    renamed = runner.invoke(app, ["runs", "rename", first, "  kept  "])
    assert renamed.exit_code == 0 and store.get_run(first).name == "kept"
    (tmp_path / first).mkdir(exist_ok=True)
    (tmp_path / first / "model.bin").write_bytes(b"weights")  # its files go with it
    asked = runner.invoke(app, ["runs", "delete", "kept"], input="n\n")  # asks first; "no" keeps it
    assert asked.exit_code == 1 and store.get_run(first).id == first
    deleted = runner.invoke(app, ["runs", "delete", "kept"], input="y\n")
    assert deleted.exit_code == 0 and f"deleted run {first}" in deleted.output
    assert [r.id for r in store.runs()] == [second] and not (tmp_path / first).exists()
    assert isinstance(runner.invoke(app, ["runs", "show", "kept"]).exception, RunNotFoundError)


def test_a_name_two_runs_share_or_an_active_run_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path))
    store = RunStore()
    _finished(store, "twin")
    _finished(store, "twin")
    refused = runner.invoke(app, ["runs", "delete", "twin", "--yes"])
    assert isinstance(refused.exception, ConfigError) and "2 runs are named 'twin'" in str(refused.exception)
    running = store.create_run(JobSpec().to_dict(), "baseline", "busy")
    store.start(running, {})
    busy = runner.invoke(app, ["runs", "delete", running, "--yes"])
    assert isinstance(busy.exception, StoreError) and len(store.runs()) == 3


def test_export_and_a_model_to_predict_with_are_named_by_a_runs_id_or_its_unique_name(tmp_path, monkeypatch):
    from chemlm_engine.cli_runs import resolve_model

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path))
    store = RunStore()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    run = store.create_run(JobSpec().to_dict(), "baseline", "cli base")
    store.start(run, {})
    store.finish(run, {"test_r2": 0.5}, model_path=str(model))
    assert resolve_model("cli base", None) == resolve_model(run, None) == model
    exported = runner.invoke(app, ["export", "cli base", str(tmp_path / "out")])
    assert exported.exit_code == 0 and f"exported {run} to" in exported.output, exported.output
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["run_id"] == run


def test_influence_takes_its_k_sizes_repeated_or_as_one_list(tmp_path, monkeypatch):
    from chemlm_engine.cli import _sizes

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path))
    assert _sizes("--k", ["8,16", "32"]) == _sizes("--k", ["8", "16", "32"]) == [8, 16, 32]
    try:
        _sizes("--k", ["8;16"])
    except ConfigError as exc:
        assert "--k takes whole numbers, repeated or listed (16,32): not 8;16" == str(exc)
    else:
        raise AssertionError("8;16 read as sizes")
    listed = runner.invoke(app, ["influence", "no-such-run", "--k", "8,16"])  # read, then the run is looked up
    assert isinstance(listed.exception, RunNotFoundError), listed.output


def test_a_runs_scored_molecules_are_written_out_as_csv(tmp_path, monkeypatch):
    import io

    import pandas as pd

    from chemlm_engine.store import Kinds

    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path))
    store = RunStore()
    run = _finished(store, "scored")
    store.add_molecules(run, Kinds.INFLUENCE, pd.DataFrame(
        {"smiles": ["CCO", "CCN"], "label": [0.1, 0.2], "score": [0.3, -0.1], "rank": [1, 2],
         "self_influence": [0.1, 0.9], "suspect": [False, True], "corrupted": [False, False]}))
    shown = runner.invoke(app, ["runs", "molecules", "scored"])
    assert shown.exit_code == 0, shown.output
    frame = pd.read_csv(io.StringIO(shown.stdout))
    assert frame["smiles"].tolist() == ["CCO", "CCN"] and frame["suspect"].tolist() == [False, True]
    assert "kind" not in frame and "prediction" not in frame  # no empty columns of other kinds
    written = runner.invoke(app, ["runs", "molecules", run, "influence", "-o", str(tmp_path / "scores.csv")])
    assert written.exit_code == 0 and pd.read_csv(tmp_path / "scores.csv").equals(frame)
    none = runner.invoke(app, ["runs", "molecules", run, "acquired"])
    assert isinstance(none.exception, ConfigError) and str(none.exception).endswith("; it has influence")
    assert isinstance(runner.invoke(app, ["runs", "molecules", run, "nope"]).exception, ConfigError)


def test_a_folder_that_is_no_model_is_refused_before_the_model_is_imported(tmp_path):
    """Said at once: not after the seconds PyTorch and transformers take to import."""
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "chemlm_engine", "predict", "-s", "CCO",
                             "--model", str(tmp_path)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "CHEMLM_HOME": str(tmp_path / "home")})
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
                if line.startswith("import time")}
    assert result.returncode == 2 and f"error: {tmp_path} is not a ChemLM model folder" in result.stderr
    assert "typer" in imported and "torch" not in imported and "transformers" not in imported
