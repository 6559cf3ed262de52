"""Does a molecule's int8 prediction depend on the molecules it is batched with? The default model's int8 path (a
CPU without native bf16: run it under the four AVX2 variables of bench/predict_speed.py) with each linear layer's
input range pinned (today's `quantise.int8_twin`) against PyTorch's plain dynamic quantisation (a scale per batch,
as before): 100 Lipophilicity molecules predicted alone in groups of 7, and beside 400 and 300 others; the largest
change of a molecule's prediction between these files and how many change in the second decimal. Then one member's
forward passes over 1,000 molecules in fp32 and both int8 variants (best of three, molecules / s).

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/python bench/int8_determinism.py
"""
from __future__ import annotations

import copy
import time
import warnings

import numpy as np
import torch
from torch import nn

from chemlm_engine import inference, quantise
from chemlm_engine.data import load_lipophilicity
from chemlm_engine.predict import load_predictor, predict_smiles
from chemlm_engine.spec import DEFAULT_REGRESSOR


def plain_dynamic(model):
    twin = copy.deepcopy(model).eval()
    twin.inference_precision = "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(twin.backbone, {nn.Linear}, dtype=torch.qint8, inplace=True)
    return twin


def contexts(smiles: list[str]) -> tuple[float, int]:
    model = load_predictor(DEFAULT_REGRESSOR, "cpu")
    for member in model.members:
        member.inference_precision = "int8"
    probe = smiles[:100]
    runs = [np.concatenate([predict_smiles(model, probe[i:i + 7])["prediction"].to_numpy()
                            for i in range(0, 100, 7)]),
            predict_smiles(model, probe + smiles[1000:1400])["prediction"].to_numpy()[:100],
            predict_smiles(model, smiles[2000:2300] + probe)["prediction"].to_numpy()[300:]]
    largest = max(float(np.abs(run - runs[0]).max()) for run in runs[1:])
    moved = sum(int((np.round(run, 2) != np.round(runs[0], 2)).sum()) for run in runs[1:])
    return largest, moved


def member_speed(smiles: list[str]) -> dict[str, float]:
    member = load_predictor(DEFAULT_REGRESSOR, "cpu").members[0]
    fp32 = copy.deepcopy(member).eval()
    fp32.inference_precision = "fp32"
    variants = {"fp32": fp32, "int8, a scale per batch": plain_dynamic(member),
                "int8, pinned ranges": quantise.int8_twin(member)}
    features = member.molecule_features(smiles)
    encoded = inference.encode_smiles(member.tokenizer, smiles, member.max_tokens)
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(3):
        for name, model in variants.items():
            start = time.perf_counter()
            inference.predict_encoded(model, encoded, features=features)
            best[name] = min(best[name], time.perf_counter() - start)
    return {name: len(smiles) / seconds for name, seconds in best.items()}


def main() -> None:
    smiles = load_lipophilicity()[0].smiles
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()} kernels")
    print("| int8 | largest change of a molecule between files | changes in the 2nd decimal (of 200) |\n|---|---|---|")
    pinned = contexts(smiles)
    inference.int8_twin = plain_dynamic  # what runnable() built before
    try:
        dynamic = contexts(smiles)
    finally:
        inference.int8_twin = quantise.int8_twin
    for name, (largest, moved) in (("a scale per batch", dynamic), ("pinned ranges", pinned)):
        print(f"| {name} | {largest:.4f} | {moved} |")
    print("\n| one member, 1,000 molecules | molecules / s |\n|---|---|")
    for name, rate in member_speed(smiles[-1000:]).items():
        print(f"| {name} | {rate:.0f} |")


if __name__ == "__main__":
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main()
