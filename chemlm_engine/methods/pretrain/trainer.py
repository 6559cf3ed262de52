"""The pretraining loop: a SMILES BERT trained by masked-language modelling plus descriptor regression,
on CUDA with bf16 autocast where present, checkpointed and exactly resumable."""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from threading import Event

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sklearn.metrics import r2_score
from torch import nn
from transformers import (
    BertConfig,
    BertForMaskedLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from ...errors import JobCancelledError, TrainingDivergedError
from ...model import best_device, load_backbone, quiet_transformers
from ...tokenizer import build_smiles_tokenizer
from ...inference import autocast
from ...spec import PretrainOptions
from .batches import Batcher, micro_batches
from .corpus import DescriptorScaler, MoleculeStream, PreparedCorpus, target_names

log = logging.getLogger(__name__)
# Written last into a checkpoint folder: a folder holding it is whole.
_COMPLETE = "pretrain_config.json"
# Held-out R² logged per target (a long target set logs its mean and these only).
_REPORTED = ("MolLogP", "TPSA", "MolWt", "NumHDonors", "NumHAcceptors", "NumRotatableBonds", "NumAromaticRings",
             "FractionCSP3", "acid_groups", "base_groups", "formal_charge", "charged_atoms")


class DescriptorHead(nn.Module):
    """Regresses standardised descriptors from the mean-pooled last hidden state."""

    def __init__(self, hidden_size: int, n_outputs: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, n_outputs))

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.net((hidden * mask).sum(1) / mask.sum(1).clamp(min=1))

    def save(self, path: Path) -> None:
        save_file({k: v.cpu() for k, v in self.state_dict().items()}, str(path))


def _new_model(config: PretrainOptions, tokenizer: PreTrainedTokenizerBase) -> BertForMaskedLM:
    bert_config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(config.seed)
    return BertForMaskedLM(bert_config)


