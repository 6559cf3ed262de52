"""Can the descriptors hide behind the forward passes? The one lever of issue #25's "total within 1.5x of the bare
forward passes" left once descriptors cost as much as the networks (native bf16: ~5 s of RDKit for 1,000 molecules
against ~5 s of five members' forward passes, on 2 cores).

    .venv/bin/python bench/descriptor_overlap.py [--model assets/lipo-regressor] [--n 1000]

The last ``--n`` Lipophilicity SMILES, prepared once. For each way of running the networks, in a fresh process
(OpenMP reads its settings when it starts): the members' forward passes alone (descriptors cached), the
descriptors alone in one process, then both at once (a spawned process computes every descriptor while the
members run). Variants: PyTorch's default threads and OpenMP settings (as prediction runs today, descriptors
first on every core, then the networks); ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of spinning,
so a second process can use the idle time); and one torch thread (the other core left to the descriptors).
"overlapped ÷ today's floor" sets the time of both at once against the default's forward passes alone, the floor
issue #25 measures against. Prints a table; writes bench/results/descriptor_overlap.json (resumes from it).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

VARIANTS = {"default": {}, "passive OpenMP": {"OMP_WAIT_POLICY": "PASSIVE"}, "one torch thread": {"THREADS": "1"}}


def _describe(smiles: list[str], started: float, out) -> None:
    from chemlm_engine import descriptors

    descriptors._many(smiles)
    out.put(time.perf_counter() - started)


def child(model: str, n: int) -> dict:
    import torch

    from chemlm_engine import descriptors
    from chemlm_engine.data import load_lipophilicity
    from chemlm_engine.inference import predict_values
    from chemlm_engine.predict import load_predictor, predict_smiles

    if os.environ.get("THREADS"):
        torch.set_num_threads(int(os.environ["THREADS"]))
    lipo, _ = load_lipophilicity()
    predictor = load_predictor(model, "cpu")
    prepared = predict_smiles(predictor, lipo.smiles[-n:])["canonical_smiles"].dropna().tolist()

    def forward() -> float:
        started = time.perf_counter()
        for member in predictor.members:
            predict_values(member, prepared)
        return time.perf_counter() - started

    alone = min(forward() for _ in range(2))
    started = time.perf_counter()
    descriptors._many(prepared)
    describe_alone = time.perf_counter() - started
    spawn = multiprocessing.get_context("spawn")
    finished = spawn.Queue()
    helper = spawn.Process(target=_describe, args=(prepared, time.perf_counter(), finished))
    helper.start()
    time.sleep(2.0)  # the helper has imported RDKit and started describing
    started = time.perf_counter()
    beside = forward()
    helper_s = finished.get()
    helper.join()
    both = max(time.perf_counter() - started, helper_s - 2.0)
    return {"threads": torch.get_num_threads(), "forward_alone_s": alone, "descriptors_alone_s": describe_alone,
            "forward_beside_descriptors_s": beside, "both_s": both}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="assets/lipo-regressor")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/descriptor_overlap.json"))
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.model, args.n)))
        return
    rows = json.loads(args.output.read_text()) if args.output.exists() else []
    for name, env in VARIANTS.items():
        if any(row["variant"] == name for row in rows):
            continue
        done = subprocess.run([sys.executable, __file__, "--child", "--model", args.model, "--n", str(args.n)],
                              env={**os.environ, **env}, capture_output=True, text=True, check=True)
        rows.append({"variant": name, "n": args.n, **json.loads(done.stdout.strip().splitlines()[-1])})
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(rows, indent=2))
    floor = next(row["forward_alone_s"] for row in rows if row["variant"] == "default")
    print("| variant | threads | forward alone (s) | descriptors alone, one process (s) | forward beside them (s) "
          "| both at once (s) | both ÷ today's floor |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['variant']} | {row['threads']} | {row['forward_alone_s']:.2f} "
              f"| {row['descriptors_alone_s']:.2f} | {row['forward_beside_descriptors_s']:.2f} "
              f"| {row['both_s']:.2f} | {row['both_s'] / floor:.2f}x |")


if __name__ == "__main__":
    main()
