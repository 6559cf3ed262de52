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

import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.func import functional_call, grad, jvp, vmap

from ..errors import ChemLMError, ConfigError
from ..model import RegressionModel
from ..pipeline import JobContext, SplitData, load_pool, train_and_evaluate
from ..training import collate, encode_smiles
from .uncertainty import select_random

__all__ = ["InfluenceDivergedError", "LissaConfig", "SolveResult", "per_sample_grads", "mean_grad", "hvp",
           "gauss_newton_vp", "lissa", "conjugate_gradient", "exact_solve", "TransformerInfluence", "flatten",
           "score_pool", "last_layer_inverse", "self_influence", "score_molecules", "corrupt_labels", "flag_suspects",
           "run_influence"]

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


def _batches(inputs: tuple[torch.Tensor, ...], batch_size: int):
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
    for batch in _batches(inputs, batch_size):
        g = per_sample(params, *batch)
        rows.append(torch.cat([t.reshape(t.shape[0], -1) for t in g.values()], 1).detach())
    return torch.cat(rows)


def mean_grad(loss: LossFn, params: Params, inputs: tuple[torch.Tensor, ...], batch_size: int = 256) -> torch.Tensor:
    """Gradient of the mean loss over ``inputs`` (the measurement gradient for validation data)."""
    n = inputs[0].shape[0]
    total = None
    for batch in _batches(inputs, batch_size):
        g = flatten(grad(loss)(params, *batch)).detach() * (batch[0].shape[0] / n)
        total = g if total is None else total + g
    return total


def hvp(loss: LossFn, params: Params, inputs: tuple[torch.Tensor, ...], vector: torch.Tensor) -> torch.Tensor:
    """Hessian of the mean loss over ``inputs`` times ``vector`` (forward-over-reverse: ``jvp`` of ``grad``)."""
    _, out = jvp(lambda p: grad(loss)(p, *inputs), (params,), (_unflatten(vector, params),))
    return flatten(out).detach()


def gauss_newton_vp(predict: Callable[..., torch.Tensor], params: Params, inputs: tuple[torch.Tensor, ...],
                    vector: torch.Tensor) -> torch.Tensor:
    """Gauss–Newton matrix of the mean squared error times ``vector``: ``2/n Jᵀ(J v)``. Positive
    semi-definite (unlike the Hessian of a non-convex network) and equal to the Hessian for a linear model.
    ``inputs`` ends with the labels, which the Gauss–Newton matrix does not use."""
    def outputs(p: Params) -> torch.Tensor:
        return predict(p, *inputs[:-1]).reshape(-1).float()

    _, jv = jvp(outputs, (params,), (_unflatten(vector, params),))
    _, pullback = torch.func.vjp(outputs, params)
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
        for batch in _batches(inputs, batch_size):
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
        raise ValueError(f"exact solve needs an explicit {size}×{size} matrix; use LiSSA or CG above "
                         f"{max_params} parameters")
    apply = _full_batch(matvec, inputs)
    eye = torch.eye(size, dtype=vector.dtype)
    matrix = torch.stack([apply(eye[i]) for i in range(size)])
    matrix = (matrix + matrix.T) / 2 + damping * eye
    return SolveResult(torch.linalg.solve(matrix, vector), "exact")


def _encoder_layers(backbone: nn.Module) -> nn.ModuleList:
    """The encoder's list of transformer blocks (BERT/RoBERTa/MoLFormer: ``encoder.layer``)."""
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and name.split(".")[-1] in ("layer", "layers") and "encoder" in name:
            return module
    raise ValueError("cannot find the encoder layers of this backbone; use scope='all'")


