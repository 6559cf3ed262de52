"""Unsupervised fine-tuning as a job: masked LM on the task's own SMILES (the pretraining loop), then regression."""
from __future__ import annotations

import math
from dataclasses import replace

from ..pipeline import JobContext, SplitData, train_and_evaluate
from ..store import Tables
from .pretrain import pretrain
from ..spec import MlmOptions, PretrainOptions

__all__ = ["run_mlm_then_regression"]


def run_mlm_then_regression(ctx: JobContext, data: SplitData, opts: MlmOptions) -> dict[str, float]:
    """Unsupervised fine-tuning: masked LM on the task's training + validation SMILES, then regression."""
    smiles = data.train.smiles + data.val.smiles
    batch_size, epochs = opts.mlm_batch_size, opts.mlm_epochs
    steps = max(1, math.ceil(len(smiles) / batch_size) * epochs)
    config = PretrainOptions(batch_size=batch_size, learning_rate=opts.mlm_learning_rate,
                            max_steps=steps, warmup_steps=max(1, steps // 10), descriptor_weight=0.0,
                            checkpoint_every=steps + 1, n_eval=min(200, max(1, len(smiles) // 10)),
                            seed=ctx.spec.train.seed)

    def on_step(p: dict) -> None:
        ctx.check_cancel()
        ctx.progress(0.3 * p["step"] / p["max_steps"], f"masked LM: step {p['step']}/{p['max_steps']}, "
                                                       f"loss {p['mlm_loss']:.3f}")
        if p["step"] % max(1, steps // epochs) == 0:
            ctx.store.add_table(ctx.run_id, Tables.MLM_LOSS, [{"epoch": p["step"] // max(1, steps // epochs),
                                                               "mlm_loss": p["mlm_loss"]}])

    result = pretrain(smiles, ctx.artifacts / "mlm", config, init_from=ctx.spec.model.backbone,
                      trust_remote_code=ctx.spec.model.trust_remote_code, progress=on_step, cancel=ctx.cancel)
    ctx.store.set_info(ctx.run_id, mlm_steps=result.steps, mlm_eval_loss=result.eval.get("mlm_loss"))
    adapted = replace(ctx.spec.model, backbone=str(ctx.artifacts / "mlm"))
    _, metrics = train_and_evaluate(ctx, data, adapted, span=(0.3, 1.0))
    return {**metrics, "mlm_eval_loss": result.eval.get("mlm_loss", math.nan)}
