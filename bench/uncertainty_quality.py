"""Is the default model's uncertainty informative? Spearman correlation between the per-molecule standard
deviation and the absolute error on the held-out test split: an ensemble's spread (with its conformal
interval's coverage and width) against MC dropout (of the ensemble's first member, or of a single model).

    .venv/bin/python bench/uncertainty_quality.py [--scopes head full]

The shipped regressor (assets/lipo-regressor) was trained on train + validation of the random split,
seed 0, so that split's test part is unseen. Prints a table and writes bench/results/uncertainty_quality.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from chemlm_engine.spec import DEFAULT_REGRESSOR, DataSpec
from chemlm_engine.jobs import load_split_data
from chemlm_engine.inference import mc_dropout
from chemlm_engine.predict import Ensemble, load_predictor
from chemlm_engine.methods.ensemble import interval_quality


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--passes", type=int, default=20)
    parser.add_argument("--scopes", nargs="+", default=["head"], choices=["head", "full"],
                        help="MC-dropout scopes (full: 20 passes through the whole model, ~4 min here).")
    parser.add_argument("--output", type=Path, default=Path("bench/results/uncertainty_quality.json"))
    args = parser.parse_args()

    test = load_split_data(DataSpec(split="random", split_seed=0)).test
    predictor = load_predictor(args.model, "cpu")
    rows = []
    if isinstance(predictor, Ensemble):
        start = time.perf_counter()
        mean, std = predictor.predict(test.smiles)
        error = np.abs(mean - test.labels)
        top = std >= np.quantile(std, 0.9)
        rows.append({"scope": f"ensemble of {len(predictor.members)}", "passes": len(predictor.members),
                     "molecules": len(test), "spearman": float(spearmanr(std, error).statistic),
                     "mean_std": float(std.mean()), "mae_most_uncertain_decile": float(error[top].mean()),
                     "mae_rest": float(error[~top].mean()), "seconds": time.perf_counter() - start,
                     **interval_quality(test.labels, mean, std, predictor.conformal)})
        print(json.dumps(rows[-1]), flush=True)
    model = predictor.members[0] if isinstance(predictor, Ensemble) else predictor
    for scope in args.scopes:
        start = time.perf_counter()
        mean, std = mc_dropout(model, test.smiles, args.passes, seed=0, scope=scope)
        error = np.abs(mean - test.labels)
        top = std >= np.quantile(std, 0.9)  # the 10 % most uncertain molecules
        rows.append({"scope": f"MC dropout, {scope}", "passes": args.passes, "molecules": len(test),
                     "spearman": float(spearmanr(std, error).statistic), "mean_std": float(std.mean()),
                     "mae_most_uncertain_decile": float(error[top].mean()), "mae_rest": float(error[~top].mean()),
                     "seconds": time.perf_counter() - start})
        print(json.dumps(rows[-1]), flush=True)
    print("\n| uncertainty | members / passes | test molecules | Spearman(std, abs error) | MAE, 10 % most uncertain "
          "| MAE, the rest | interval coverage | mean width | seconds |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        coverage = f"{r['interval_coverage']:.3f} | {r['interval_width']:.2f}" if "interval_coverage" in r else "– | –"
        print(f"| {r['scope']} | {r['passes']} | {r['molecules']} | {r['spearman']:.3f} | "
              f"{r['mae_most_uncertain_decile']:.3f} | {r['mae_rest']:.3f} | {coverage} | {r['seconds']:.1f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
