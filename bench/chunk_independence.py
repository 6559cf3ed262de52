"""Does a molecule's prediction depend on the molecules predicted with it? Lipophilicity's 4,200 molecules through the
default model as one request and as three (rows 1-1,400, 1,401-2,800, the rest: other neighbours in every length-sorted
batch, as a streamed library's chunks have), in the precision this CPU predicts in; how many rows differ, and by how
much. Then the members' forward passes on 1,000 molecules with each molecule padded to its own width (today: its
tokens rounded up to 8, a batch holds one width) and padded to its batch's longest (before), alternating, three rounds.

    .venv/bin/python bench/chunk_independence.py [--output bench/results/chunk_independence.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from chemlm_engine import inference
from chemlm_engine.data import load_lipophilicity
from chemlm_engine.inference import cpu_kind, predict_values
from chemlm_engine.predict import load_predictor, predict_smiles
from chemlm_engine.spec import DEFAULT_REGRESSOR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output", type=Path, default=Path("bench/results/chunk_independence.json"))
    output = parser.parse_args().output
    model = load_predictor(DEFAULT_REGRESSOR, "cpu")
    smiles = list(load_lipophilicity()[0].smiles)
    whole = predict_smiles(model, smiles)["prediction"].to_numpy()
    parts = np.concatenate([predict_smiles(model, smiles[start:start + 1400])["prediction"].to_numpy()
                            for start in range(0, len(smiles), 1400)])
    moved = np.abs(whole - parts)
    prepared = predict_smiles(model, smiles[-1000:])["canonical_smiles"].tolist()  # descriptors cached from here on
    own_width = inference.pad_multiple
    seconds: dict[str, list[float]] = {"own width": [], "batch's longest": []}
    for _ in range(3):
        for label, multiple in (("own width", own_width), ("batch's longest", lambda *_: 1)):
            inference.pad_multiple = multiple
            start = time.perf_counter()
            for member in model.members:
                predict_values(member, prepared)
            seconds[label].append(time.perf_counter() - start)
    inference.pad_multiple = own_width
    result = {"cpu": cpu_kind(), "rows": len(smiles), "rows_moved_over_1e-4": int((moved > 1e-4).sum()),
              "rows_moved_over_1e-5": int((moved > 1e-5).sum()), "largest_move": float(moved.max()),
              "forward_s": seconds}
    print(f"CPU: {cpu_kind()}; {len(smiles):,} molecules as one request and as three: "
          f"{result['rows_moved_over_1e-4']} rows differ by over 1e-4 ({result['rows_moved_over_1e-5']} over 1e-5), "
          f"largest {moved.max():.2e}")
    for label, values in seconds.items():
        print(f"members' forward passes, 1,000 molecules, padded to {label}: "
              + ", ".join(f"{v:.2f}" for v in values) + " s")
    output.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
