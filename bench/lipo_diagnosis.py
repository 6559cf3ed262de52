"""Where the test error is (issue #24, item 1): RMSE by SMILES token length and by ionisation class at pH 7.4,
for one model of the shipped recipe (ChemLM-mini + RDKit descriptors, 20 epochs, the validation-selected
epoch, as `lipo_accuracy.py`'s ``chemlm-desc`` row) and for Chemprop 2.3.1 with its defaults, on the same
test molecules of every split and seed.

    .venv/bin/python bench/lipo_diagnosis.py --chemprop /work/chemprop-venv/bin/chemprop

Writes bench/results/lipo_diagnosis.json (one row per model, split and seed, with its test predictions;
a rerun resumes) and prints, per split, the RMSE of each model pooled over seeds in every bin, the paired
difference ChemLM − Chemprop and its 95 % bootstrap interval (molecules resampled). ``--table`` only prints.
Token lengths count SMILES tokens of this project's tokenizer, without the two special tokens; ChemLM-mini's
MOSES pretraining saw at most 54 (p99 44). Ionisation classes: `chemlm_engine/ionisation.py`.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
from rdkit import Chem
from transformers import AutoTokenizer

from chemlm_engine.spec import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.inference import predict_values
from chemlm_engine.ionisation import IONISATION_CLASSES, ionisation_class
from chemlm_engine.jobs import load_split_data, run_job
from chemlm_engine.model import RegressionModel
from chemlm_engine.store import RunStore

sys.path.insert(0, str(Path(__file__).parent))
from lipo_accuracy import chemprop_predictions  # noqa: E402  (a sibling script, not a package)

MODELS = ("chemlm-desc", "chemprop")
LENGTH_BINS = ((0, 44, "≤ 44"), (45, 54, "45–54"), (55, 80, "55–80"), (81, 10**6, "> 80"))


def chemlm_predictions(data, data_spec: DataSpec, seed: int, store: RunStore) -> np.ndarray:
    spec = JobSpec(method="baseline", data=data_spec, model=ModelSpec(backbone=DEFAULT_BACKBONE, descriptors=True),
                   train=TrainConfig(seed=seed))
    run = store.get_run(run_job(spec, store))
    return predict_values(RegressionModel.load(run.model_path), data.test.smiles)


def molecule_bins(smiles: list[str]) -> tuple[list[str], list[str]]:
    """Each molecule's token-length bin and ionisation class."""
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_BACKBONE)
    lengths = [len(ids) for ids in tokenizer(smiles, add_special_tokens=False)["input_ids"]]
    length_bins = [next(label for low, high, label in LENGTH_BINS if low <= n <= high) for n in lengths]
    return length_bins, [ionisation_class(Chem.MolFromSmiles(s)) for s in smiles]


def print_tables(results: list[dict], resamples: int = 2000) -> None:
    rng = np.random.default_rng(0)
    for split in sorted({r["split"] for r in results}):
        pairs = {}  # seed -> {model: row}
        for r in results:
            if r["split"] == split:
                pairs.setdefault(r["seed"], {})[r["model"]] = r
        seeds = sorted(s for s, rows in pairs.items() if set(MODELS) <= set(rows))
        if not seeds:
            print(f"\n{split}: no seed with both models yet")
            continue
        smiles, labels, ours, theirs = [], [], [], []
        for seed in seeds:
            data = load_split_data(DataSpec(split=split, split_seed=seed))
            smiles += data.test.smiles
            labels += list(data.test.labels)
            ours += pairs[seed][MODELS[0]]["test_predictions"]
            theirs += pairs[seed][MODELS[1]]["test_predictions"]
        labels, ours, theirs = map(np.asarray, (labels, ours, theirs))
        length_bins, classes = map(np.asarray, molecule_bins(smiles))
        print(f"\n### {split} split, seeds {', '.join(map(str, seeds))} (test molecules pooled: n = {len(labels)})\n")
        print(f"| bin | n | RMSE {MODELS[0]} | RMSE {MODELS[1]} | Δ RMSE (95 % CI) |")
        print("|---|---|---|---|---|")
        groups = [("all", np.ones(len(labels), bool))]
        groups += [(f"tokens {label}", length_bins == label) for *_, label in LENGTH_BINS]
        groups += [(kind, classes == kind) for kind in IONISATION_CLASSES]
        for name, mask in groups:
            n = int(mask.sum())
            if n == 0:
                print(f"| {name} | 0 | – | – | – |")
                continue
            a, b = (ours[mask] - labels[mask]) ** 2, (theirs[mask] - labels[mask]) ** 2
            picks = rng.integers(0, n, (resamples, n))
            deltas = np.sqrt(a[picks].mean(1)) - np.sqrt(b[picks].mean(1))
            low, high = np.percentile(deltas, [2.5, 97.5])
            delta = np.sqrt(a.mean()) - np.sqrt(b.mean())
            print(f"| {name} | {n} | {np.sqrt(a.mean()):.3f} | {np.sqrt(b.mean()):.3f} "
                  f"| {delta:+.3f} ({low:+.3f}, {high:+.3f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--splits", nargs="+", default=["random", "scaffold"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--chemprop", default="chemprop", help="The chemprop executable (its own venv).")
    parser.add_argument("--output", type=Path, default=Path("bench/results/lipo_diagnosis.json"))
    parser.add_argument("--table", action="store_true", help="Only print the tables of --output.")
    args = parser.parse_args()
    results = json.loads(args.output.read_text()) if args.output.exists() else []
    if not args.table:
        work = Path(tempfile.mkdtemp(prefix="lipo-diagnosis-"))
        store = RunStore(home=work / "runs")
        runs = [(seed, split, model) for seed in args.seeds for split in args.splits for model in args.models]
        for seed, split, model in runs:  # pairs first: each finished pair is a comparison
            if any((r["model"], r["split"], r["seed"]) == (model, split, seed) for r in results):
                continue  # resume: already measured
            data_spec = DataSpec(split=split, split_seed=seed)
            data = load_split_data(data_spec)
            if model == "chemprop":
                predicted, _ = chemprop_predictions(model, data, seed, work / f"{split}-{seed}", args.chemprop)
            else:
                predicted = chemlm_predictions(data, data_spec, seed, store)
            results.append({"model": model, "split": split, "seed": seed,
                            "test_predictions": [round(float(p), 5) for p in predicted]})
            print(f"{model} {split} seed {seed} done", flush=True)
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(results))
    print_tables(results)


if __name__ == "__main__":
    main()
