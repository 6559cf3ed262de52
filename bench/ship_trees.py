"""Blend the shipped ensemble with gradient-boosted trees, as `train --method ensemble` now does after its members.

    .venv/bin/python bench/ship_trees.py [--folder assets/lipo-regressor] [--write]

Rebuilds the shipped model's data (random split seed 0, training + validation less the seeded 10 % calibration
part), checks that the folder's training set is exactly the members' training molecules, fits the trees on them
(`Trees.fit`, seed 0), and prints calibration-part and test-part metrics for trees' weights 0 … 1 (the calibration
part, 378 molecules no member or tree saw, is the score that chooses; the test part is reported, never chosen on).
With --write the folder gets the trees at the recipe's weight (`EnsembleOptions.tree_weight`) and intervals
recalibrated on the blend. Writes bench/results/shipped_trees.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from chemlm_engine.jobs import load_split_data
from chemlm_engine.methods.ensemble import calibration_split, interval_quality
from chemlm_engine.model import load_training_set
from chemlm_engine.predict import load_predictor
from chemlm_engine.predict.ensemble import Conformal, Ensemble
from chemlm_engine.predict.trees import Trees
from chemlm_engine.spec import DataSpec, EnsembleOptions
from chemlm_engine.training import regression_metrics

WEIGHTS = (0.0, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default="assets/lipo-regressor")
    parser.add_argument("--write", action="store_true", help="Save the trees and the new calibration in --folder.")
    parser.add_argument("--output", type=Path, default=Path("bench/results/shipped_trees.json"))
    args = parser.parse_args()
    options = EnsembleOptions()
    data = load_split_data(DataSpec(split="random", split_seed=0))
    rest, calibration = calibration_split(data, options.calibration_fraction, 0)
    ensemble = load_predictor(args.folder, "cpu")
    assert isinstance(ensemble, Ensemble) and ensemble.spread is None, "a plain ensemble folder"
    smiles, labels = load_training_set(args.folder)
    if list(smiles) != list(rest.train.smiles) or not np.allclose(labels, rest.train.labels):
        raise SystemExit("the folder's training set is not the members' training molecules of this split")
    started = time.time()
    trees = Trees.fit(rest.train.smiles, rest.train.labels, options.tree_weight, seed=0)
    fit_seconds = time.time() - started
    cal_mean, cal_std = ensemble.members_predict(calibration.smiles)
    test_mean, test_std = ensemble.members_predict(data.test.smiles)
    cal_trees, test_trees = trees.predict(calibration.smiles), trees.predict(data.test.smiles)
    rows = []
    print("| trees' weight | calibration R² | test R² | test RMSE | coverage | width | Spearman |\n|---|---|---|---|---|---|---|")
    for w in WEIGHTS:
        cal, test = (1 - w) * cal_mean + w * cal_trees, (1 - w) * test_mean + w * test_trees
        conformal = Conformal.calibrate(calibration.labels, cal, cal_std, options.coverage)
        metrics = regression_metrics(data.test.labels, test)
        row = {"weight": w, "calibration_r2": regression_metrics(calibration.labels, cal)["r2"],
               **{f"test_{k}": v for k, v in metrics.items()},
               **interval_quality(data.test.labels, test, test_std, conformal)}
        rows.append(row)
        print(f"| {w:.2f} | {row['calibration_r2']:.4f} | {row['test_r2']:.4f} | {row['test_rmse']:.3f} | "
              f"{row['interval_coverage']:.3f} | {row['interval_width']:.2f} | {row['spearman_error_spread']:.3f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"folder": args.folder, "fit_seconds": fit_seconds, "rows": rows}, indent=1))
    if args.write:
        ensemble.trees = trees
        blended = trees.blend(cal_mean, calibration.smiles)
        ensemble.conformal = Conformal.calibrate(calibration.labels, blended, cal_std, options.coverage)
        ensemble.save(args.folder, list(smiles), labels)
        print(f"wrote the trees (weight {trees.weight}) and the new calibration into {args.folder}")


if __name__ == "__main__":
    main()
