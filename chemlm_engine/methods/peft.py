"""Parameter-efficient fine-tuning: BitFit, LoRA and IA3 (the ``peft`` library), and ``ia3-pooled`` — one
learned scaling vector on the pooled embedding with the backbone frozen."""
from __future__ import annotations

import re
from typing import Any, cast

from peft import IA3Config, LoraConfig, get_peft_model
from torch import nn
from transformers import PreTrainedModel

from ..model import RegressionModel, count_parameters
from ..pipeline import JobContext, SplitData, train_and_evaluate
from ..spec import LoraOptions, MethodOptions

__all__ = ["STRATEGIES", "apply_strategy", "attention_modules", "run_strategy"]

STRATEGIES = ("bitfit", "lora", "ia3", "ia3-pooled")
_QUERY_KEY_VALUE = ("query", "key", "value", "q_proj", "k_proj", "v_proj", "q_lin", "k_lin", "v_lin")


def attention_modules(backbone: nn.Module, which: tuple[str, ...] = _QUERY_KEY_VALUE) -> list[str]:
    """Names of the attention projection ``nn.Linear`` layers (BERT, RoBERTa, MoLFormer, Llama-style ...)."""
    names = [name for name, module in backbone.named_modules()
             if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in which]
    if not names:
        raise ValueError("no attention projections found in this backbone; name target modules explicitly")
    return names


def feed_forward_output_modules(backbone: nn.Module) -> list[str]:
    """The second linear layer of each feed-forward block (its input is the FFN activation IA3 scales)."""
    pattern = re.compile(r"(.*\.)?(layer|layers)\.\d+\.(output\.dense|mlp\.down_proj|ffn\.lin2|output_dense)$")
    return [name for name, module in backbone.named_modules() if isinstance(module, nn.Linear) and
            pattern.match(name) and "attention" not in name]


def _freeze_backbone(model: RegressionModel) -> None:
    for param in model.backbone.parameters():
        param.requires_grad = False


def apply_strategy(model: RegressionModel, strategy: str, rank: int = 8, alpha: int = 16,
                   lora_dropout: float = 0.1) -> RegressionModel:
    """Make only the strategy's parameters trainable (the regression head always trains)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
    if strategy == "bitfit":
        for name, param in model.backbone.named_parameters():
            param.requires_grad = name.endswith(".bias")
    elif strategy == "lora":
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=lora_dropout,
                            target_modules=attention_modules(model.backbone))
        model.backbone = cast(PreTrainedModel, get_peft_model(model.backbone, config))  # it forwards to the model
    elif strategy == "ia3":
        ffn = feed_forward_output_modules(model.backbone)
        targets = attention_modules(model.backbone, ("key", "value", "k_proj", "v_proj", "k_lin", "v_lin")) + ffn
        model.backbone = cast(PreTrainedModel, get_peft_model(model.backbone, IA3Config(target_modules=targets,
                                                                                         feedforward_modules=ffn)))
    elif strategy == "ia3-pooled":
        _freeze_backbone(model)
        model.enable_pooled_scale()
    return model


def run_strategy(ctx: JobContext, data: SplitData, opts: MethodOptions) -> dict[str, float]:
    """Fine-tune with ``spec.method`` as the strategy (LoRA's options: :class:`LoraOptions`; with
    ``sweep_ranks`` one fit per rank, stored as a table, the last rank's model kept)."""
    strategy = ctx.spec.method
    ranks = list(opts.sweep_ranks) if isinstance(opts, LoraOptions) else []
    settings: dict[str, Any] = dict(alpha=opts.alpha, lora_dropout=opts.lora_dropout) \
        if isinstance(opts, LoraOptions) else {}
    if not ranks:
        rank = opts.rank if isinstance(opts, LoraOptions) else 8
        prepare = lambda m: apply_strategy(m, strategy, rank, **settings)  # noqa: E731
        _, metrics = train_and_evaluate(ctx, data, prepare=prepare)
        return metrics

    def fit_rank(k: int) -> dict[str, float]:
        model, metrics = train_and_evaluate(
            ctx, data, stage=f"rank-{ranks[k]}", span=(k / len(ranks), (k + 1) / len(ranks)),
            final=k == len(ranks) - 1, prepare=lambda m: apply_strategy(m, "lora", ranks[k], **settings))
        return {**metrics, "trainable_params": count_parameters(model)[0]}

    results = ctx.sweep(ranks, fit_rank, lambda rank, m: {"rank": rank, **{key: m[key] for key in (
        "trainable_params", "train_mse", "val_mse", "test_mse", "test_rmse", "test_r2")}})
    return {**results[-1], "rank": ranks[-1]}

