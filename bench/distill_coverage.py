"""Is the distilled student's interval coverage really apart from its teacher's, or was it the one split? Split-
conformal coverage on 420 test molecules, calibrated on 378, varies by a couple of points from one split of the
molecules to another. This bench takes the 798 molecules neither the shipped ensemble nor its student trained on
(random split seed 0's calibration part and test split), predicts them once with both, and re-splits them at random
(seeded) into 378 to calibrate and 420 to test, many times: each model's coverage and width over the re-splits, and
the paired difference per re-split. Also R² of both on each part and on all 798, with a bootstrap interval of the
difference. Only the calibration part may choose between students; the test split reports.

    .venv/bin/python bench/distill_coverage.py --student bench_work/lipo-student-transfer-10000-epochs-8

Prints a table; adds the student's row to --output (default bench/results/distill_coverage.json).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from sklearn.metrics import r2_score

from chemlm_engine.methods.ensemble import calibration_split
from chemlm_engine.pipeline import load_split_data
from chemlm_engine.predict import Conformal, load_predictor
from chemlm_engine.spec import DEFAULT_REGRESSOR, DataSpec


def unseen_molecules(calibration_fraction: float = 0.1):
    """The shipped ensemble's calibration part and test split (random split seed 0): SMILES, labels, sizes."""
    data = load_split_data(DataSpec(split="random", split_seed=0))
    _, calibration = calibration_split(data, calibration_fraction, 0)
    return calibration.smiles + data.test.smiles, np.concatenate([calibration.labels, data.test.labels]), \
        len(calibration)


def coverage_and_width(labels, mean, std, calibrate: np.ndarray, test: np.ndarray) -> tuple[float, float]:
    conformal = Conformal.calibrate(labels[calibrate], mean[calibrate], std[calibrate], 0.9)
    low, high = conformal.interval(mean[test], std[test])
    return float(((labels[test] >= low) & (labels[test] <= high)).mean()), float((high - low).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--student", required=True)
    parser.add_argument("--teacher", default=DEFAULT_REGRESSOR)
    parser.add_argument("--resplits", type=int, default=5000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/distill_coverage.json"))
    args = parser.parse_args()
    smiles, labels, n_cal = unseen_molecules()
    predicted = {name: load_predictor(folder, "cpu").predict(smiles)
                 for name, folder in (("teacher", args.teacher), ("student", args.student))}
    rng = np.random.default_rng(0)
    original = (np.arange(n_cal), np.arange(n_cal, len(smiles)))
    splits = [original] + [np.split(rng.permutation(len(smiles)), [n_cal]) for _ in range(args.resplits)]
    result = {name: np.array([coverage_and_width(labels, *predicted[name], cal, test) for cal, test in splits])
              for name in predicted}
    boot = [rng.integers(0, len(smiles), len(smiles)) for _ in range(2000)]
    r2 = {name: r2_score(labels, mean) for name, (mean, _) in predicted.items()}
    by_part = {name: {part: r2_score(labels[rows], mean[rows]) for part, rows in zip(("calibration", "test"), original)}
               for name, (mean, _) in predicted.items()}
    r2_gap = [r2_score(labels[b], predicted["teacher"][0][b]) - r2_score(labels[b], predicted["student"][0][b])
              for b in boot]
    gap = result["student"] - result["teacher"]  # per re-split: coverage, width
    summary = {
        "molecules": len(smiles), "calibration": n_cal, "resplits": args.resplits, "student": args.student,
        "original_split": {name: dict(zip(("coverage", "width"), result[name][0])) for name in result},
        **{f"{name}_coverage_mean": float(result[name][1:, 0].mean()) for name in result},
        **{f"{name}_coverage_sd": float(result[name][1:, 0].std()) for name in result},
        **{f"{name}_width_mean": float(result[name][1:, 1].mean()) for name in result},
        "coverage_gap_mean": float(gap[1:, 0].mean()),
        "coverage_gap_95": [float(q) for q in np.quantile(gap[1:, 0], [0.025, 0.975])],
        "share_of_resplits_over_2_points": float((np.abs(gap[1:, 0]) > 0.02).mean()),
        "width_gap_mean": float(gap[1:, 1].mean()),
        "width_gap_95": [float(q) for q in np.quantile(gap[1:, 1], [0.025, 0.975])],
        "r2": r2, "r2_by_part": by_part,
        "r2_gap_teacher_minus_student_95": [float(q) for q in np.quantile(r2_gap, [0.025, 0.975])],
    }
    rows = json.loads(args.output.read_text()) if args.output.exists() else {}
    rows[Path(args.student).name] = summary  # one row per student
    args.output.write_text(json.dumps(rows, indent=2))
    print(f"| | R² calibration part ({n_cal}) | R² test split | R² all {len(smiles)} | coverage, seed-0 split | "
          f"coverage over {args.resplits} re-splits (mean ± SD) | mean width |\n|---|---|---|---|---|---|---|")
    for name in result:
        print(f"| {name} | {by_part[name]['calibration']:.3f} | {by_part[name]['test']:.3f} | {r2[name]:.3f} | "
              f"{result[name][0, 0]:.3f} | {result[name][1:, 0].mean():.3f} ± "
              f"{result[name][1:, 0].std():.3f} | {result[name][1:, 1].mean():.2f} |")
    low, high = summary["coverage_gap_95"]
    print(f"\nstudent − teacher coverage per re-split: mean {100 * gap[1:, 0].mean():+.1f} points, 95 % of re-splits "
          f"in [{100 * low:+.1f}, {100 * high:+.1f}]; |gap| > 2 points on "
          f"{100 * summary['share_of_resplits_over_2_points']:.0f} % of re-splits")
    low, high = summary["width_gap_95"]
    print(f"student − teacher width: {gap[1:, 1].mean():+.3f} [{low:+.3f}, {high:+.3f}] logD units")
    low, high = summary["r2_gap_teacher_minus_student_95"]
    print(f"teacher − student R² on all {len(smiles)}: {r2['teacher'] - r2['student']:+.3f} "
          f"(bootstrap 95 % [{low:+.3f}, {high:+.3f}])")


if __name__ == "__main__":
    main()
