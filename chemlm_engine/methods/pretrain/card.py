"""The model card a pretraining run writes beside its weights: the architecture, what the model saw (its corpus
against the molecules it will be fine-tuned on), what it learnt (held-out metrics), and the spec that trains it
again."""
from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

from safetensors import safe_open

from ...spec import JobSpec, PretrainOptions
from .drug_corpus import corpus_statistics, statistics_table
from .trainer import PretrainResult

__all__ = ["write_model_card", "CARD", "SPEC"]

CARD, SPEC = "MODEL_CARD.md", "pretrain_spec.json"
_SAMPLE = 20_000  # corpus molecules described for the statistics (seeded sample): shares to ±0.7 points


def _parameters(folder: Path) -> int:
    with safe_open(str(folder / "model.safetensors"), "pt") as weights:  # shapes only: no tensor is read
        return sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())


def _evaluations(folder: Path, final: dict[str, float], steps: int) -> str:
    rows = [json.loads(line) for line in (folder / "eval_log.jsonl").read_text().splitlines()] \
        if (folder / "eval_log.jsonl").exists() else []
    rows = [r for r in rows if r["step"] != steps] + [{"step": steps, **final}]
    lines = ["| step | masked-token loss | mean descriptor R² | MolLogP R² |", "|---|---|---|---|"]
    for r in rows:
        cells = [r.get(k) for k in ("mlm_loss", "descriptor_r2_mean", "r2_MolLogP")]
        lines.append(f"| {r['step']:,} | " + " | ".join("–" if c is None else f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def write_model_card(folder: str | Path, spec: JobSpec, opts: PretrainOptions, result: PretrainResult,
                     corpus: Sequence[str], task: Sequence[str], task_name: str, tokenizer) -> Path:
    """Write ``MODEL_CARD.md`` and the job's spec (``pretrain_spec.json``: ``chemlm train --spec`` continues it in
    its folder; a copy with another ``output`` trains it anew) into the pretrained model's ``folder``; ``corpus`` as
    trained on, ``task`` the molecules left out of it (the fine-tuning data, ``task_name``)."""
    folder = Path(folder)
    (folder / SPEC).write_text(spec.to_json())
    config = json.loads((folder / "config.json").read_text())
    sample = random.Random(opts.seed).sample(list(corpus), min(len(corpus), _SAMPLE))
    statistics = statistics_table({f"corpus ({len(sample):,} sampled)": corpus_statistics(sample, tokenizer),
                                   task_name: corpus_statistics(list(task), tokenizer)})
    targets = "none" if opts.descriptor_weight == 0 else (
        f"{opts.descriptor_targets} descriptors (weight {opts.descriptor_weight:g}, {opts.target_dropout:.0%} "
        "hidden per molecule)")
    start = f"continued from `{opts.init_from}`" if opts.init_from else "a new model"
    card = f"""# {folder.name}

A SMILES BERT pretrained by ChemLM Studio (`chemlm pretrain`), {start}.

| | |
|---|---|
| architecture | BERT: layers {config['num_hidden_layers']}, hidden {config['hidden_size']}, heads \
{config['num_attention_heads']}, FFN {config['intermediate_size']}, positions {config['max_position_embeddings']}, \
vocabulary {config['vocab_size']} |
| parameters | {_parameters(folder) / 1e6:.2f} M with the masked-LM head |
| corpus | {opts.corpus or 'MOSES (`molsets`)'}: {len(corpus):,} molecules after canonicalisation and de-duplication; \
left out as {task_name} molecules: {result.excluded:,} |
| objective | masked tokens ({opts.mask_probability:.0%}) + {targets}; \
{'a random SMILES spelling per draw' if opts.randomize_smiles else 'canonical SMILES'} |
| optimisation | AdamW, learning rate {opts.learning_rate:g}, weight decay {opts.weight_decay:g}, \
{opts.warmup_steps:,} warm-up steps, batch {opts.batch_size}, seed {opts.seed} |
| budget | {result.steps:,} steps, {result.molecules_seen:,} training molecules drawn, {result.seconds / 60:.1f} \
min (the minutes: this run's share, after any resume) |

## Corpus against {task_name} (share of molecules per bin)

{statistics}

## Held-out evaluation ({min(opts.n_eval, max(len(corpus) // 10, 1)):,} corpus molecules never trained on)

{_evaluations(folder, result.eval, result.steps)}

## Reproduce

`chemlm train --spec {SPEC}` (this folder's copy of the job's spec) continues this model here, from `checkpoint/`;
to train it anew, set `options.output` in a copy of the spec to a new folder.
"""
    (folder / CARD).write_text(card)
    return folder / CARD
