"""Masked-language-model training: pretraining on a corpus (with MolBERT-style descriptor regression)
and "unsupervised fine-tuning" on a task's own SMILES.

Molecules are consumed in a seeded order; a checkpoint holds the model, optimizer, scheduler, torch RNG
state and the position in that order, so an interrupted run resumes exactly where it stopped.
"""
from __future__ import annotations

from .corpus import (
                     DESCRIPTORS,
                     DescriptorScaler,
                     MoleculeStream,
                     PreparedCorpus,
                     compute_targets,
                     target_names,
                     load_moses_smiles,
                     moses_corpus_path,
                     prepare_corpus,
)
from .trainer import PretrainResult, load_checkpoint_state, pretrain

__all__ = ["DESCRIPTORS", "compute_targets", "target_names", "DescriptorScaler", "pretrain", "PretrainResult",
           "PreparedCorpus", "prepare_corpus", "MoleculeStream", "moses_corpus_path", "load_moses_smiles",
           "load_checkpoint_state"]
