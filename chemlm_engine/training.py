"""The one fit loop: AdamW (optionally with layer-wise rate decay), warm-up + linear decay, clipping, dynamic
padding, length-bucketed batches, an optional moving average of the weights, early stopping on validation MSE,
per-epoch metrics, progress / cancel callbacks."""
from __future__ import annotations

import copy
import logging
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from threading import Event
from typing import cast

import numpy as np
import torch
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from transformers import get_linear_schedule_with_warmup

from .spec import TrainConfig
from .data import MoleculeData
from .descriptors import DescriptorScaler
from .errors import JobCancelledError, TrainingDivergedError
from .inference import autocast, collate, encode_smiles, predict_encoded
from .model import RegressionModel
from .molecules import randomize_smiles

__all__ = ["EpochMetrics", "FitResult", "TrainCallbacks", "fit", "regression_metrics", "length_bucketed_batches",
           "seed_everything"]

log = logging.getLogger(__name__)
# Predicting the training mean scores a validation MSE near the label variance; a best epoch worse than this
# many times that did not learn, it blew up (e.g. a learning rate of 10 ends at R² -16).
DIVERGED_FACTOR = 4.0


@dataclass
class EpochMetrics:
    epoch: int
    train_mse: float
    val_mse: float
    val_rmse: float
    val_mae: float
    val_r2: float
    learning_rate: float
    seconds: float
    n_train: int


@dataclass
class FitResult:
    history: list[EpochMetrics]
    best_epoch: int
    seconds: float

    def to_dict(self) -> dict:
        return {"history": [asdict(m) for m in self.history], "best_epoch": self.best_epoch, "seconds": self.seconds}


@dataclass
class TrainCallbacks:
    """Hooks called from the training thread. ``cancel`` is checked before every batch."""

    # (epoch, batch index, batches this epoch, mean training MSE of the epoch so far, in label units)
    on_batch: Callable[[int, int, int, float], None] | None = None
    on_epoch: Callable[[EpochMetrics], None] | None = None
    cancel: Event | None = None


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """MSE, RMSE, MAE and R² (scikit-learn)."""
    mse = float(mean_squared_error(y_true, y_pred))
    r2 = float(r2_score(y_true, y_pred)) if len(y_true) > 1 else math.nan
    return {"mse": mse, "rmse": math.sqrt(mse), "mae": float(mean_absolute_error(y_true, y_pred)), "r2": r2}


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)


def length_bucketed_batches(indices: np.ndarray, lengths: Sequence[int], batch_size: int,
                            rng: np.random.Generator, bucket_batches: int = 50) -> list[np.ndarray]:
    """Shuffle, sort by length inside buckets of ``bucket_batches`` batches, cut, shuffle batch order.

    Batches hold molecules of similar length, so dynamic padding wastes little compute.
    """
    order = rng.permutation(np.asarray(indices))
    batches: list[np.ndarray] = []
    span = batch_size * bucket_batches
    for start in range(0, len(order), span):
        chunk = order[start:start + span]
        chunk = chunk[np.argsort([lengths[i] for i in chunk], kind="stable")]
        batches.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


_LAYER = re.compile(r"\.layers?\.(\d+)\.")


def _rate_scales(names: list[str], decay: float) -> list[float]:
    """Layer-wise learning-rate decay: the scale of each backbone parameter's rate; the top encoder layer and
    anything above it 1, each layer below ``decay`` times the one above, the embeddings below the lowest layer."""
    layers = [int(m.group(1)) if (m := _LAYER.search(n)) else None for n in names]
    depth = max((k for k in layers if k is not None), default=-1) + 1
    return [decay ** (depth - 1 - k) if k is not None else decay ** depth if "embed" in n else 1.0
            for n, k in zip(names, layers)]


