"""The influence job: solve once, score the pool, retrain with the top-k against random and all-pool
controls, record everything."""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from ...pipeline import JobContext, SplitData, load_pool, read_pool, train_and_evaluate
from ..selection import select_random, sizes_within
from ...store import Kinds, RunStore, Tables
from ...spec import InfluenceOptions, JobSpec
from .scores import (corrupt_labels, flag_suspects, last_layer_inverse, score_molecules, score_molecules_sharded,
                     self_influence, suspect_threshold)
from .solvers import (DRIFT_LIMIT, LissaConfig, SolveResult, conjugate_gradient, exact_solve, lissa, mean_grad,
                      norm_drift)
from .tracked import TransformerInfluence

log = logging.getLogger(__name__)
# said when every k is the whole pool: the three selections retrain on the same molecules
WHOLE_POOL = (": influence top-k, random k and the whole pool are then the same molecules, so the sweep cannot tell "
              "them apart (a larger pool, or k below its size)")


def check_pool(spec: JobSpec, data: SplitData, store: RunStore) -> None:
    """Before a run: the pool file, if one is named, can be read and holds labelled molecules."""
    opts = spec.options_of(InfluenceOptions)
    if opts.pool:
        read_pool(spec, opts.pool)


def _solve(influence: TransformerInfluence, train_inputs, g_val: torch.Tensor, opts: InfluenceOptions,
           on_step: Callable[[int, int, float], None]) -> SolveResult:
    curvature = influence.curvature(opts.curvature)
    if opts.solver == "exact":
        return exact_solve(curvature, train_inputs, g_val, opts.damping)
    if opts.solver == "cg":
        return conjugate_gradient(curvature, train_inputs, g_val, opts.damping, opts.cg_iterations)
    config = LissaConfig(damping=opts.damping, scale=opts.scale, depth=opts.depth, repeats=opts.repeats,
                         batch_size=opts.lissa_batch_size, seed=opts.seed)
    return lissa(curvature, train_inputs, g_val, config, on_step)


