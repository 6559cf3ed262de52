"""The prediction table's extras: the nearest training molecule with its measured value (its fingerprints cached
in the model folder), metrics for my data."""
import numpy as np
import pandas as pd
import pytest

import chemlm_engine.predict.domain as domain
from chemlm_engine.predict.domain import FINGERPRINT_FILE, TrainingReference, add_applicability_domain
from chemlm_engine.model import save_training_set
from chemlm_engine.predict import measured_metrics


def test_the_nearest_training_molecule_comes_with_its_measured_value():
    frame = pd.DataFrame({"canonical_smiles": ["CCCO", None], "error": [None, "cannot parse"]})
    out = add_applicability_domain(frame, TrainingReference.from_smiles(["CCCCO", "c1ccccc1"], [1.5, 2.0]))
    assert out.loc[0, "nearest_training_smiles"] == "CCCCO" and out.loc[0, "nearest_training_label"] == 1.5
    assert np.isnan(out.loc[1, "nearest_training_label"]) and out.loc[1, "in_domain"] is None
    assert add_applicability_domain(frame, None)["in_domain"].isna().all()  # no training set: no verdict


def test_a_training_molecule_is_marked_and_so_are_its_stereoisomers_and_its_racemate():
    # enantiomers share their logD: a model scored on the mirror image of a training molecule is scored on it
    frame = pd.DataFrame({"canonical_smiles": ["C[C@H](N)O", "C[C@@H](N)O", "CC(N)O", "CCO", "OCC(N)O", None],
                          "error": [None, None, None, None, None, "cannot parse"]})
    out = add_applicability_domain(frame, TrainingReference.from_smiles(["C[C@H](N)O", "CCN"], [0.1, 0.2]))
    assert out["similarity"].tolist()[:3] == [1.0, 1.0, 1.0]  # Morgan bits do not tell the three apart
    assert out["in_training"].tolist() == [True, True, True, False, False, None]
    assert add_applicability_domain(frame, None)["in_training"].isna().all()  # no training set: not known


def test_only_training_molecules_with_the_fingerprint_of_a_twin_are_rewritten_without_stereochemistry(monkeypatch):
    """The first prediction of a process paid ~1 s rewriting every training SMILES (3,402 for the default)."""
    flattened = []
    flat = domain._flat
    monkeypatch.setattr(domain, "_flat", lambda smiles: flattened.append(smiles) or flat(smiles))
    reference = TrainingReference.from_smiles(["C" * n + "O" for n in range(1, 40)] + ["C[C@H](N)O", "CCN"])
    frame = pd.DataFrame({"canonical_smiles": ["C[C@@H](N)O", "CCCCO"], "error": [None, None]})
    assert add_applicability_domain(frame, reference)["in_training"].tolist() == [True, True]
    assert sorted(flattened) == ["C[C@@H](N)O", "C[C@H](N)O"]


def test_measured_metrics_leave_out_the_models_own_training_molecules():
    """A chemist's file holding molecules the model trained on would score it on what it has seen."""
    frame = pd.DataFrame({"prediction": [1.0, 2.0, 3.0, 4.0], "measured": [1.0, 2.5, 0.0, 9.0],
                          "in_training": [False, False, True, None]})  # None: no training set saved
    metrics = measured_metrics(frame)
    assert metrics["n"] == 3 and metrics["in_training"] == 1 and np.isclose(metrics["mae"], (0 + 0.5 + 5) / 3)
    assert measured_metrics(frame.iloc[[0, 2]]) == {"n": 1, "in_training": 1}
    assert "in_training" not in measured_metrics(frame.iloc[[0, 1, 3]])


def test_a_molecule_the_model_read_only_in_part_is_outside_the_domain_however_similar():
    frame = pd.DataFrame({"canonical_smiles": ["CCCCO", "CCCCO"], "error": [None, None],
                          "warnings": [None, "truncated: 3,510 tokens, the model reads only the first 512"]})
    out = add_applicability_domain(frame, TrainingReference.from_smiles(["CCCCO"], [1.5]))
    assert out["similarity"].tolist() == [1.0, 1.0] and out["in_domain"].tolist() == [True, False]


