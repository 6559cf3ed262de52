"""The members' forward passes, the one cost of the default prediction that descriptors do not set: how close to
this CPU's limit they already run, and what the runtimes issue #25 names as levers do to them, side by side.

    .venv/bin/python bench/forward_levers.py [--model assets/lipo-regressor] [--n 1000]
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 \
        .venv/bin/python bench/forward_levers.py     # as on a CPU without native bf16 (see predict_speed.py)

The last ``--n`` Lipophilicity SMILES, prepared and described once (descriptors cached: only the networks are timed),
through every member in length-sorted batches of 32 as prediction runs them, one variant after another:
eager PyTorch in fp32 and in int8 (dynamically quantised linear layers: the default on such a CPU) and bf16 autocast
where native; the five members stacked into one batched call (``torch.func.stack_module_state`` + ``vmap``);
``torch.compile`` (inductor, dynamic shapes; its compile time reported apart); ONNX Runtime in fp32 and with
int8 weights (``quantize_dynamic``), when ``onnxruntime`` is installed (not a dependency of the app:
``.venv/bin/pip install onnxruntime onnx onnxscript``; without it those rows say so).
Every variant's predictions are compared with eager fp32's. The rate of useful arithmetic (the tokens of the padded
batches times the encoder's multiply-adds) is set against this CPU's measured matrix-product speed: the roofline.
Prints a table and writes bench/results/forward_levers.json.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from chemlm_engine.data import load_lipophilicity
from chemlm_engine.inference import PREDICT_BATCH, autocast, collate, cpu_has_native_bf16, encode_smiles, runnable
from chemlm_engine.predict import Ensemble, load_predictor, predict_smiles
from chemlm_engine.spec import DEFAULT_REGRESSOR

from predict_speed import matmul_gflops

Batch = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], np.ndarray]  # ids, mask, features per member, rows


def batches(members: list, smiles: list[str]) -> list[Batch]:
    encoded = encode_smiles(members[0].tokenizer, smiles, members[0].max_tokens)
    features = [m.molecule_features(smiles) for m in members]
    order = np.argsort([len(e) for e in encoded], kind="stable")
    size, pad = PREDICT_BATCH["cpu"], members[0].tokenizer.pad_token_id
    out = []
    for start in range(0, len(order), size):
        idx = order[start:start + size]
        ids, mask = collate([encoded[i] for i in idx], pad, torch.device("cpu"))
        out.append((ids, mask, [f[idx] for f in features], idx))
    return out


def encoder_gflop(config, prepared: list[Batch]) -> float:
    """Multiply-adds x 2 of the encoder's matrix products over the padded batches (the head and embeddings are
    negligible beside them)."""
    h, inner, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    flop = 0
    for ids, *_ in prepared:
        rows, width = ids.shape
        flop += layers * (2 * rows * width * (4 * h * h + 2 * h * inner) + 4 * rows * width * width * h)
    return flop / 1e9


def eager(members: list, precision: str) -> Callable[[Batch], list[torch.Tensor]]:
    runs = []
    for member in members:
        member = copy.copy(member)
        member.inference_precision = precision
        runs.append(runnable(member))

    def run(batch: Batch) -> list[torch.Tensor]:
        ids, mask, features, _ = batch
        with autocast(torch.device("cpu"), precision):
            return [m(ids, mask, f).float() for m, f in zip(runs, features)]
    return run


def stacked(members: list) -> Callable[[Batch], list[torch.Tensor]]:
    params, buffers = torch.func.stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")

    def one(p, b, ids, mask, features):
        return torch.func.functional_call(base, (p, b), (ids, mask, features))

    def run(batch: Batch) -> list[torch.Tensor]:
        ids, mask, features, _ = batch
        return list(torch.vmap(one, in_dims=(0, 0, None, None, 0))(params, buffers, ids, mask, torch.stack(features)))
    return run


def compiled(members: list) -> Callable[[Batch], list[torch.Tensor]]:
    runs = [torch.compile(m, dynamic=True) for m in members]

    def run(batch: Batch) -> list[torch.Tensor]:
        ids, mask, features, _ = batch
        return [m(ids, mask, f) for m, f in zip(runs, features)]
    return run


def onnx_runtime(members: list, int8: bool, folder: Path) -> Callable[[Batch], list[torch.Tensor]]:
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    sessions = []
    for k, member in enumerate(members):
        path = folder / f"member-{k}.onnx"
        if not path.exists():
            ids = torch.ones(2, 9, dtype=torch.long)
            extra = member.head[0].in_features - member.backbone.config.hidden_size  # the descriptors' width
            example = (ids, torch.ones_like(ids), torch.zeros(2, extra))
            torch.onnx.export(member, example, path, input_names=["ids", "mask", "features"], output_names=["y"],
                              dynamic_axes={"ids": {0: "b", 1: "t"}, "mask": {0: "b", 1: "t"}, "features": {0: "b"}},
                              dynamo=False)
        if int8:
            quantised = folder / f"member-{k}.int8.onnx"
            quantize_dynamic(path, quantised, weight_type=QuantType.QInt8)
            path = quantised
        sessions.append(ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]))

    def run(batch: Batch) -> list[torch.Tensor]:
        ids, mask, features, _ = batch
        return [torch.from_numpy(s.run(None, {"ids": ids.numpy(), "mask": mask.numpy(), "features": f.numpy()})[0])
                for s, f in zip(sessions, features)]
    return run


def timed(run: Callable[[Batch], list[torch.Tensor]], prepared: list[Batch], members: int,
          n: int) -> tuple[float, float, np.ndarray]:
    """(seconds of the first pass over everything (warm-up, compiling), seconds of the second, predictions as
    ``members`` x ``n``)."""
    times, out = [], np.zeros((members, n))
    for _ in range(2):
        out = np.zeros((members, n))
        start = time.perf_counter()
        with torch.no_grad():
            for batch in prepared:
                for k, y in enumerate(run(batch)):
                    out[k, batch[3]] = y.reshape(-1).float().numpy()
        times.append(time.perf_counter() - start)
    return times[0], times[1], out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=DEFAULT_REGRESSOR)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--output", type=Path, default=Path("bench/results/forward_levers.json"))
    args = parser.parse_args()

    lipo, _ = load_lipophilicity()
    predictor = load_predictor(args.model, "cpu")
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    for member in members:
        member.eval()
    prepared_smiles = predict_smiles(predictor, lipo.smiles[-args.n:])["canonical_smiles"].dropna().tolist()
    prepared = batches(members, prepared_smiles)
    gflop = encoder_gflop(members[0].backbone.config, prepared) * len(members)
    peak = {"fp32": matmul_gflops(torch.float32), "int8": matmul_gflops(torch.qint8),
            "bf16": matmul_gflops(torch.bfloat16)}
    kind = f"{torch.backends.cpu.get_cpu_capability()} kernels, {'native' if cpu_has_native_bf16() else 'no'} bf16"
    print(f"CPU: {kind}; matrix products fp32 {peak['fp32']:.0f}, bf16 {peak['bf16']:.0f} GFLOP/s, "
          f"int8 {peak['int8']:.0f} GOP/s; {len(prepared_smiles)} molecules, {gflop:.0f} GFLOP in "
          f"{len(members)} members")
    scratch = Path(tempfile.mkdtemp(prefix="forward-levers-"))
    variants: list[tuple[str, str, Callable[[], Callable]]] = [
        ("eager", "fp32", lambda: eager(members, "fp32")), ("eager", "int8", lambda: eager(members, "int8")),
        *([("eager", "bf16", lambda: eager(members, "bf16"))] if cpu_has_native_bf16() else []),
        ("stacked (vmap)", "fp32", lambda: stacked(members)),
        ("torch.compile", "fp32", lambda: compiled(members)),
        ("ONNX Runtime", "fp32", lambda: onnx_runtime(members, False, scratch)),
        ("ONNX Runtime", "int8", lambda: onnx_runtime(members, True, scratch))]
    rows, reference = [], None
    for runtime, precision, make in variants:
        try:
            started = time.perf_counter()
            run = make()
            setup = time.perf_counter() - started
            first, second, out = timed(run, prepared, len(members), len(prepared_smiles))
        except Exception as exc:  # noqa: BLE001 - a lever that does not run is a result too
            rows.append({"runtime": runtime, "precision": precision, "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(f"{runtime} {precision}: {rows[-1]['error']}")
            continue
        reference = out if reference is None else reference
        rows.append({"runtime": runtime, "precision": precision, "setup_s": setup, "first_pass_s": first,
                     "seconds": second, "member_molecules_per_s": len(prepared_smiles) * len(members) / second,
                     "gflop_per_s": gflop / second, "of_peak": gflop / second / peak[precision],
                     "max_abs_diff_vs_fp32": float(np.nanmax(np.abs(out - reference), initial=0.0)),
                     "nan_outputs": int(np.isnan(out).sum()), "cpu": kind})
        print(json.dumps(rows[-1]))
    print(f"| runtime | precision | {len(members)} members (s) | one member (molecules / s) | useful GFLOP/s "
          "| of the CPU's matrix-product speed | setup + first pass (s) | max |Δ| vs eager fp32 | NaN outputs |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "error" in r:
            print(f"| {r['runtime']} | {r['precision']} | did not run: {r['error'][:80]} | | | | | | |")
            continue
        print(f"| {r['runtime']} | {r['precision']} | {r['seconds']:.2f} | {r['member_molecules_per_s']:.0f} "
              f"| {r['gflop_per_s']:.0f} | {r['of_peak']:.0%} | {r['setup_s'] + r['first_pass_s']:.1f} "
              f"| {r['max_abs_diff_vs_fp32']:.4f} | {r['nan_outputs']} |")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"cpu": kind, "peak": peak, "gflop": gflop, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
