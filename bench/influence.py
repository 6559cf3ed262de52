"""Influence benchmark on the default model: scoring wall time (300 and 3,000 pool molecules) per solver,
mislabelled-molecule detection AUROC (and what the influence top-k picks from a corrupted pool, with
and without suspected mislabelled molecules left out), and the k-sweep on a real external set.

    .venv/bin/python bench/influence.py --pool ../shared/data/external_lipophilicity.csv
    .venv/bin/python bench/influence.py --timings-only assets/lipo-regressor   # timings alone
    .venv/bin/python bench/influence.py --parts sweep                           # one part (results merged)

Prints tables and writes bench/results/influence.json.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from scipy.stats import spearmanr

from chemlm_engine.spec import DEFAULT_BACKBONE, DataSpec, JobSpec, ModelSpec, TrainConfig
from chemlm_engine.jobs import load_split_data, run_job
from chemlm_engine.methods.influence import (LissaConfig, TransformerInfluence, conjugate_gradient,
                                             exact_solve, lissa, mean_grad, score_pool)
from chemlm_engine.model import RegressionModel
from chemlm_engine.store import RunStore, Tables


def timings(model_dir: str, epochs: int, seed: int) -> list[dict]:
    """Solve once per solver, then score 300 and 3,000 molecules (the Lipophilicity training split)."""
    data = load_split_data(DataSpec(split_seed=seed))
    model = RegressionModel.load(model_dir, "cpu")
    rows = []
    for scope in ("head", "last_layer"):
        inf = TransformerInfluence(model, scope)
        # the exact solve builds an explicit matrix: only for small parameter subsets
        solvers = ("lissa", "cg", "exact") if inf.n_params <= 5000 else ("lissa", "cg")
        train = inf.features(data.train.smiles, data.train.labels)
        g_val = mean_grad(inf.loss, inf.params, inf.features(data.val.smiles, data.val.labels))
        curvature = inf.curvature()
        scores = {}
        for solver in solvers:
            start = time.perf_counter()
            if solver == "lissa":
                solved = lissa(curvature, train, g_val, LissaConfig())
            elif solver == "cg":
                solved = conjugate_gradient(curvature, train, g_val, 0.01, max_iter=50)
            else:
                solved = exact_solve(curvature, train, g_val, 0.01)
            solve_s = time.perf_counter() - start
            for n in (300, 3000):
                start = time.perf_counter()  # features (frozen prefix) + per-sample gradients + dot products
                scores[solver] = score_pool(inf, inf.features(data.train.smiles[:n], data.train.labels[:n]),
                                            solved.vector)
                rows.append({"scope": scope, "params": inf.n_params, "solver": solver, "solve_s": solve_s,
                             "solver_steps": len(solved.trace), "pool": n, "score_s": time.perf_counter() - start})
                print(json.dumps(rows[-1]), flush=True)
        for row in rows:  # agreement of the 3,000 scores with the CG reference
            if row["scope"] == scope:
                row["spearman_vs_cg"] = float(spearmanr(scores[row["solver"]], scores["cg"]).statistic)
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
    parser.add_argument("--parts", nargs="+", default=["mislabel", "suspects", "timings", "sweep"],
                        choices=["mislabel", "suspects", "timings", "sweep"],
                        help="what to measure (the rest is kept); suspects = mislabel with skip_suspects")
    parser.add_argument("--k", nargs="+", type=int, default=[16, 32, 64, 100], help="k-sweep points (all: always)")
    args = parser.parse_args()
    results = json.loads(args.output.read_text()) if args.output.exists() else {}
    if args.timings_only is not None:
        results["timings"] = timings(str(args.timings_only), args.epochs, args.seed)
        print_timings(results["timings"])
        save(args.output, results)
        return

    store = RunStore(home=Path(tempfile.mkdtemp(prefix="influence-bench-")))
    base = JobSpec(model=ModelSpec(backbone=args.backbone), data=DataSpec(split_seed=args.seed),
                   train=TrainConfig(epochs=args.epochs, seed=args.seed))
    if {"mislabel", "timings"} & set(args.parts):
        results["mislabel"], model_path = mislabel(store, base, skip_suspects=False)
        save(args.output, results)
        if "timings" in args.parts:
            results["timings"] = timings(model_path, args.epochs, args.seed)
    if "suspects" in args.parts:
        results["mislabel_skip_suspects"], _ = mislabel(store, base, skip_suspects=True)
    # The k-sweep on the real external set.
    if "sweep" in args.parts and args.pool.exists():
        run = store.get_run(run_job(JobSpec.from_dict({**base.to_dict(), "method": "influence",
                                                       "options": {"pool": str(args.pool), "k": args.k}}),
                                    store))
        sweep = store.table(run.id, Tables.SWEEP)
        results["external_sweep"] = sweep.drop(columns=["stage", "epoch"]).to_dict("records")
        results["external_base"] = {k: v for k, v in run.metrics.items() if k.startswith("base_")}
        results["external_pool"] = {"n_pool": run.metrics["n_pool"], "run": run.id, **run.info}
        print_sweep(run.metrics["base_test_mse"], run.metrics["base_test_r2"], results["external_sweep"])
    if "timings" in results:
        print_timings(results["timings"])
    save(args.output, results)


def mislabel(store: RunStore, base: JobSpec, skip_suspects: bool) -> tuple[dict, str]:
    """The default held-out pool with 20 % of labels shifted by ±3σ: detection AUROC, what the influence
    top-100 picks, and the retrained test metrics against random-100 and the whole pool."""
    run = store.get_run(run_job(JobSpec.from_dict({**base.to_dict(), "method": "influence", "options": {
        "corrupt_fraction": 0.2, "k": [100], "skip_suspects": skip_suspects}}), store))
    pool = store.molecules(run.id, "influence")
    # the molecules the influence top-100 retrained on (suspects left out when asked)
    top = pool[~pool["suspect"]] if skip_suspects else pool
    top = top.nsmallest(100, "rank")  # rank 1 = most helpful
    result = {"skip_suspects": skip_suspects, "auroc_self_influence": run.metrics["mislabel_auroc"],
              "auroc_first_order": run.metrics["mislabel_auroc_first_order"], "run": run.id, "n_pool": len(pool),
              "corrupted_share_pool": float(pool["corrupted"].mean()),
              "corrupted_share_influence_top100": float(top["corrupted"].mean()),
              "n_suspects": int(pool["suspect"].sum()),
              "suspects_corrupted": int((pool["suspect"] & pool["corrupted"]).sum()),
              "base": {k: v for k, v in run.metrics.items() if k.startswith("base_")},
              "sweep": store.table(run.id, Tables.SWEEP).to_dict("records")}
    print(f"mislabelled detection AUROC (20 % corrupted, held-out pool): self-influence "
          f"{result['auroc_self_influence']:.3f}, negative first-order score {result['auroc_first_order']:.3f}; "
          f"suspects {result['n_suspects']} ({result['suspects_corrupted']} corrupted); corrupted share: pool "
          f"{result['corrupted_share_pool']:.3f}, influence top-100 {result['corrupted_share_influence_top100']:.3f}"
          f"{' (suspects skipped)' if skip_suspects else ''}")
    print_sweep(run.metrics["base_test_mse"], run.metrics["base_test_r2"], result["sweep"])
    return result, run.model_path


def save(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=float))


def print_sweep(base_mse: float, base_r2: float, rows: list[dict]) -> None:
    print("\n| k | selection | test MSE | test R² |\n|---|---|---|---|")
    print(f"| 0 | base run | {base_mse:.3f} | {base_r2:.3f} |")
    for row in rows:
        print(f"| {row['k']} | {row['selection']} | {row['test_mse']:.3f} | {row['test_r2']:.3f} |")


def print_timings(rows: list[dict]) -> None:
    print("\n| scope | tracked params | solver | solve (s) | pool | scoring (s) | Spearman vs CG |\n"
          "|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['scope']} | {row['params']:,} | {row['solver']} | {row['solve_s']:.1f} | {row['pool']} | "
              f"{row['score_s']:.1f} | {row.get('spearman_vs_cg', float('nan')):.3f} |")


if __name__ == "__main__":
    main()