@pytest.mark.parametrize("matrix_min", [0, 1000])
def test_the_nearest_neighbour_search_gives_rdkits_tanimoto_maximum(lipo, monkeypatch, matrix_min):
    """Both searches (the matrix product for many queries, one by one for few) find, for every query, RDKit's best
    BulkTanimotoSimilarity (the first of equals), also across query blocks."""
    from rdkit import DataStructs

    monkeypatch.setattr(domain, "_QUERY_BLOCK", 16)
    monkeypatch.setattr(domain, "_MATRIX_MIN", matrix_min)
    reference = TrainingReference.from_smiles(lipo.smiles[:150], lipo.labels[:150])
    query = lipo.smiles[140:200]  # ten of them are reference molecules themselves: similarity 1
    found = domain.nearest_neighbours(query, reference)
    for row, fp in enumerate(domain.fingerprints(query)):
        rdkit = DataStructs.BulkTanimotoSimilarity(fp, reference.fingerprints)
        best = int(np.argmax(rdkit))
        assert found.loc[row, "similarity"] == rdkit[best]
        assert found.loc[row, "nearest_training_smiles"] == reference.smiles[best]
        assert found.loc[row, "nearest_training_label"] == lipo.labels[best]
    assert (found["similarity"].iloc[:10] == 1.0).all() and len(domain.nearest_neighbours([], reference)) == 0


def test_training_fingerprints_are_cached_in_the_model_folder_and_rebuilt_when_the_set_changes(tmp_path,
                                                                                               monkeypatch):
    smiles = ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"]
    save_training_set(tmp_path, smiles, np.array([0.1, 1.5, 0.5]))
    first = TrainingReference.load(tmp_path)
    assert (tmp_path / FINGERPRINT_FILE).exists()
    fresh = domain.fingerprints(smiles)

    def refuse(_):
        raise AssertionError("fingerprints recomputed although cached")

    monkeypatch.setattr(domain, "fingerprints", refuse)
    cached = TrainingReference.load(tmp_path)
    assert cached.fingerprints == fresh == first.fingerprints and cached.labels.tolist() == [0.1, 1.5, 0.5]
    save_training_set(tmp_path, smiles[:2], None)  # another training set in the same folder
    with pytest.raises(AssertionError, match="recomputed"):
        TrainingReference.load(tmp_path)
    monkeypatch.undo()
    rebuilt = TrainingReference.load(tmp_path)
    assert rebuilt.fingerprints == fresh[:2] and rebuilt.labels is None
    (tmp_path / FINGERPRINT_FILE).write_bytes(b"PK\x03\x04 cut short")  # e.g. a copy interrupted midway
    assert TrainingReference.load(tmp_path).fingerprints == fresh[:2]
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".npz"] == [FINGERPRINT_FILE]

    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left behind


def test_a_model_folder_that_cannot_take_the_cache_still_gives_the_reference(tmp_path, caplog):
    save_training_set(tmp_path, ["CCO", "c1ccccc1O"], np.array([0.1, 1.5]))
    (tmp_path / FINGERPRINT_FILE).mkdir()  # the cache's name is taken (as root, a read-only folder is not)
    reference = TrainingReference.load(tmp_path)
    assert reference.fingerprints == domain.fingerprints(["CCO", "c1ccccc1O"])
    assert "cannot cache fingerprints" in caplog.text and (tmp_path / FINGERPRINT_FILE).is_dir()


