"""Would the head's descriptors be cheap enough without some of them? By default without the 46 whose cost grows
faster than the molecule (`descriptors.SIZE_LIMITED`: BCUT2D, BertzCT, AvgIpc, EState, SPS, Chi2-4, Kappa2-3, BalabanJ,
Phi); ``--without`` names others by the start of their names (``--without BCUT2D BertzCT SPS AvgIpc BalabanJ``: 12
descriptors, ~1.75 of the 4.9 core-s per 1,000 molecules, bench/predict_steps.py). Asked for issue #25's end-to-end
≤ 1.5× the forward passes with
native bf16 / VNNI. Gradient-boosted trees (the shipped `TREE_PARAMS` and rounds, RDKit descriptors + Morgan counts)
fitted on the training part and scored on the validation part of seeds 0-2 of both splits, with all descriptors and
without those. Prints validation R² per split and seed (no test split).

    .venv/bin/python bench/descriptor_subset.py [--without MARK ...]
"""
from __future__ import annotations

import argparse

import lightgbm
import numpy as np
from sklearn.metrics import r2_score

from chemlm_engine import descriptors
from chemlm_engine.data import load_lipophilicity, make_split
from chemlm_engine.predict import trees
from chemlm_engine.predict.morgan import BITS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--without", nargs="+", help="descriptors to leave out, by the start of their names")
    marks = parser.parse_args().without
    dropped = [name for name in descriptors.DESCRIPTOR_NAMES
               if (name.startswith(tuple(marks)) if marks else name in descriptors.SIZE_LIMITED)]
    data = load_lipophilicity()[0]
    linear = np.array([name not in dropped for name in descriptors.DESCRIPTOR_NAMES] + [True] * BITS)
    print(f"| split | seed | validation R², all descriptors | without the {len(dropped)} |\n|---|---|---|---|")
    for kind in ("random", "scaffold"):
        for seed in (0, 1, 2):
            split = make_split(data, kind, seed=seed)
            train, val = data.subset(split.train), data.subset(split.val)
            every = descriptors.DESCRIPTOR_NAMES
            x_train, x_val = trees.tree_features(train.smiles, every), trees.tree_features(val.smiles, every)
            scores = []
            for columns in (slice(None), linear):
                params = {**trees.TREE_PARAMS, "seed": seed, "num_threads": 2}
                booster = lightgbm.train(params, lightgbm.Dataset(x_train[:, columns], train.labels),
                                         num_boost_round=trees.ROUNDS)
                scores.append(r2_score(val.labels, booster.predict(x_val[:, columns])))
            print(f"| {kind} | {seed} | {scores[0]:.4f} | {scores[1]:.4f} |", flush=True)


if __name__ == "__main__":
    main()
