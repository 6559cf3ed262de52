"""Active learning: MC-dropout uncertainty sampling and ISAL (expected influence), with a random control."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..data import MoleculeData
from ..errors import DataError
from ..inference import mc_dropout
from ..model import RegressionModel
from ..pipeline import JobContext, SplitData, load_pool, read_pool, train_and_evaluate
from ..store import Kinds, RunStore
from ..spec import IsalOptions, JobSpec, UncertaintyOptions
from .influence.isal import expected_influence
from .selection import select_random, select_top, sizes_within

log = logging.getLogger(__name__)

__all__ = ["mc_dropout", "run_active_learning"]


@dataclass
class _Scored:
    """The pool as one model sees it: MC-dropout mean and spread, and (ISAL) the expected influence."""

    mean: np.ndarray
    std: np.ndarray
    influence: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # what scoring cost, per part (the cost of a round)

    def pick(self, how: str, n: int, seed: int) -> np.ndarray:
        if how == "random":
            return select_random(len(self.std), n, seed)
        return select_top(self.score(how), n)

    def score(self, how: str) -> np.ndarray:
        return self.influence if how == "isal" and self.influence is not None else self.std


def _score_pool(model: RegressionModel, smiles: list[str], opts: UncertaintyOptions, seed: int,
                labelled: MoleculeData, val: MoleculeData) -> _Scored:
    start = time.perf_counter()
    mean, std = mc_dropout(model, smiles, opts.passes, seed=seed, scope=opts.mc_scope)
    scored = _Scored(mean, std, seconds={"mc_dropout_s": time.perf_counter() - start})
    if isinstance(opts, IsalOptions):
        start = time.perf_counter()
        scored.influence = expected_influence(model, labelled, val, smiles, mean, opts)
        scored.seconds["isal_s"] = time.perf_counter() - start
    return scored


def _initial_size(opts: UncertaintyOptions, n_train: int, own_pool: bool, candidates: bool) -> int:
    """The labelled start: every training molecule when the pool is unmeasured candidates, else ``initial_size``
    (default: 500, at most a quarter of the training split); :class:`DataError` when the split cannot give it."""
    size = n_train if candidates else opts.initial_size if opts.initial_size is not None else min(500, n_train // 4)
    most = n_train - (not own_pool)  # the training split's own pool needs one molecule left
    if not 0 < size <= most:
        raise DataError(f"initial_size must be between 1 and {most} (the training split), got {size}")
    return size


def check_active_learning(spec: JobSpec, data: SplitData, store: RunStore) -> None:
    """Before a run: the pool file can be read and the training split gives the labelled start."""
    opts = spec.options_of(UncertaintyOptions)
    pool = read_pool(spec, opts.pool, labels_required=False)[0] if opts.pool else None
    _initial_size(opts, len(data.train), pool is not None, pool is not None and bool(np.isnan(pool.labels).any()))


def run_active_learning(ctx: JobContext, data: SplitData, opts: UncertaintyOptions) -> dict[str, float]:
    """Active learning: uncertainty sampling (MC dropout) or ISAL (expected influence), with their controls.

    Options: :class:`~chemlm_engine.spec.options.UncertaintyOptions` or
    :class:`~chemlm_engine.spec.options.IsalOptions` (``mc_scope``: see :func:`mc_dropout`; ``sweep``: every
    strategy of the options class is run for every N from the same initial model, stored as a table, and the
    first strategy's largest N is the model kept). Without a sweep, ``rounds`` rounds of ``acquire`` molecules
    with ``strategy``, the pool scored again by each round's model.
    """
    seed = ctx.spec.train.seed
    strategies, sweep = opts.STRATEGIES, sorted(set(opts.sweep))  # the largest N last: its model is kept
    rounds = 1 if sweep else opts.rounds
    # A user's pool: labelled, acquisition is simulated (labels revealed when acquired); with any label missing,
    # the pool is the chemist's candidates, ranked once by a model trained on all of the training split.
    user_pool = load_pool(ctx, data, opts.pool, labels_required=False) if opts.pool else None
    candidates = user_pool is not None and bool(np.isnan(user_pool.labels).any())
    if candidates and (sweep or rounds > 1):
        raise DataError("the pool has molecules without a label: a sweep or more than one round reveals the labels "
                        "of what it acquires, so every pool molecule needs one; without labels the run ranks the "
                        "pool once (what to measure next)")
    initial_size = _initial_size(opts, len(data.train), user_pool is not None, candidates)
    initial_ids = select_random(len(data.train), initial_size, seed)
    labelled = data.train.subset(np.sort(initial_ids))
    pool = user_pool if user_pool is not None else \
        data.train.subset(np.setdiff1d(np.arange(len(data.train)), initial_ids))
    ctx.store.set_info(ctx.run_id, pool_molecules=len(pool), pool_labelled=not candidates)
    if len(pool) == 0:
        raise DataError("the acquisition pool is empty")
    if candidates:  # one blank label decides how the whole pool is used: say so
        log.warning("pool: %d of %d molecules have no label, so the pool is your candidates: ranked once, by a model "
                    "trained on the whole training split (label every molecule to simulate acquisition)",
                    int(np.isnan(pool.labels).sum()), len(pool))
    if not sweep and opts.acquire > len(pool):
        note = f"{opts.acquire} asked for, but the pool has {len(pool)} molecules: all of them are acquired"
        log.warning("acquire %s", note)
        ctx.store.set_info(ctx.run_id, acquire_note=note)  # the page says it beside the list, not only the log
    if sweep and sweep[-1] > len(pool):  # as influence's k: a size the pool cannot give runs as the whole pool
        sweep = sizes_within(sweep, len(pool))
        note = f"the pool has {len(pool)} molecules, so the sweep runs N = {', '.join(map(str, sweep))}"
        log.warning("sweep: %s", note)
        ctx.store.set_info(ctx.run_id, acquire_note=note)
    n_fits = 1 if candidates else replace(opts, sweep=tuple(sweep)).fits()
    span = lambda k: (k / n_fits, (k + 1) / n_fits)  # noqa: E731 - progress share of the k-th fit

    model, metrics = train_and_evaluate(ctx, replace(data, train=labelled), stage="initial", span=span(0),
                                        final=candidates)
    ctx.progress(span(1)[0], "scoring the pool", force=True)
    scored = _score_pool(model, pool.smiles, opts, seed, labelled, data.val)
    first_scoring = {f"pool_{k}": v for k, v in scored.seconds.items()}  # the whole pool, initial model
    ctx.store.add_molecules(ctx.run_id, Kinds.POOL_UNCERTAINTY, pd.DataFrame(
        {"smiles": pool.smiles, "label": pool.labels, "score": scored.std, "split": "pool"}))
    if scored.influence is not None:
        ctx.store.add_molecules(ctx.run_id, Kinds.POOL_ISAL, pd.DataFrame(
            {"smiles": pool.smiles, "label": pool.labels, "score": scored.influence, "prediction": scored.mean,
             "uncertainty": scored.std, "split": "pool"}))
    if sweep:
        points = [(n, how) for n in sweep for how in strategies]
        kept = len(points) - len(strategies)  # the largest N with the method's own strategy

        def fit_point(i: int) -> dict[str, float]:
            n, how = points[i]
            pick = scored.pick(how, n, seed)
            _, m = train_and_evaluate(ctx, replace(data, train=labelled.concat(pool.subset(pick))),
                                      stage=f"sweep-{how}-{n}", span=span(1 + i), final=i == kept)
            return m

        metrics = ctx.sweep(points, fit_point, lambda point, m: {
            "n": point[0], "strategy": point[1],
            **{key: m[key] for key in ("train_mse", "val_mse", "test_mse", "test_r2")}})[kept]
        model = RegressionModel.load(ctx.artifacts / "model")
        chosen = scored.pick(strategies[0], sweep[-1], seed)
        labelled = labelled.concat(pool.subset(chosen))  # what the kept model trained on (n_labelled)
        _record_acquired(ctx, pool, scored, chosen, strategies[0], 1)
    elif candidates:  # nothing to reveal: the initial model (all the labels there are) ranks the pool once
        _record_acquired(ctx, pool, scored, scored.pick(opts.strategy, min(opts.acquire, len(pool)), seed),
                         opts.strategy, 1)
    else:
        available = np.arange(len(pool))
        for r in range(1, rounds + 1):
            local = scored.pick(opts.strategy, min(opts.acquire, len(available)), seed + r)
            _record_acquired(ctx, pool, scored, available[local], opts.strategy, r, local)
            labelled = labelled.concat(pool.subset(available[local]))
            available = np.setdiff1d(available, available[local])
            model, metrics = train_and_evaluate(ctx, replace(data, train=labelled), stage=f"round-{r}",
                                                span=span(r), final=r == rounds)
            if r < rounds:
                scored = _score_pool(model, [pool.smiles[i] for i in available], opts, seed, labelled, data.val)
    test_mean, test_std = mc_dropout(model, data.test.smiles, opts.passes, seed=seed, scope=opts.mc_scope)
    ctx.store.add_molecules(ctx.run_id, Kinds.TEST_UNCERTAINTY, pd.DataFrame(
        {"smiles": data.test.smiles, "label": data.test.labels, "prediction": test_mean, "score": test_std,
         "split": "test"}))
    rho = spearmanr(test_std, np.abs(test_mean - data.test.labels)).statistic
    return {**metrics, "n_labelled": len(labelled), "uncertainty_error_spearman": float(rho), **first_scoring}


def _record_acquired(ctx: JobContext, pool: MoleculeData, scored: _Scored, chosen: np.ndarray, how: str,
                     round_: int, local: np.ndarray | None = None) -> None:
    """The molecules a round acquired ("measure these next" for a user's pool): the strategy's score, the
    predicted value and its spread. ``local``: their positions in ``scored`` when it covers only what is left."""
    at = chosen if local is None else local
    ctx.store.add_molecules(ctx.run_id, Kinds.ACQUIRED, pd.DataFrame(
        {"smiles": [pool.smiles[i] for i in chosen], "label": pool.labels[chosen], "score": scored.score(how)[at],
         "prediction": scored.mean[at], "uncertainty": scored.std[at], "strategy": how, "round": round_,
         # the pool file's own ID (or row number): how a chemist finds the molecule again
         **({"name": [pool.names[i] for i in chosen]} if pool.names else {})}))
