"""Inference shared by training and prediction: precision (bf16 autocast where the hardware computes it, int8
linear layers for prediction where it does not), tokenising, padding, batched prediction with descriptors and
test-time augmentation, MC dropout."""
from __future__ import annotations

import contextlib
import functools
import os
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .model import RegressionModel
from .quantise import int8_twin
from .molecules import randomize_smiles

__all__ = ["PREDICT_BATCH", "PREDICT_TOKENS", "PAD_MULTIPLE", "pad_multiple", "cpu_has_native_bf16",
           "cpu_has_amx", "cpu_kind", "resolve_precision", "autocast",
           "prediction_precision", "runnable",
           "encode_smiles", "encode_spellings", "collate", "prediction_batches", "predict_encoded", "predict_values",
           "mc_dropout", "last_layer_inputs"]

# Molecules per forward pass at prediction, by device: batches are length-sorted and on a CPU small ones pad least
# (32 ran faster than 128 and than 16 on this project's 2-core CPU); a GPU wants more work per launch.
PREDICT_BATCH = {"cpu": 32, "cuda": 256}
# ... and at most this many tokens per batch (its longest molecule's times its size): 256 molecules of 300-512 tokens
# through one member, 32 at a time, peaked 0.13-0.27 GB higher than 8 at a time and ran no faster (int8 on AVX2
# kernels: 5.6 s against 4.6 s). Molecules of up to 128 tokens (all but 3 of Lipophilicity's 4,200) go 32 at a time.
PREDICT_TOKENS = {"cpu": 32 * 128, "cuda": 256 * 512}
# In bf16 and int8, prediction pads each molecule to a multiple of 8 tokens, and a batch holds molecules of one padded
# width only: a molecule's prediction is then its own, whatever it is batched with. Both round it: padded to another
# width (a longer neighbour's), float noise in the attention crossed an int8 step and moved one member by 0.023
# (a streamed library gave a molecule repeated 4,200 rows apart two values, 0.002 apart after the blend). Fewer
# distinct shapes also keep oneDNN's cache of compiled kernels small (bf16, 10,000 rows: peak 1.79 -> 1.62 GB). In
# fp32 nothing rounds the noise (~1e-6) up, and the padding only cost time (5 % more forward; bench/library_speed.py).
PAD_MULTIPLE = 8
# oneDNN keeps every kernel it compiles (one per matrix shape) until 1,024 are cached: a library's varied batch shapes
# filled that with ~0.4 GB by 30,000 rows (bf16). Fewer are enough: a batch reuses its own shapes, and rebuilding one
# cost no measurable time there (bench/library_memory.py). oneDNN reads this when it builds its first kernel, after
# this import; a user's own setting wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "64")


def pad_multiple(device: torch.device, precision: str) -> int:
    """The multiple of tokens a molecule is padded to for prediction (see :data:`PAD_MULTIPLE`)."""
    return PAD_MULTIPLE if precision == "int8" or resolve_precision(precision, device) == "bf16" else 1


@functools.cache
def _cpu_flags() -> frozenset[str]:
    """The CPU's feature flags, empty where PyTorch is held below AVX512 kernels (``ATEN_CPU_CAPABILITY=avx2``, as on
    most laptops; how this project measures that kind of CPU on another, with ``ONEDNN_MAX_CPU_ISA=AVX2
    MKL_ENABLE_INSTRUCTIONS=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2`` so that matrix products, int8 ones too, are held
    as well): bf16 is then computed emulated, whatever the CPU has."""
    if not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return frozenset()
    try:
        return frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return frozenset()


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: bf16 training steps are then faster than fp32 (1.3x here, bench/precision_speed.py);
    emulated bf16 is slower."""
    return bool({"avx512_bf16", "amx_bf16"} & _cpu_flags())


def cpu_has_amx() -> bool:
    """AMX tiles (Intel Xeon since Sapphire Rapids): prediction is faster there in bf16 than in int8 (the shipped
    ensemble: 127 against 102 molecules / s, bench/predict_speed.py)."""
    return "amx_bf16" in _cpu_flags()


def cpu_kind() -> str:
    """This CPU as prediction sees it, with the precision it predicts in (benchmarks print it)."""
    if cpu_has_amx():
        return "AMX (bf16 autocast)"
    return f"{'AVX512-BF16 without AMX' if cpu_has_native_bf16() else 'no native bf16'} (int8 linear layers)"


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"auto"`` becomes ``"bf16"`` on CUDA and on CPUs with native bf16, else ``"fp32"``."""
    if precision != "auto":
        return precision
    return "bf16" if device.type == "cuda" or cpu_has_native_bf16() else "fp32"


