"""Seconds per molecule against molecule size: is the cost of one prediction linear in the molecule?

    .venv/bin/python bench/molecule_size.py [--model assets/lipo-regressor] [--max-heavy-atoms N]

Alkane chains, cyclic peptides (alanine / phenylalanine, a macrocycle) and linear peptides from 10 to 5,000
heavy atoms, one at a time through the whole prediction (parse, standardise, descriptors afresh, tokens, every
member, interval) with the shipped model, best of 3; also the descriptors alone. Prints the seconds, the log-log slope
between neighbouring sizes (1 = linear) and the CPU kind; writes bench/results/molecule_size.json.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

from rdkit import Chem

from chemlm_engine import descriptors
from chemlm_engine.predict import morgan
from chemlm_engine.spec import DEFAULT_REGRESSOR
from chemlm_engine.predict import load_predictor, predict_smiles
from chemlm_engine.inference import cpu_kind

_ALA, _PHE = "N[C@@H](C)C(=O)", "N[C@@H](Cc1ccccc1)C(=O)"


def molecules() -> list[tuple[str, str]]:
    chains = [("chain", "C" * n) for n in (10, 30, 100, 300, 1000, 5000)]
    linear = [("peptide", "".join([_ALA, _PHE] * k) + "O") for k in (1, 3, 10, 30)]
    cyclic = [("macrocycle", "N1" + "".join([_ALA, _PHE] * k)[1:-4] + "C1=O") for k in (2, 6, 12)]
    return chains + linear + cyclic


def seconds(fn, repeats: int = 3) -> float:
    """Best of ``repeats`` (every repeat computes the descriptors afresh)."""
    best = math.inf
    for _ in range(repeats):
        descriptors._CACHE.clear()
        morgan._CACHE.clear()
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--max-heavy-atoms", type=int, default=None,
                        help="leave out larger molecules (for code that hangs on them)")
    parser.add_argument("--output", type=Path, default=Path("bench/results/molecule_size.json"))
    args = parser.parse_args()
    predictor = load_predictor(args.model, "cpu")
    predict_smiles(predictor, ["CCO"])  # warm-up
    cpu = cpu_kind()
    rows = []
    for kind, smiles in molecules():
        mol = Chem.MolFromSmiles(smiles)
        assert mol is not None, smiles
        if args.max_heavy_atoms and mol.GetNumHeavyAtoms() > args.max_heavy_atoms:
            continue
        describe_s = seconds(lambda: descriptors.describe([smiles]))
        frame = None

        def run() -> None:
            nonlocal frame
            frame = predict_smiles(predictor, [smiles])

        rows.append({"kind": kind, "heavy_atoms": mol.GetNumHeavyAtoms(), "characters": len(smiles),
                     "descriptors_s": describe_s, "predict_s": seconds(run), "error": frame.loc[0, "error"],
                     "warnings": frame.loc[0, "warnings"], "cpu": cpu})
    print(f"CPU: {cpu}; model {args.model}")
    print("| molecule | heavy atoms | descriptors (s) | whole prediction (s) | slope vs previous | warning |")
    print("|---|---|---|---|---|---|")
    previous: dict[str, dict] = {}
    for row in rows:
        before = previous.get(row["kind"])
        slope = (math.log(row["predict_s"] / before["predict_s"]) / math.log(row["heavy_atoms"] / before["heavy_atoms"])
                 if before else None)
        previous[row["kind"]] = row
        note = "–" if not isinstance(row["warnings"], str) else row["warnings"].split(":")[0]
        print(f"| {row['kind']} | {row['heavy_atoms']} | {row['descriptors_s']:.3f} | {row['predict_s']:.3f} "
              f"| {'–' if slope is None else f'{slope:.2f}'} | {note} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2, default=str))


if __name__ == "__main__":
    main()
