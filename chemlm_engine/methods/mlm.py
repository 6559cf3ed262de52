"""Masked-language-model training: pretraining on a corpus (with MolBERT-style descriptor regression)
and "unsupervised fine-tuning" on a task's own SMILES.

Molecules are consumed in a seeded order; a checkpoint holds the model, optimizer, scheduler, torch RNG
state and the position in that order, so an interrupted run resumes exactly where it stopped.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from threading import Event

import numpy as np
import torch
from rdkit import Chem, rdBase
from rdkit.Chem import Crippen, Descriptors, Lipinski, rdMolDescriptors
from safetensors.torch import load_file, save_file
from sklearn.metrics import r2_score
from torch import nn
from transformers import (BertConfig, BertForMaskedLM, DataCollatorForLanguageModeling,
                          PreTrainedTokenizerBase, get_linear_schedule_with_warmup)

from ..errors import JobCancelledError, TrainingDivergedError
from ..model import best_device, load_backbone
from ..pipeline import JobContext, SplitData, train_and_evaluate
from ..tokenizer import build_smiles_tokenizer
from ..training import autocast

__all__ = ["PretrainConfig", "DESCRIPTORS", "compute_descriptors", "DescriptorScaler", "pretrain", "PretrainResult",
           "PreparedCorpus", "prepare_corpus", "moses_corpus_path", "load_moses_smiles", "run_mlm_then_regression",
           "load_checkpoint_state"]

log = logging.getLogger(__name__)

# Fast RDKit descriptors only (the full list costs ~40 ms per molecule). No ionisable-group counts: MOSES holds
# no carboxylic acids and basic amines in only 0.25 % of molecules, so they would teach nothing.
DESCRIPTORS: dict[str, Callable[[Chem.Mol], float]] = {
    "MolLogP": Crippen.MolLogP,
    "TPSA": rdMolDescriptors.CalcTPSA,
    "MolWt": Descriptors.MolWt,
    "NumHDonors": Lipinski.NumHDonors,
    "NumHAcceptors": Lipinski.NumHAcceptors,
    "NumRotatableBonds": rdMolDescriptors.CalcNumRotatableBonds,
    "NumAromaticRings": rdMolDescriptors.CalcNumAromaticRings,
    "FractionCSP3": rdMolDescriptors.CalcFractionCSP3,
}


@dataclass(frozen=True)
class PretrainConfig:
    """Architecture (used only when a new model is created) and optimisation settings."""

    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 1024
    max_position_embeddings: int = 512
    max_length: int = 256
    batch_size: int = 128
    learning_rate: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 500
    max_steps: int = 4500
    mask_probability: float = 0.15
    descriptor_weight: float = 1.0
    checkpoint_every: int = 250
    n_eval: int = 2000
    n_descriptor_stats: int = 10000
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.mask_probability < 1:
            raise ValueError("mask_probability must be in (0, 1)")
        if self.max_steps < 1 or self.batch_size < 1:
            raise ValueError("max_steps and batch_size must be positive")


def compute_descriptors(mol: Chem.Mol) -> np.ndarray:
    """The :data:`DESCRIPTORS` of one molecule, as float32."""
    return np.array([fn(mol) for fn in DESCRIPTORS.values()], dtype=np.float32)


@dataclass
class DescriptorScaler:
    """Standardisation of descriptor targets, fitted on training molecules only."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> DescriptorScaler:
        return cls(values.mean(axis=0).astype(np.float32), np.maximum(values.std(axis=0), 1e-6).astype(np.float32))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return (values - self.mean) / self.std


def _describe(raw: str) -> tuple[str, np.ndarray] | None:
    """Canonical SMILES and raw descriptors of one molecule; ``None`` when RDKit cannot parse it."""
    mol = Chem.MolFromSmiles(raw)
    return None if mol is None else (Chem.MolToSmiles(mol), compute_descriptors(mol))


def _describe_all(smiles: Sequence[str]) -> list[tuple[str, np.ndarray] | None]:
    with rdBase.BlockLogs():
        return [_describe(raw) for raw in smiles]


