"""The tracked part of a transformer regressor: the last encoder layers + pooling + head, run on cached
hidden states of the frozen prefix, as a functional model the solvers differentiate."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad

from ...errors import ConfigError
from ...model import RegressionModel
from ...inference import collate, encode_smiles
from .solvers import MatVec, Params, flatten, gauss_newton_vp, hvp, per_sample_grads


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
            if n_layers > len(layers):
                raise ConfigError(f"scope {scope}: this backbone has {len(layers)} encoder layers (last_{len(layers)} "
                                  "tracks them all)")
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
