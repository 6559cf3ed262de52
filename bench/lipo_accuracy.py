"""Lipophilicity accuracy benchmark: ChemLM-mini fine-tuned vs its random-init twin, vs MLM-then-regression,
vs random forests on Morgan fingerprints and RDKit 2D descriptors, vs Chemprop v2 (D-MPNN, its defaults,
with and without RDKit 2D features). Same splits and seeds for all.

    .venv/bin/python bench/lipo_accuracy.py --splits random scaffold --seeds 0 1 2

Chemprop runs in a virtual environment of its own, fed this project's splits as three CSVs:

    python3 -m venv /work/chemprop-venv
    /work/chemprop-venv/bin/pip install torch==2.13.0 chemprop==2.3.1
    .venv/bin/python bench/lipo_accuracy.py --models chemprop chemprop-rdkit --chemprop /work/chemprop-venv/bin/chemprop

Prints a Markdown table (mean ± std over seeds, paired Δ R² to Chemprop) and writes
bench/results/lipo_accuracy.json (``--table`` prints the table of that file and runs nothing).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy import sparse
from rdkit import Chem, rdBase
from rdkit.Chem import Descriptors, rdFingerprintGenerator
from sklearn.ensemble import RandomForestRegressor

from chemlm_engine.spec import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import load_split_data, run_job
from chemlm_engine.store import RunStore
from chemlm_engine.model import RegressionModel
from chemlm_engine.inference import predict_values
from chemlm_engine.training import regression_metrics

MODELS = ("chemlm", "random-init", "mlm", "rf-morgan", "rf-descriptors", "chemprop", "chemprop-rdkit")
# ChemLM-mini variants: (ModelSpec changes, TrainConfig changes). Each row also records TTA_SPELLINGS-fold
# test-time augmentation on the same trained model (``*_tta`` keys), validation metrics included.
VARIANTS = {"chemlm-desc": ({"descriptors": True}, {}), "chemlm-aug": ({}, {"augment": True}),
            "chemlm-desc-aug": ({"descriptors": True}, {"augment": True})}
# chemlm-fp32: the default recipe without bf16 autocast; ensemble: the members alone, ensemble-trees: blended with
# gradient-boosted trees (the ensemble method's default since 4 December; its rows also hold the members-alone R²)
EXTRA_MODELS = ("chemlm-fp32", *VARIANTS, "ensemble", "ensemble-trees")
TTA_SPELLINGS = 8


def random_init_twin(backbone: str, folder: Path, seed: int) -> str:
    """Same architecture and tokenizer as ``backbone``, freshly initialised weights."""
    from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer

    torch.manual_seed(seed)
    AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(backbone)).save_pretrained(folder)
    AutoTokenizer.from_pretrained(backbone).save_pretrained(folder)
    return str(folder)


def morgan(smiles: list[str]) -> sparse.csr_matrix:
    """2048-bit radius-2 Morgan bits, sparse (scikit-learn's sparse splitter fits 2x faster on them)."""
    gen = rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)
    return sparse.csr_matrix(np.stack([gen.GetFingerprintAsNumPy(Chem.MolFromSmiles(s)) for s in smiles]),
                             dtype=np.float32)


def descriptors(smiles: list[str], cache: Path) -> np.ndarray:
    """All RDKit 2D descriptors (slow: cached by SMILES list hash)."""
    import hashlib

    key = hashlib.sha256("\n".join(smiles).encode()).hexdigest()[:16]
    path = cache / f"descriptors-{key}.npy"
    if path.exists():
        return np.load(path)
    with rdBase.BlockLogs():
        rows = [list(Descriptors.CalcMolDescriptors(Chem.MolFromSmiles(s)).values()) for s in smiles]
    values = np.nan_to_num(np.asarray(rows, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, -1e6, 1e6).astype(np.float32)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, values)
    return values


def random_forest(kind: str, data, seed: int, cache: Path) -> dict[str, float]:
    featurise = morgan if kind == "rf-morgan" else (lambda s: descriptors(s, cache))
    started = time.time()
    forest = RandomForestRegressor(n_estimators=500, n_jobs=-1, random_state=seed)
    forest.fit(featurise(data.train.smiles), data.train.labels)
    metrics = regression_metrics(data.test.labels, forest.predict(featurise(data.test.smiles)))
    return {**{f"test_{k}": v for k, v in metrics.items()}, "fit_seconds": time.time() - started}


