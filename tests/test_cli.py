import json

import pandas as pd
from typer.testing import CliRunner

from chemlm_engine.cli import app

runner = CliRunner()


def test_cli_train_predict_and_runs(tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["train", "--backbone", str(tiny_backbone), "--epochs", "2", "--subset", "100",
                                 "--seed", "1", "--batch-size", "16"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["status"] == "finished" and summary["test_rmse"] > 0

    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--smiles", "CCO", "--smiles", "C1CC",
                                 "--smiles", "c1ccccc1O", "--output", str(out)])
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert frame["prediction"].notna().tolist() == [True, False, True]
    assert "syntax" in frame.loc[1, "error"] or "parse" in frame.loc[1, "error"]

    csv_in = tmp_path / "in.csv"
    pd.DataFrame({"SMILES": ["CCN", "CC(=O)O"]}).to_csv(csv_in, index=False)
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--input", str(csv_in)])
    assert result.exit_code == 0 and "canonical_smiles" in result.output

    # a library: streamed into Parquet, input columns kept, invalid rows reported
    pd.DataFrame({"id": ["a", "b", "c"], "SMILES": ["CCN", "C1CC", "CC(=O)O"]}).to_parquet(tmp_path / "lib.parquet")
    result = runner.invoke(app, ["predict", "--model", summary["run_id"], "--input", str(tmp_path / "lib.parquet"),
                                 "--output", str(tmp_path / "out.parquet")])
    assert result.exit_code == 0 and "3 rows (1 invalid)" in result.output
    library = pd.read_parquet(tmp_path / "out.parquet")
    assert list(library["id"]) == ["a", "b", "c"] and library["prediction"].notna().tolist() == [True, False, True]

    listing = runner.invoke(app, ["runs", "list", "--json"])
    assert json.loads(listing.output)[0]["id"] == summary["run_id"]
    shown = runner.invoke(app, ["runs", "show", summary["run_id"]])
    assert shown.exit_code == 0 and "val_mse" in shown.output


def test_cli_reports_an_unknown_model_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("CHEMLM_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["predict", "--model", "no-such-run", "--smiles", "CCO"])
    assert result.exit_code != 0 and "neither a model folder nor a run id" in result.output
