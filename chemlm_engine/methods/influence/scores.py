"""Scores from a solved inverse-HVP: influence of pool molecules, self-influence and suspected
mislabelled molecules, label corruption for experiments, and scoring sharded over a cluster."""
from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...model import RegressionModel
from .solvers import batches
from .tracked import TransformerInfluence


def score_pool(influence: TransformerInfluence, inputs: tuple[torch.Tensor, ...], direction: torch.Tensor,
               batch_size: int = 32) -> np.ndarray:
    """``score = gradient · direction`` per molecule, streamed batch by batch (never all gradients at once)."""
    scores = []
    for batch in batches(inputs, batch_size):
        scores.append((influence.grads(batch, batch_size) @ direction).numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


@torch.no_grad()
def _last_linear(influence: TransformerInfluence, inputs: tuple[torch.Tensor, ...],
                 batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the head's last linear layer, with a bias column, and the standardised residuals."""
    last = [m for m in influence.module.modules() if isinstance(m, nn.Linear)][-1]
    features, residuals = [], []
    hook = last.register_forward_pre_hook(lambda _m, args: features.append(args[0].reshape(-1, args[0].shape[-1])))
    try:
        for batch in batches(inputs, batch_size):
            residuals.append(influence.predict(influence.params, *batch[:-1]) - batch[-1])
    finally:
        hook.remove()
    a = torch.cat(features).double()
    return torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1), torch.cat(residuals).double()


def last_layer_inverse(influence: TransformerInfluence, train_inputs: tuple[torch.Tensor, ...],
                       damping: float = 0.01) -> torch.Tensor:
    """``(H + damping·I)⁻¹`` of the training loss in the head's last linear layer (Gauss–Newton ``H``)."""
    a_train, _ = _last_linear(influence, train_inputs)
    eye = torch.eye(a_train.shape[1], dtype=a_train.dtype)
    return torch.linalg.inv(2.0 / len(a_train) * a_train.T @ a_train + damping * eye)


def self_influence(influence: TransformerInfluence, pool_inputs: tuple[torch.Tensor, ...],
                   inverse: torch.Tensor) -> np.ndarray:
    """``g_zᵀ (H + damping·I)⁻¹ g_z`` per pool molecule in the last linear layer (``inverse`` from
    :func:`last_layer_inverse`): large when the model must move far to fit z's label."""
    a_pool, residual = _last_linear(influence, pool_inputs)
    g = 2.0 * residual[:, None] * a_pool
    return ((g @ inverse) * g).sum(1).numpy()


def suspect_threshold(reference_self_influence: np.ndarray, quantile: float = 0.99) -> float:
    """The self-influence above which a pool molecule is suspected mislabelled: the ``quantile`` of a trusted
    held-out set's (the validation split: same model, labels checked, never trained on)."""
    return float(np.quantile(reference_self_influence, quantile))


def flag_suspects(pool_self_influence: np.ndarray, reference_self_influence: np.ndarray,
                  quantile: float = 0.99) -> np.ndarray:
    """Suspected mislabelled pool molecules: self-influence above :func:`suspect_threshold`."""
    return pool_self_influence > suspect_threshold(reference_self_influence, quantile)


def score_molecules(influence: TransformerInfluence, smiles: Sequence[str], labels: np.ndarray,
                    direction: torch.Tensor, inverse: torch.Tensor, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Influence scores and self-influence of molecules, chunk by chunk: the frozen prefix runs per chunk,
    so memory stays flat for any pool size."""
    scores, selves = [np.zeros(0)], [np.zeros(0)]
    for start in range(0, len(smiles), chunk):
        inputs = influence.features(list(smiles[start:start + chunk]), labels[start:start + chunk])
        scores.append(score_pool(influence, inputs, direction))
        selves.append(self_influence(influence, inputs, inverse))
    return np.concatenate(scores), np.concatenate(selves)


def corrupt_labels(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift a random ``fraction`` of labels by ±3 standard deviations; returns (labels, corrupted mask)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    mask[rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)] = True
    shifted = labels.copy()
    shifted[mask] += rng.choice([-3.0, 3.0], mask.sum()) * labels.std()
    return shifted, mask


# -- large pools, sharded over a cluster's workers ----------------------------------------------------
def _model_files(model: RegressionModel) -> dict[str, bytes]:
    """A regressor as the bytes of its saved folder (transformers models do not pickle)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        return {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}


def _score_shard(files: dict[str, bytes], scope: str, direction: torch.Tensor, inverse: torch.Tensor, chunk: int,
                 shard: tuple[list[str], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, name).write_bytes(data)
        influence = TransformerInfluence(RegressionModel.load(tmp, "cpu"), scope)
    return score_molecules(influence, shard[0], shard[1], direction, inverse, chunk)


def score_molecules_sharded(influence: TransformerInfluence, smiles: Sequence[str], labels: np.ndarray,
                            direction: torch.Tensor, inverse: torch.Tensor, shards: int,
                            map_fn: Callable[[Callable, list], list],
                            chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_molecules` over ``shards`` parts mapped by ``map_fn`` (on a cluster,
    :func:`~chemlm_engine.cluster.ray_map`: the model and the solved vectors travel once, with the function).
    Shard borders fall on chunk borders, so every molecule is scored in exactly the batch it has in the
    single-process path."""
    n_chunks = -(-len(smiles) // chunk)
    borders = [int(b) * chunk for b in np.linspace(0, n_chunks, shards + 1).round()]
    parts = [(list(smiles[lo:hi]), labels[lo:hi]) for lo, hi in zip(borders[:-1], borders[1:]) if lo < len(smiles)]
    scored = map_fn(partial(_score_shard, _model_files(influence.model), influence.scope, direction, inverse, chunk),
                    parts)
    return np.concatenate([p[0] for p in scored]), np.concatenate([p[1] for p in scored])
