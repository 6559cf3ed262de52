"""The pretraining corpus of `bench/chemlm_small_gpu.sh`: the drug-like corpus (`chemlm corpus`: MOSES, BRICS
recombinations to drug size and beyond, charge states at pH 7.4) plus MOSES molecules it does not hold, shuffled,
in one CSV small enough to travel to a lent GPU. Lipophilicity molecules are left out by `pretrain` itself.

    .venv/bin/python -m chemlm_engine corpus --size 30000 --workers 2 --output /tmp/drug_corpus_30k.csv
    .venv/bin/python bench/small_corpus.py --drug /tmp/drug_corpus_30k.csv --moses 100000 --output gpu_carry/corpus.csv
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from chemlm_engine.methods.pretrain.corpus import load_moses_smiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drug", type=Path, required=True)
    parser.add_argument("--moses", type=int, default=100_000, help="MOSES molecules added (seeded draw)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    drug = pd.read_csv(args.drug)["smiles"]
    moses = pd.Series(load_moses_smiles()).sample(frac=1.0, random_state=args.seed)
    moses = moses[~moses.isin(set(drug))].head(args.moses)
    corpus = pd.concat([drug, moses], ignore_index=True).sample(frac=1.0, random_state=args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    corpus.to_frame("smiles").to_csv(args.output, index=False)
    print(f"{len(corpus):,} molecules ({len(drug):,} drug-like, {len(moses):,} MOSES) -> {args.output}")


if __name__ == "__main__":
    main()
