"""Which backbone, and which fine-tuning recipe, does better on Lipophilicity: the shipped recipe (a single ChemLM
regressor with RDKit descriptors in the head, the ensemble members' recipe) on each backbone, and each --recipe
(changes to the fit loop's settings, e.g. layer-wise rate decay or a weight average), same splits and seeds, side
by side. Choose on the validation split; the test columns are reported, never used to choose.

    .venv/bin/python bench/backbone_ablation.py --backbone mini=assets/chemlm-mini \\
        --backbone drug=pretrain_work/chemlm-mini-drug --splits random scaffold --seeds 0
    .venv/bin/python bench/backbone_ablation.py --backbone mini=assets/chemlm-mini --recipe default={} \\
        --recipe llrd='{"layer_decay": 0.8}' --recipe ema='{"ema_decay": 0.999}' --splits random --seeds 0

Resumes from its JSON (one row per finished run; --output, default bench/results/backbone_ablation.json).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from itertools import product
from pathlib import Path

from chemlm_engine.spec import DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job
from chemlm_engine.store import RunStore

METRICS = ("val_r2", "val_mse", "test_r2", "test_rmse")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", action="append", required=True, help="NAME=FOLDER (repeatable)")
    parser.add_argument("--recipe", action="append", default=[],
                        help="NAME=JSON of TrainConfig settings (repeatable; default: the recipe as it is)")
    parser.add_argument("--splits", nargs="+", default=["random", "scaffold"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--subset", type=int, default=None, help="a seeded subset (a quick check of the script)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/backbone_ablation.json"))
    args = parser.parse_args()
    backbones = dict(item.split("=", 1) for item in args.backbone)
    recipes = {name: json.loads(settings) for name, settings in (r.split("=", 1) for r in args.recipe)} \
        or {"default": {}}
    store = RunStore(home=Path(tempfile.mkdtemp(prefix="backbone-ablation-")) / "runs")
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    for split in args.splits:
        for seed in args.seeds:
            for (name, folder), (recipe, settings) in product(backbones.items(), recipes.items()):
                key = (name, recipe, split, seed, args.epochs, args.subset)
                if any((r["backbone"], r.get("recipe", "default"), r["split"], r["seed"], r["epochs"],
                        r.get("subset")) == key for r in rows):
                    continue  # resume: already measured
                spec = JobSpec(data=DataSpec(split=split, split_seed=seed, subset=args.subset),
                               model=ModelSpec(backbone=folder, descriptors=True),
                               train=TrainConfig(epochs=args.epochs, seed=seed, **settings))
                run = store.get_run(run_job(spec, store))
                row = {"backbone": name, "recipe": recipe, "settings": settings, "folder": folder, "split": split,
                       "seed": seed, "epochs": args.epochs, "subset": args.subset,
                       **{k: run.metrics.get(k) for k in (*METRICS, "epochs_run", "train_seconds")},
                       "device": run.info.get("device"), "precision": run.info.get("precision")}
                print(json.dumps(row), flush=True)
                rows.append(row)
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(rows, indent=2))
    print_table(rows)


def print_table(rows: list[dict]) -> None:
    print("\n| split | seed | backbone | recipe | val R² | val MSE | test R² | test RMSE |\n"
          "|---|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["split"], r["seed"], r["backbone"], r.get("recipe", "default"))):
        print(f"| {r['split']} | {r['seed']} | {r['backbone']} | {r.get('recipe', 'default')} | "
              + " | ".join("–" if r.get(k) is None else f"{r[k]:.3f}" for k in METRICS) + " |")


if __name__ == "__main__":
    main()
