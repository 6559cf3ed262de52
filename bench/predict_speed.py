"""Prediction speed: 1,000 pasted SMILES through the default regressor on this machine.

    .venv/bin/python bench/predict_speed.py [--model assets/lipo-regressor] [--n 1000]

Prints a table (parse + canonicalise + model, nearest-neighbour similarity, total, and prediction with
MC-dropout uncertainty as the Predict page does it) and writes
bench/results/predict_speed.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chemlm_engine.config import DEFAULT_REGRESSOR  # noqa: E402
from chemlm_engine.data import load_lipophilicity  # noqa: E402
from chemlm_engine.model import RegressionModel, load_training_set  # noqa: E402
from chemlm_engine.predict import add_applicability_domain, predict_smiles  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/predict_speed.json"))
    args = parser.parse_args()

    lipo, _ = load_lipophilicity()
    smiles = lipo.smiles[-args.n:]
    model = RegressionModel.load(args.model)
    predict_smiles(model, smiles[:32])  # warm-up
    start = time.perf_counter()
    frame = predict_smiles(model, smiles)
    predicted = time.perf_counter()
    saved = load_training_set(args.model)
    add_applicability_domain(frame, saved[0] if saved else [])
    done = time.perf_counter()
    predict_smiles(model, smiles, mc_passes=20)
    with_mc = time.perf_counter() - done
    row = {"model": args.model, "n": len(smiles), "threads": torch.get_num_threads(),
           "predict_s": predicted - start, "similarity_s": done - predicted, "total_s": done - start,
           "molecules_per_s": len(smiles) / (done - start), "predict_with_mc_dropout_s": with_mc}
    print("| molecules | threads | predict (s) | nearest neighbour (s) | total (s) | molecules / s | "
          "predict + MC dropout, T=20 (s) |")
    print("|---|---|---|---|---|---|---|")
    print(f"| {row['n']} | {row['threads']} | {row['predict_s']:.2f} | {row['similarity_s']:.2f} | "
          f"{row['total_s']:.2f} | {row['molecules_per_s']:.0f} | {with_mc:.2f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
