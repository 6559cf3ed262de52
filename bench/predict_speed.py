"""Prediction speed: 1,000 pasted SMILES through one or more model folders, side by side in one run.

    .venv/bin/python bench/predict_speed.py [--models assets/lipo-regressor OTHER_FOLDER ...] [--n 1000]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/python bench/predict_speed.py   # as on a CPU without AVX512: all four, or matrix products
                                                   # (oneDNN, MKL; int8: FBGEMM) still use AVX512 / VNNI / AMX

For every model and inference precision (fp32, int8 linear layers, and bf16 autocast where this CPU computes it
natively; the row marked default is what `load_predictor` chooses on this CPU): parse,
standardise and predict (an ensemble with its conformal interval; every molecule's descriptors computed afresh),
then the applicability-domain check (the training fingerprints read from the model folder, the nearest training
molecule found); then each member alone on the prepared molecules (the model's own speed, molecules/s per member);
for single models also MC-dropout uncertainty as the Predict page does it.
Prints a table and writes bench/results/predict_speed.json.
"""
from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path

import torch

from chemlm_engine import descriptors
from chemlm_engine.predict import morgan
from chemlm_engine.spec import DEFAULT_REGRESSOR
from chemlm_engine.data import load_lipophilicity
from chemlm_engine.predict import Ensemble, TrainingReference, add_applicability_domain, load_predictor, predict_smiles
from chemlm_engine.inference import (cpu_has_native_bf16, cpu_kind, predict_values, prediction_precision,
                                    resolve_precision)


def matmul_gflops(dtype: torch.dtype, reps: int = 20) -> float:
    """A 2,048 x 768 by 768 x 768 matrix product's speed: shows which kernels matrix products really use (oneDNN and
    MKL ignore ATEN_CPU_CAPABILITY; bf16 near 2 GFLOP/s means it is emulated). ``torch.qint8``: the same product
    through a dynamically quantised linear layer, as int8 prediction runs it (FBGEMM: above ~2x fp32 means VNNI)."""
    a = torch.randn(2048, 768, dtype=torch.float32 if dtype == torch.qint8 else dtype)
    if dtype == torch.qint8:
        linear = torch.nn.Linear(768, 768, bias=False)
        product = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(linear), {torch.nn.Linear}, dtype=dtype)
    else:
        b = torch.randn(768, 768, dtype=dtype)

        def product(x: torch.Tensor) -> torch.Tensor:
            return x @ b
    with torch.no_grad():
        product(a)
        start = time.perf_counter()
        for _ in range(reps):
            product(a)
    return 2 * 2048 * 768 * 768 * reps / (time.perf_counter() - start) / 1e9


def cpu_model() -> str:
    """The CPU's name as /proc/cpuinfo gives it ("AMD EPYC ...", "Intel(R) Xeon(R) ...")."""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def measure(folder: str, smiles: list[str], precision: str) -> dict:
    cpu = torch.device("cpu")
    predictor = load_predictor(folder, "cpu")
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    for member in members:
        member.inference_precision = precision
    predict_smiles(predictor, smiles[:32])  # warm-up
    gc.freeze()  # as the CLI's predict does once its imports are done
    TrainingReference.load(folder)  # writes the fingerprint cache if the folder has none yet
    descriptors._CACHE.clear()  # every row pays for its own descriptors and fingerprints, as a fresh request would
    morgan._CACHE.clear()
    start = time.perf_counter()
    frame = predict_smiles(predictor, smiles)
    predicted = time.perf_counter()
    add_applicability_domain(frame, TrainingReference.load(folder))
    done = time.perf_counter()
    prepared = frame["canonical_smiles"].dropna().tolist()
    member_s = []
    for member in members:  # descriptors are cached by now: the model alone
        started = time.perf_counter()
        predict_values(member, prepared)
        member_s.append(time.perf_counter() - started)
    row = {"model": Path(folder).name, "kind": f"ensemble of {len(members)}"
           if isinstance(predictor, Ensemble) else "single", "precision": precision, "n": len(smiles),
           "threads": torch.get_num_threads(), "predict_s": predicted - start, "similarity_s": done - predicted,
           "total_s": done - start, "molecules_per_s": len(smiles) / (done - start),
           "member_molecules_per_s": len(prepared) / (sum(member_s) / len(member_s)),
           "bare_forward_s": sum(member_s), "total_over_bare": (done - start) / sum(member_s),
           "default": precision == resolve_precision(prediction_precision(cpu), cpu),
           "intervals": "interval_low" in frame}
    if not isinstance(predictor, Ensemble):
        started = time.perf_counter()
        predict_smiles(predictor, smiles, mc_passes=20)
        row["predict_with_mc_dropout_s"] = time.perf_counter() - started
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", nargs="+", default=[DEFAULT_REGRESSOR])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/predict_speed.json"))
    args = parser.parse_args()

    lipo, _ = load_lipophilicity()
    smiles = lipo.smiles[-args.n:]
    precisions = ["fp32", "int8"] + (["bf16"] if cpu_has_native_bf16() else [])
    cpu = f"{cpu_model()}, {torch.backends.cpu.get_cpu_capability()} kernels, {cpu_kind()}"
    print(f"CPU: {cpu}; matrix products fp32 "
          f"{matmul_gflops(torch.float32):.0f} GFLOP/s, bf16 {matmul_gflops(torch.bfloat16):.0f} GFLOP/s, "
          f"int8 {matmul_gflops(torch.qint8):.0f} GOP/s")
    rows = [{**measure(folder, smiles, precision), "cpu": cpu} for folder in args.models for precision in precisions]
    print("| model | kind | precision | molecules | threads | predict (s) | nearest neighbour (s) | total (s) "
          "| molecules / s | model alone, per member (molecules / s) | total ÷ bare forward "
          "| + MC dropout, T=20 (s) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        mc = row.get("predict_with_mc_dropout_s")
        print(f"| {row['model']} | {row['kind']} | {row['precision']}{' (default)' if row['default'] else ''} "
              f"| {row['n']} | {row['threads']} | {row['predict_s']:.2f} | {row['similarity_s']:.2f} "
              f"| {row['total_s']:.2f} | {row['molecules_per_s']:.0f} | {row['member_molecules_per_s']:.0f} "
              f"| {row['total_over_bare']:.2f}x | {'–' if mc is None else f'{mc:.2f}'} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