@dataclass
class PreparedCorpus:
    """A corpus canonicalised with its raw descriptors computed once; invalid and excluded molecules removed."""

    smiles: list[str]
    descriptors: np.ndarray
    invalid: int = 0
    excluded: int = 0

    def save(self, path: str | Path) -> None:
        import pandas as pd

        frame = pd.DataFrame(self.descriptors, columns=list(DESCRIPTORS))
        frame.insert(0, "smiles", self.smiles)
        frame.attrs = {"invalid": self.invalid, "excluded": self.excluded}
        frame.to_parquet(path)

    @classmethod
    def load(cls, path: str | Path) -> PreparedCorpus:
        import pandas as pd

        frame = pd.read_parquet(path)
        if list(frame.columns[1:]) != list(DESCRIPTORS):
            raise ValueError(f"{path} holds other descriptors than {list(DESCRIPTORS)}: prepare it again")
        return cls(frame["smiles"].tolist(), frame[list(DESCRIPTORS)].to_numpy(np.float32),
                   int(frame.attrs.get("invalid", 0)), int(frame.attrs.get("excluded", 0)))


def prepare_corpus(smiles: Sequence[str], exclude: set[str] | None = None, workers: int | None = None,
                   chunk_size: int = 20_000) -> PreparedCorpus:
    """Canonicalise and describe every molecule once, in ``workers`` processes (RDKit is the bottleneck of
    pretraining on a GPU otherwise); drops invalid SMILES, molecules in ``exclude`` and duplicates."""
    chunks = [smiles[i:i + chunk_size] for i in range(0, len(smiles), chunk_size)]
    workers = workers or os.cpu_count() or 1
    if workers > 1 and len(chunks) > 1:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_describe_all, chunks))
    else:
        parts = [_describe_all(chunk) for chunk in chunks]
    exclude = exclude or set()
    seen: set[str] = set()
    keep_smiles, keep_rows, invalid, excluded = [], [], 0, 0
    for described in (d for part in parts for d in part):
        if described is None:
            invalid += 1
        elif described[0] in exclude:
            excluded += 1
        elif described[0] not in seen:
            seen.add(described[0])
            keep_smiles.append(described[0])
            keep_rows.append(described[1])
    descriptors = np.stack(keep_rows) if keep_rows else np.zeros((0, len(DESCRIPTORS)), np.float32)
    return PreparedCorpus(keep_smiles, descriptors, invalid, excluded)


class MoleculeStream:
    """Canonical, de-duplicated-against-``exclude`` molecules in a seeded order, resumable by cursor.

    From a :class:`PreparedCorpus` molecules are taken as they are; from raw SMILES they are canonicalised and
    described on the fly.
    """

    def __init__(self, corpus: Sequence[str] | PreparedCorpus, seed: int, exclude: set[str] | None = None) -> None:
        prepared = isinstance(corpus, PreparedCorpus)
        self.smiles = corpus.smiles if prepared else corpus
        self.descriptors = corpus.descriptors if prepared else None
        self.order = np.random.default_rng(seed).permutation(len(self.smiles))
        self.exclude = exclude or set()
        self.cursor = 0
        self.excluded = corpus.excluded if prepared else 0
        self.invalid = corpus.invalid if prepared else 0

    def take(self, n: int) -> tuple[list[str], np.ndarray, np.ndarray | None]:
        """Next ``n`` usable molecules (wrapping around at the end) with their raw descriptors and, for a
        prepared corpus, their positions in it."""
        if self.descriptors is not None:
            ids = self.order[np.arange(self.cursor, self.cursor + n) % len(self.order)]
            self.cursor += n
            return [self.smiles[i] for i in ids], self.descriptors[ids], ids
        out: list[str] = []
        desc: list[np.ndarray] = []
        with rdBase.BlockLogs():
            while len(out) < n:
                described = _describe(self.smiles[self.order[self.cursor % len(self.order)]])
                self.cursor += 1
                if described is None:
                    self.invalid += 1
                elif described[0] in self.exclude:
                    self.excluded += 1
                else:
                    out.append(described[0])
                    desc.append(described[1])
        return out, np.stack(desc), None


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