def _losses(model: nn.Module, head: DescriptorHead | None, batch: dict[str, torch.Tensor],
            targets: torch.Tensor | None,
            dropout: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Masked-token loss and descriptor MSE over the targets that are present (not NaN) and not dropped: with
    ``dropout``, each molecule hides that share of its targets at random (CheMeleon's target dropout)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    targets = None if targets is None else targets.to(device, non_blocking=True)
    with autocast(device):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    output_hidden_states=head is not None)
        if head is None or targets is None:
            return out.loss, out.loss, None
        pred = head(out.hidden_states[-1], batch["attention_mask"])
    present = torch.isfinite(targets)
    if dropout > 0:
        present &= torch.rand(targets.shape, device=device) >= dropout
    squared = (pred.float() - torch.nan_to_num(targets)) ** 2
    desc_loss = (squared * present).sum() / present.sum().clamp(min=1)
    return out.loss, desc_loss, pred


def _backward(model: nn.Module, head: DescriptorHead | None, batch: dict[str, torch.Tensor],
              targets: torch.Tensor | None, config: PretrainOptions, step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the batch's loss, accumulated over :func:`micro_batches`; returns the batch's masked-token and
    descriptor losses. Each part counts by its share of masked tokens (MLM, so the mean is the whole batch's)
    and of molecules (descriptors)."""
    parts = micro_batches(batch, config.micro_batch_size)
    masked = max(int((batch["labels"] != -100).sum()), 1)
    rows = batch["labels"].shape[0]
    mlm_total, desc_total = torch.zeros(()), torch.zeros(())
    for part in parts:
        idx = part.pop("rows", None)
        part_targets = None if targets is None else targets if idx is None else targets[idx]
        mlm_loss, desc_loss, _ = _losses(model, head, part, part_targets, config.target_dropout)
        w_mlm = int((part["labels"] != -100).sum()) / masked
        w_desc = part["labels"].shape[0] / rows
        loss = w_mlm * mlm_loss + (w_desc * config.descriptor_weight * desc_loss if head is not None else 0.0)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"pretraining loss is {float(loss)} at step {step}; lower the learning rate")
        loss.backward()
        mlm_total = mlm_total + w_mlm * mlm_loss.detach().float().cpu()
        desc_total = desc_total + w_desc * desc_loss.detach().float().cpu()
    return mlm_total, desc_total


@torch.no_grad()
def _evaluate(model: nn.Module, head: DescriptorHead | None, batcher: Batcher, smiles: list[str],
              targets: np.ndarray | None, batch_size: int, names: Sequence[str] = ()) -> dict[str, float]:
    """Masked-token loss (fixed masking seed) and, with a head, descriptor R² on held-out molecules: the mean
    over every target that varies there, and each of the :data:`_REPORTED` ones."""
    model.eval()
    state = torch.get_rng_state()
    torch.manual_seed(12345)
    mlm_total, n_batches, preds = 0.0, 0, []
    for start in range(0, len(smiles), batch_size):
        batch = batcher(smiles[start:start + batch_size])
        t = None if targets is None else torch.from_numpy(targets[start:start + batch_size])
        mlm_loss, _, pred = _losses(model, head, batch, t)
        mlm_total += float(mlm_loss)
        n_batches += 1
        if pred is not None:
            preds.append(pred.float().cpu().numpy())
    torch.set_rng_state(state)
    model.train()
    result = {"mlm_loss": mlm_total / max(n_batches, 1)}
    if preds and targets is not None:
        pred_all = np.concatenate(preds)
        scores = {}
        for i, name in enumerate(names):
            present = np.isfinite(targets[:, i])
            if present.sum() > 1 and np.ptp(targets[present, i]) > 0:
                scores[name] = float(r2_score(targets[present, i], pred_all[present, i]))
        result.update({f"r2_{n}": v for n, v in scores.items() if len(names) <= len(_REPORTED) or n in _REPORTED})
        result["descriptor_r2_mean"] = float(np.mean(list(scores.values()))) if scores else math.nan
    return result


def load_checkpoint_state(path: Path) -> dict:
    """Trainer state of a checkpoint (plain tensors and numbers: loaded with ``weights_only=True``)."""
    return torch.load(path / "trainer_state.pt", weights_only=True, map_location="cpu")


def _save_checkpoint(ckpt: Path, model: PreTrainedModel, head: DescriptorHead | None,
                     tokenizer: PreTrainedTokenizerBase,
                     optimizer: torch.optim.Optimizer, scheduler, step: int, stream: MoleculeStream,
                     scaler: DescriptorScaler | None, config: PretrainOptions) -> None:
    """Write ``checkpoint-STEP`` in full, point the ``checkpoint`` link at it (a rename: atomic), and only then
    remove older ones: killed at any moment, ``checkpoint`` names a whole checkpoint (or none yet)."""
    target = ckpt.with_name(f"{ckpt.name}-{step}")
    if ckpt.is_symlink() and ckpt.resolve() == target.resolve():
        return  # this step is saved already
    (target / _COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(target, ignore_errors=True)
    with quiet_transformers():
        model.save_pretrained(target / "model")
    tokenizer.save_pretrained(target / "model")
    if head is not None:
        head.save(target / "descriptor_head.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "cursor": stream.cursor, "excluded": stream.excluded, "invalid": stream.invalid,
                "rng": torch.get_rng_state(),
                "scaler_mean": None if scaler is None else torch.from_numpy(scaler.mean),
                "scaler_std": None if scaler is None else torch.from_numpy(scaler.std)},
               target / "trainer_state.pt")
    (target / _COMPLETE).write_text(json.dumps(asdict(config), indent=2))  # written last: marks it whole
    if ckpt.is_dir() and not ckpt.is_symlink():  # a checkpoint folder of an earlier version: set aside first
        os.replace(ckpt, ckpt.with_name(f"{ckpt.name}-0"))
    link = ckpt.with_name(f".{ckpt.name}.{os.getpid()}")
    link.unlink(missing_ok=True)
    link.symlink_to(target.name)
    os.replace(link, ckpt)
    for old in ckpt.parent.glob(f"{ckpt.name}-*"):
        if old != target:
            (old / _COMPLETE).unlink(missing_ok=True)  # first: a half-deleted folder is never taken as whole
            shutil.rmtree(old, ignore_errors=True)


def _latest_checkpoint(ckpt: Path) -> Path | None:
    """The checkpoint to resume from: the ``checkpoint`` link, else (killed between setting an old one aside
    and linking the new) the newest whole ``checkpoint-STEP``."""
    if (ckpt / _COMPLETE).exists():
        return ckpt
    whole = [p for p in ckpt.parent.glob(f"{ckpt.name}-*") if (p / _COMPLETE).exists()]
    return max(whole, key=lambda p: int(p.name.rsplit("-", 1)[1]), default=None)


@dataclass
class PretrainResult:
    steps: int
    final_train_loss: float
    eval: dict[str, float]
    molecules_seen: int
    excluded: int
    seconds: float
    output_dir: str


def pretrain(smiles: Sequence[str] | PreparedCorpus, output_dir: str | Path,
             config: PretrainOptions = PretrainOptions(),
             init_from: str | Path | None = None, trust_remote_code: bool = False, exclude: set[str] | None = None,
             vocabulary_smiles: Sequence[str] = (), progress: Callable[[dict], None] | None = None,
             cancel: Event | None = None) -> PretrainResult:
    """Masked-LM training (plus descriptor regression when ``config.descriptor_weight > 0``).

    ``smiles`` is the corpus in any order: raw SMILES, whose molecules in ``exclude`` (canonical SMILES) are
    skipped, or a :class:`PreparedCorpus` for large corpora, used as prepared (exclusions already applied).
    Trains on CUDA when present; bf16 autocast on CUDA and on CPUs with native bf16.
    A new BERT is created unless ``init_from`` names a masked-LM folder or hub id. Resumes from
    ``output_dir/checkpoint`` when it exists. The final model, tokenizer and ``pretrain_summary.json``
    are written to ``output_dir``.
    """
    out = Path(output_dir)
    ckpt = out / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    if isinstance(smiles, PreparedCorpus) and smiles.targets != config.descriptor_targets:
        raise ValueError(f"the prepared corpus holds {smiles.targets!r} targets, not {config.descriptor_targets!r}")
    names = target_names(config.descriptor_targets)
    stream = MoleculeStream(smiles, config.seed, exclude, config.descriptor_targets)
    eval_smiles, eval_desc, _ = stream.hold_out(min(config.n_eval, max(len(stream.smiles) // 10, 1)))
    held = stream.cursor  # the draws the evaluation set took: not training molecules
    use_descriptors = config.descriptor_weight > 0
    resume = _latest_checkpoint(ckpt)
    if resume is not None:
        state = load_checkpoint_state(resume)
        model, tokenizer = load_backbone(resume / "model", trust_remote_code, masked_lm=True)
        log.info("resuming from %s at step %d", resume, state["step"])
    else:
        state = None
        if init_from is not None:
            model, tokenizer = load_backbone(init_from, trust_remote_code, masked_lm=True)
        else:
            corpus = stream.smiles
            sample = [corpus[i] for i in np.random.default_rng(config.seed + 1).permutation(len(corpus))[:100_000]]
            tokenizer = build_smiles_tokenizer(sample + list(vocabulary_smiles))
            model = _new_model(config, tokenizer)
    scaler: DescriptorScaler | None = None
    if use_descriptors:
        if state is not None and state["scaler_mean"] is not None:
            scaler = DescriptorScaler(state["scaler_mean"].numpy(), state["scaler_std"].numpy())
        else:
            stats_stream = MoleculeStream(smiles, config.seed, exclude, config.descriptor_targets)
            stats_stream.cursor, stats_stream.held = stream.cursor, stream.held  # training molecules, never eval
            _, train_desc, _ = stats_stream.take(min(config.n_descriptor_stats, len(stream.smiles)))
            scaler = DescriptorScaler.fit(train_desc)
        eval_desc = scaler.transform(eval_desc)
    head = DescriptorHead(model.config.hidden_size, len(names)) if use_descriptors else None
    if head is not None and resume is not None and (resume / "descriptor_head.safetensors").exists():
        head.load_state_dict(load_file(str(resume / "descriptor_head.safetensors")))
    device = best_device()
    model.to(device)  # type: ignore[arg-type]  # transformers types its wrapper of nn.Module.to unbound
    if head is not None:
        head.to(device)
    params = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(config.warmup_steps, config.max_steps // 10 + 1),
                                                config.max_steps)
    step = 0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        stream.cursor, stream.excluded, stream.invalid = state["cursor"], state["excluded"], state["invalid"]
        torch.set_rng_state(state["rng"])
    batcher = Batcher(tokenizer, config, stream.smiles if isinstance(smiles, PreparedCorpus) else None)
    model.train()
    start, ema = time.time(), None
    molecules_at_start = step * config.batch_size
    while step < config.max_steps:
        if config.time_budget_s is not None and time.time() - start >= config.time_budget_s:
            log.info("time budget of %.0f s spent at step %d: saving the model as it is", config.time_budget_s, step)
            _save_checkpoint(ckpt, model, head, tokenizer, optimizer, scheduler, step, stream, scaler, config)
            break  # the same output folder resumes from here towards max_steps
        if cancel is not None and cancel.is_set():
            _save_checkpoint(ckpt, model, head, tokenizer, optimizer, scheduler, step, stream, scaler, config)
            raise JobCancelledError(f"pretraining cancelled at step {step} (checkpoint saved)")
        batch_smiles, raw_desc, batch_ids = stream.take(config.batch_size)
        batch = batcher(batch_smiles, batch_ids, step)
        targets = torch.from_numpy(scaler.transform(raw_desc)) if scaler is not None else None
        mlm_loss, desc_loss = _backward(model, head, batch, targets, config, step)
        nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        ema = mlm_loss.item() if ema is None else 0.98 * ema + 0.02 * mlm_loss.item()
        if progress is not None:
            elapsed = time.time() - start
            progress({"step": step, "max_steps": config.max_steps, "mlm_loss": ema,
                      "descriptor_loss": desc_loss.item() if head is not None else math.nan,
                      "molecules_per_s": (step * config.batch_size - molecules_at_start) / max(elapsed, 1e-9)})
        if step % config.checkpoint_every == 0:
            _save_checkpoint(ckpt, model, head, tokenizer, optimizer, scheduler, step, stream, scaler, config)
            if step % (config.checkpoint_every * 4) == 0:
                metrics = _evaluate(model, head, batcher, eval_smiles, eval_desc if head else None,
                                    config.batch_size, names)
                log.info("step %d eval %s", step, metrics)
                with (out / "eval_log.jsonl").open("a") as fh:
                    fh.write(json.dumps({"step": step, **metrics}) + "\n")
    metrics = _evaluate(model, head, batcher, eval_smiles, eval_desc if head else None, config.batch_size, names)
    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if head is not None and scaler is not None:
        head.save(out / "descriptor_head.safetensors")
        (out / "descriptor_scaler.json").write_text(json.dumps(
            {"names": names, "mean": scaler.mean.tolist(), "std": scaler.std.tolist()}, indent=2))
    result = PretrainResult(step, float(ema or math.nan), metrics, stream.cursor - held, stream.excluded,
                            time.time() - start, str(out))
    (out / "pretrain_summary.json").write_text(json.dumps({**asdict(result), "config": asdict(config)}, indent=2))
    return result
