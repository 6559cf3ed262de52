"""The method comparison suite, headless: every method of the Compare page for N seeds on one split.

    .venv/bin/python bench/method_suite.py --seeds 0 1 2 --split random --epochs 20

Prints the summary table (mean ± std over seeds) and writes bench/results/method_suite.json. Runs are
kept in the run store given by --home (default: a fresh temporary folder), so the app can show them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chemlm_engine.compare import METRICS, runs_table, suite_specs, summarize  # noqa: E402
from chemlm_engine.config import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig  # noqa: E402
from chemlm_engine.jobs import run_job  # noqa: E402
from chemlm_engine.store import RunStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--split", default="random", choices=["random", "scaffold"])
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--subset", type=int, default=None, help="Seeded random subset of Lipophilicity.")
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--home", type=Path, default=None)
    parser.add_argument("--output", type=Path, default=Path("bench/results/method_suite.json"))
    args = parser.parse_args()

    store = RunStore(home=args.home or Path(tempfile.mkdtemp(prefix="method-suite-")))
    base = JobSpec(data=DataSpec(split=args.split, subset=args.subset), model=ModelSpec(backbone=args.backbone),
                   train=TrainConfig(epochs=args.epochs))
    done = {(r.name, r.spec["train"]["seed"]) for r in store.runs(status="finished")}
    for spec in suite_specs(base, args.seeds):
        if (spec.name, spec.train.seed) in done:
            continue  # resume
        run_id = run_job(spec, store)
        print(json.dumps({"run": run_id, "group": spec.name, "seed": spec.train.seed,
                          **{m: store.get_run(run_id).metrics.get(m) for m in METRICS}}), flush=True)
    summary = summarize(runs_table(store.runs()))
    print(f"\n{args.split} split, seeds {args.seeds}, {args.epochs} epochs\n")
    print("| method | runs | test MSE | test RMSE | test MAE | test R² | trainable params | wall (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for row in summary.to_dict("records"):
        cells = " | ".join(f"{row[m]:.3f} ± {row[m + '_std']:.3f}" for m in METRICS)
        print(f"| {row['group']} | {row['runs']} | {cells} | {row['trainable_params']:,.0f} | {row['duration_s']:.0f} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(summary.to_json(orient="records", indent=2))


if __name__ == "__main__":
    main()
