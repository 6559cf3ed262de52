"""Influence functions for data selection: which external molecules would lower the validation loss?

Sign convention: ``score(z) = g_val · H⁻¹ g_z`` with ``g_val`` the mean validation-loss gradient,
``H`` the (damped) Hessian of the training loss and ``g_z`` the loss gradient of external molecule z,
all over the tracked parameters. Adding z with weight ε changes the validation loss by about
``-ε · score(z)`` (Koh & Liang 2017), so **a positive score means z helps**, a negative one that it hurts.

All solvers solve ``(H + damping·I) x = g_val``: exact (explicit matrix), conjugate gradient, and
LiSSA (stochastic Neumann series; needs ``scale`` above the largest eigenvalue). ``H`` is the
Gauss–Newton matrix of the MSE by default — positive semi-definite, so the solvers converge on a
non-convex network, and identical to the Hessian for a linear head — or the true Hessian (``jvp`` over
``grad``) on request. The inverse-HVP is
computed once; every molecule is then scored by one dot product.

That first-order score is blind to label noise: a mislabelled molecule with a random-sign error moves
the model in a random direction, which helps the validation loss as often as it hurts (its harm is
second order, ε² against ε). Label noise is found by **self-influence** instead (Koh & Liang 2017,
§5.4): ``g_zᵀ H⁻¹ g_z``, how far the model must move to fit z's label. :func:`self_influence` computes
it exactly in the subspace of the head's last linear layer, where ``H`` is small enough to invert.
Worse, the first-order score grows with a molecule's residual, so grossly wrong labels crowd the top
of the "helps" ranking; ``skip_suspects`` leaves molecules flagged by :func:`flag_suspects` out of
the top-k.
"""
from __future__ import annotations

from .job import run_influence
from .scores import (corrupt_labels, flag_suspects, last_layer_inverse, score_molecules, score_molecules_sharded,
                     score_pool, self_influence)
from .solvers import (InfluenceDivergedError, LissaConfig, SolveResult, conjugate_gradient, exact_solve, flatten,
                      gauss_newton_vp, hvp, lissa, mean_grad, norm_drift, per_sample_grads)
from .tracked import TransformerInfluence

__all__ = ["InfluenceDivergedError", "LissaConfig", "SolveResult", "per_sample_grads", "mean_grad", "hvp",
           "gauss_newton_vp", "lissa", "conjugate_gradient", "exact_solve", "TransformerInfluence", "flatten",
           "score_pool", "last_layer_inverse", "self_influence", "score_molecules", "score_molecules_sharded",
           "corrupt_labels", "flag_suspects", "norm_drift", "run_influence"]
