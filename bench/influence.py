"""Influence benchmark on the default model: scoring wall time (300 and 3,000 pool molecules) per solver,
mislabelled-molecule detection AUROC, and the k-sweep on a real external set.

    .venv/bin/python bench/influence.py --pool ../shared/data/external_lipophilicity.csv
    .venv/bin/python bench/influence.py --timings-only assets/lipo-regressor   # timings alone
    .venv/bin/python bench/influence.py --parts sweep                           # one part (results merged)

Prints tables and writes bench/results/influence.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from chemlm_engine.config import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig  # noqa: E402
from chemlm_engine.jobs import load_job_data, run_job  # noqa: E402
from chemlm_engine.methods.influence import (LissaConfig, TransformerInfluence, conjugate_gradient,  # noqa: E402
                                             exact_solve, lissa, mean_grad, score_pool)
from chemlm_engine.model import RegressionModel  # noqa: E402
from chemlm_engine.store import RunStore  # noqa: E402


def timings(model_dir: str, epochs: int, seed: int) -> list[dict]:
    """Solve once per solver, then score 300 and 3,000 molecules (the Lipophilicity training split)."""
    data = load_job_data(JobSpec(data=DataSpec(split_seed=seed)))
    model = RegressionModel.load(model_dir, "cpu")
    rows = []
    for scope in ("last_layer", "head"):
        inf = TransformerInfluence(model, scope)
        # the exact solve builds an explicit matrix: only for small parameter subsets
        solvers = ("lissa", "cg", "exact") if inf.n_params <= 5000 else ("lissa", "cg")
        train = inf.features(data.train.smiles, data.train.labels)
        g_val = mean_grad(inf.loss, inf.params, inf.features(data.val.smiles, data.val.labels))
        curvature = inf.curvature()
        for solver in solvers:
            start = time.perf_counter()
            if solver == "lissa":
                direction = lissa(curvature, train, g_val, LissaConfig()).vector
            elif solver == "cg":
                direction = conjugate_gradient(curvature, train, g_val, 0.01, max_iter=50).vector
            else:
                direction = exact_solve(curvature, train, g_val, 0.01).vector
            solve_s = time.perf_counter() - start
            for n in (300, 3000):
                start = time.perf_counter()  # features (frozen prefix) + per-sample gradients + dot products
                score_pool(inf, inf.features(data.train.smiles[:n], data.train.labels[:n]), direction)
                rows.append({"scope": scope, "params": inf.n_params, "solver": solver, "solve_s": solve_s,
                             "pool": n, "score_s": time.perf_counter() - start})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pool", type=Path, default=Path("../shared/data/external_lipophilicity.csv"))
    parser.add_argument("--backbone", default=DEFAULT_BACKBONE)
    parser.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=Path("bench/results/influence.json"))
    parser.add_argument("--timings-only", type=Path, default=None, metavar="MODEL_DIR",
                        help="only the solver/scoring timings, on this trained regressor")
    parser.add_argument("--parts", nargs="+", default=["mislabel", "timings", "sweep"],
                        choices=["mislabel", "timings", "sweep"], help="what to measure (the rest is kept)")
    parser.add_argument("--k", nargs="+", type=int, default=[16, 32, 64, 100], help="k-sweep points (all: always)")
    args = parser.parse_args()
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    if args.timings_only is not None:
        results["timings"] = timings(str(args.timings_only), args.epochs, args.seed)
        print_timings(results["timings"])
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(results, indent=2, default=float))
        return

    store = RunStore(home=Path(tempfile.mkdtemp(prefix="influence-bench-")))
    base = JobSpec(model=ModelSpec(backbone=args.backbone), data=DataSpec(split_seed=args.seed),
                   train=TrainConfig(epochs=args.epochs, seed=args.seed))
    if {"mislabel", "timings"} & set(args.parts):
        # Mislabelled detection: default held-out pool with 20 % of labels shifted by ±3σ.
        run = store.get_run(run_job(JobSpec.from_dict({**base.to_dict(), "method": "influence",
                                                       "options": {"corrupt_fraction": 0.2, "k": [100]}}), store))
        results["mislabel"] = {"auroc_self_influence": run.metrics["mislabel_auroc"],
                               "auroc_first_order": run.metrics["mislabel_auroc_first_order"], "run": run.id}
        print(f"mislabelled detection AUROC (20 % corrupted, held-out pool): self-influence "
              f"{run.metrics['mislabel_auroc']:.3f}, "
              f"negative first-order score {run.metrics['mislabel_auroc_first_order']:.3f}")
        if "timings" in args.parts:
            results["timings"] = timings(run.model_path, args.epochs, args.seed)
    # The k-sweep on the real external set.
    if "sweep" in args.parts and args.pool.exists():
        run = store.get_run(run_job(JobSpec.from_dict({**base.to_dict(), "method": "influence",
                                                       "options": {"pool": str(args.pool), "k": args.k}}),
                                    store))
        sweep = store.epochs(run.id, stage="sweep")
        results["external_sweep"] = sweep.drop(columns=["stage", "epoch"]).to_dict("records")
        results["external_base"] = {k: v for k, v in run.metrics.items() if k.startswith("base_")}
        results["external_pool"] = {"n_pool": run.metrics["n_pool"], "run": run.id, **run.info}
        print("\n| k | selection | test MSE | test R² |\n|---|---|---|---|")
        print(f"| 0 | base run | {run.metrics['base_test_mse']:.3f} | {run.metrics['base_test_r2']:.3f} |")
        for row in results["external_sweep"]:
            print(f"| {row['k']} | {row['selection']} | {row['test_mse']:.3f} | {row['test_r2']:.3f} |")
    if "timings" in results:
        print_timings(results["timings"])
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=float))


def print_timings(rows: list[dict]) -> None:
    print("\n| scope | tracked params | solver | solve (s) | pool | scoring (s) |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['scope']} | {row['params']:,} | {row['solver']} | {row['solve_s']:.1f} | {row['pool']} | "
              f"{row['score_s']:.1f} |")


if __name__ == "__main__":
    main()
