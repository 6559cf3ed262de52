"""Influence selection for active learning (ISAL; Liu et al., ICCV 2021) in regression: how much labelling an
unlabelled molecule is expected to lower the validation loss."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ...data import MoleculeData
from ...model import RegressionModel
from ...spec import IsalOptions
from .scores import score_pool
from .solvers import conjugate_gradient, exact_solve, mean_grad
from .tracked import TransformerInfluence


def expected_influence(model: RegressionModel, train: MoleculeData, val: MoleculeData, pool: Sequence[str],
                       expected_label: np.ndarray, opts: IsalOptions, chunk: int = 256) -> np.ndarray:
    """``score(z) = ∇θ ℓ(z, ȳ_z)ᵀ (H + λI)⁻¹ ∇θ L_val`` per pool molecule: to first order, the fall of the
    validation loss when z is added to the training set (higher: more helpful). ``H`` is the Gauss–Newton
    curvature of the training loss in the tracked parameters (``opts.scope``), solved once by CG or exactly.

    The label is unknown: ``ȳ_z`` is the mean of the model's predictive distribution (MC dropout). The squared
    error's gradient ``2 (f(z) − y) ∇f(z)`` is linear in ``y``, so the influence at the mean label *is* the
    expected influence over that distribution — exact, not sampled."""
    influence = TransformerInfluence(model, opts.scope)
    train_inputs = influence.features(train.smiles, train.labels)
    g_val = mean_grad(influence.loss, influence.params, influence.features(val.smiles, val.labels))
    curvature = influence.curvature()
    solved = exact_solve(curvature, train_inputs, g_val, opts.damping) if opts.solver == "exact" else \
        conjugate_gradient(curvature, train_inputs, g_val, opts.damping, opts.cg_iterations)
    scores = [np.zeros(0)]
    for start in range(0, len(pool), chunk):
        inputs = influence.features(list(pool[start:start + chunk]), expected_label[start:start + chunk])
        scores.append(score_pool(influence, inputs, solved.vector))
    return np.concatenate(scores)