def test_measured_metrics_use_rows_with_both_values_only():
    frame = pd.DataFrame({"prediction": [1.0, 2.0, np.nan, 4.0], "measured": [1.0, 2.5, 3.0, np.nan]})
    metrics = measured_metrics(frame)
    assert metrics["n"] == 2 and np.isclose(metrics["mae"], 0.25) and np.isclose(metrics["mse"], 0.125)
    assert measured_metrics(frame.iloc[:1]) == {"n": 1}
    assert "coverage" not in metrics  # no intervals: nothing to cover


def test_measured_metrics_say_how_many_measured_values_their_interval_holds():
    frame = pd.DataFrame({"prediction": [1.0, 2.0, 3.0, 4.0, 5.0], "measured": [1.2, 3.5, 3.0, np.nan, 5.0],
                          "interval_low": [0.5, 1.5, 2.5, 3.5, 5.0], "interval_high": [1.5, 2.5, 3.5, 4.5, 6.0]})
    assert measured_metrics(frame)["coverage"] == 0.75  # 3.5 lies outside; the bound itself counts as inside


@pytest.mark.parametrize("tamper", ["dtype", "width", "fewer rows", "zeroed", "permuted", "no checksum", "truncated"])
def test_a_damaged_fingerprint_cache_is_rebuilt_never_trusted(tmp_path, tamper):
    smiles = ["CCO", "c1ccccc1O", "CCN", "CC(=O)O"]
    save_training_set(tmp_path, smiles, np.array([0.1, 1.5, 0.5, 0.2]))
    TrainingReference.load(tmp_path)  # writes the cache
    path = tmp_path / FINGERPRINT_FILE
    with np.load(path) as saved:
        bits, checksum = saved["bits"], saved["checksum"]
    damaged = {"dtype": bits.astype(np.int64), "width": bits[:, :128], "fewer rows": bits[:3],
               "zeroed": np.zeros_like(bits), "permuted": bits[::-1], "no checksum": bits}
    if tamper == "truncated":
        path.write_bytes(path.read_bytes()[:60])
    else:
        np.savez(path, bits=damaged[tamper], **({} if tamper == "no checksum" else {"checksum": checksum}))
    assert TrainingReference.load(tmp_path).fingerprints == domain.fingerprints(smiles)
    with np.load(path) as rebuilt:  # and the file is whole again
        assert np.array_equal(rebuilt["bits"], bits) and rebuilt["checksum"] == checksum


def test_enantiomers_are_read_as_one_molecule_diastereomers_as_two():
    from chemlm_engine.molecules import canonicalize, one_enantiomer

    s, r = canonicalize("C[C@H](N)C(=O)O"), canonicalize("C[C@@H](N)C(=O)O")
    assert one_enantiomer(s) == one_enantiomer(r) in (s, r)
    threonines = [canonicalize(t) for t in ("C[C@@H](O)[C@H](N)C(=O)O", "C[C@H](O)[C@H](N)C(=O)O")]
    assert len({one_enantiomer(t) for t in threonines}) == 2  # diastereomers: their logD may differ
    meso = canonicalize("O[C@H](C(=O)O)[C@@H](O)C(=O)O")  # meso-tartaric acid is its own mirror image
    assert one_enantiomer(meso) == meso and one_enantiomer("CCO") == "CCO"


def test_both_enantiomers_get_one_prediction_and_keep_their_own_smiles(regressor_dir):
    from chemlm_engine.predict import load_predictor, predict_smiles

    model = load_predictor(regressor_dir, "cpu")
    model.inference_precision = "fp32"
    frame = predict_smiles(model, ["C[C@H](N)C(=O)O", "CCO", "C[C@@H](N)C(=O)O", "C(C)(N)C(=O)O"])
    assert frame.loc[0, "prediction"] == frame.loc[2, "prediction"]
    assert frame.loc[0, "canonical_smiles"] != frame.loc[2, "canonical_smiles"]  # the rows say what was asked
    assert frame.loc[3, "prediction"] != frame.loc[0, "prediction"]  # no stereo marks: another input to the model


