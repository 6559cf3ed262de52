"""Why this prediction: training-molecule attribution (exact leave-one-out for ridge, sign convention, cache)
and atom attribution (integrated gradients add up)."""
import importlib
from pathlib import Path

import numpy as np
import pytest
from rdkit import Chem

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.predict.explain import (CACHE_FILE, AttributionCache, atom_contributions, explain, removal_effects,
                                          signed, training_contributions)
from chemlm_engine.inference import predict_values
from chemlm_engine.predict import predict_smiles
from chemlm_engine.jobs import run_job
from chemlm_engine.model import RegressionModel, load_training_set


def test_removal_effects_are_exact_leave_one_out_for_ridge_regression():
    rng = np.random.default_rng(0)
    x, lam = rng.normal(size=(40, 6)), 0.3
    y = x @ rng.normal(size=6) + rng.normal(scale=0.5, size=40)
    query = rng.normal(size=6)

    def fit(rows):
        return np.linalg.solve(x[rows].T @ x[rows] + lam * np.eye(6), x[rows].T @ y[rows])

    theta = fit(np.arange(40))
    inverse = np.linalg.inv(x.T @ x + lam * np.eye(6))
    leverage = np.einsum("ij,jk,ik->i", x, inverse, x)
    effects = removal_effects(x, inverse, x @ theta - y, leverage, query)
    refit = [query @ fit(np.delete(np.arange(40), z)) - query @ theta for z in range(40)]
    np.testing.assert_allclose(effects, refit, rtol=1e-9, atol=1e-12)


def test_a_contribution_that_rounds_to_zero_reads_plus_zero_not_minus_zero():
    assert [signed(v) for v in (-0.003, 0.004, -0.0, 0.126, -1.5)] == ["+0.00", "+0.00", "+0.00", "+0.13", "-1.50"]
    assert [signed(v, 3) for v in (-0.0004, -0.0126)] == ["+0.000", "-0.013"]


def test_sign_convention_a_molecule_above_its_prediction_pushes_similar_predictions_up():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 4))
    y = x @ np.ones(4)
    y[0] += 5.0  # labelled far above what the rest implies
    inverse = np.linalg.inv(x.T @ x + 0.1 * np.eye(4))
    theta = inverse @ x.T @ y
    leverage = np.einsum("ij,jk,ik->i", x, inverse, x)
    contribution = -removal_effects(x, inverse, x @ theta - y, leverage, x[0])  # query = molecule 0 itself
    assert contribution[0] > 0 and np.argmax(contribution) == 0


@pytest.fixture(scope="module")
def trained(tiny_backbone, tmp_path_factory):
    from chemlm_engine.store.runs import RunStore

    store = RunStore(home=tmp_path_factory.mktemp("runs"))
    spec = JobSpec(data=DataSpec(subset=120), model=ModelSpec(backbone=str(tiny_backbone), head_hidden=16),
                   train=TrainConfig(epochs=2, precision="fp32"))
    folder = store.get_run(run_job(spec, store)).model_path
    return RegressionModel.load(folder), folder


def test_a_training_molecule_pushes_its_own_prediction_towards_its_label_and_the_cache_round_trips(trained):
    model, folder = trained
    smiles, labels = load_training_set(folder)
    table = training_contributions(model, folder, smiles[0])
    folder_file = Path(folder) / CACHE_FILE
    assert len(table) == len(smiles) and folder_file.exists()
    own = table.set_index("smiles").loc[smiles[0], "contribution"]
    cache = AttributionCache.load(folder, smiles, labels)
    assert np.sign(own) == -np.sign(cache.residuals[0])  # under-predicted (r < 0): it pulls its prediction up
    again = AttributionCache.build(model, smiles, labels)
    for key in ("features", "inverse", "residuals", "leverage"):
        np.testing.assert_allclose(getattr(cache, key), getattr(again, key), rtol=1e-4, atol=1e-5)
    stamp = folder_file.stat().st_mtime_ns
    training_contributions(model, folder, smiles[1])
    assert folder_file.stat().st_mtime_ns == stamp  # the second query reuses the cache


