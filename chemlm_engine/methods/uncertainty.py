"""MC-dropout uncertainty and uncertainty-sampling active learning."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ..model import RegressionModel
from ..training import autocast, collate, encode_smiles

__all__ = ["mc_dropout", "select_most_uncertain", "select_random"]


@torch.no_grad()
def mc_dropout(model: RegressionModel, smiles: Sequence[str], passes: int = 20, batch_size: int = 64,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (label units) over ``passes`` stochastic forward passes with only
    the dropout layers active. Each batch is tiled ``passes`` times and run as one forward pass."""
    if passes < 2:
        raise ValueError("MC dropout needs at least 2 passes")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    for module in dropouts:
        module.train()
    generator_state = torch.get_rng_state()
    torch.manual_seed(seed)
    encoded = encode_smiles(model.tokenizer, smiles, model.max_tokens)
    order = np.argsort([len(e) for e in encoded], kind="stable")
    mean = np.empty(len(encoded))
    std = np.empty(len(encoded))
    try:
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            input_ids, mask = collate([encoded[i] for i in idx], model.tokenizer.pad_token_id, device)
            with autocast(device):
                out = model(input_ids.repeat(passes, 1), mask.repeat(passes, 1))
            samples = model.to_label_units(out.float()).reshape(passes, len(idx)).cpu().numpy()
            mean[idx] = samples.mean(0)
            std[idx] = samples.std(0, ddof=1)
    finally:
        for module in dropouts:
            module.eval()
        model.train(was_training)
        torch.set_rng_state(generator_state)
    return mean, std


def select_most_uncertain(std: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest standard deviations (ties broken by position)."""
    return np.argsort(-np.asarray(std), kind="stable")[:n]


def select_random(size: int, n: int, seed: int) -> np.ndarray:
    """The random control: ``n`` indices drawn without replacement."""
    return np.random.default_rng(seed).choice(size, min(n, size), replace=False)
