"""Pretraining batches: tokenised (once, for a prepared corpus), masked 80/10/10, optionally in a random SMILES
spelling per draw (or one of a few spelt once up front, in all cores), and cut into length-sorted micro-batches."""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import torch
from rdkit import Chem, rdBase
from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerBase

from ...spec import PretrainOptions

__all__ = ["Batcher", "random_spellings", "spelling_table", "micro_batches"]


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
        self.tokens: TokenArrays | None = None
        if corpus is not None:
            self.tokens = TokenArrays(tokenizer(list(corpus), truncation=True, max_length=self.max_length)["input_ids"])
        self.randomize = config.randomize_smiles
        self.seed = config.seed
        # Spelling each batch's molecules afresh costs ~80 ms of one core per 512 (RDKit and tokenising), which
        # starves a GPU: with `spellings_per_molecule` a prepared corpus is spelt that many ways and tokenised once,
        # in all cores; row i * count + k of `spelt` is molecule i's k-th spelling.
        self.count = config.spellings_per_molecule
        self.spelt: TokenArrays | None = None
        if corpus is not None and self.randomize and self.count:
            table = spelling_table(corpus, self.count, config.seed, config.workers)
            self.spelt = TokenArrays(tokenizer([s for row in table for s in row], truncation=True,
                                               max_length=self.max_length)["input_ids"])

    def __call__(self, smiles: list[str], ids: np.ndarray | None = None,
                 step: int | None = None) -> dict[str, torch.Tensor]:
        """Masked batch of ``smiles``; with ``randomize_smiles`` and a training ``step``, each molecule in a random
        spelling seeded by the step (so a resumed run draws the same ones): long spellings train late positions."""
        pad = self.tokenizer.pad_token_id
        rng = np.random.default_rng([self.seed, step]) if self.randomize and step is not None else None
        if rng is not None and self.spelt is not None and ids is not None:
            input_ids = self.spelt.padded(np.asarray(ids) * self.count + rng.integers(self.count, size=len(ids)), pad)
        elif rng is None and self.tokens is not None and ids is not None:
            input_ids = self.tokens.padded(np.asarray(ids), pad)
        else:
            if rng is not None:
                smiles = random_spellings(smiles, rng)
            input_ids = self.tokenizer(smiles, truncation=True, max_length=self.max_length, padding=True,
                                       return_tensors="pt")["input_ids"]
        attention_mask = (input_ids != pad).long()
        masked, labels = self.collator.torch_mask_tokens(input_ids, torch.isin(input_ids, self.special_ids))
        return {"input_ids": masked, "attention_mask": attention_mask, "labels": labels}


class TokenArrays:
    """Token ids of many sequences in one flat array (compact, and a batch is cut from it without tokenising)."""

    def __init__(self, encoded: Sequence[Sequence[int]]) -> None:
        self.lengths = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        self.flat = np.fromiter((t for ids in encoded for t in ids), dtype=np.int32, count=int(self.offsets[-1]))

    def padded(self, rows: np.ndarray, pad_id: int) -> torch.Tensor:
        lengths = self.lengths[rows]
        out = np.full((len(rows), int(lengths.max())), pad_id, dtype=np.int64)
        for row, (start, length) in enumerate(zip(self.offsets[rows], lengths)):
            out[row, :length] = self.flat[start:start + length]
        return torch.from_numpy(out)


def random_spellings(smiles: Sequence[str], rng: np.random.Generator) -> list[str]:
    """One random valid SMILES of each molecule (RDKit, seeded from ``rng``); unparsable ones stay as they are."""
    out = []
    with rdBase.BlockLogs():
        for text in smiles:
            mol = Chem.MolFromSmiles(text)
            seed = int(rng.integers(2**31 - 1))
            out.append(text if mol is None else Chem.MolToRandomSmilesVect(mol, 1, randomSeed=seed)[0])
    return out


def _spell(args: tuple[Sequence[str], int, int]) -> list[list[str]]:
    smiles, count, seed = args
    out = []
    with rdBase.BlockLogs():
        for i, text in enumerate(smiles):
            mol = Chem.MolFromSmiles(text)
            spelt = [text] * count if mol is None else Chem.MolToRandomSmilesVect(mol, count, randomSeed=seed + i)
            out.append(list(spelt))
    return out


def spelling_table(smiles: Sequence[str], count: int, seed: int = 0, workers: int | None = None,
                   chunk: int = 5000) -> list[list[str]]:
    """``count`` random spellings of every molecule (seeded by the seed and the molecule's position: the same table
    in any number of processes), ``chunk`` molecules per task."""
    # RDKit seeds its random spellings only with a positive seed (0: unseeded)
    jobs = [(list(smiles[i:i + chunk]), count, 1 + seed * 1_000_003 + i) for i in range(0, len(smiles), chunk)]
    if workers == 1 or len(jobs) == 1:
        parts = [_spell(job) for job in jobs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_spell, jobs))
    return [row for part in parts for row in part]


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