def test_atom_contributions_add_up_to_prediction_minus_baseline(trained):
    model, _ = trained
    for smiles in ("CC(=O)Oc1ccccc1C(=O)O", "Clc1ccc(cc1)[N+](=O)[O-]"):
        parts = atom_contributions(model, smiles, steps=64)
        assert len(parts["atoms"]) == Chem.MolFromSmiles(smiles).GetNumAtoms()
        total = parts["atoms"].sum() + parts["other"]
        assert abs(total - (parts["prediction"] - parts["baseline"])) < 0.02 * abs(parts["prediction"]
                                                                                - parts["baseline"]) + 1e-3
        assert abs(predict_values(model, [smiles])[0] - parts["prediction"]) < 1e-3  # the model's own number


def test_explain_gives_the_atom_map_and_the_training_table(trained):
    model, folder = trained
    result = explain(model, folder, "CCOc1ccccc1")
    assert result.picture[:4] == b"\x89PNG" and {"contribution", "similarity", "label"} <= set(result.training)
    # the number prediction gives, in its own precision (the attributions run in fp32): "Why?" never shows another
    assert result.prediction == predict_smiles(model, ["CCOc1ccccc1"])["prediction"][0]
    assert result.training["contribution"].abs().is_monotonic_decreasing
    for chiral in ("C[C@H](N)C(=O)O", "C[C@@H](N)C(=O)O"):  # either enantiomer, as prediction reads it
        assert explain(model, folder, chiral).prediction == predict_smiles(model, [chiral])["prediction"][0]


def test_a_molecule_too_large_to_draw_gets_its_training_molecules_without_integrated_gradients(trained, monkeypatch):
    module = importlib.import_module("chemlm_engine.predict.explain")  # the package names its function explain too
    model, folder = trained
    monkeypatch.setattr(module, "_integrated_gradients", lambda *_: pytest.fail("attributed atoms it cannot draw"))
    chain = "C" * 400  # over DRAW_LIMIT heavy atoms: minutes of integrated gradients through every member, no map
    result = explain(model, folder, chain)
    assert result.atoms is None and result.picture[:4] == b"\x89PNG" and len(result.training) > 0
    assert result.prediction == predict_smiles(model, [chain])["prediction"][0]


def test_the_explain_command_writes_a_csv_and_a_png(trained, tmp_path):
    import json

    import pandas as pd
    from typer.testing import CliRunner

    from chemlm_engine.cli import app

    _, folder = trained
    result = CliRunner().invoke(app, ["explain", "--model", folder, "--smiles", "OC(=O)c1ccccc1.[Na+]", "--top", "3",
                                      "--output", str(tmp_path / "why")])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert line["smiles"] == "O=C(O)c1ccccc1"  # standardised as the model's training data was, and it says how
    assert line["standardization"] == "removed [Na+]", line
    assert line["baseline"] is not None and line["trees"] is None  # a single model: no trees (it said 0.0)
    table = pd.read_csv(tmp_path / "why.csv")
    assert table["role"].value_counts().to_dict() == {"pushes up": 3, "pushes down": 3, "nearest": 3}
    assert (tmp_path / "why.png").read_bytes()[:4] == b"\x89PNG"
    bad = CliRunner().invoke(app, ["explain", "--model", folder, "--smiles", "C1CC"])
    assert type(bad.exception).__name__ == "DataError", bad.output  # one line on stderr: tests/.../test_cli_errors
    assert CliRunner().invoke(app, ["explain", "--model", folder, "--smiles", "CCO", "--top", "0"]).exit_code == 2
    dotted = CliRunner().invoke(app, ["explain", "--model", folder, "--smiles", "CCO", "--top", "1",
                                      "--output", str(tmp_path / "ethanol.v1")])  # a version, not a suffix
    assert json.loads(dotted.stdout.strip().splitlines()[-1])["csv"] == str(tmp_path / "ethanol.v1.csv")
    assert (tmp_path / "ethanol.v1.png").exists()
    trained_on = pd.read_csv(Path(folder) / "training_set.csv")["smiles"][0]  # where it stands, as predict says it
    own = CliRunner().invoke(app, ["explain", "--model", folder, "--smiles", trained_on, "--top", "1",
                                   "--output", str(tmp_path / "own")])
    said = json.loads(own.stdout.strip().splitlines()[-1])
    assert said["in_training"] is True and said["in_domain"] is True and said["similarity"] == 1.0
    assert line["in_training"] is False and 0 <= line["similarity"] < 1


