"""Atom-level SMILES tokenizer (the MoLFormer / Schwaller regex) as a Hugging Face fast tokenizer."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = ["SMILES_REGEX", "SPECIAL_TOKENS", "build_smiles_tokenizer", "smiles_tokens", "load_tokenizer"]

# The regex of Schwaller et al. (Molecular Transformer), also used by MoLFormer.
SMILES_REGEX = (
    r"(\[[^\]]+]|Br?|Cl?|N|O|S|P|F|I|b|c|n|o|s|p|\(|\)|\.|=|#|-|\+|\\|\/|:|~|@|\?|>|\*|\$|\%[0-9]{2}|[0-9])"
)
SPECIAL_TOKENS = {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>", "mask_token": "<mask>",
                  "unk_token": "<unk>"}
# Tokens every vocabulary gets, so that common atoms unseen in a small corpus are not <unk>.
_BASE_TOKENS = list("()[]=#-+\\/:.%@*0123456789") + [
    "C", "N", "O", "S", "P", "F", "Cl", "Br", "I", "B", "c", "n", "o", "s", "p", "b",
    "[nH]", "[NH+]", "[NH2+]", "[NH3+]", "[N+]", "[O-]", "[n+]", "[C@H]", "[C@@H]", "[C@]", "[C@@]", "[S+]",
    "[N-]", "[Si]", "[Se]", "[se]", "[2H]",
]
_PRE_TOKENIZER = pre_tokenizers.Split(Regex(SMILES_REGEX), behavior="isolated")


def smiles_tokens(smiles: str) -> list[str]:
    """Split a SMILES string into regex tokens (no special tokens)."""
    return [piece for piece, _ in _PRE_TOKENIZER.pre_tokenize_str(smiles)]


def build_smiles_tokenizer(corpus: Iterable[str], min_frequency: int = 1,
                           model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Build a word-level tokenizer whose vocabulary holds every regex token seen in ``corpus``."""
    counts = Counter(tok for smi in corpus for tok in smiles_tokens(smi))
    vocab_tokens = list(SPECIAL_TOKENS.values()) + sorted(
        set(_BASE_TOKENS) | {t for t, n in counts.items() if n >= min_frequency})
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_tokens))}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = _PRE_TOKENIZER
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A <eos>", pair="<bos> $A <eos> $B <eos>",
        special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])])
    return PreTrainedTokenizerFast(tokenizer_object=core, model_max_length=model_max_length,
                                   padding_side="right", **SPECIAL_TOKENS)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a tokenizer saved with ``save_pretrained``."""
    return PreTrainedTokenizerFast.from_pretrained(str(path))