class _Suffix(nn.Module):
    """The tracked tail of a regressor: last encoder layers + pooling + head, on cached hidden states."""

    def __init__(self, model: RegressionModel, layers: list[nn.Module]) -> None:
        super().__init__()
        # Each tracked parameter is registered under exactly one name (the regressor itself is not a
        # submodule): functional_call mishandles parameters reachable under two names.
        self.layers = nn.ModuleList(layers)
        self.head = model.head
        self.pooled_scale = model.pooled_scale
        self._pool = model.pool

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        additive = (1.0 - mask[:, None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        for layer in self.layers:
            out = layer(hidden, attention_mask=additive)
            hidden = out[0] if isinstance(out, tuple) else out
        pooled = self._pool(hidden, mask)
        if self.pooled_scale is not None:
            pooled = pooled * self.pooled_scale
        return self.head(pooled).squeeze(-1)


class TransformerInfluence:
    """Influence machinery for a :class:`RegressionModel`.

    ``scope``: ``"head"`` (regression head only), ``"last_layer"`` (default: head + last encoder layer),
    ``"last_N"`` (head + last N layers) — these run the frozen prefix once, cache the hidden states and
    ``vmap`` only over the tracked suffix with an explicit additive attention mask — or ``"all"`` (every
    trainable parameter, e.g. LoRA adapters; per-sample gradients by a loop, far slower).
    """

    def __init__(self, model: RegressionModel, scope: str = "last_layer", max_tokens: int | None = None) -> None:
        if model.spec.descriptors:
            raise ConfigError("influence does not support descriptor-augmented heads yet: use a model trained "
                              "without --descriptors")
        self.model = model.eval()
        # Forward-mode AD (jvp) is not implemented for PyTorch's fused CPU attention kernels
        if hasattr(model.backbone, "set_attn_implementation"):
            model.backbone.set_attn_implementation("eager")
        self.scope = scope
        self.max_tokens = max_tokens or model.max_tokens
        if scope == "all":
            self.n_layers = None
            self.module: nn.Module = model
            self.params = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        else:
            n_layers = 0 if scope == "head" else 1 if scope == "last_layer" else int(scope.split("_")[1])
            layers = list(_encoder_layers(model.backbone))
            self.n_layers = n_layers
            self.module = _Suffix(model, layers[len(layers) - n_layers:] if n_layers else [])
            self.params = {n: p.detach() for n, p in self.module.named_parameters()}

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.params.values())

    @torch.no_grad()
    def features(self, smiles: list[str], labels: np.ndarray, batch_size: int = 64) -> tuple[torch.Tensor, ...]:
        """Inputs for :meth:`loss`: cached hidden states entering the tracked layers (or token ids for
        ``scope='all'``), masks, and standardised labels — all padded to one common length."""
        encoded = encode_smiles(self.model.tokenizer, smiles, self.max_tokens)
        ids, mask = collate(encoded, self.model.tokenizer.pad_token_id, torch.device("cpu"))
        y = (torch.tensor(labels, dtype=torch.float32) - self.model.label_mean) / self.model.label_std
        if self.n_layers is None:
            return ids, mask, y
        hidden = []
        for start in range(0, len(encoded), batch_size):
            out = self.model.backbone(input_ids=ids[start:start + batch_size],
                                      attention_mask=mask[start:start + batch_size], output_hidden_states=True)
            hidden.append(out.hidden_states[-1 - self.n_layers])
        return torch.cat(hidden), mask, y

    def predict(self, params: Params, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Standardised predictions of the tracked function for a batch."""
        return functional_call(self.module, params, (x, mask), strict=False).reshape(-1).float()

    def loss(self, params: Params, x: torch.Tensor, mask: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean squared error on standardised labels over a batch (the training loss)."""
        return ((self.predict(params, x, mask) - y) ** 2).mean()

    def curvature(self, kind: str = "gauss-newton") -> MatVec:
        """Products with the training-loss curvature: ``gauss-newton`` (PSD, default) or ``hessian``."""
        if kind == "hessian":
            return lambda inputs, v: hvp(self.loss, self.params, inputs, v)
        if kind == "gauss-newton":
            return lambda inputs, v: gauss_newton_vp(self.predict, self.params, inputs, v)
        raise ValueError(f"curvature must be 'gauss-newton' or 'hessian', not {kind!r}")

    def grads(self, inputs: tuple[torch.Tensor, ...], batch_size: int = 32) -> torch.Tensor:
        """Per-molecule gradients (n, n_params): ``vmap`` over the suffix, or a loop for ``scope='all'``
        (``vmap`` cannot trace a whole transformers model)."""
        if self.n_layers is not None:
            return per_sample_grads(self.loss, self.params, inputs, batch_size)
        rows = []
        for i in range(inputs[0].shape[0]):
            g = grad(self.loss)(self.params, *(x[i:i + 1] for x in inputs))
            rows.append(flatten(g).detach())
        return torch.stack(rows)


def score_pool(influence: TransformerInfluence, inputs: tuple[torch.Tensor, ...], direction: torch.Tensor,
               batch_size: int = 32) -> np.ndarray:
    """``score = gradient · direction`` per molecule, streamed batch by batch (never all gradients at once)."""
    scores = []
    for batch in _batches(inputs, batch_size):
        scores.append((influence.grads(batch, batch_size) @ direction).numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


@torch.no_grad()
def _last_linear(influence: TransformerInfluence, inputs: tuple[torch.Tensor, ...],
                 batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs of the head's last linear layer, with a bias column, and the standardised residuals."""
    last = [m for m in influence.module.modules() if isinstance(m, nn.Linear)][-1]
    features, residuals = [], []
    hook = last.register_forward_pre_hook(lambda _m, args: features.append(args[0].reshape(-1, args[0].shape[-1])))
    try:
        for batch in _batches(inputs, batch_size):
            residuals.append(influence.predict(influence.params, *batch[:-1]) - batch[-1])
    finally:
        hook.remove()
    a = torch.cat(features).double()
    return torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1), torch.cat(residuals).double()


def last_layer_inverse(influence: TransformerInfluence, train_inputs: tuple[torch.Tensor, ...],
                       damping: float = 0.01) -> torch.Tensor:
    """``(H + damping·I)⁻¹`` of the training loss in the head's last linear layer (Gauss–Newton ``H``)."""
    a_train, _ = _last_linear(influence, train_inputs)
    eye = torch.eye(a_train.shape[1], dtype=a_train.dtype)
    return torch.linalg.inv(2.0 / len(a_train) * a_train.T @ a_train + damping * eye)


def self_influence(influence: TransformerInfluence, pool_inputs: tuple[torch.Tensor, ...],
                   inverse: torch.Tensor) -> np.ndarray:
    """``g_zᵀ (H + damping·I)⁻¹ g_z`` per pool molecule in the last linear layer (``inverse`` from
    :func:`last_layer_inverse`): large when the model must move far to fit z's label."""
    a_pool, residual = _last_linear(influence, pool_inputs)
    g = 2.0 * residual[:, None] * a_pool
    return ((g @ inverse) * g).sum(1).numpy()


def flag_suspects(pool_self_influence: np.ndarray, reference_self_influence: np.ndarray,
                  quantile: float = 0.99) -> np.ndarray:
    """Suspected mislabelled pool molecules: self-influence above the ``quantile`` of a trusted held-out
    set's (the validation split: same model, labels checked, never trained on)."""
    return pool_self_influence > np.quantile(reference_self_influence, quantile)


def score_molecules(influence: TransformerInfluence, smiles: Sequence[str], labels: np.ndarray,
                    direction: torch.Tensor, inverse: torch.Tensor, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Influence scores and self-influence of molecules, chunk by chunk: the frozen prefix runs per chunk,
    so memory stays flat for any pool size."""
    scores, selves = [np.zeros(0)], [np.zeros(0)]
    for start in range(0, len(smiles), chunk):
        inputs = influence.features(list(smiles[start:start + chunk]), labels[start:start + chunk])
        scores.append(score_pool(influence, inputs, direction))
        selves.append(self_influence(influence, inputs, inverse))
    return np.concatenate(scores), np.concatenate(selves)


def corrupt_labels(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shift a random ``fraction`` of labels by ±3 standard deviations; returns (labels, corrupted mask)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), dtype=bool)
    mask[rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)] = True
    shifted = labels.copy()
    shifted[mask] += rng.choice([-3.0, 3.0], mask.sum()) * labels.std()
    return shifted, mask


def _solve(influence: TransformerInfluence, train_inputs, g_val: torch.Tensor, opts: dict,
           on_step: Callable[[int, int, float], None]) -> SolveResult:
    solver = opts.get("solver", "lissa")
    damping = float(opts.get("damping", 0.01))
    curvature = influence.curvature(opts.get("curvature", "gauss-newton"))
    if solver == "exact":
        return exact_solve(curvature, train_inputs, g_val, damping)
    if solver == "cg":
        return conjugate_gradient(curvature, train_inputs, g_val, damping, int(opts.get("cg_iterations", 50)))
    config = LissaConfig(damping=damping, scale=float(opts.get("scale", 50.0)), depth=int(opts.get("depth", 200)),
                         repeats=int(opts.get("repeats", 2)), batch_size=int(opts.get("lissa_batch_size", 64)),
                         seed=int(opts.get("seed", 0)))
    return lissa(curvature, train_inputs, g_val, config, on_step)


def run_influence(ctx: JobContext, data: SplitData) -> dict[str, float]:
    """Influence-based selection of external molecules, with the k-sweep and its two controls.

    Options: ``pool`` (CSV of external molecules; default: a held-out ``pool_fraction`` (0.3) of the
    training split, which the base model then never sees), ``corrupt_fraction`` (labels of that share
    of the pool shifted by ±3σ to show harmful points are found), ``scope`` (head | last_layer |
    last_N | all), ``solver`` (lissa | cg | exact), ``curvature`` (gauss-newton | hessian), LiSSA's
    ``damping``, ``scale``, ``depth``, ``repeats``, ``lissa_batch_size``, ``k`` (list of k for the
    sweep; the controls are k random pool molecules and the whole pool) and ``skip_suspects`` (leave
    suspected mislabelled molecules out of the influence top-k). The run's headline test metrics are
    those of the influence top-k with the lowest validation MSE.
    """
    opts, seed = ctx.spec.options, ctx.spec.train.seed
    if opts.get("pool"):
        pool, train = load_pool(ctx, data, opts["pool"]), data.train
    else:
        held = select_random(len(data.train), int(len(data.train) * float(opts.get("pool_fraction", 0.3))), seed)
        pool = data.train.subset(np.sort(held))
        train = data.train.subset(np.setdiff1d(np.arange(len(data.train)), held))
    corrupted = np.zeros(len(pool), dtype=bool)
    if float(opts.get("corrupt_fraction", 0.0)) > 0:
        labels, corrupted = corrupt_labels(pool.labels, float(opts["corrupt_fraction"]), seed)
        pool = replace(pool, labels=labels)
    ks = sorted({min(int(k), len(pool)) for k in opts.get("k", [16, 32, 64, 100])})
    n_fits = 2 + 2 * len(ks)
    span = lambda i: (i / n_fits, (i + 1) / n_fits)  # noqa: E731

    base_data = replace(data, train=train)
    model, base_metrics = train_and_evaluate(ctx, base_data, stage="base", span=span(0), final=False)
    ctx.progress(1 / n_fits, "influence: gradients")
    influence = TransformerInfluence(model, opts.get("scope", "last_layer"))
    train_inputs = influence.features(train.smiles, train.labels)
    val_inputs = influence.features(data.val.smiles, data.val.labels)
    g_val = mean_grad(influence.loss, influence.params, val_inputs)

    def on_step(repeat: int, step: int, norm: float) -> None:
        ctx.check_cancel()
        ctx.progress(1 / n_fits, f"influence: LiSSA repeat {repeat}, step {step}, |x| = {norm:.3g}")

    solved = _solve(influence, train_inputs, g_val, opts, on_step)
    for i, row in enumerate(solved.trace):
        ctx.store.add_epoch(ctx.run_id, i + 1, row, stage="solver")
    inverse = last_layer_inverse(influence, train_inputs, float(opts.get("damping", 0.01)))
    shards = int(opts.get("score_shards", 1))
    if ctx.mapper is not None and shards > 1:  # on a cluster: shard the pool across workers
        scores, suspicion = score_molecules_sharded(influence, pool.smiles, pool.labels, solved.vector, inverse,
                                                    shards, ctx.map)
    else:
        scores, suspicion = score_molecules(influence, pool.smiles, pool.labels, solved.vector, inverse)
    ranks = np.empty(len(scores), dtype=int)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    suspect = flag_suspects(suspicion, self_influence(influence, val_inputs, inverse))
    ctx.store.add_molecules(ctx.run_id, "influence", pd.DataFrame(
        {"smiles": pool.smiles, "label": pool.labels, "score": scores, "rank": ranks,
         "self_influence": suspicion, "suspect": suspect, "corrupted": corrupted}))
    metrics = {f"base_{k}": v for k, v in base_metrics.items() if k.startswith("test_")}
    metrics.update({"n_pool": len(pool), "n_params_tracked": influence.n_params, "solver": solved.method,
                    "n_suspects": int(suspect.sum())})
    if corrupted.any():
        # How well each ranking finds the corrupted labels (0.5 = chance)
        metrics["mislabel_auroc"] = float(roc_auc_score(corrupted, suspicion))
        metrics["mislabel_auroc_first_order"] = float(roc_auc_score(corrupted, -scores))

    candidates = np.flatnonzero(~suspect) if opts.get("skip_suspects") else np.arange(len(pool))
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    plan = [(k, "influence", order[:k]) for k in ks] + [(k, "random", select_random(len(pool), k, seed)) for k in ks]
    plan.append((len(pool), "all", np.arange(len(pool))))

    def fit_point(i: int) -> dict[str, float]:
        k, how, pick = plan[i]
        _, m = train_and_evaluate(ctx, replace(data, train=train.concat(pool.subset(pick))), stage=f"{how}-{k}",
                                  span=span(1 + i), final=i == len(plan) - 1)
        return m

    for i, m in enumerate(ctx.map(fit_point, range(len(plan)))):  # independent fits: fanned out on a cluster
        _, how, pick = plan[i]
        k = len(pick)  # fewer than asked when skipped suspects leave too few candidates
        row = {"k": k, "selection": how, "val_mse": m["val_mse"], "test_mse": m["test_mse"],
               "test_r2": m["test_r2"], "test_rmse": m["test_rmse"]}
        ctx.store.add_epoch(ctx.run_id, i + 1, row, stage="sweep")
        if how == "influence" and m["val_mse"] < metrics.get("val_mse", math.inf):
            metrics.update({key: m[key] for key in ("val_mse", "test_mse", "test_rmse", "test_mae", "test_r2")},
                           best_k=int(k))
    return metrics


# -- large pools, sharded over a cluster's workers ----------------------------------------------------
def _model_files(model: RegressionModel) -> dict[str, bytes]:
    """A regressor as the bytes of its saved folder (transformers models do not pickle)."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        return {str(p.relative_to(tmp)): p.read_bytes() for p in Path(tmp).rglob("*") if p.is_file()}


def _score_shard(files: dict[str, bytes], scope: str, direction: torch.Tensor, inverse: torch.Tensor, chunk: int,
                 shard: tuple[list[str], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        for name, data in files.items():
            Path(tmp, name).parent.mkdir(parents=True, exist_ok=True)
            Path(tmp, name).write_bytes(data)
        influence = TransformerInfluence(RegressionModel.load(tmp, "cpu"), scope)
    return score_molecules(influence, shard[0], shard[1], direction, inverse, chunk)


def score_molecules_sharded(influence: TransformerInfluence, smiles: Sequence[str], labels: np.ndarray,
                            direction: torch.Tensor, inverse: torch.Tensor, shards: int,
                            map_fn: Callable[[Callable, list], list], chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """:func:`score_molecules` over ``shards`` parts mapped by ``map_fn`` (on a cluster,
    :func:`~chemlm_engine.cluster.ray_map`: the model and the solved vectors travel once, with the function).
    Shard borders fall on chunk borders, so every molecule is scored in exactly the batch it has in the
    single-process path."""
    n_chunks = -(-len(smiles) // chunk)
    borders = [int(b) * chunk for b in np.linspace(0, n_chunks, shards + 1).round()]
    parts = [(list(smiles[lo:hi]), labels[lo:hi]) for lo, hi in zip(borders[:-1], borders[1:]) if lo < len(smiles)]
    scored = map_fn(partial(_score_shard, _model_files(influence.model), influence.scope, direction, inverse, chunk),
                    parts)
    return np.concatenate([p[0] for p in scored]), np.concatenate([p[1] for p in scored])
