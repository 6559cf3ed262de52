"""Where the default prediction path spends its time, step by step, and what each RDKit descriptor costs: the
numbers behind issue #25's "whole path within 1.5x of the members' forward passes".

    .venv/bin/python bench/predict_steps.py [--model assets/lipo-regressor] [--n 1000] [--repeats 2]

The last ``--n`` Lipophilicity SMILES through ``predict_smiles`` and ``add_applicability_domain`` as the CLI runs them
(descriptor and fingerprint caches cleared each repeat), each step timed where it is called: standardisation,
warnings, enantiomers, tokenisation, descriptors (shared with the helper processes), the members' forward passes (head
included), the trees, the nearest-neighbour search. Then one member's forward pass with two torch threads and with
one, and each descriptor function alone in this process on the same molecules (the parse not counted). Prints both
and writes bench/results/predict_steps.json.
"""
from __future__ import annotations

import argparse
import gc
import collections
import functools
import json
import time
from pathlib import Path

import torch
from rdkit import Chem, rdBase

import chemlm_engine.descriptors as descriptors
import chemlm_engine.predict.morgan as morgan
import chemlm_engine.inference as inference
import chemlm_engine.predict.batch as batch
import chemlm_engine.predict.ensemble as ensemble
from chemlm_engine.data import load_lipophilicity
from chemlm_engine.inference import cpu_kind, predict_values
from chemlm_engine.predict import TrainingReference, add_applicability_domain, load_predictor, predict_smiles
from chemlm_engine.predict.trees import Trees
from chemlm_engine.spec import DEFAULT_REGRESSOR

STEPS: collections.Counter = collections.Counter()


def timed(owner, name: str, step: str) -> None:
    """Replace ``owner.name`` by itself, timed into STEPS[step]."""
    inner = getattr(owner, name)

    @functools.wraps(inner)
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return inner(*args, **kwargs)
        finally:
            STEPS[step] += time.perf_counter() - start
    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("bench/results/predict_steps.json"))
    args = parser.parse_args()
    for owner, name, step in ((batch, "prepare_all", "standardisation"), (batch, "molecule_warnings", "warnings"),
                              (batch, "one_enantiomer", "enantiomers"), (ensemble, "encode_spellings", "tokens"),
                              (descriptors, "_compute", "descriptors"), (inference, "predict_encoded", "forward"),
                              (Trees, "predict", "trees")):
        timed(owner, name, step)
    smiles = load_lipophilicity()[0].smiles[-args.n:]
    predictor = load_predictor(args.model, "cpu")
    reference = TrainingReference.load(args.model)
    gc.freeze()  # as the CLI's predict does once its imports are done
    predict_smiles(predictor, smiles[:32])  # warm-up
    rounds = []
    for _ in range(args.repeats):
        STEPS.clear()
        descriptors._CACHE.clear()
        morgan._CACHE.clear()
        start = time.perf_counter()
        frame = predict_smiles(predictor, smiles)
        predicted = time.perf_counter()
        add_applicability_domain(frame, reference)
        rounds.append({"total_s": time.perf_counter() - start, "nearest_s": time.perf_counter() - predicted,
                       **{f"{k}_s": v for k, v in STEPS.items()}})
    member = predictor.members[0] if hasattr(predictor, "members") else predictor
    threads = {}
    for count in (torch.get_num_threads(), 1):
        torch.set_num_threads(count)
        start = time.perf_counter()
        predict_values(member, frame["canonical_smiles"].dropna().tolist())  # descriptors cached by now
        threads[count] = time.perf_counter() - start
    mols = [Chem.MolFromSmiles(s) for s in frame["canonical_smiles"].dropna()]
    costs: collections.Counter = collections.Counter()
    with rdBase.BlockLogs():
        for mol in mols:
            for name, fn in descriptors._FUNCTIONS:
                start = time.perf_counter()
                fn(mol)
                costs[name] += time.perf_counter() - start
    print(f"CPU: {cpu_kind()}; {args.n} molecules, {args.model}")
    for i, row in enumerate(rounds, 1):
        print(f"round {i}: " + ", ".join(f"{k[:-2]} {v:.2f} s" for k, v in row.items())
              + f"; total / forward {row['total_s'] / row['forward_s']:.2f}x")
    print("one member's forward pass: " + ", ".join(f"{k} thread{'s' * (k > 1)} {v:.2f} s" for k, v in threads.items()))
    print(f"descriptors in one process: {sum(costs.values()):.2f} s; the costliest: "
          + ", ".join(f"{k} {v:.2f}" for k, v in costs.most_common(12)))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"cpu": cpu_kind(), "n": args.n, "rounds": rounds, "member_forward_s": threads,
                                       "descriptor_s": dict(costs.most_common())}, indent=2))


if __name__ == "__main__":
    main()
