"""MC-dropout uncertainty and uncertainty-sampling active learning."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..data import MoleculeData
from ..errors import DataError
from ..inference import mc_dropout
from ..model import RegressionModel
from ..pipeline import JobContext, SplitData, load_pool, train_and_evaluate
from ..store import Kinds
from ..spec import UncertaintyOptions

__all__ = ["mc_dropout", "select_most_uncertain", "select_random", "run_uncertainty"]


def select_most_uncertain(std: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` largest standard deviations (ties broken by position)."""
    return np.argsort(-np.asarray(std), kind="stable")[:n]


def select_random(size: int, n: int, seed: int) -> np.ndarray:
    """The random control: ``n`` indices drawn without replacement."""
    return np.random.default_rng(seed).choice(size, min(n, size), replace=False)


def _pool(ctx: JobContext, data: SplitData, rest: np.ndarray) -> MoleculeData:
    """The acquisition pool: an uploaded CSV (minus molecules already in any split), else the
    training molecules outside the initial labelled set."""
    path = ctx.spec.options_of(UncertaintyOptions).pool
    if not path:
        return data.train.subset(rest)
    return load_pool(ctx, data, path)


def run_uncertainty(ctx: JobContext, data: SplitData, opts: UncertaintyOptions) -> dict[str, float]:
    """Active learning by MC-dropout uncertainty sampling, with its random control.

    Options: :class:`~chemlm_engine.spec.registry.UncertaintyOptions` (``mc_scope``: see :func:`mc_dropout`;
    ``sweep``: both strategies are run for every N from the same initial model and stored as a table).
    """
    seed = ctx.spec.train.seed
    passes, mc_scope, strategy, sweep = opts.passes, opts.mc_scope, opts.strategy, list(opts.sweep)
    rounds = 1 if sweep else opts.rounds
    initial_size = opts.initial_size if opts.initial_size is not None else min(500, len(data.train) // 4)
    if not 0 < initial_size < len(data.train):
        raise DataError(f"initial_size must be between 1 and {len(data.train) - 1} (the training split), "
                        f"got {initial_size}")
    initial_ids = select_random(len(data.train), initial_size, seed)
    rest = np.setdiff1d(np.arange(len(data.train)), initial_ids)
    labelled = data.train.subset(np.sort(initial_ids))
    pool = _pool(ctx, data, rest)
    if len(pool) == 0:
        raise DataError("the acquisition pool is empty")
    n_fits = 1 + (2 * len(sweep) if sweep else rounds)
    span = lambda k: (k / n_fits, (k + 1) / n_fits)  # noqa: E731 - progress share of the k-th fit

    model, metrics = train_and_evaluate(ctx, replace(data, train=labelled), stage="initial", span=span(0),
                                        final=False)
    _, pool_std = mc_dropout(model, pool.smiles, passes, seed=seed, scope=mc_scope)
    ctx.store.add_molecules(ctx.run_id, Kinds.POOL_UNCERTAINTY, pd.DataFrame(
        {"smiles": pool.smiles, "label": pool.labels, "score": pool_std, "split": "pool"}))
    if sweep:
        points = [(n, how) for n in sweep for how in ("uncertainty", "random")]

        def fit_point(i: int) -> dict[str, float]:
            n, how = points[i]
            pick = select_most_uncertain(pool_std, n) if how == "uncertainty" else select_random(len(pool), n, seed)
            _, m = train_and_evaluate(ctx, replace(data, train=labelled.concat(pool.subset(pick))),
                                      stage=f"sweep-{how}-{n}", span=span(1 + i),
                                      final=i == len(points) - 2)  # the largest N, uncertainty: kept
            return m

        metrics = ctx.sweep(points, fit_point, lambda point, m: {
            "n": point[0], "strategy": point[1],
            **{key: m[key] for key in ("train_mse", "val_mse", "test_mse", "test_r2")}})[-2]
        model = RegressionModel.load(ctx.artifacts / "model")
        selected = select_most_uncertain(pool_std, sweep[-1])
        ctx.store.add_molecules(ctx.run_id, Kinds.ACQUIRED, pd.DataFrame(
            {"smiles": [pool.smiles[i] for i in selected], "label": pool.labels[selected],
             "score": pool_std[selected], "round": 1}))
    else:
        available = np.arange(len(pool))
        std = pool_std
        for r in range(1, rounds + 1):
            n = min(opts.acquire, len(available))
            local = select_most_uncertain(std, n) if strategy == "uncertainty" else select_random(len(available), n,
                                                                                                    seed + r)
            chosen = available[local]
            ctx.store.add_molecules(ctx.run_id, Kinds.ACQUIRED, pd.DataFrame(
                {"smiles": [pool.smiles[i] for i in chosen], "label": pool.labels[chosen], "score": std[local],
                 "round": r}))
            labelled = labelled.concat(pool.subset(chosen))
            available = np.setdiff1d(available, chosen)
            model, metrics = train_and_evaluate(ctx, replace(data, train=labelled), stage=f"round-{r}",
                                                span=span(r), final=r == rounds)
            if r < rounds:
                _, std = mc_dropout(model, [pool.smiles[i] for i in available], passes, seed=seed,
                                    scope=mc_scope)
    test_mean, test_std = mc_dropout(model, data.test.smiles, passes, seed=seed, scope=mc_scope)
    ctx.store.add_molecules(ctx.run_id, Kinds.TEST_UNCERTAINTY, pd.DataFrame(
        {"smiles": data.test.smiles, "label": data.test.labels, "prediction": test_mean, "score": test_std,
         "split": "test"}))
    rho = spearmanr(test_std, np.abs(test_mean - data.test.labels)).statistic
    return {**metrics, "n_labelled": len(labelled), "uncertainty_error_spearman": float(rho)}
