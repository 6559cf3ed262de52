"""The method comparison suite, headless: every method of the Compare page for N seeds on one split.

    .venv/bin/python bench/method_suite.py --split random --seeds 0 1 2 --reuse bench/results/lipo_accuracy.json

Writes one JSON row per run to bench/results/method_suite.json (the script resumes from it: rows already
measured are not re-run) and prints the summary: mean ± std over seeds per method, and the paired
difference to full fine-tuning (same split and seed), so that a gain can be read against the
seed-to-seed spread. ``--reuse`` takes the full fine-tuning and MLM rows from bench/lipo_accuracy.py,
whose specs are identical (default backbone, recipe, split and seed), instead of training them twice.
Runs are kept in the run store given by --home (default: a fresh temporary folder), so the app can show them.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from chemlm_engine.compare import METRICS, SUITE, suite_specs
from chemlm_engine.spec import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import run_job
from chemlm_engine.store import RunStore

# Short command-line names of the suite entries (the random control is the uncertainty method's strategy).
KEYS = {label: options.get("strategy", method) for label, method, options in SUITE}
BASELINE = "full fine-tuning"
DEFAULT_LR = TrainConfig().learning_rate
REUSABLE = {"chemlm": BASELINE, "mlm": "MLM then regression"}  # lipo_accuracy model -> suite group
# Δ R² is read against full fine-tuning, except for uncertainty sampling: its control is random sampling.
REFERENCE = {"uncertainty sampling": "random sampling (control)"}


def reused_rows(path: Path, split: str, seeds: list[int], epochs: int) -> list[dict]:
    """Rows of bench/lipo_accuracy.py whose spec equals a suite entry's."""
    rows = json.loads(path.read_text())
    return [{"group": REUSABLE[r["model"]], "split": split, "seed": r["seed"], "epochs": epochs,
             **{m: r[m] for m in METRICS}, "trainable_params": None, "duration_s": r.get("train_seconds"),
             "source": path.name}
            for r in rows if r["model"] in REUSABLE and r["split"] == split and r["seed"] in seeds
            and r["epochs"] == epochs]


def stat(values: list[float]) -> str:
    """Mean ± standard deviation over seeds (population std, as bench/lipo_accuracy.py)."""
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}" if values else "–"


def row_key(row: dict) -> tuple:
    """What makes two rows the same measurement (rows written before a field existed take its default)."""
    return (row["group"], row["split"], row["seed"], row["epochs"], row.get("learning_rate", DEFAULT_LR),
            row.get("backbone", DEFAULT_BACKBONE), row.get("subset"))


def print_summary(rows: list[dict], split: str, epochs: int) -> None:
    print(f"\n{split} split, {epochs} epochs; Δ R² = paired difference (same seed) to the reference "
          f"at the default learning rate\n")
    print("| method | seeds | test MSE | test RMSE | test MAE | test R² | Δ R² | reference | trainable params "
          "| wall (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    rates = sorted({r.get("learning_rate", DEFAULT_LR) for r in rows})
    for label, rate in [(label, rate) for rate in rates for label in KEYS]:
        group = [r for r in rows if r["group"] == label and r.get("learning_rate", DEFAULT_LR) == rate]
        if not group:
            continue
        reference = REFERENCE.get(label, BASELINE) if (label, rate) != (BASELINE, DEFAULT_LR) else ""
        base = {r["seed"]: r["test_r2"] for r in rows if r["group"] == reference
                and r.get("learning_rate", DEFAULT_LR) == DEFAULT_LR}
        delta = [r["test_r2"] - base[r["seed"]] for r in group if r["seed"] in base]
        params = [r["trainable_params"] for r in group if r["trainable_params"]]
        name = label if rate == DEFAULT_LR else f"{label}, lr {rate:g}"
        print(f"| {name} | {len(group)} | " + " | ".join(stat([r[m] for r in group]) for m in METRICS)
              + f" | {stat(delta)} | {reference or '–'} | {f'{np.mean(params):,.0f}' if params else '–'} "
              f"| {np.mean([r['duration_s'] for r in group]):.0f} |")
    for label in KEYS:
        rho = [r["uncertainty_error_spearman"] for r in rows if r["group"] == label
               and r.get("uncertainty_error_spearman") is not None]
        if rho:
            print(f"\n{label}: Spearman(MC-dropout std, |error|) on the test split {stat(rho)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--split", default="random", choices=["random", "scaffold"])
    parser.add_argument("--methods", nargs="+", default=list(KEYS.values()), choices=list(KEYS.values()))
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_LR,
                        help="Backbone / adapter learning rate for every method (the head keeps its own).")
    parser.add_argument("--subset", type=int, default=None, help="Seeded random subset of Lipophilicity.")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--reuse", type=Path, default=None, help="bench/lipo_accuracy.py results to reuse.")
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("bench/results/method_suite.json"))
    args = parser.parse_args()
    if args.reuse and (args.subset or args.backbone != DEFAULT_BACKBONE):
        parser.error("--reuse needs the default backbone on the full dataset (the specs must be identical)")

    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    known = {row_key(r) for r in rows}
    for row in reused_rows(args.reuse, args.split, args.seeds, args.epochs) if args.reuse else []:
        if row_key(row) not in known:
            rows.append(row)
            known.add(row_key(row))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    store = RunStore(home=args.home or Path(tempfile.mkdtemp(prefix="method-suite-")))
    base = JobSpec(data=DataSpec(split=args.split, subset=args.subset), model=ModelSpec(backbone=args.backbone),
                   train=TrainConfig(epochs=args.epochs, learning_rate=args.learning_rate))
    for spec in suite_specs(base, args.seeds):
        label = spec.name.removeprefix("suite:")
        key = (label, args.split, spec.train.seed, args.epochs, args.learning_rate, args.backbone, args.subset)
        if KEYS[label] not in args.methods or key in known:
            continue  # not asked for, or already measured (resume)
        run = store.get_run(run_job(spec, store))
        if run.status != "finished":
            raise SystemExit(f"{label} seed {spec.train.seed} {run.status}: {run.error}")
        row = {"group": label, "split": args.split, "seed": spec.train.seed, "epochs": args.epochs,
               "learning_rate": args.learning_rate, "backbone": args.backbone, "subset": args.subset,
               **{m: run.metrics.get(m) for m in METRICS}, "trainable_params": run.info.get("trainable_params"),
               "duration_s": run.duration, "source": "method_suite",
               "uncertainty_error_spearman": run.metrics.get("uncertainty_error_spearman")}
        print(json.dumps(row), flush=True)
        rows.append(row)
        known.add(key)
        args.output.write_text(json.dumps(rows, indent=2))
    args.output.write_text(json.dumps(rows, indent=2))
    print_summary([r for r in rows if r["split"] == args.split and r["epochs"] == args.epochs
                   and r["seed"] in args.seeds and row_key(r)[5:] == (args.backbone, args.subset)],
                  args.split, args.epochs)


if __name__ == "__main__":
    main()
