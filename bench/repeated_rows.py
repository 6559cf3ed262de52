"""What repeated rows cost: the last N Lipophilicity SMILES predicted once each, then each named by R rows (a merged
library, salts of one parent), with the default model, every descriptor computed afresh. A molecule named by
several rows is predicted once, so the repeats should cost their standardisation only. Each case runs in a fresh
process; prints one line per case.

    .venv/bin/python bench/repeated_rows.py [--n 1000] [--repeat 2]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time


def _one(n: int, repeat: int) -> None:
    from chemlm_engine.data import load_lipophilicity
    from chemlm_engine.predict import predict_smiles
    from chemlm_engine.predict.ensemble import load_predictor
    from chemlm_engine.spec import DEFAULT_REGRESSOR

    smiles = load_lipophilicity()[0].smiles[-n:]
    model = load_predictor(DEFAULT_REGRESSOR)
    predict_smiles(model, smiles[:32] + ["C" * 40])  # warm-up on other molecules (descriptors are cached)
    rows = [s for s in smiles for _ in range(repeat)]
    start = time.perf_counter()
    frame = predict_smiles(model, rows)
    print(f"{len(frame):,} rows naming {n:,} molecules {repeat}x each: {time.perf_counter() - start:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--case", type=int, help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args()
    if args.case is not None:
        _one(args.n, args.case)
        return
    for repeat in (1, args.repeat):
        subprocess.run([sys.executable, __file__, "--n", str(args.n), "--case", str(repeat)], check=True)


if __name__ == "__main__":
    main()