def run_influence(ctx: JobContext, data: SplitData, opts: InfluenceOptions) -> dict[str, float | str]:
    """Influence-based selection of external molecules, with the k-sweep and its two controls.

    Options: :class:`~chemlm_engine.spec.options.InfluenceOptions`. Without ``pool``, a held-out
    ``pool_fraction`` of the training split (which the base model then never sees) is the pool; the k-sweep's
    controls are k random pool molecules and the whole pool. The run's headline test metrics are
    those of the influence top-k with the lowest validation MSE.
    """
    seed = ctx.spec.train.seed
    if opts.pool:
        pool, train = load_pool(ctx, data, opts.pool), data.train
    else:
        held = select_random(len(data.train), int(len(data.train) * opts.pool_fraction), seed)
        pool = data.train.subset(np.sort(held))
        train = data.train.subset(np.setdiff1d(np.arange(len(data.train)), held))
    corrupted = np.zeros(len(pool), dtype=bool)
    if opts.corrupt_fraction > 0:
        labels, corrupted = corrupt_labels(pool.labels, opts.corrupt_fraction, seed)
        pool = replace(pool, labels=labels)
    ks = sizes_within(opts.k, len(pool))
    if max(opts.k) > len(pool):
        log.warning("k %s: the pool has %d molecules, so the sweep runs k = %s%s", ", ".join(map(str, opts.k)),
                    len(pool), ", ".join(map(str, ks)), WHOLE_POOL if ks == [len(pool)] else "")
    n_fits = 2 + 2 * len(ks)
    span = lambda i: (i / n_fits, (i + 1) / n_fits)  # noqa: E731

    base_data = replace(data, train=train)
    model, base_metrics = train_and_evaluate(ctx, base_data, stage="base", span=span(0), final=False)
    ctx.progress(1 / n_fits, "influence: gradients")
    influence = TransformerInfluence(model, opts.scope)
    train_inputs = influence.features(train.smiles, train.labels)
    val_inputs = influence.features(data.val.smiles, data.val.labels)
    g_val = mean_grad(influence.loss, influence.params, val_inputs)

    def on_step(repeat: int, step: int, norm: float) -> None:
        ctx.check_cancel()
        ctx.progress(1 / n_fits, f"influence: LiSSA repeat {repeat}, step {step}, |x| = {norm:.3g}")

    solved = _solve(influence, train_inputs, g_val, opts, on_step)
    ctx.store.add_table(ctx.run_id, Tables.SOLVER, solved.trace)
    inverse = last_layer_inverse(influence, train_inputs, opts.damping)
    shards = opts.score_shards
    if ctx.mapper is not None and shards > 1:  # on a cluster: shard the pool across workers
        scores, suspicion = score_molecules_sharded(influence, pool.smiles, pool.labels, solved.vector, inverse,
                                                    shards, ctx.map)
    else:
        scores, suspicion = score_molecules(influence, pool.smiles, pool.labels, solved.vector, inverse)
    ranks = np.empty(len(scores), dtype=int)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    reference = self_influence(influence, val_inputs, inverse)
    suspect = flag_suspects(suspicion, reference)
    ctx.store.add_molecules(ctx.run_id, Kinds.INFLUENCE, pd.DataFrame(
        {"smiles": pool.smiles, "label": pool.labels, "score": scores, "rank": ranks,
         "self_influence": suspicion, "suspect": suspect, "corrupted": corrupted}))
    metrics: dict[str, float | str] = {f"base_{k}": v for k, v in base_metrics.items() if k.startswith("test_")}
    drift = norm_drift(solved.trace)
    metrics.update({"n_pool": len(pool), "n_params_tracked": influence.n_params, "solver": solved.method,
                    "n_suspects": int(suspect.sum()), "suspect_threshold": suspect_threshold(reference),
                    "n_reference": len(reference), "solver_norm_drift": drift})
    if drift > DRIFT_LIMIT:  # the page says it above the scores; a command says it here
        log.warning("the inverse-HVP estimate (%s) had not settled (its norm still moved %.0f%% over the last fifth "
                    "of the steps): rerun with more depth, a larger scale or damping, or --solver cg, before acting "
                    "on these scores", solved.method, 100 * drift)
    if corrupted.any():
        # How well each ranking finds the corrupted labels (0.5 = chance)
        metrics["mislabel_auroc"] = float(roc_auc_score(corrupted, suspicion))
        metrics["mislabel_auroc_first_order"] = float(roc_auc_score(corrupted, -scores))

    candidates = np.flatnonzero(~suspect) if opts.skip_suspects else np.arange(len(pool))
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    plan = [(k, "influence", order[:k]) for k in ks] + [(k, "random", select_random(len(pool), k, seed)) for k in ks]
    plan.append((len(pool), "all", np.arange(len(pool))))

    def fit_point(i: int) -> dict[str, float]:
        k, how, pick = plan[i]
        _, m = train_and_evaluate(ctx, replace(data, train=train.concat(pool.subset(pick))), stage=f"{how}-{k}",
                                  span=span(1 + i), final=i == len(plan) - 1)
        return m

    # k is the number actually picked: fewer than asked when skipped suspects leave too few candidates
    results = ctx.sweep(plan, fit_point, lambda point, m: {"k": len(point[2]), "selection": point[1], **{
        key: m[key] for key in ("val_mse", "test_mse", "test_r2", "test_rmse")}})
    best_val = math.inf
    for (_, how, pick), m in zip(plan, results):
        if how == "influence" and m["val_mse"] < best_val:
            best_val = m["val_mse"]
            metrics.update({key: m[key] for key in ("val_mse", "test_mse", "test_rmse", "test_mae", "test_r2")},
                           best_k=len(pick))
    return metrics
