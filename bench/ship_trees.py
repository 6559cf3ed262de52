"""Blend the shipped ensemble with gradient-boosted trees, as `train --method ensemble` now does after its members.

    .venv/bin/python bench/ship_trees.py [--folder assets/lipo-regressor] [--write]
    .venv/bin/python bench/ship_trees.py --folder assets/lipo-regressor-fast --trees-from assets/lipo-regressor \
        --write   # the distilled student keeps its teacher's trees, as `train --method distill` now does

Rebuilds the shipped model's data (random split seed 0, training + validation less the seeded 10 % calibration
part), checks that the folder's training set is exactly the members' training molecules, fits the trees on them
(`Trees.fit`, seed 0), and prints calibration-part and test-part metrics for trees' weights 0 … 1 (the calibration
part, 378 molecules no member or tree saw, is the score that chooses; the test part is reported, never chosen on).
With --write the folder gets the trees at the recipe's weight (`EnsembleOptions.tree_weight`) and intervals
recalibrated on the blend. Writes bench/results/shipped_trees.json (the student's: shipped_trees_fast.json).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from chemlm_engine.jobs import load_split_data
from chemlm_engine.methods.ensemble import calibration_split, interval_quality
from chemlm_engine.model import load_training_set
from chemlm_engine.predict import load_predictor
from chemlm_engine.predict.ensemble import ENSEMBLE_FILE, Conformal, Ensemble
from chemlm_engine.predict.trees import TREES_FILE, Trees
from chemlm_engine.spec import DataSpec, EnsembleOptions
from chemlm_engine.training import regression_metrics

WEIGHTS = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="assets/lipo-regressor")
    parser.add_argument("--write", action="store_true", help="Save the trees and the new calibration in --folder.")
    parser.add_argument("--trees-from", help="reuse this folder's trees and weight instead of fitting them")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    options = EnsembleOptions()
    data = load_split_data(DataSpec(split="random", split_seed=0))
    rest, calibration = calibration_split(data, options.calibration_fraction, 0)
    ensemble = load_predictor(args.folder, "cpu")
    assert isinstance(ensemble, Ensemble), "an ensemble or distilled folder"
    output = args.output or Path(f"bench/results/shipped_trees{'_fast' if ensemble.spread else ''}.json")
    smiles, labels = load_training_set(args.folder)
    if list(smiles) != list(rest.train.smiles) or not np.allclose(labels, rest.train.labels):
        raise SystemExit("the folder's training set is not the members' training molecules of this split")
    started = time.time()
    if args.trees_from:  # fitted on the same molecules (checked against that folder's training set too)
        if (load_training_set(args.trees_from) or ([],))[0] != list(smiles):
            raise SystemExit(f"{args.trees_from} was trained on other molecules")
        source = load_predictor(args.trees_from, "cpu")
        assert isinstance(source, Ensemble) and source.trees is not None, f"{args.trees_from} has no trees"
        trees = source.trees
    else:
        names = ensemble.members[0].descriptor_names  # the members' descriptors, computed once for both
        trees = Trees.fit(rest.train.smiles, rest.train.labels, options.tree_weight, seed=0, descriptor_names=names)
    fit_seconds = time.time() - started
    cal_mean, cal_std = ensemble.members_predict(calibration.smiles)
    test_mean, test_std = ensemble.members_predict(data.test.smiles)
    cal_trees, test_trees = trees.predict(calibration.smiles), trees.predict(data.test.smiles)
    rows, conformals = [], {}
    print("| trees' weight | calibration R² | test R² | test RMSE | coverage | width | Spearman |")
    print("|---|---|---|---|---|---|---|")
    for w in WEIGHTS:
        cal, test = (1 - w) * cal_mean + w * cal_trees, (1 - w) * test_mean + w * test_trees
        conformal = conformals[w] = Conformal.calibrate(calibration.labels, cal, cal_std, options.coverage)
        metrics = regression_metrics(data.test.labels, test)
        row = {"weight": w, "calibration_r2": regression_metrics(calibration.labels, cal)["r2"],
               **{f"test_{k}": v for k, v in metrics.items()},
               **interval_quality(data.test.labels, test, test_std, conformal)}
        rows.append(row)
        print(f"| {w:.2f} | {row['calibration_r2']:.4f} | {row['test_r2']:.4f} | {row['test_rmse']:.3f} | "
              f"{row['interval_coverage']:.3f} | {row['interval_width']:.2f} | {row['spearman_error_spread']:.3f} |")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps({"folder": args.folder, "trees_from": args.trees_from, "fit_seconds": fit_seconds,
                                  "rows": rows}, indent=1))
    if args.write:
        chosen = next(r for r in rows if r["weight"] == trees.weight)
        members_alone = {"calibration_r2_members": rows[0]["calibration_r2"], "test_r2_members": rows[0]["test_r2"]}
        ensemble.trees, ensemble.conformal = trees, conformals[trees.weight]
        write(Path(args.folder), ensemble, chosen | members_alone | teacher(args.trees_from))


def teacher(folder: str | None) -> dict:
    """The teacher's test metrics, for a student that takes its trees (as a distillation reports them)."""
    if folder is None:
        return {}
    metrics = json.loads((Path(folder) / "metrics.json").read_text())["metrics"]
    return {f"teacher_{k}": metrics[k] for k in ("test_r2", "interval_coverage", "interval_width",
                                                   "spearman_error_spread")}


def write(folder: Path, ensemble: Ensemble, row: dict) -> None:
    """The trees, ``ensemble.json`` with the blend's calibration, and ``metrics.json`` with its test metrics; the
    members' files stay as they are (saved aside, only the two ensemble files copied)."""
    assert ensemble.trees is not None and ensemble.conformal is not None
    trees = ensemble.trees
    with tempfile.TemporaryDirectory() as aside:
        ensemble.save(aside)
        for name in (ENSEMBLE_FILE, TREES_FILE):
            shutil.copy(Path(aside) / name, folder / name)
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["test"] = {k: row[f"test_{k}"] for k in ("mse", "rmse", "mae", "r2")}
    metrics["metrics"].update({k: v for k, v in row.items() if k != "weight"}, tree_weight=trees.weight,
                              conformal_quantile=ensemble.conformal.quantile)
    if metrics["spec"]["method"] == "ensemble":  # a distillation takes its teacher's trees and weight
        metrics["spec"]["options"]["tree_weight"] = trees.weight
    metrics["description"] = metrics["description"].split(" Blended")[0] + (
        f" Blended with gradient-boosted trees on RDKit descriptors and Morgan counts (weight {trees.weight}).")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    print(f"wrote the trees (weight {trees.weight}), the new calibration and metrics into {folder}")


if __name__ == "__main__":
    main()