def with_tta(model_dir: str, data) -> dict[str, float]:
    """Validation and test metrics of a trained model with test-time augmentation (mean over spellings)."""
    model = RegressionModel.load(model_dir)
    out = {}
    for part in ("val", "test"):
        molecules = getattr(data, part)
        metrics = regression_metrics(molecules.labels, predict_values(model, molecules.smiles, tta=TTA_SPELLINGS))
        out.update({f"{part}_{k}_tta": v for k, v in metrics.items()})
    return out


def chemprop(kind: str, data, seed: int, folder: Path, executable: str) -> dict[str, float]:
    """Test metrics of :func:`chemprop_predictions`."""
    predicted, fit_seconds = chemprop_predictions(kind, data, seed, folder, executable)
    metrics = regression_metrics(data.test.labels, predicted)
    return {**{f"test_{k}": v for k, v in metrics.items()}, "fit_seconds": fit_seconds, "device": "cpu"}


def chemprop_predictions(kind: str, data, seed: int, folder: Path, executable: str) -> tuple[np.ndarray, float]:
    """``chemprop train`` with its defaults on our train / validation / test CSVs (``chemprop-rdkit`` adds the
    ``v1_rdkit_2d_normalized`` molecule features), then ``chemprop predict`` on the test CSV: the test
    predictions and the fit's seconds."""
    import subprocess

    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part in ("train", "val", "test"):
        molecules = getattr(data, part)
        paths.append(folder / f"{part}.csv")
        pd.DataFrame({"smiles": molecules.smiles, "logD": molecules.labels}).to_csv(paths[-1], index=False)
    features = ["--molecule-featurizers", "v1_rdkit_2d_normalized"] if kind == "chemprop-rdkit" else []
    started = time.time()
    subprocess.run([executable, "train", "--data-path", *map(str, paths), "--task-type", "regression",
                    "--smiles-columns", "smiles", "--target-columns", "logD", "--output-dir", str(folder / "model"),
                    "--data-seed", str(seed), "--pytorch-seed", str(seed), "--accelerator", "cpu", *features],
                   check=True, capture_output=True)
    fit_seconds = time.time() - started
    checkpoint = next((folder / "model").rglob("best*.pt"))
    subprocess.run([executable, "predict", "--test-path", str(paths[2]), "--smiles-columns", "smiles",
                    "--model-paths", str(checkpoint), "--preds-path", str(folder / "preds.csv"),
                    "--accelerator", "cpu", *features], check=True, capture_output=True)
    return pd.read_csv(folder / "preds.csv")["logD"].to_numpy(), fit_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["random", "scaffold"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS + EXTRA_MODELS)
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--mlm-epochs", type=int, default=3)
    parser.add_argument("--ensemble-config", default="chemlm", choices=["chemlm", *VARIANTS],
                        help="The variant an 'ensemble' row trains (chosen on the validation split).")
    parser.add_argument("--members", type=int, default=5)
    parser.add_argument("--subset", type=int, default=None, help="A seeded subset (smoke tests only).")
    parser.add_argument("--chemprop", default="chemprop", help="The chemprop executable (its own venv).")
    parser.add_argument("--output", type=Path, default=Path("bench/results/lipo_accuracy.json"))
    parser.add_argument("--table", action="store_true", help="Only print the table of --output.")
    args = parser.parse_args()
    if args.table:
        print_table(json.loads(args.output.read_text()))
        return

    work = Path(tempfile.mkdtemp(prefix="lipo-bench-"))
    store = RunStore(home=work / "runs")
    results = json.loads(args.output.read_text()) if args.output.exists() else []
    for split in args.splits:
        for seed in args.seeds:
            data_spec = DataSpec(split=split, split_seed=seed, subset=args.subset)
            data = load_split_data(data_spec)
            for model in args.models:
                if any(r["model"] == model and r["split"] == split and r["seed"] == seed and
                       r["epochs"] == args.epochs for r in results):
                    continue  # resume: already measured
                if model.startswith("rf-"):
                    metrics = random_forest(model, data, seed, work.parent / "lipo-bench-cache")
                elif model.startswith("chemprop"):
                    metrics = chemprop(model, data, seed, work / f"{model}-{split}-{seed}", args.chemprop)
                else:
                    backbone = args.backbone if model != "random-init" else \
                        random_init_twin(args.backbone, work / f"random-init-{seed}", seed)
                    variant = args.ensemble_config if model.startswith("ensemble") else model
                    model_changes, train_changes = VARIANTS.get(variant, ({}, {}))
                    method = "mlm" if model == "mlm" else "ensemble" if model.startswith("ensemble") else "baseline"
                    options = {"mlm": {"mlm_epochs": args.mlm_epochs},
                               "ensemble": {"members": args.members, "tree_weight": 0.0},
                               "ensemble-trees": {"members": args.members}}.get(model, {})
                    spec = JobSpec(method=method, data=data_spec, model=ModelSpec(backbone=backbone, **model_changes),
                                   options=options,
                                   train=TrainConfig(epochs=args.epochs, seed=seed, **train_changes,
                                                     precision="fp32" if model == "chemlm-fp32" else "auto"))
                    run = store.get_run(run_job(spec, store))
                    metrics = {**run.metrics, **{k: run.info.get(k) for k in ("precision", "device")}}
                    if model.startswith("chemlm"):
                        metrics.update(with_tta(run.model_path, data))
                    if model.startswith("ensemble"):
                        metrics["config"] = variant
                row = {"model": model, "split": split, "seed": seed, "epochs": args.epochs, **metrics}
                print(json.dumps(row), flush=True)
                results.append(row)
                args.output.parent.mkdir(parents=True, exist_ok=True)
                args.output.write_text(json.dumps(results, indent=2))
    print_table(results)


