"""Deep-ensemble job: N members (seeds ``seed … seed+N−1``) trained alike, their mean as the prediction,
split-conformal intervals calibrated on molecules no member trained or selected on.

Options: ``members`` (default 5), ``coverage`` (0.9), ``train_on_val`` (the shipping recipe: members train
on training + validation minus a held-out ``calibration_fraction``, default 0.1, which calibrates).
Members keep their last epoch, or with ``member_selection`` their best epoch on a held-out part of their own
training molecules; either way the calibration molecules stay untouched. With ``tree_weight`` > 0 (default 0.5)
gradient-boosted trees fitted on the members' training molecules are blended in; the intervals are calibrated on
the blend.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ..data import MoleculeData
from ..descriptors import HEAD_DESCRIPTORS
from ..predict.ensemble import Conformal, Ensemble
from ..predict.trees import Trees
from ..pipeline import JobContext, SplitData, train_and_evaluate
from ..store import Kinds
from ..training import regression_metrics
from ..spec import EnsembleOptions

__all__ = ["run_ensemble", "interval_quality", "calibration_split"]


def interval_quality(labels: np.ndarray, mean: np.ndarray, std: np.ndarray, conformal: Conformal) -> dict[str, float]:
    """Coverage and mean width of the conformal intervals, and Spearman(|error|, spread)."""
    low, high = conformal.interval(mean, std)
    inside = (labels >= low) & (labels <= high)
    rho = spearmanr(np.abs(labels - mean), std).statistic if len(labels) > 2 else float("nan")
    return {"interval_coverage": float(inside.mean()), "interval_width": float((high - low).mean()),
            "spearman_error_spread": float(rho)}


def calibration_split(data: SplitData, fraction: float, seed: int) -> tuple[SplitData, MoleculeData]:
    """Training + validation pooled, less ``fraction`` of them (seeded) kept apart to calibrate the intervals."""
    pooled = data.train.concat(data.val)
    held = np.random.default_rng(seed).permutation(len(pooled))[:max(int(round(fraction * len(pooled))), 10)]
    rest = np.setdiff1d(np.arange(len(pooled)), held)
    return replace(data, train=pooled.subset(rest), val=MoleculeData([], np.zeros(0))), pooled.subset(np.sort(held))


def _selection_split(data: SplitData, fraction: float, seed: int) -> SplitData:
    """A member's own data: ``fraction`` of the training molecules (chosen by its seed) to select its epoch on,
    the rest to train on. The split's validation part (or the calibration part) is not among them."""
    order = np.random.default_rng(seed).permutation(len(data.train))
    held = np.sort(order[:max(int(round(fraction * len(order))), 2)])
    return replace(data, train=data.train.subset(np.sort(order[len(held):])), val=data.train.subset(held))


def _members_and_blend(ensemble: Ensemble, smiles: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The members' mean, the prediction (blended with the trees, if any) and the members' spread."""
    members, std = ensemble.members_predict(smiles)
    return members, (members if ensemble.trees is None else ensemble.trees.blend(members, smiles)), std


def run_ensemble(ctx: JobContext, data: SplitData, opts: EnsembleOptions) -> dict[str, float]:
    """Train the members, calibrate, evaluate the mean on the test split and save the ensemble folder."""
    n_members, coverage = opts.members, opts.coverage
    if opts.train_on_val:
        data, calibration = calibration_split(data, opts.calibration_fraction, ctx.spec.data.split_seed)
        ctx.store.set_info(ctx.run_id, n_train=len(data.train), n_val=0, n_calibration=len(calibration))
    else:
        calibration = data.val
    members, member_r2 = [], []
    for i in range(n_members):
        seed = ctx.spec.train.seed + i
        own = _selection_split(data, opts.member_selection, seed) if opts.member_selection else data
        recipe = replace(ctx.spec.train, seed=seed, select_best=bool(opts.member_selection))
        model, metrics = train_and_evaluate(ctx, own, stage=f"member {i + 1}", final=False, train=recipe,
                                            span=(i / n_members, (i + 1) / n_members))
        model.standardization = ctx.spec.data.standardization
        members.append(model)
        member_r2.append(metrics["test_r2"])
    ensemble = Ensemble(members)
    if opts.tree_weight > 0:
        ctx.progress(0.99, "fitting the trees", force=True)
        # the members' descriptors when they read any: computed once for both
        names = members[0].descriptor_names or HEAD_DESCRIPTORS
        ensemble.trees = Trees.fit(data.train.smiles, data.train.labels, opts.tree_weight, ctx.spec.train.seed, names)
    members_cal, cal_mean, cal_std = _members_and_blend(ensemble, calibration.smiles)
    ensemble.conformal = Conformal.calibrate(calibration.labels, cal_mean, cal_std, coverage)
    members_test, mean, std = _members_and_blend(ensemble, data.test.smiles)
    test = regression_metrics(data.test.labels, mean)
    quality = interval_quality(data.test.labels, mean, std, ensemble.conformal)
    low, high = ensemble.conformal.interval(mean, std)
    ctx.store.add_molecules(ctx.run_id, Kinds.PREDICTION, pd.DataFrame(
        {"smiles": data.test.smiles, "label": data.test.labels, "prediction": mean, "split": "test",
         "uncertainty": std, "interval_low": low, "interval_high": high}))
    ensemble.save(ctx.artifacts / "model", data.train.smiles, data.train.labels)
    # no member saw the calibration part: its R² is the validation score that chooses between ensemble recipes
    return {**{f"test_{k}": v for k, v in test.items()}, **quality, "members": n_members,
            "member_test_r2_mean": float(np.mean(member_r2)), "calibration_molecules": len(calibration),
            "calibration_r2": regression_metrics(calibration.labels, cal_mean)["r2"],
            "calibration_r2_members": regression_metrics(calibration.labels, members_cal)["r2"],
            "test_r2_members": regression_metrics(data.test.labels, members_test)["r2"],
            "conformal_quantile": ensemble.conformal.quantile}
