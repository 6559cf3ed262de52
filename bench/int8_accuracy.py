"""What int8 prediction costs in accuracy: the shipped ensemble in fp32, with its backbones' linear layers quantised
to int8 (what `load_predictor` chooses on a CPU without native bf16), and in bf16 autocast where this CPU has it, on
the 798 molecules it never trained on (random split seed 0: its calibration part and the test split). R² per part,
the conformal interval's coverage and width on the test split, and how far each precision moves the predictions.

    .venv/bin/python bench/int8_accuracy.py [--model assets/lipo-regressor]

Prints a table; writes --output (default bench/results/int8_accuracy.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

from chemlm_engine.inference import cpu_has_native_bf16
from chemlm_engine.predict import load_predictor
from chemlm_engine.spec import DEFAULT_REGRESSOR
from distill_coverage import unseen_molecules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--output", type=Path, default=Path("bench/results/int8_accuracy.json"))
    args = parser.parse_args()
    smiles, labels, n_cal = unseen_molecules()
    calibration, test = slice(None, n_cal), slice(n_cal, None)
    ensemble = load_predictor(args.model, "cpu")
    rows, exact = [], None
    for precision in ["fp32", "int8"] + (["bf16"] if cpu_has_native_bf16() else []):
        for member in ensemble.members:
            member.inference_precision = precision
        mean, std = ensemble.predict(smiles)
        low, high = ensemble.conformal.interval(mean[test], std[test])
        exact = mean if exact is None else exact
        rows.append({"precision": precision, "r2_calibration": r2_score(labels[calibration], mean[calibration]),
                     "r2_test": r2_score(labels[test], mean[test]), "r2_all": r2_score(labels, mean),
                     "coverage_test": float(((labels[test] >= low) & (labels[test] <= high)).mean()),
                     "width_test": float((high - low).mean()),
                     "mean_abs_change": float(np.abs(mean - exact).mean()),
                     "max_abs_change": float(np.abs(mean - exact).max())})
    print("| precision | R² calibration part | R² test | R² all 798 | coverage (test) | mean width | "
          "change vs fp32: mean / max |\n|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['r2_calibration']:.4f} | {r['r2_test']:.4f} | {r['r2_all']:.4f} "
              f"| {r['coverage_test']:.3f} | {r['width_test']:.3f} | {r['mean_abs_change']:.4f} / "
              f"{r['max_abs_change']:.4f} |")
    args.output.write_text(json.dumps({"model": str(args.model), "molecules": len(smiles), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