def prediction_precision(device: torch.device) -> str:
    """What a model loaded for prediction computes in: bf16 autocast on CUDA and on a CPU with AMX (``"auto"``), else
    ``"int8"``: its backbone's linear layers quantised with pinned input ranges (:mod:`.quantise`). Without AMX int8
    is the faster: under AVX2 kernels one member's forward pass ran 1.2x faster than in fp32
    (bench/int8_determinism.py); on an AMD EPYC with AVX512-BF16 but no AMX the shipped ensemble predicted 88-102
    molecules / s in int8 against 82-85 in bf16 (bench/predict_speed.py). Its test R² moved 0.7495 -> 0.7493 (README,
    "Prediction speed"). Training and its validation stay in fp32, or bf16 where native."""
    return "auto" if device.type == "cuda" or cpu_has_amx() else "int8"


# Beside the models, not in them: a model that is copied or pickled (Ray) carries no twin along.
_INT8_TWINS: weakref.WeakKeyDictionary[RegressionModel, tuple[tuple[int, ...], RegressionModel]] = \
    weakref.WeakKeyDictionary()


def runnable(model: RegressionModel) -> RegressionModel:
    """The module a prediction runs: ``model`` itself, or in ``"int8"`` precision its twin whose backbone's linear
    layers are quantised to int8 (:func:`~.quantise.int8_twin`), rebuilt whenever a weight of
    ``model`` has changed since (an optimiser step or a load bumps the tensors' version counters)."""
    if model.inference_precision != "int8":
        return model
    if next(model.parameters()).device.type != "cpu":
        raise ValueError("int8 prediction runs on a CPU only")
    version = tuple(p._version for p in model.parameters())
    cached = _INT8_TWINS.get(model)
    if cached is None or cached[0] != version:
        cached = _INT8_TWINS[model] = version, int8_twin(model)
    return cached[1]


def autocast(device: torch.device, precision: str = "auto") -> contextlib.AbstractContextManager:
    """bf16 autocast when ``precision`` resolves to bf16 (see :func:`resolve_precision`), on CUDA and CPU
    alike; ``"fp32"`` is honoured everywhere."""
    if resolve_precision(precision, device) == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def encode_smiles(tokenizer, smiles: Sequence[str], max_length: int) -> list[list[int]]:
    """Token ids per molecule (special tokens included, truncated to ``max_length``)."""
    return tokenizer(list(smiles), truncation=True, max_length=max_length)["input_ids"]