def test_the_summary_line_gives_a_slow_rate_in_two_digits_not_as_zero():
    from chemlm_engine.cli_predict import wrote

    results = pd.DataFrame({"error": [None, "bad"], "warnings": [None, None], "in_domain": [True, False]})
    assert "(0.47 molecules/s): 1 invalid, 0 with warnings, 1 outside" in wrote(results, "out.csv", 4.3)
    assert "(1,000 molecules/s)" in wrote(results.iloc[[0] * 1000], "out.csv", 1.0)
    # resumed: the rate of the rows predicted now, and said so (6,000 rows "at 88 / s" in 21.7 s did not add up)
    assert "(100 molecules/s on the 500 predicted now)" in wrote(results.iloc[[0] * 1000], "out.csv", 5.0, 500)


def test_why_names_the_same_nearest_training_molecule_as_the_results_when_several_are_equally_similar():
    """Three training molecules equally similar to ibuprofen (stereoisomers share their Morgan bits), ordered by
    their contribution as "Why?" lists them: its nearest is the results' (the first of them in the training set)."""
    from chemlm_engine.predict.explain import Explanation

    training = ["O=C(O)[C@H](C)c1ccc(CC(C)C)cc1F", "O=C(O)[C@@H](C)c1ccc(CC(C)C)cc1F", "CCCCCC",
                "O=C(O)C(C)c1ccc(CC(C)C)cc1F"]
    query = "CC(C)Cc1ccc(C(C)C(=O)O)cc1"
    reference = TrainingReference.from_smiles(training, [0.56, 0.51, 3.0, 0.78])
    results = add_applicability_domain(pd.DataFrame({"canonical_smiles": [query], "error": [None]}), reference)
    similarity = domain.nearest_neighbours(training, TrainingReference.from_smiles([query], [0.0]))["similarity"]
    assert similarity[0] == similarity[1] == similarity[3] > similarity[2]  # a tie among three
    frame = pd.DataFrame({"smiles": training, "label": [0.56, 0.51, 3.0, 0.78], "contribution": [0.1, -0.3, 0.0, 0.2],
                          "similarity": similarity.to_numpy()})
    why = Explanation(query, 1.0, None, frame.reindex([1, 3, 0, 2]), b"")  # by size of contribution
    nearest = why.top(1).query("role == 'nearest'")
    assert nearest["smiles"].tolist() == [results.loc[0, "nearest_training_smiles"]] == [training[0]]


def test_morgan_counts_are_rdkits_counts_set_where_its_bits_are_and_computed_once(monkeypatch):
    """The trees' counts and the nearest-neighbour bits come from one computation (kept for the next caller)."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    from chemlm_engine.predict import morgan

    smiles = ["CCO", "O=C([O-])CC[NH3+]", "c1ccc2ccccc2c1", "C" * 300, "[Na+].[Cl-]", "CC(=O)Nc1ccc(O)cc1"]
    generator = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    monkeypatch.setattr(morgan, "_CACHE", {})
    counts = morgan.morgan_counts(smiles)
    for row, text in enumerate(smiles):
        mol = Chem.MolFromSmiles(text)
        np.testing.assert_array_equal(counts[row], generator.GetCountFingerprintAsNumPy(mol))
        np.testing.assert_array_equal(counts[row] > 0, generator.GetFingerprintAsNumPy(mol) > 0)
    assert counts[3].max() > 255  # a long chain's CH2 environment: counts are not clipped
    monkeypatch.setattr(morgan.Chem, "MolFromSmiles", lambda _: pytest.fail("parsed again"))
    np.testing.assert_array_equal(morgan.morgan_counts(smiles[::-1]), counts[::-1])
    monkeypatch.undo()  # parse again, into a cache of two
    monkeypatch.setattr(morgan, "_CACHE_LIMIT", 2)
    monkeypatch.setattr(morgan, "_CACHE", {})
    morgan.morgan_counts(smiles)
    assert list(morgan._CACHE) == smiles[-2:]  # the latest kept