def _new_model(config: PretrainConfig, tokenizer: PreTrainedTokenizerBase) -> BertForMaskedLM:
    bert_config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=config.hidden_size, num_hidden_layers=config.num_layers,
        num_attention_heads=config.num_heads, intermediate_size=config.intermediate_size,
        max_position_embeddings=config.max_position_embeddings, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(config.seed)
    return BertForMaskedLM(bert_config)


class _Batcher:
    """Tokenises molecules and applies 80/10/10 masking (transformers' collator, torch global RNG).

    With ``corpus``, every molecule is tokenised once up front (one parallel call into ``tokenizers``) and
    batches are cut from a flat id array: per-batch tokenisation would otherwise starve a GPU.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: PretrainConfig,
                 corpus: Sequence[str] | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_length = config.max_length
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=config.mask_probability)
        self.special_ids = torch.tensor(tokenizer.all_special_ids)
        self.flat: np.ndarray | None = None
        if corpus is not None:
            encoded = tokenizer(list(corpus), truncation=True, max_length=self.max_length)["input_ids"]
            self.lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
            self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
            self.flat = np.fromiter((t for ids in encoded for t in ids), dtype=np.int64, count=int(self.offsets[-1]))

    def _padded(self, ids: np.ndarray) -> torch.Tensor:
        lengths = self.lengths[ids]
        out = np.full((len(ids), int(lengths.max())), self.tokenizer.pad_token_id, dtype=np.int64)
        for row, (start, length) in enumerate(zip(self.offsets[ids], lengths)):
            out[row, :length] = self.flat[start:start + length]
        return torch.from_numpy(out)

    def __call__(self, smiles: list[str], ids: np.ndarray | None = None) -> dict[str, torch.Tensor]:
        if self.flat is not None and ids is not None:
            input_ids = self._padded(ids)
        else:
            input_ids = self.tokenizer(smiles, truncation=True, max_length=self.max_length, padding=True,
                                       return_tensors="pt")["input_ids"]
        attention_mask = (input_ids != self.tokenizer.pad_token_id).long()
        masked, labels = self.collator.torch_mask_tokens(input_ids, torch.isin(input_ids, self.special_ids))
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


def _losses(model: nn.Module, head: DescriptorHead | None, batch: dict[str, torch.Tensor],
            targets: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    device = next(model.parameters()).device
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    targets = None if targets is None else targets.to(device, non_blocking=True)
    with autocast(device, "bf16" if device.type == "cuda" else "fp32"):
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"],
                    output_hidden_states=head is not None)
        if head is None or targets is None:
            return out.loss, out.loss, None
        pred = head(out.hidden_states[-1], batch["attention_mask"])
    desc_loss = nn.functional.mse_loss(pred.float(), targets)
    return out.loss, desc_loss, pred


@torch.no_grad()
def _evaluate(model: nn.Module, head: DescriptorHead | None, batcher: _Batcher, smiles: list[str],
              targets: np.ndarray | None, batch_size: int) -> dict[str, float]:
    """Masked-token loss (fixed masking seed) and, with a head, descriptor R² on held-out molecules."""
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
        for i, name in enumerate(DESCRIPTORS):
            result[f"r2_{name}"] = float(r2_score(targets[:, i], pred_all[:, i]))
        result["descriptor_r2_mean"] = float(np.mean([result[f"r2_{n}"] for n in DESCRIPTORS]))
    return result


def load_checkpoint_state(path: Path) -> dict:
    """Trainer state of a checkpoint (plain tensors and numbers: loaded with ``weights_only=True``)."""
    return torch.load(path / "trainer_state.pt", weights_only=True, map_location="cpu")


def _save_checkpoint(ckpt: Path, model: nn.Module, head: DescriptorHead | None, tokenizer: PreTrainedTokenizerBase,
                     optimizer: torch.optim.Optimizer, scheduler, step: int, stream: MoleculeStream,
                     scaler: DescriptorScaler | None, config: PretrainConfig) -> None:
    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp / "model")
    tokenizer.save_pretrained(tmp / "model")
    if head is not None:
        head.save(tmp / "descriptor_head.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "cursor": stream.cursor, "excluded": stream.excluded, "invalid": stream.invalid,
                "rng": torch.get_rng_state(),
                "scaler_mean": None if scaler is None else torch.from_numpy(scaler.mean),
                "scaler_std": None if scaler is None else torch.from_numpy(scaler.std)},
               tmp / "trainer_state.pt")
    (tmp / "pretrain_config.json").write_text(json.dumps(asdict(config), indent=2))
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


@dataclass
class PretrainResult:
    steps: int
    final_train_loss: float
    eval: dict[str, float]
    molecules_seen: int
    excluded: int
    seconds: float
    output_dir: str


def pretrain(smiles: Sequence[str] | PreparedCorpus, output_dir: str | Path, config: PretrainConfig = PretrainConfig(),
             init_from: str | Path | None = None, trust_remote_code: bool = False, exclude: set[str] | None = None,
             vocabulary_smiles: Sequence[str] = (), progress: Callable[[dict], None] | None = None,
             cancel: Event | None = None) -> PretrainResult:
    """Masked-LM training (plus descriptor regression when ``config.descriptor_weight > 0``).

    ``smiles`` is the corpus in any order: raw SMILES, whose molecules in ``exclude`` (canonical SMILES) are
    skipped, or a :class:`PreparedCorpus` for large corpora, used as prepared (exclusions already applied).
    Trains on CUDA with bf16 autocast when present.
    A new BERT is created unless ``init_from`` names a masked-LM folder or hub id. Resumes from
    ``output_dir/checkpoint`` when it exists. The final model, tokenizer and ``pretrain_summary.json``
    are written to ``output_dir``.
    """
    out = Path(output_dir)
    ckpt = out / "checkpoint"
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    stream = MoleculeStream(smiles, config.seed, exclude)
    eval_smiles, eval_desc, _ = stream.take(min(config.n_eval, max(len(stream.smiles) // 10, 1)))
    use_descriptors = config.descriptor_weight > 0
    if ckpt.exists():
        state = load_checkpoint_state(ckpt)
        model, tokenizer = load_backbone(ckpt / "model", trust_remote_code, masked_lm=True)
        log.info("resuming from %s at step %d", ckpt, state["step"])
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
            stats_stream = MoleculeStream(smiles, config.seed, exclude)
            stats_stream.cursor = stream.cursor  # statistics from training molecules, never the eval set
            _, train_desc, _ = stats_stream.take(min(config.n_descriptor_stats, len(stream.smiles)))
            scaler = DescriptorScaler.fit(train_desc)
        eval_desc = scaler.transform(eval_desc)
    head = DescriptorHead(model.config.hidden_size, len(DESCRIPTORS)) if use_descriptors else None
    if head is not None and ckpt.exists() and (ckpt / "descriptor_head.safetensors").exists():
        head.load_state_dict(load_file(str(ckpt / "descriptor_head.safetensors")))
    device = best_device()
    model.to(device)
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
    batcher = _Batcher(tokenizer, config, stream.smiles if isinstance(smiles, PreparedCorpus) else None)
    model.train()
    start, ema = time.time(), None
    molecules_at_start = step * config.batch_size
    while step < config.max_steps:
        if cancel is not None and cancel.is_set():
            _save_checkpoint(ckpt, model, head, tokenizer, optimizer, scheduler, step, stream, scaler, config)
            raise JobCancelledError(f"pretraining cancelled at step {step} (checkpoint saved)")
        batch_smiles, raw_desc, batch_ids = stream.take(config.batch_size)
        batch = batcher(batch_smiles, batch_ids)
        targets = torch.from_numpy(scaler.transform(raw_desc)) if scaler is not None else None
        mlm_loss, desc_loss, _ = _losses(model, head, batch, targets)
        loss = mlm_loss + config.descriptor_weight * desc_loss if head is not None else mlm_loss
        if not torch.isfinite(loss):
            raise TrainingDivergedError(f"pretraining loss is {float(loss)} at step {step}; lower the learning rate")
        loss.backward()
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
                                    config.batch_size)
                log.info("step %d eval %s", step, metrics)
                with (out / "eval_log.jsonl").open("a") as fh:
                    fh.write(json.dumps({"step": step, **metrics}) + "\n")
    metrics = _evaluate(model, head, batcher, eval_smiles, eval_desc if head else None, config.batch_size)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    if head is not None and scaler is not None:
        head.save(out / "descriptor_head.safetensors")
        (out / "descriptor_scaler.json").write_text(json.dumps(
            {"names": list(DESCRIPTORS), "mean": scaler.mean.tolist(), "std": scaler.std.tolist()}, indent=2))
    result = PretrainResult(step, float(ema or math.nan), metrics, stream.cursor, stream.excluded,
                            time.time() - start, str(out))
    (out / "pretrain_summary.json").write_text(json.dumps({**asdict(result), "config": asdict(config)}, indent=2))
    return result


def moses_corpus_path() -> Path:
    """Path of MOSES' ``train.csv.gz`` inside the installed ``molsets`` package (never imported)."""
    import importlib.util

    spec = importlib.util.find_spec("moses")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'molsets' is not installed: run `make pretrain-deps`")
    path = Path(list(spec.submodule_search_locations)[0]) / "dataset" / "data" / "train.csv.gz"
    if not path.exists():
        raise FileNotFoundError(f"MOSES training file not found at {path}")
    return path


