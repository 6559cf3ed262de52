"""Backbones (local folder or hub id) and the regression model: backbone + pooling + dropout + MLP head."""
from __future__ import annotations

import contextlib
import json
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from .spec import REGRESSOR_FILE, ModelSpec
from .descriptors import HEAD_DESCRIPTORS, DescriptorScaler
from .errors import ChemLMError, ModelLoadError
from .hub import OFFLINE_HINT, hub_unreachable, is_cached
from .molecules import Standardization
from .training_set import content_digest, load_training_set, save_training_set  # re-exported

# peft reads transformers 5's deprecated `is_gradient_checkpointing` when it wraps or loads an adapter: not the user's
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

__all__ = ["BASE_BACKBONE", "load_backbone", "check_backbone_folder", "RegressionModel", "best_device", "check_format",
           "quiet_transformers", "count_parameters", "save_training_set", "load_training_set", "content_digest"]

log = logging.getLogger(__name__)
REGRESSOR_FORMAT = "chemlm-regressor", 1  # the folder layout this version writes and reads
HEAD_FILE = "head.safetensors"
BASE_BACKBONE = "base-backbone"  # an exported adapter model's copy of the backbone it adapts (export.py)


@contextlib.contextmanager
def quiet_transformers():
    """transformers' warnings and bars off: "Loading weights", "Writing model shards" per member bury the output."""
    previous, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
        if bars:
            hf_logging.enable_progress_bar()


def best_device() -> torch.device:  # CUDA when present, else CPU
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _looks_like_a_path(name: str) -> bool:
    """A hub id is ``name`` or ``org/name``; anything else (absolute, relative, deeper) names a folder."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name or Path(name).exists()


def check_backbone_folder(source: str) -> None:
    """:class:`ModelLoadError` for a backbone named by a path that is not a folder, or by a hub id that is neither
    cached nor reachable."""
    if not _looks_like_a_path(source) and hub_unreachable(source) and not is_cached(source):
        raise ModelLoadError(f"cannot load backbone {source!r}: {OFFLINE_HINT}")
    if _looks_like_a_path(source) and not Path(source).is_dir():
        what = "is a file, not a folder" if Path(source).exists() else "does not exist"
        raise ModelLoadError(f"cannot load backbone: folder {source} {what}; give a model folder (a Hugging Face "
                             "save_pretrained folder) or a hub id such as ibm/MoLFormer-XL-both-10pct")


def load_backbone(name_or_path: str | Path, trust_remote_code: bool = False, masked_lm: bool = False,
                  ) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load an encoder (or its masked-LM form) and its tokenizer from a local folder or a hub id.

    ``trust_remote_code`` runs code shipped with the model (MoLFormer-XL needs it); it is never
    switched on unless the caller asks.
    """
    source = str(name_or_path)
    check_backbone_folder(source)
    auto = AutoModelForMaskedLM if masked_lm else AutoModel
    cached_only = hub_unreachable(source)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                                  local_files_only=cached_only)
        with quiet_transformers():  # an encoder loaded from a masked-LM checkpoint leaves the LM head unused
            model = auto.from_pretrained(source, trust_remote_code=trust_remote_code, local_files_only=cached_only)
    except (OSError, ValueError) as exc:
        if cached_only:
            raise ModelLoadError(f"cannot load backbone {source!r}: {OFFLINE_HINT}") from None
        hint = " (this model ships its own code: enable trust_remote_code)" if "trust_remote_code" in str(exc) else ""
        raise ModelLoadError(f"cannot load backbone {source!r}: {exc}{hint}") from exc
    if not masked_lm and getattr(model, "pooler", None) is not None:
        model.pooler = None  # unused (we pool ourselves); its untrained weights would only add noise
    return model, tokenizer


def check_format(meta: dict, name: str, version: int, path: Path) -> None:
    """A model file's ``format`` ("name/version"): absent in folders from before formats were written (read as
    version 1); another kind, or a version newer than this code reads, is one clear error."""
    written = meta.get("format")
    if written is None:
        return
    kind, _, number = str(written).partition("/")
    if kind != name:
        raise ModelLoadError(f"{path} describes a {kind!r}, not a {name!r}")
    if not number.isdigit() or int(number) > version:
        raise ModelLoadError(f"{path} was written by a newer ChemLM Studio (format {written}; this version reads "
                             f"{name}/{version} and older): upgrade chemlm_engine to load it")