def print_table(results: list[dict], reference: str = "chemprop") -> None:
    """Mean ± std over seeds per model and split, and the paired Δ test R² to ``reference`` on the same seeds."""
    print(f"\n| model | split | seeds | test MSE | test RMSE | test MAE | test R² | Δ R² vs {reference} (paired) "
          "| val R² | s / epoch | device |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    order = MODELS + EXTRA_MODELS
    keys = sorted({(r["model"], r["split"]) for r in results}, key=lambda k: (k[1], order.index(k[0])))
    for model, split in keys:
        rows = [r for r in results if r["model"] == model and r["split"] == split]

        def cell(key: str) -> str:
            values = [r[key] for r in rows if r.get(key) is not None]
            return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"

        ref = {r["seed"]: r["test_r2"] for r in results if r["model"] == reference and r["split"] == split}
        deltas = [r["test_r2"] - ref[r["seed"]] for r in rows if r["seed"] in ref]
        delta = f"{np.mean(deltas):+.3f} ± {np.std(deltas):.3f} (n={len(deltas)})" if deltas and model != reference \
            else "–"
        devices = ", ".join(sorted({r.get("device") or "cpu" for r in rows}))
        per_epoch = cell("seconds_per_epoch") if model.startswith(("chemlm", "random", "mlm")) else "–"
        print(f"| {model} | {split} | {len(rows)} | {cell('test_mse')} | {cell('test_rmse')} | {cell('test_mae')} "
              f"| {cell('test_r2')} | {delta} | {cell('val_r2')} | {per_epoch} | {devices} |")
    calibrated = [k for k in keys if any("interval_coverage" in r for r in results if (r["model"], r["split"]) == k)]
    if calibrated:
        print("\n| model | split | seeds | 90 % interval coverage | mean width | Spearman(abs. error, spread) "
              "| members' mean test R² |")
        print("|---|---|---|---|---|---|---|")
    for model, split in calibrated:
        rows = [r for r in results if r["model"] == model and r["split"] == split]
        cells = [f"{np.mean([r[k] for r in rows]):.3f} ± {np.std([r[k] for r in rows]):.3f}" for k in
                 ("interval_coverage", "interval_width", "spearman_error_spread", "member_test_r2_mean")]
        print(f"| {model} | {split} | {len(rows)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
