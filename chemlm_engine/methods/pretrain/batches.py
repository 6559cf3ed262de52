"""Pretraining batches: tokenised (once, for a prepared corpus), masked 80/10/10, optionally in a random SMILES
spelling per draw, and cut into length-sorted micro-batches."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from rdkit import Chem, rdBase
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from ...spec import PretrainOptions

__all__ = ["Batcher", "random_spellings", "micro_batches"]


class Batcher:
    """Tokenises molecules and applies 80/10/10 masking (transformers' collator, torch global RNG).

    With ``corpus``, every molecule is tokenised once up front (one parallel call into ``tokenizers``) and
    batches are cut from a flat id array: per-batch tokenisation would otherwise starve a GPU.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: PretrainOptions,
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
        self.randomize = config.randomize_smiles
        self.seed = config.seed

    def _padded(self, ids: np.ndarray) -> torch.Tensor:
        assert self.flat is not None
        lengths = self.lengths[ids]
        out = np.full((len(ids), int(lengths.max())), self.tokenizer.pad_token_id, dtype=np.int64)
        for row, (start, length) in enumerate(zip(self.offsets[ids], lengths)):
            out[row, :length] = self.flat[start:start + length]
        return torch.from_numpy(out)

    def __call__(self, smiles: list[str], ids: np.ndarray | None = None,
                 step: int | None = None) -> dict[str, torch.Tensor]:
        """Masked batch of ``smiles``; with ``randomize_smiles`` and a training ``step``, each molecule in a random
        spelling seeded by the step (so a resumed run draws the same ones): long spellings train late positions."""
        if self.randomize and step is not None:
            smiles = random_spellings(smiles, np.random.default_rng([self.seed, step]))
            ids = None
        if self.flat is not None and ids is not None:
            input_ids = self._padded(ids)
        else:
            input_ids = self.tokenizer(smiles, truncation=True, max_length=self.max_length, padding=True,
                                       return_tensors="pt")["input_ids"]
        attention_mask = (input_ids != self.tokenizer.pad_token_id).long()
        masked, labels = self.collator.torch_mask_tokens(input_ids, torch.isin(input_ids, self.special_ids))
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


def random_spellings(smiles: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One random valid SMILES of each molecule (RDKit, seeded from ``rng``); unparsable ones stay as they are."""
    out = []
    with rdBase.BlockLogs():
        for text in smiles:
            mol = Chem.MolFromSmiles(text)
            seed = int(rng.integers(2**31 - 1))
            out.append(text if mol is None else Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed)[0])
    return out


def micro_batches(batch: dict[str, torch.Tensor], size: int | None) -> list[dict[str, torch.Tensor]]:
    """The batch's molecules sorted by length and cut into groups of ``size``, each trimmed to its own longest
    molecule: the same tokens, masks and labels with far less padding (random spellings of a drug-like corpus
    pad a batch of 128 to ~3x its tokens; 2.5x faster steps on a CPU). ``None``: the batch as it is."""
    rows = batch["attention_mask"].shape[0]
    if size is None or size >= rows:
        return [batch]
    lengths = batch["attention_mask"].sum(1)
    order = torch.argsort(lengths, stable=True)
    parts = []
    for start in range(0, rows, size):
        idx = order[start:start + size]
        parts.append({k: v[idx, :int(lengths[idx].max())] for k, v in batch.items()} | {"rows": idx})
    return parts
