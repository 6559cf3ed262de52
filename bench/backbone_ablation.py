"""Which backbone fine-tunes better on Lipophilicity: the shipped recipe (a single ChemLM regressor with RDKit
descriptors in the head, the ensemble members' recipe) on each backbone, same splits and seeds, side by side.
Choose on the validation split; the test columns are reported, never used to choose.

    .venv/bin/python bench/backbone_ablation.py --backbone mini=assets/chemlm-mini \\
        --backbone drug=pretrain_work/chemlm-mini-drug --splits random scaffold --seeds 0

Resumes from its JSON (one row per finished run; --output, default bench/results/backbone_ablation.json).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job
from chemlm_engine.store import RunStore

METRICS = ("val_r2", "val_mse", "test_r2", "test_rmse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", action="append", required=True, help="NAME=FOLDER (repeatable)")
    parser.add_argument("--splits", nargs="+", default=["random", "scaffold"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--output", type=Path, default=Path("bench/results/backbone_ablation.json"))
    args = parser.parse_args()
    backbones = dict(item.split("=", 1) for item in args.backbone)
    store = RunStore(home=Path(tempfile.mkdtemp(prefix="backbone-ablation-")) / "runs")
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    for split in args.splits:
        for seed in args.seeds:
            for name, folder in backbones.items():
                if any((r["backbone"], r["split"], r["seed"], r["epochs"]) == (name, split, seed, args.epochs)
                       for r in rows):
                    continue  # resume: already measured
                spec = JobSpec(data=DataSpec(split=split, split_seed=seed),
                               model=ModelSpec(backbone=folder, descriptors=True),
                               train=TrainConfig(epochs=args.epochs, seed=seed))
                run = store.get_run(run_job(spec, store))
                row = {"backbone": name, "folder": folder, "split": split, "seed": seed, "epochs": args.epochs,
                       **{k: run.metrics.get(k) for k in (*METRICS, "epochs_run", "train_seconds")},
                       "device": run.info.get("device"), "precision": run.info.get("precision")}
                print(json.dumps(row), flush=True)
                rows.append(row)
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(rows, indent=2))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n| split | seed | backbone | val R² | val MSE | test R² | test RMSE |\n|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["split"], r["seed"], r["backbone"])):
        print(f"| {r['split']} | {r['seed']} | {r['backbone']} | " + " | ".join("–" if r.get(k) is None else f"{r[k]:.3f}" for k in METRICS) + " |")


if __name__ == "__main__":
    main()
