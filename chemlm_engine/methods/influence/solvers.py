"""Inverse Hessian-vector products over a parameter dict: per-sample and mean gradients (torch.func),
Hessian / Gauss–Newton products, and the solvers (LiSSA, conjugate gradient, exact)."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.func import grad, jvp, vmap

from ...errors import ChemLMError, ConfigError

Params = dict[str, torch.Tensor]
LossFn = Callable[..., torch.Tensor]  # (params, *batched_inputs) -> mean loss over the batch


class InfluenceDivergedError(ChemLMError):
    """An iterative inverse-HVP estimate became NaN or kept growing."""


def flatten(tree: Params) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tree.values()])


def _unflatten(vector: torch.Tensor, like: Params) -> Params:
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start:start + t.numel()].view_as(t)
        start += t.numel()
    return out


def batches(inputs: tuple[torch.Tensor, ...], batch_size: int):
    n = inputs[0].shape[0]
    for start in range(0, n, batch_size):
        yield tuple(x[start:start + batch_size] for x in inputs)


def per_sample_grads(loss: LossFn, params: Params, inputs: tuple[torch.Tensor, ...],
                     batch_size: int = 64) -> torch.Tensor:
    """Per-sample loss gradients, flattened: shape (n_samples, n_params). ``vmap`` over ``grad``."""
    def one(p: Params, *sample: torch.Tensor) -> torch.Tensor:
        return loss(p, *(x[None] for x in sample))

    per_sample = vmap(grad(one), in_dims=(None, *([0] * len(inputs))))
    rows = []
    for batch in batches(inputs, batch_size):
        g = per_sample(params, *batch)
        rows.append(torch.cat([t.reshape(t.shape[0], -1) for t in g.values()], 1).detach())
    return torch.cat(rows)


def mean_grad(loss: LossFn, params: Params, inputs: tuple[torch.Tensor, ...], batch_size: int = 256) -> torch.Tensor:
    """Gradient of the mean loss over ``inputs`` (the measurement gradient for validation data)."""
    n = inputs[0].shape[0]
    total = torch.zeros(())
    for batch in batches(inputs, batch_size):
        total = total + flatten(grad(loss)(params, *batch)).detach() * (batch[0].shape[0] / n)
    return total


def hvp(loss: LossFn, params: Params, inputs: tuple[torch.Tensor, ...], vector: torch.Tensor) -> torch.Tensor:
    """Hessian of the mean loss over ``inputs`` times ``vector`` (forward-over-reverse: ``jvp`` of ``grad``)."""
    out = jvp(lambda p: grad(loss)(p, *inputs), (params,), (_unflatten(vector, params),))[1]
    return flatten(out).detach()


def gauss_newton_vp(predict: Callable[..., torch.Tensor], params: Params, inputs: tuple[torch.Tensor, ...],
                    vector: torch.Tensor) -> torch.Tensor:
    """Gauss–Newton matrix of the mean squared error times ``vector``: ``2/n Jᵀ(J v)``. Positive
    semi-definite (unlike the Hessian of a non-convex network) and equal to the Hessian for a linear model.
    ``inputs`` ends with the labels, which the Gauss–Newton matrix does not use."""
    def outputs(p: Params) -> torch.Tensor:
        return predict(p, *inputs[:-1]).reshape(-1).float()

    jv = jvp(outputs, (params,), (_unflatten(vector, params),))[1]
    pullback = torch.func.vjp(outputs, params)[1]
    (out,) = pullback(2.0 * jv / jv.shape[0])
    return flatten(out).detach()


MatVec = Callable[[tuple[torch.Tensor, ...], torch.Tensor], torch.Tensor]  # (inputs, v) -> curvature · v


@dataclass(frozen=True)
class LissaConfig:
    """LiSSA settings. ``scale`` must exceed the largest curvature eigenvalue for convergence."""

    damping: float = 0.01
    scale: float = 50.0
    depth: int = 200
    repeats: int = 2
    batch_size: int = 64
    seed: int = 0
    growth_limit: float = 1e4

    def __post_init__(self) -> None:
        if self.damping < 0 or self.scale <= 0 or self.depth < 1 or self.repeats < 1:
            raise ValueError("need damping >= 0, scale > 0, depth >= 1, repeats >= 1")


@dataclass
class SolveResult:
    """An inverse-HVP estimate with its convergence trace (norm of the estimate per step)."""

    vector: torch.Tensor
    method: str
    trace: list[dict[str, float]] = field(default_factory=list)


DRIFT_LIMIT = 0.05  # an estimate whose norm still moves more than this over its last steps has not settled


def norm_drift(trace: list[dict[str, float]], tail: float = 0.2) -> float:
    """How much the estimate's norm still moved over the last ``tail`` of each repeat's steps (relative change,
    worst repeat): near 0 when the recursion has settled; above :data:`DRIFT_LIMIT` the scores are not to be
    trusted yet."""
    drift = 0.0
    for repeat in {row["repeat"] for row in trace}:
        norms = [row["norm"] for row in trace if row["repeat"] == repeat]
        start = norms[max(0, int(len(norms) * (1 - tail)) - 1)]
        drift = max(drift, abs(norms[-1] - start) / max(abs(norms[-1]), 1e-12))
    return drift


def lissa(matvec: MatVec, inputs: tuple[torch.Tensor, ...], vector: torch.Tensor,
          config: LissaConfig = LissaConfig(),
          on_step: Callable[[int, int, float], None] | None = None) -> SolveResult:
    """Estimate ``(H + damping I)^-1 vector`` with the LiSSA recursion on random training mini-batches:
    ``h ← v + (1 - damping/scale) h - H_batch h / scale``; the estimate is ``h / scale``, averaged over
    repeats. Raises :class:`InfluenceDivergedError` when the estimate turns NaN or keeps growing."""
    n = inputs[0].shape[0]
    generator = torch.Generator().manual_seed(config.seed)
    estimates, trace = [], []
    limit = config.growth_limit * float(vector.norm()) / min(config.damping or 1.0, 1.0)
    for repeat in range(config.repeats):
        h = vector.clone()
        for step in range(1, config.depth + 1):
            idx = torch.randint(0, n, (min(config.batch_size, n),), generator=generator)
            h = vector + (1 - config.damping / config.scale) * h - matvec(tuple(x[idx] for x in inputs), h) \
                / config.scale
            norm = float(h.norm() / config.scale)
            trace.append({"repeat": repeat + 1, "step": step, "norm": norm})
            if on_step is not None:
                on_step(repeat + 1, step, norm)
            if not math.isfinite(norm) or norm > limit:
                raise InfluenceDivergedError(
                    f"LiSSA diverged at repeat {repeat + 1}, step {step} (estimate norm {norm:.3g}): increase "
                    f"scale (now {config.scale}) above the largest curvature eigenvalue, or increase damping "
                    f"(now {config.damping})")
        estimates.append(h / config.scale)
    return SolveResult(torch.stack(estimates).mean(0), "lissa", trace)


def _full_batch(matvec: MatVec, inputs: tuple[torch.Tensor, ...], batch_size: int = 512) -> Callable:
    n = inputs[0].shape[0]

    def apply(v: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(v)
        for batch in batches(inputs, batch_size):
            out += matvec(batch, v) * (batch[0].shape[0] / n)
        return out

    return apply


def conjugate_gradient(matvec: MatVec, inputs: tuple[torch.Tensor, ...], vector: torch.Tensor,
                       damping: float = 0.01, max_iter: int = 100, tol: float = 1e-6) -> SolveResult:
    """Solve ``(H + damping I) x = vector`` with conjugate gradients on the full training set."""
    apply = _full_batch(matvec, inputs)
    x = torch.zeros_like(vector)
    r = vector.clone()
    p = r.clone()
    rs = float(r @ r)
    trace = []
    for step in range(1, max_iter + 1):
        ap = apply(p) + damping * p
        curvature = float(p @ ap)
        if curvature <= 0 or not math.isfinite(curvature):
            raise InfluenceDivergedError(f"conjugate gradient met non-positive curvature at step {step}: "
                                         "the damped matrix is not positive definite; increase damping")
        alpha = rs / curvature
        x += alpha * p
        r -= alpha * ap
        rs_new = float(r @ r)
        trace.append({"repeat": 1, "step": step, "norm": float(x.norm()), "residual": math.sqrt(rs_new)})
        if math.sqrt(rs_new) < tol * float(vector.norm()):
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    return SolveResult(x, "cg", trace)


def exact_solve(matvec: MatVec, inputs: tuple[torch.Tensor, ...], vector: torch.Tensor, damping: float = 0.01,
                max_params: int = 5000) -> SolveResult:
    """Build the curvature matrix explicitly (one product per parameter) and solve; small subsets only."""
    size = vector.numel()
    if size > max_params:
        raise ConfigError(f"the exact solver needs an explicit {size}×{size} matrix: above {max_params} tracked "
                          "parameters use the cg solver (or a smaller scope, e.g. head)")
    apply = _full_batch(matvec, inputs)
    eye = torch.eye(size, dtype=vector.dtype)
    matrix = torch.stack([apply(eye[i]) for i in range(size)])
    matrix = (matrix + matrix.T) / 2 + damping * eye
    return SolveResult(torch.linalg.solve(matrix, vector), "exact")