def collate(encoded: Sequence[Sequence[int]], pad_id: int, device: torch.device,
            multiple: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad a batch to its longest member, rounded up to ``multiple``; returns ``(input_ids, attention_mask)``."""
    width = -(-max(len(ids) for ids in encoded) // multiple) * multiple
    input_ids = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(encoded), width), dtype=torch.long)
    for row, ids in enumerate(encoded):
        input_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, :len(ids)] = 1
    return input_ids.to(device), mask.to(device)


def prediction_batches(lengths: Sequence[int], device: torch.device, batch_size: int | None = None,
                       multiple: int = 1) -> Iterator[np.ndarray]:
    """Indices of molecules with these token counts, batch by batch in length order (little padding): ``batch_size``
    (default :data:`PREDICT_BATCH` of the device) at a time, fewer where they are long (:data:`PREDICT_TOKENS`).
    With a ``multiple`` above 1 a batch holds molecules of one padded width only (their counts rounded up to it)."""
    batch_size = batch_size or PREDICT_BATCH.get(device.type, PREDICT_BATCH["cpu"])
    tokens = PREDICT_TOKENS.get(device.type, PREDICT_TOKENS["cpu"])
    order = np.argsort(lengths, kind="stable")
    width = -(-np.asarray(lengths, dtype=int)[order] // multiple) * multiple if multiple > 1 else None
    start = 0
    while start < len(order):
        end = min(start + batch_size, len(order))
        if width is not None:  # sorted: the batch ends before the first wider molecule
            end = start + int(np.searchsorted(width[start:end], width[start], side="right"))
        longest = lengths[order[end - 1]] if width is None else width[end - 1]
        idx = order[start:start + max(1, min(end - start, tokens // max(longest, 1)))]
        start += len(idx)
        yield idx


@torch.no_grad()
def predict_encoded(model: RegressionModel, encoded: Sequence[Sequence[int]], batch_size: int | None = None,
                    features: torch.Tensor | None = None) -> np.ndarray:
    """Predictions in label units, in input order (length-sorted internally for speed).

    ``features``: the model's per-molecule head inputs (:meth:`RegressionModel.molecule_features`), row for
    row with ``encoded``. ``batch_size`` (default :data:`PREDICT_BATCH` of the model's device) molecules at a time,
    fewer where they are long (:data:`PREDICT_TOKENS`).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = np.empty(len(encoded), dtype=np.float64)
    pad_id, multiple = model.tokenizer.pad_token_id, pad_multiple(device, model.inference_precision)
    run = runnable(model)
    for idx in prediction_batches([len(e) for e in encoded], device, batch_size, multiple):
        input_ids, mask = collate([encoded[i] for i in idx], pad_id, device, multiple)
        with autocast(device, model.inference_precision):
            pred = run.to_label_units(run(input_ids, mask, None if features is None else features[idx]))
        out[idx] = pred.float().cpu().numpy()
    model.train(was_training)
    return out


def encode_spellings(model: RegressionModel, smiles: Sequence[str], tta: int | None = None) -> list[list[list[int]]]:
    """Token ids of the canonical SMILES and of ``tta`` (default the model's ``spec.tta``) random spellings of
    each (seeded: reproducible), one list per spelling."""
    smiles, count = list(smiles), model.spec.tta if tta is None else tta
    spellings = [smiles] + [randomize_smiles(smiles, seed=k) for k in range(1, count + 1)]
    return [encode_smiles(model.tokenizer, variant, model.max_tokens) for variant in spellings]


def predict_values(model: RegressionModel, smiles: Sequence[str], batch_size: int | None = None,
                   tta: int | None = None, encoded: list[list[list[int]]] | None = None) -> np.ndarray:
    """Predictions in label units for canonical SMILES: with test-time augmentation (``tta``, default the
    model's ``spec.tta``) the mean over the canonical and ``tta`` random spellings. ``encoded``: their
    :func:`encode_spellings`, when already done (ensemble members with one tokenizer share them)."""
    smiles = list(smiles)
    if not smiles:
        return np.zeros(0)
    features = model.molecule_features(smiles)
    encoded = encode_spellings(model, smiles, tta) if encoded is None else encoded
    return np.mean([predict_encoded(model, ids, batch_size, features=features) for ids in encoded], axis=0)


@torch.no_grad()
def mc_dropout(model: RegressionModel, smiles: Sequence[str], passes: int = 20, batch_size: int = 64,
               seed: int = 0, scope: str = "head") -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (label units) over ``passes`` stochastic forward passes with only
    the dropout layers active (everything else in eval mode).

    ``scope="head"`` (default) encodes each molecule once and samples the dropout of the pooled
    embedding and the head — 1,000 molecules in seconds on a CPU; ``scope="full"`` also samples the
    backbone's dropout (each batch tiled ``passes`` times: ``passes`` times the cost of a prediction).
    """
    if passes < 2:
        raise ValueError("MC dropout needs at least 2 passes")
    if scope not in ("head", "full"):
        raise ValueError(f"scope must be 'head' or 'full', not {scope!r}")
    if len(smiles) == 0:
        return np.zeros(0), np.zeros(0)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    sampled = [model.dropout, *model.head.modules()] if scope == "head" else list(model.modules())
    dropouts = [m for m in sampled if isinstance(m, nn.Dropout)]
    for module in dropouts:
        module.train()
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    encoded = encode_smiles(model.tokenizer, smiles, model.max_tokens)
    features = model.molecule_features(list(smiles))
    order = np.argsort([len(e) for e in encoded], kind="stable")
    mean = np.empty(len(encoded))
    std = np.empty(len(encoded))
    multiple = pad_multiple(device, model.inference_precision)
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            input_ids, mask = collate([encoded[i] for i in idx], model.tokenizer.pad_token_id, device, multiple)
            extra = None if features is None else features[idx].repeat(passes, 1)
            with autocast(device, model.inference_precision):
                if scope == "head":  # encode once, sample only the head's dropout
                    out = model.head_output(model.encode(input_ids, mask).repeat(passes, 1), extra)
                else:
                    out = model(input_ids.repeat(passes, 1), mask.repeat(passes, 1), extra)
            samples = model.to_label_units(out.float()).reshape(passes, len(idx)).cpu().numpy()
            mean[idx] = samples.mean(0)
            std[idx] = samples.std(0, ddof=1)
    finally:
        for module in dropouts:
            module.eval()
        model.train(was_training)
        torch.set_rng_state(generator_state)
    return mean, std


@torch.no_grad()
def last_layer_inputs(model: RegressionModel, smiles: list[str], batch_size: int | None = None) -> np.ndarray:
    """The inputs of the head's last linear layer per molecule, with a bias column (eval mode, in the model's
    inference precision: the features of the predictions it explains; in :func:`prediction_batches`)."""
    model.eval()
    device = next(model.parameters()).device
    encoded = encode_smiles(model.tokenizer, smiles, model.max_tokens)
    features = model.molecule_features(smiles)
    x = np.empty((len(smiles), model.output_layer.in_features), dtype=np.float64)
    multiple = pad_multiple(device, model.inference_precision)
    run = runnable(model)
    for idx in prediction_batches([len(e) for e in encoded], device, batch_size, multiple):
        ids, mask = collate([encoded[i] for i in idx], model.tokenizer.pad_token_id, device, multiple)
        with autocast(device, model.inference_precision):
            pooled = run.encode(ids, mask)
            extra = None if features is None else features[idx].to(device)
            x[idx] = run.penultimate(pooled, extra).float().cpu().numpy()
    return np.hstack([x, np.ones((len(x), 1))])
