"""Full fine-tuning: every weight of the backbone and the head."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..data import MoleculeData
from ..pipeline import JobContext, SplitData, train_and_evaluate
from ..spec import BaselineOptions

__all__ = ["run_baseline"]


def run_baseline(ctx: JobContext, data: SplitData, opts: BaselineOptions) -> dict[str, float]:
    """Full fine-tuning. With ``train_on_val`` it fits on training + validation for the fixed number of
    epochs (no model selection), as for a model that ships."""
    if opts.train_on_val:
        data = replace(data, train=data.train.concat(data.val), val=MoleculeData([], np.zeros(0)))
        ctx.store.set_info(ctx.run_id, n_train=len(data.train), n_val=0)  # what it trained on, not the split's parts
    _, metrics = train_and_evaluate(ctx, data)
    return metrics