def _param_groups(model: RegressionModel, config: TrainConfig) -> list[dict]:
    """No weight decay on biases and norms; the freshly initialised head may learn faster; lower backbone layers
    slower with ``layer_decay`` < 1."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    backbone = [n for n, _ in named if not n.startswith("head.")]
    scales = dict(zip(backbone, _rate_scales(backbone, config.layer_decay)))
    head_lr = config.head_learning_rate or config.learning_rate
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, param in named:
        lr = head_lr if name.startswith("head.") else config.learning_rate * scales[name]
        groups.setdefault((lr, param.ndim < 2 or "norm" in name.lower()), []).append(param)
    return [{"params": params, "lr": lr, "weight_decay": 0.0 if no_decay else config.weight_decay}
            for (lr, no_decay), params in groups.items()]


def fit(model: RegressionModel, train: MoleculeData, val: MoleculeData | None, config: TrainConfig,
        callbacks: TrainCallbacks | None = None,
        epoch_indices: Callable[[int], np.ndarray] | None = None) -> FitResult:
    """Train ``model`` in place on ``train``; keep the weights of the best validation epoch.

    ``epoch_indices(epoch)`` (1-based) may restrict the training molecules seen in an epoch
    (curriculum learning); by default every epoch sees all of them. Raises
    :class:`TrainingDivergedError` on a NaN/Inf loss or when even the best epoch's validation MSE is
    ``DIVERGED_FACTOR`` times the label variance, and :class:`JobCancelledError` on cancel.
    """
    callbacks = callbacks or TrainCallbacks()
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    device = next(model.parameters()).device
    model.set_label_scaler(train.labels)
    if model.spec.descriptors:
        model.descriptor_scaler = DescriptorScaler.fit(train.smiles, model.descriptor_names)
    train_features = model.molecule_features(train.smiles)
    val_features = model.molecule_features(val.smiles) if val is not None else None
    max_length = min(config.max_length, model.max_tokens)
    encoded = encode_smiles(model.tokenizer, train.smiles, max_length)
    lengths = [len(e) for e in encoded]
    val_encoded = encode_smiles(model.tokenizer, val.smiles, max_length) if val is not None else None
    targets = torch.tensor((train.labels - float(model.label_mean)) / float(model.label_std), dtype=torch.float32)
    pick = epoch_indices or (lambda _epoch: np.arange(len(train)))
    plan = [pick(epoch) for epoch in range(1, config.epochs + 1)]
    total_steps = sum(math.ceil(len(p) / config.batch_size) for p in plan)
    optimizer = torch.optim.AdamW(_param_groups(model, config))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config.warmup_ratio * total_steps), total_steps)
    trainable = [p for p in model.parameters() if p.requires_grad]
    # with ema_decay the weights' moving average is what is validated and kept (built after the scalers are set)
    averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) \
        if config.ema_decay else None
    evaluated = cast(RegressionModel, averaged.module) if averaged is not None else model
    label_var = float(model.label_std) ** 2
    history: list[EpochMetrics] = []
    best_mse, best_epoch, best_state, stale = math.inf, 0, None, 0
    started = time.time()
    for epoch, indices in enumerate(plan, start=1):
        epoch_start = time.time()
        model.train()
        if config.augment:  # SMILES enumeration: a fresh random spelling of every molecule each epoch
            encoded = encode_smiles(model.tokenizer, randomize_smiles(train.smiles, config.seed * 1000 + epoch),
                                    max_length)
            lengths = [len(e) for e in encoded]
        batches = length_bucketed_batches(indices, lengths, config.batch_size, rng)
        loss_sum, n_seen = 0.0, 0
        for b, batch in enumerate(batches):
            if callbacks.cancel is not None and callbacks.cancel.is_set():
                raise JobCancelledError(f"cancelled in epoch {epoch}")
            input_ids, mask = collate([encoded[i] for i in batch], model.tokenizer.pad_token_id, device)
            with autocast(device, config.precision):
                pred = model(input_ids, mask, None if train_features is None else train_features[batch])
            loss = nn.functional.mse_loss(pred, targets[batch].to(device))
            if not torch.isfinite(loss):
                raise TrainingDivergedError(
                    f"loss became {loss.item()} in epoch {epoch}, batch {b + 1}; lower the learning rate")
            loss.backward()
            if config.grad_clip > 0:
                nn.utils.clip_grad_norm_(trainable, config.grad_clip)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if averaged is not None:
                averaged.update_parameters(model)
            loss_sum += loss.item() * len(batch)
            n_seen += len(batch)
            if callbacks.on_batch is not None:
                callbacks.on_batch(epoch, b + 1, len(batches), loss_sum / n_seen * label_var)
        train_mse = loss_sum / max(n_seen, 1) * label_var
        if val is not None and val_encoded is not None and len(val_encoded) > 0:
            val_metrics = regression_metrics(val.labels, predict_encoded(evaluated, val_encoded, features=val_features))
            score = val_metrics["mse"]
        else:  # no validation split (training on training + validation): none reported, the training MSE tracked
            val_metrics = {"mse": math.nan, "rmse": math.nan, "mae": math.nan, "r2": math.nan}
            score = train_mse
        metrics = EpochMetrics(epoch, train_mse, val_metrics["mse"], val_metrics["rmse"], val_metrics["mae"],
                               val_metrics["r2"], scheduler.get_last_lr()[0], time.time() - epoch_start,
                               int(len(indices)))
        history.append(metrics)
        log.info("epoch %d: %s", epoch, metrics)
        if callbacks.on_epoch is not None:
            callbacks.on_epoch(metrics)
        if score < best_mse:
            best_mse, best_epoch, stale = score, epoch, 0
            keep = val_encoded is not None and config.select_best
            best_state = copy.deepcopy(evaluated.state_dict()) if keep else None
        else:
            stale += 1
            if config.patience and stale >= config.patience:
                log.info("early stopping after epoch %d (best %d)", epoch, best_epoch)
                break
    if best_mse > DIVERGED_FACTOR * label_var:
        raise TrainingDivergedError(
            f"training diverged: the best validation MSE ({best_mse:.4g}, epoch {best_epoch}) is "
            f"{best_mse / label_var:.1f}x the label variance ({label_var:.3g}); lower the learning rate")
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # no validation data or no selection: the last epoch's weights (or their average) are kept
        best_epoch = len(history)
        if averaged is not None:
            model.load_state_dict(evaluated.state_dict())
    model.eval()
    return FitResult(history, best_epoch, time.time() - started)