def load_moses_smiles() -> list[str]:
    """The ~1.6 M MOSES training SMILES."""
    import pandas as pd

    return pd.read_csv(moses_corpus_path())["SMILES"].tolist()


def run_mlm_then_regression(ctx: JobContext, data: SplitData) -> dict[str, float]:
    """Unsupervised fine-tuning: masked LM on the task's training + validation SMILES, then regression."""
    opts = ctx.spec.options
    smiles = data.train.smiles + data.val.smiles
    batch_size = int(opts.get("mlm_batch_size", 32))
    epochs = int(opts.get("mlm_epochs", 3))
    steps = max(1, math.ceil(len(smiles) / batch_size) * epochs)
    config = PretrainConfig(batch_size=batch_size, learning_rate=float(opts.get("mlm_learning_rate", 1e-4)),
                            max_steps=steps, warmup_steps=max(1, steps // 10), descriptor_weight=0.0,
                            checkpoint_every=steps + 1, n_eval=min(200, max(1, len(smiles) // 10)),
                            seed=ctx.spec.train.seed)

    def on_step(p: dict) -> None:
        ctx.check_cancel()
        ctx.progress(0.3 * p["step"] / p["max_steps"], f"masked LM: step {p['step']}/{p['max_steps']}, "
                                                       f"loss {p['mlm_loss']:.3f}")
        if p["step"] % max(1, steps // epochs) == 0:
            ctx.store.add_epoch(ctx.run_id, p["step"] // max(1, steps // epochs), {"mlm_loss": p["mlm_loss"]},
                                stage="mlm")

    result = pretrain(smiles, ctx.artifacts / "mlm", config, init_from=ctx.spec.model.backbone,
                      trust_remote_code=ctx.spec.model.trust_remote_code, progress=on_step, cancel=ctx.cancel)
    ctx.store.set_info(ctx.run_id, mlm_steps=result.steps, mlm_eval_loss=result.eval.get("mlm_loss"))
    adapted = replace(ctx.spec.model, backbone=str(ctx.artifacts / "mlm"))
    _, metrics = train_and_evaluate(ctx, data, adapted, span=(0.3, 1.0))
    return {**metrics, "mlm_eval_loss": result.eval.get("mlm_loss", math.nan)}
