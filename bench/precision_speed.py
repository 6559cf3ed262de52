"""Training-step speed of the default model in fp32 and with bf16 autocast on this CPU.

    .venv/bin/python bench/precision_speed.py --molecules 640

Prints seconds per pass over the molecules (forward, backward, AdamW step; batch 32; best of
``--repeats``) and writes bench/results/precision_speed.json. bf16 pays only on CPUs with native bf16
(AVX512-BF16 / AMX); ``precision="auto"`` uses it exactly there.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from chemlm_engine.spec import ModelSpec
from chemlm_engine.data import load_lipophilicity
from chemlm_engine.model import RegressionModel
from chemlm_engine.inference import autocast, collate, cpu_has_native_bf16, encode_smiles


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--molecules", type=int, default=640)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=Path("bench/results/precision_speed.json"))
    args = parser.parse_args()

    data, _ = load_lipophilicity()
    model = RegressionModel.from_spec(ModelSpec(), seed=0)
    encoded = encode_smiles(model.tokenizer, data.smiles[:args.molecules], model.max_tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    device = torch.device("cpu")
    results = {"cpu_native_bf16": cpu_has_native_bf16(), "molecules": args.molecules,
               "threads": torch.get_num_threads()}
    for precision in ("fp32", "bf16"):
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            for s in range(0, len(encoded), 32):
                ids, mask = collate(encoded[s:s + 32], model.tokenizer.pad_token_id, device)
                with autocast(device, precision):
                    loss = (model(ids, mask) ** 2).mean()
                loss.backward()
                optimizer.step()
                optimizer.zero_grad()
            times.append(time.perf_counter() - start)
        results[f"{precision}_seconds"] = min(times)
    results["speedup"] = results["fp32_seconds"] / results["bf16_seconds"]
    print(json.dumps(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
