"""int8 prediction on a CPU without AMX: the backbone's linear layers quantised to int8 by PyTorch's dynamic
quantisation (FBGEMM), each with its input range pinned to one calibrated once, so that a molecule's prediction is
its own. Dynamic quantisation scales a batch's activations by the batch's own extremes: a molecule's prediction then
moved with the molecules it happened to be batched with (the shipped ensemble on AVX2 kernels: 99 of 200 predictions
changed in the second decimal between three files, by up to 0.016 logD; bench/int8_determinism.py)."""
from __future__ import annotations

import copy
import io
import sys
import warnings
from typing import cast

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import PreTrainedModel

from .data import lipophilicity_csv
from .model import RegressionModel

__all__ = ["int8_twin", "PinnedRange"]

_CALIBRATION = 128  # Lipophilicity molecules (a seeded sample) whose activations set each layer's range
_BATCH = 32


class PinnedRange(nn.Module):
    """A dynamically quantised linear layer that quantises every input on the scale of ``[low, high]``: the input is
    clamped to that range and one row holding ``low`` and ``high`` goes along (its output dropped), so the extremes
    the layer measures are always the same; the int8 products are summed exactly in int32, hence each row's output
    depends on that row alone."""

    def __init__(self, layer: nn.Module, low: float, high: float) -> None:
        super().__init__()
        self.layer, self.low, self.high = layer, min(low, 0.0), max(high, 1e-6)  # zero inside: as FBGEMM's range
        anchor = torch.zeros(layer.in_features)
        anchor[:2] = torch.tensor([self.low, self.high])
        self.register_buffer("anchor", anchor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        pinned = torch.empty(len(rows) + 1, rows.shape[1], dtype=rows.dtype)  # one pass over the input, not two
        torch.clamp(rows, self.low, self.high, out=pinned[:-1])
        pinned[-1] = self.anchor
        return self.layer(pinned)[:-1].reshape(*x.shape[:-1], -1)


def _calibration_smiles() -> list[str]:
    smiles = pd.read_csv(io.StringIO(lipophilicity_csv()))["smiles"].tolist()
    return [smiles[i] for i in np.random.default_rng(0).choice(len(smiles), _CALIBRATION, replace=False)]


@torch.no_grad()
def _input_ranges(model: RegressionModel) -> dict[str, tuple[float, float]]:
    """The smallest and largest input each of the backbone's linear layers meets on the calibration molecules (fp32;
    a layer after GELU sees little below zero: a range about zero would waste half the int8 steps)."""
    ranges: dict[str, tuple[float, float]] = {}

    def recorder(name: str):
        def record(_module: nn.Module, args: tuple) -> None:
            low, high = ranges.get(name, (0.0, 0.0))
            ranges[name] = min(low, float(args[0].min())), max(high, float(args[0].max()))
        return record

    handles = [module.register_forward_pre_hook(recorder(name)) for name, module in model.backbone.named_modules()
               if isinstance(module, nn.Linear)]
    try:
        smiles = _calibration_smiles()
        for start in range(0, len(smiles), _BATCH):
            batch = model.tokenizer(smiles[start:start + _BATCH], padding=True, truncation=True,
                                    max_length=model.max_tokens, return_tensors="pt")
            model.encode(batch["input_ids"], batch["attention_mask"])
    finally:
        for handle in handles:
            handle.remove()
    return ranges


def int8_twin(model: RegressionModel) -> RegressionModel:
    """A copy of ``model`` (on a CPU) whose backbone's linear layers compute in int8 with pinned input ranges."""
    twin = copy.deepcopy(model).eval()
    twin.inference_precision = "fp32"
    if "peft" in sys.modules and isinstance(twin.backbone, sys.modules["peft"].PeftModel):
        # peft's adapter layers read their own weights (LoRA's lora_A.weight), which a quantised layer has not:
        # merged into the layers they adapt, the same function (fp32 rounding apart) is plain linear layers
        twin.backbone = cast(PreTrainedModel, twin.backbone.merge_and_unload())
    ranges = _input_ranges(twin)
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao; torch 2.13 still has it
        warnings.simplefilter("ignore")
        torch.ao.quantization.quantize_dynamic(twin.backbone, {nn.Linear}, dtype=torch.qint8, inplace=True)
    for name, (low, high) in ranges.items():
        parent, _, child = name.rpartition(".")
        owner = twin.backbone.get_submodule(parent)
        setattr(owner, child, PinnedRange(getattr(owner, child), low, high))
    return twin
