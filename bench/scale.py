"""Scale-out throughput on this machine: library prediction and influence pool scoring, single process
against Ray with 1 and 2 workers (a local Ray; the same code runs on a cluster with --address).

    .venv/bin/python bench/scale.py --molecules 4000

Prints a table (molecules / s) and writes bench/results/scale.json. Ray's worker start-up and model
broadcast are included in its times: that is what a user waits for.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from chemlm_engine.cluster import connect, ray_map
from chemlm_engine.spec import DEFAULT_REGRESSOR, DataSpec
from chemlm_engine.data import load_lipophilicity
from chemlm_engine.jobs import load_split_data
from chemlm_engine.library import predict_library, predict_library_ray
from chemlm_engine.methods.influence import (TransformerInfluence, last_layer_inverse, mean_grad,
                                             score_molecules, score_molecules_sharded)
from chemlm_engine.model import RegressionModel


def library(n: int, work: Path) -> Path:
    """``n`` SMILES: Lipophilicity repeated (the model's cost does not depend on novelty)."""
    data, _ = load_lipophilicity()
    smiles = [data.smiles[i % len(data)] for i in range(n)]
    path = work / "library.csv"
    pd.DataFrame({"id": range(n), "smiles": smiles}).to_csv(path, index=False)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=4000)
    parser.add_argument("--pool", type=int, default=1000, help="pool molecules to score by influence")
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--address", default=None, help="Ray cluster address (default: a local Ray)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/scale.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    rows = []

    def record(task: str, path: str, n: int, seconds: float) -> None:
        rows.append({"task": task, "path": path, "molecules": n, "seconds": seconds, "per_second": n / seconds})
        print(json.dumps(rows[-1]), flush=True)

    source = library(args.molecules, work)
    summary = predict_library(args.model, source, work / "local.parquet")
    record("library prediction", "single process", summary.rows, summary.seconds)

    data = load_split_data(DataSpec())
    influence = TransformerInfluence(RegressionModel.load(args.model, "cpu"), "last_layer")
    train = influence.features(data.train.smiles[:1000], data.train.labels[:1000])
    direction = mean_grad(influence.loss, influence.params, influence.features(data.val.smiles, data.val.labels))
    inverse = last_layer_inverse(influence, train)
    pool = [data.train.smiles[i % len(data.train)] for i in range(args.pool)]
    labels = np.array([data.train.labels[i % len(data.train)] for i in range(args.pool)])
    start = time.perf_counter()
    single = score_molecules(influence, pool, labels, direction, inverse)
    record("influence pool scoring", "single process", args.pool, time.perf_counter() - start)

    for workers in (1, 2):
        import ray

        connect(args.address, num_cpus=None if args.address else workers + 1)  # + 1 CPU for Ray Data's reads
        summary = predict_library_ray(args.model, source, work / f"ray-{workers}", workers=workers)
        record("library prediction", f"ray, {workers} worker(s)", summary.rows, summary.seconds)
        start = time.perf_counter()
        sharded = score_molecules_sharded(influence, pool, labels, direction, inverse, shards=workers, map_fn=ray_map)
        record("influence pool scoring", f"ray, {workers} worker(s)", args.pool, time.perf_counter() - start)
        assert np.allclose(sharded[0], single[0], rtol=1e-5, atol=1e-7), "sharded scores differ"
        ray.shutdown()

    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2))
    print("\n| task | path | molecules | seconds | molecules / s |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['path']} | {r['molecules']} | {r['seconds']:.1f} | {r['per_second']:.0f} |")


if __name__ == "__main__":
    main()