@pytest.mark.parametrize("tamper", ["truncated", "not safetensors", "zeroed residuals", "permuted rows", "fewer rows",
                                    "NaN", "no metadata", "another training set"])
def test_a_damaged_or_stale_attribution_cache_is_rebuilt_never_trusted(trained, tamper):
    from safetensors import safe_open
    from safetensors.numpy import save_file

    model, folder = trained
    smiles, labels = load_training_set(folder)
    training_contributions(model, folder, smiles[0])  # builds the cache if an earlier test did not
    path = Path(folder) / CACHE_FILE
    good = AttributionCache.load(folder, smiles, labels)
    arrays = {k: getattr(good, k).astype(np.float32) for k in ("features", "inverse", "residuals", "leverage")}
    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
    if tamper == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif tamper == "not safetensors":
        path.write_bytes(b"\x00" * 64)
    elif tamper == "another training set":  # training_set.csv replaced, the cache left behind
        assert AttributionCache.load(folder, smiles[1:], labels[1:]) is None
        return
    else:
        if tamper == "zeroed residuals":
            arrays["residuals"][:] = 0
        elif tamper == "permuted rows":
            arrays["features"] = np.ascontiguousarray(arrays["features"][::-1])
        elif tamper == "fewer rows":
            arrays = {k: v if k == "inverse" else np.ascontiguousarray(v[:-1]) for k, v in arrays.items()}
        elif tamper == "NaN":
            arrays["inverse"][0, 0] = np.nan
        save_file(arrays, str(path), metadata=None if tamper == "no metadata" else metadata)
    assert AttributionCache.load(folder, smiles, labels) is None
    training_contributions(model, folder, smiles[0])  # rebuilds and rewrites it
    rebuilt = AttributionCache.load(folder, smiles, labels)
    np.testing.assert_allclose(rebuilt.residuals, good.residuals, rtol=1e-4, atol=1e-5)
    assert not list(Path(folder).glob(f".{CACHE_FILE}.*"))  # nothing left aside


def test_explanations_prepared_ahead_are_not_built_again(trained, tmp_path, monkeypatch):
    import shutil

    from chemlm_engine.predict.explain import prepare_explanations

    model, folder = trained
    copy = tmp_path / "m"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns(CACHE_FILE))
    prepare_explanations(model, copy)
    assert (copy / CACHE_FILE).exists()

    def refuse(*_):
        raise AssertionError("built again")

    monkeypatch.setattr(AttributionCache, "build", refuse)
    smiles, _ = load_training_set(copy)
    assert len(training_contributions(model, copy, smiles[0])) == len(smiles)


def test_explain_gives_the_warnings_predict_gives(trained, tmp_path):
    import json

    from typer.testing import CliRunner

    from chemlm_engine.cli import app

    _, folder = trained
    result = CliRunner().invoke(app, ["explain", "--model", str(folder), "--smiles", "CC[Xe]",
                                      "--output", str(tmp_path / "why")])
    assert result.exit_code == 0, result.output
    assert "warning: unknown to the model" in result.output  # the explanation is of what the model read
    assert "unknown to the model" in json.loads(result.output.strip().splitlines()[-1])["warnings"]
