"""Gradient-boosted trees beside ChemLM-mini, on 3 seeds x 2 splits, paired with Chemprop on the same molecules.

    .venv/bin/python bench/tree_blend.py            # resumes from bench/results/tree_blend.json; --table only prints

Reuses `lipo_diagnosis.py`'s stored test predictions (one ChemLM-mini + descriptors model of the shipped recipe,
validation-selected epoch; Chemprop 2.3.1 defaults) and adds, per split and seed, the trees the ensemble method
now fits (`Trees.fit` on the training split, seed = split seed: RDKit descriptors + Morgan counts, LightGBM) and the
blend at the recipe's weight (`EnsembleOptions.tree_weight`: chosen on the shipped model's calibration part,
`bench/ship_trees.py`; an exploratory look at weights 0.3 / 0.5 had printed test R² of three random seeds
before). Prints R² per row, mean ± std over seeds and the
paired difference to Chemprop.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from chemlm_engine.jobs import load_split_data
from chemlm_engine.predict.trees import Trees
from chemlm_engine.spec import DataSpec, EnsembleOptions
from chemlm_engine.training import regression_metrics

DIAGNOSIS = Path("bench/results/lipo_diagnosis.json")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=Path("bench/results/tree_blend.json"))
    parser.add_argument("--table", action="store_true")
    args = parser.parse_args()
    stored = {(r["model"], r["split"], r["seed"]): np.asarray(r["test_predictions"])
              for r in json.loads(DIAGNOSIS.read_text())}
    results = json.loads(args.output.read_text()) if args.output.exists() else []
    weight = EnsembleOptions().tree_weight
    for split in ("random", "scaffold"):
        for seed in (0, 1, 2):
            if args.table or any((r["split"], r["seed"]) == (split, seed) for r in results):
                continue
            data = load_split_data(DataSpec(split=split, split_seed=seed))
            started = time.time()
            trees = Trees.fit(data.train.smiles, data.train.labels, weight, seed=seed)
            results.append({"split": split, "seed": seed, "weight": weight, "fit_seconds": time.time() - started,
                            "trees": [round(float(p), 5) for p in trees.predict(data.test.smiles)],
                            "labels": [float(y) for y in data.test.labels]})
            args.output.write_text(json.dumps(results))
            print(f"{split} seed {seed} done ({results[-1]['fit_seconds']:.0f} s)", flush=True)
    print_table(results, stored)


def print_table(results: list[dict], stored: dict) -> None:
    print("| split | model | R² per seed (0, 1, 2) | mean ± std | paired Δ R² vs Chemprop |\n|---|---|---|---|---|")
    for split in ("random", "scaffold"):
        rows = sorted((r for r in results if r["split"] == split), key=lambda r: r["seed"])
        scores: dict[str, list[float]] = {}
        for r in rows:
            labels, trees = np.asarray(r["labels"]), np.asarray(r["trees"])
            chemlm, chemprop = stored[("chemlm-desc", split, r["seed"])], stored[("chemprop", split, r["seed"])]
            blend = (1 - r["weight"]) * chemlm + r["weight"] * trees
            for name, predicted in (("Chemprop 2.3.1 defaults", chemprop), ("ChemLM-mini + descriptors", chemlm),
                                    ("trees alone", trees), (f"ChemLM + trees ({r['weight']})", blend)):
                scores.setdefault(name, []).append(regression_metrics(labels, predicted)["r2"])
        reference = np.asarray(scores.get("Chemprop 2.3.1 defaults", []))
        for name, values in scores.items():
            delta = np.asarray(values) - reference
            print(f"| {split} | {name} | {', '.join(f'{v:.3f}' for v in values)} | {np.mean(values):.3f} ± "
                  f"{np.std(values, ddof=1) if len(values) > 1 else 0:.3f} | {np.mean(delta):+.3f} "
                  f"({', '.join(f'{d:+.3f}' for d in delta)}) |")


if __name__ == "__main__":
    main()