def count_parameters(model: nn.Module) -> tuple[int, int]:  # (trainable, total) parameter counts
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


class RegressionModel(nn.Module):
    """Backbone + pooling (CLS or mean) + dropout + MLP head; predicts standardised labels.

    ``label_mean`` / ``label_std`` (fitted on the training split) are buffers saved with the model;
    :meth:`to_label_units` converts outputs back to labels.
    """

    label_mean: torch.Tensor  # buffers, declared for type checkers
    label_std: torch.Tensor

    def __init__(self, backbone: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, spec: ModelSpec,
                 descriptor_scaler: DescriptorScaler | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.spec = spec
        # Fitted on the training split by ``fit`` when ``spec.descriptors`` (or loaded): names what the head reads
        self.descriptor_scaler = descriptor_scaler
        names = descriptor_scaler.names if descriptor_scaler is not None else HEAD_DESCRIPTORS
        self.descriptor_names = list(names) if spec.descriptors else []
        inputs = backbone.config.hidden_size + len(self.descriptor_names)
        self.dropout = nn.Dropout(spec.dropout)
        hidden = [nn.Linear(inputs, spec.head_hidden), nn.GELU(), nn.Dropout(spec.dropout)] if spec.head_hidden else []
        self.head = nn.Sequential(*hidden, nn.Linear(spec.head_hidden or inputs, 1))
        # Prediction runs in bf16 where the hardware computes it natively (as training does), unless set to fp32;
        # "int8" quantises the backbone's linear layers (load_predictor's choice on CPUs without AMX).
        self.inference_precision = "auto"
        self.register_buffer("label_mean", torch.zeros(()))
        self.register_buffer("label_std", torch.ones(()))
        self.pooled_scale: nn.Parameter | None = None
        # How input SMILES are cleaned; set by training from the data spec, read back from the folder.
        self.standardization = Standardization()

    def enable_pooled_scale(self) -> None:
        """Add one learned scaling vector (initialised to ones) multiplied into the pooled embedding."""
        self.pooled_scale = nn.Parameter(torch.ones(self.backbone.config.hidden_size))

    @classmethod
    def from_spec(cls, spec: ModelSpec, seed: int | None = None) -> RegressionModel:
        """Load the backbone and add a fresh head (initialised from ``seed`` when given)."""
        backbone, tokenizer = load_backbone(spec.backbone, spec.trust_remote_code)
        if seed is not None:
            torch.manual_seed(seed)
        return cls(backbone, tokenizer, spec)

    @property
    def max_tokens(self) -> int:
        """Longest token sequence the backbone accepts (special tokens included)."""
        return int(min(getattr(self.backbone.config, "max_position_embeddings", 512) or 512, 512))

    def set_label_scaler(self, labels: np.ndarray) -> None:
        self.label_mean.fill_(float(np.mean(labels)))
        self.label_std.fill_(float(max(np.std(labels), 1e-6)))

    def to_label_units(self, standardized: torch.Tensor) -> torch.Tensor:
        return standardized * self.label_std + self.label_mean

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """CLS (first token) or attention-masked mean of the last hidden state."""
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.pool(hidden, attention_mask)

    def molecule_features(self, smiles: list[str]) -> torch.Tensor | None:
        """The head's extra per-molecule inputs (standardised RDKit descriptors), or ``None`` without them."""
        if not self.spec.descriptors:
            return None
        if self.descriptor_scaler is None:
            raise ModelLoadError("this model uses descriptors but has no fitted descriptor scaling")
        return torch.from_numpy(self.descriptor_scaler.transform(smiles))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised predictions, shape (batch,)."""
        return self.head_output(self.encode(input_ids, attention_mask), features)

    def head_output(self, pooled: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """Standardised predictions from pooled embeddings (scaling vector, dropout, descriptors, head)."""
        return self.output_layer(self.penultimate(pooled, features)).squeeze(-1).float()

    def penultimate(self, pooled: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """What enters the head's last linear layer: the one composition that prediction, explanations and
        influence all read."""
        if self.pooled_scale is not None:
            pooled = pooled * self.pooled_scale
        pooled = self.dropout(pooled)
        if self.spec.descriptors:
            if features is None:
                raise ValueError("this model needs molecule_features() for every batch")
            pooled = torch.cat([pooled, features.to(pooled.device, pooled.dtype)], dim=-1)
        return self.head[:-1](pooled)

    @property
    def output_layer(self) -> nn.Linear:
        """The head's last linear layer (one output: the standardised prediction)."""
        layer = self.head[-1]
        assert isinstance(layer, nn.Linear)
        return layer

    def save(self, folder: str | Path, training_smiles: list[str] | None = None,
             training_labels: np.ndarray | None = None, standardization: Standardization | None = None,
             with_tokenizer: bool = True, bf16_backbone: bool = False) -> Path:
        """Write one folder: ``regressor.json`` (head settings, the SMILES standardisation used in training),
        ``backbone/``, ``head.safetensors``, tokenizer files (unless an ensemble shares them), descriptor
        scaling and (optionally) the training set, which prediction uses for nearest-neighbour similarity.
        ``bf16_backbone`` stores the backbone's weights in bf16 (half the size; loaded back as fp32)."""
        if standardization is not None:
            self.standardization = standardization
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        # peft adapters are saved alone (peft format) and re-attached to the base backbone on load; peft is imported
        # only where adapters are made or loaded (seconds at every start otherwise), so without it there is none
        adapter = "peft" in sys.modules and isinstance(self.backbone, sys.modules["peft"].PeftModel)
        state = None
        if bf16_backbone and not adapter:
            state = {k: v.detach().to(torch.bfloat16) for k, v in self.backbone.state_dict().items()}
        with quiet_transformers():
            self.backbone.save_pretrained(folder / ("adapter" if adapter else "backbone"), state_dict=state)
        if with_tokenizer:
            self.tokenizer.save_pretrained(folder)
        head_state = {f"head.{k}": v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
        head_state["label_mean"] = self.label_mean.detach().cpu().reshape(1)
        head_state["label_std"] = self.label_std.detach().cpu().reshape(1)
        if self.pooled_scale is not None:
            head_state["pooled_scale"] = self.pooled_scale.detach().cpu().contiguous()
        save_file(head_state, str(folder / HEAD_FILE))
        if self.descriptor_scaler is not None:
            self.descriptor_scaler.save(folder)
        meta = {"format": "/".join(map(str, REGRESSOR_FORMAT)), "pooling": self.spec.pooling,
                "dropout": self.spec.dropout, "head_hidden": self.spec.head_hidden, "tta": self.spec.tta,
                "descriptors": self.spec.descriptors, "backbone_source": self.spec.backbone,
                "trust_remote_code": self.spec.trust_remote_code, "adapter": adapter,
                "label_mean": float(self.label_mean), "label_std": float(self.label_std),
                "standardization": self.standardization.to_dict()}
        (folder / REGRESSOR_FILE).write_text(json.dumps(meta, indent=2))
        if training_smiles is not None:
            save_training_set(folder, training_smiles, training_labels)
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: torch.device | str | None = None,
             trust_remote_code: bool = False) -> RegressionModel:
        """Load a folder written by :meth:`save`.

        Code shipped in (or named by) a folder runs only when the caller passes ``trust_remote_code``;
        the folder's own ``regressor.json`` cannot switch it on. A folder that needs it is refused.
        """
        folder = Path(folder)
        meta_path = folder / REGRESSOR_FILE
        if not meta_path.exists():
            raise ModelLoadError(f"{folder} is not a ChemLM regressor folder (no {REGRESSOR_FILE})")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read {meta_path}: {exc}") from None
        if not isinstance(meta, dict):
            raise ModelLoadError(f"{meta_path} is damaged: not a JSON object")
        check_format(meta, *REGRESSOR_FORMAT, meta_path)
        if (meta.get("trust_remote_code") or _ships_code(folder)) and not trust_remote_code:
            raise ModelLoadError(
                f"{folder} needs trust_remote_code: loading it runs Python code that comes with the model. "
                "Only if you trust its source, pass --trust-remote-code (CLI) or tick 'Trust remote code' (app).")
        try:  # every file below is read from disk: any damage is one clear error, never a traceback
            model = cls._assemble(folder, meta, trust_remote_code)
        except ChemLMError:
            raise
        except Exception as exc:  # noqa: BLE001 - transformers, tokenizers, safetensors raise many kinds
            hint = " (it ships its own code: see trust_remote_code)" if "trust_remote_code" in str(exc) else ""
            raise ModelLoadError(f"cannot load regressor {folder}: {type(exc).__name__}: {exc}{hint}") from exc
        model.eval()
        return model.to(device or best_device())

    @classmethod
    def _assemble(cls, folder: Path, meta: dict, trust_remote_code: bool) -> RegressionModel:
        """Backbone, tokenizer, head and scalers of a folder whose ``regressor.json`` says ``meta``."""
        adapter = meta.get("adapter", False)
        base = str(folder / "backbone")
        if adapter:  # the backbone its adapter adapts: a copy inside the folder (export.py), a folder or a hub id
            inside = folder / meta["backbone_source"]
            if meta["backbone_source"] == BASE_BACKBONE and not inside.is_dir():  # not a hub id: a part left behind
                raise ModelLoadError(f"{inside} is missing: copy the whole exported folder (its adapter adapts that)")
            base = str(inside) if inside.is_dir() else meta["backbone_source"]
        spec = ModelSpec(backbone=base, trust_remote_code=trust_remote_code, pooling=meta["pooling"],
                         dropout=meta["dropout"], head_hidden=meta["head_hidden"],
                         descriptors=meta.get("descriptors", False), tta=meta.get("tta", 0))
        # Ensemble members share one tokenizer, saved in the ensemble's folder.
        tokenizer_dir = folder if (folder / "tokenizer_config.json").exists() else folder.parent
        with quiet_transformers():
            backbone = AutoModel.from_pretrained(base, trust_remote_code=spec.trust_remote_code, dtype=torch.float32,
                                                 local_files_only=hub_unreachable(base))
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=spec.trust_remote_code)
        if getattr(backbone, "pooler", None) is not None:
            backbone.pooler = None
        if adapter:
            from peft import PeftModel

            backbone = PeftModel.from_pretrained(backbone, folder / "adapter")
        model = cls(backbone, tokenizer, spec, DescriptorScaler.load(folder))
        try:
            state = load_file(str(folder / HEAD_FILE))
        except Exception as exc:  # noqa: BLE001 - missing, truncated or not safetensors (SafetensorError)
            raise ModelLoadError(f"cannot read {folder / HEAD_FILE}: {exc}") from None
        if "pooled_scale" in state:
            model.enable_pooled_scale()
            assert model.pooled_scale is not None
            model.pooled_scale.data.copy_(state["pooled_scale"])
        model.head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
        mean, std = float(state["label_mean"][0]), float(state["label_std"][0])
        if not (np.isfinite(mean) and np.isfinite(std) and std > 0):
            raise ModelLoadError(f"{folder / HEAD_FILE} is damaged: label mean {mean}, spread {std}; retrain or "
                                 "export the model again")
        if not all(torch.isfinite(v).all() for v in state.values()):
            raise ModelLoadError(f"{folder / HEAD_FILE} is damaged: its head holds non-finite weights")
        model.label_mean.fill_(mean)
        model.label_std.fill_(std)
        model.standardization = Standardization.from_dict(meta.get("standardization"))
        return model


def _ships_code(folder: Path) -> bool:
    """Whether a regressor folder's backbone or tokenizer names Python code of its own (``auto_map``)."""
    for config in (folder / "backbone" / "config.json", folder / "tokenizer_config.json"):
        try:
            raw = json.loads(config.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and "auto_map" in raw:
            return True
    return False
