"""Why this prediction: which training molecules, and which atoms, drive one predicted value.

**Training molecules.** The attribution runs through the regression head's last linear layer, whose inputs
``x`` (the penultimate activations plus a bias term) are a fixed feature vector per molecule: around the trained
weights the prediction is ``f = θ·x``, and a training molecule ``z`` acts through its residual ``r_z`` (prediction
minus label). With ``A = (XᵀX + λI)⁻¹`` over the training features and the leverage ``h_z = x_zᵀ A x_z``, removing
``z`` and refitting that layer moves the prediction for a query ``q`` by ``x_qᵀ A x_z r_z / (1 − h_z)`` — exact
leave-one-out for ridge regression (Sherman–Morrison), the leverage-corrected influence function for the network.
The **contribution** of ``z`` is the opposite, ``f(q) − f_{−z}(q)``, in label units: **positive means ``z`` pushes
the prediction up**, negative down. A per-model cache (``X``, ``A``, residuals, leverages; safetensors next to the
weights, built once in seconds) makes one query one forward pass and one matrix–vector product. Chosen over
TRAK-style projections of more layers because this subspace is small enough (≤ 257 dimensions) to be exact.

**Atoms.** Integrated gradients on the token embeddings, from a baseline where every atom, bond and ring token is
the ``[MASK]`` embedding (special tokens and the RDKit descriptors of a descriptor model are held fixed), 32
midpoint steps; each atom token's share is mapped to its atom (RDKit keeps the SMILES order). The shares sum to
``f(molecule) − f(baseline)`` (completeness, up to the step error); bond and ring tokens are reported together.
They are computed in fp32 (gradients); the prediction reported is the one ``predict`` gives, in its precision (bf16
or int8 where chosen), within ~0.01 of the attributions' own end.

Ensembles: the prediction is the members' mean, so both attributions are the members' means (exact by linearity).
An ensemble with trees predicts ``(1 − w) · members + w · trees``: the attributions are the members' scaled by
``1 − w``, and the trees' part (whole-molecule features) is held fixed like the descriptors: it moves the
prediction and the baseline alike and is reported as ``trees``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from rdkit import Chem, DataStructs, rdBase
from rdkit.Chem.Draw import rdMolDraw2D
from safetensors import safe_open
from safetensors.numpy import save_file

from .domain import TrainingReference, fingerprints
from .ensemble import Ensemble
from .trees import Trees
from ..inference import last_layer_inputs, predict_values
from ..model import RegressionModel, content_digest
from ..molecules import one_enantiomer
from ..depict import placeholder_png, too_large_to_draw
from ..errors import OutputError
from ..outputs import written_aside
from ..training_set import missing_training_set

__all__ = ["CACHE_FILE", "AttributionCache", "removal_effects", "training_contributions", "atom_contributions",
           "draw_atom_contributions", "Explanation", "explain", "prepare_explanations", "signed"]

CACHE_FILE = "attribution.safetensors"
DAMPING = 1e-3  # λ relative to the mean diagonal of XᵀX: keeps A well conditioned, changes scores by < 0.1 %
_ATOM_TOKEN = re.compile(r"^(\[[^\]]+\]|Cl|Br|B|C|N|O|S|P|F|I|b|c|n|o|s|p|\*)$")


def removal_effects(features: np.ndarray, inverse: np.ndarray, residuals: np.ndarray, leverage: np.ndarray,
                    query: np.ndarray) -> np.ndarray:
    """``f_{−z}(q) − f(q)`` for every training row ``z`` of a ridge model (exact leave-one-out)."""
    return (features @ (inverse @ query)) * residuals / (1.0 - leverage)


def _training_digest(smiles: list[str], labels: np.ndarray) -> str:
    return content_digest(*smiles, np.asarray(labels, dtype=np.float64))


@dataclass
class AttributionCache:
    """Training features, ``(XᵀX + λI)⁻¹``, standardised residuals and leverages of one model."""

    features: np.ndarray
    inverse: np.ndarray
    residuals: np.ndarray
    leverage: np.ndarray

    @classmethod
    def build(cls, model: RegressionModel, smiles: list[str], labels: np.ndarray) -> AttributionCache:
        x = last_layer_inputs(model, smiles)
        gram = x.T @ x
        inverse = np.linalg.inv(gram + DAMPING * np.trace(gram) / len(gram) * np.eye(len(gram)))
        head = model.output_layer
        theta = np.append(head.weight.detach().double().cpu().numpy().ravel(), float(head.bias.detach()))
        targets = (np.asarray(labels, dtype=np.float64) - float(model.label_mean)) / float(model.label_std)
        leverage = np.einsum("ij,jk,ik->i", x, inverse, x)
        return cls(x, inverse, x @ theta - targets, np.minimum(leverage, 0.99))

    def _arrays(self) -> dict[str, np.ndarray]:
        return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in self.__dict__.items()}

    def save(self, folder: str | Path, smiles: list[str], labels: np.ndarray) -> None:
        """Written aside and renamed (no reader sees half a file), with the digest of the training set it was
        built from and of what it holds."""
        arrays, path, training = self._arrays(), Path(folder) / CACHE_FILE, _training_digest(smiles, labels)
        with written_aside(path) as partial:
            save_file(arrays, str(partial), metadata={"training": training,
                                                      "checksum": content_digest(training, *arrays.values())})

    @classmethod
    def load(cls, folder: str | Path, smiles: list[str], labels: np.ndarray) -> AttributionCache | None:
        """The folder's cache if it was built from this training set and is intact; else ``None``."""
        path, training = Path(folder) / CACHE_FILE, _training_digest(smiles, labels)
        try:
            with safe_open(str(path), framework="np") as handle:
                metadata = handle.metadata() or {}
                arrays = {k: handle.get_tensor(k) for k in handle.keys()}
        except Exception:  # noqa: BLE001 - missing, truncated or not safetensors at all: rebuilt by the caller
            return None
        if metadata.get("training") != training or set(arrays) != {"features", "inverse", "residuals", "leverage"}:
            return None
        if metadata.get("checksum") != content_digest(training, *(arrays[k] for k in cls.__dataclass_fields__)):
            return None
        return cls(**{k: v.astype(np.float64) for k, v in arrays.items()})

    @classmethod
    def for_model(cls, model: RegressionModel, folder: str | Path, smiles: list[str], labels: np.ndarray):
        """The folder's cache, built and saved on first use (when the folder is writable) and rebuilt when the
        training set changed or the file is damaged."""
        cache = cls.load(folder, smiles, labels)
        if cache is None:
            cache = cls.build(model, smiles, labels)
            try:
                cache.save(folder, smiles, labels)
            except OutputError:
                pass  # a read-only model folder: the cache lives for this call only
        return cache


def _members(predictor: RegressionModel | Ensemble, folder: str | Path) -> list[tuple[RegressionModel, Path]]:
    if isinstance(predictor, Ensemble):
        names = [f"member-{i}" for i in range(len(predictor.members))]
        return [(m, Path(folder) / name) for m, name in zip(predictor.members, names)]
    return [(predictor, Path(folder))]


def _trees(predictor: RegressionModel | Ensemble) -> Trees | None:
    return predictor.trees if isinstance(predictor, Ensemble) else None


def _members_share(predictor: RegressionModel | Ensemble) -> float:
    """The members' weight in the prediction: 1, or ``1 − w`` beside trees of weight ``w``."""
    trees = _trees(predictor)
    return 1.0 if trees is None else 1.0 - trees.weight


def _training_set(folder: str | Path, reference: TrainingReference | None) -> tuple[list[str], np.ndarray]:
    reference = reference or TrainingReference.load(folder)
    if reference is None:
        raise missing_training_set(folder)
    labels = np.full(len(reference.smiles), np.nan) if reference.labels is None else reference.labels
    return reference.smiles, labels


def prepare_explanations(predictor: RegressionModel | Ensemble, folder: str | Path) -> None:
    """Build every member's attribution cache now (once per model: one forward pass over the training set per
    member), so that the first explanation answers at once."""
    train_smiles, labels = _training_set(folder, None)
    for model, member_folder in _members(predictor, folder):
        AttributionCache.for_model(model, member_folder, train_smiles, labels)


def training_contributions(predictor: RegressionModel | Ensemble, folder: str | Path, smiles: str,
                           reference: TrainingReference | None = None) -> pd.DataFrame:
    """Every training molecule of the model folder with its ``contribution`` to the prediction for ``smiles``
    (label units; positive: pushes it up), sorted by size, indexed by its place in the training set. ``reference``:
    the folder's training set, if already loaded."""
    train_smiles, labels = _training_set(folder, reference)
    total = np.zeros(len(train_smiles))
    members = _members(predictor, folder)
    for model, member_folder in members:
        cache = AttributionCache.for_model(model, member_folder, train_smiles, labels)
        query = last_layer_inputs(model, [smiles])[0]
        total -= removal_effects(cache.features, cache.inverse, cache.residuals, cache.leverage, query) \
            * float(model.label_std)
    frame = pd.DataFrame({"smiles": train_smiles, "label": labels, "contribution": total / len(members)
                          * _members_share(predictor)})
    return frame.reindex(frame["contribution"].abs().sort_values(ascending=False).index)


def atom_contributions(predictor: RegressionModel | Ensemble, smiles: str, steps: int = 32) -> dict:
    """Integrated-gradients share of each atom (label units), the bond / ring tokens' share, the prediction and
    the baseline prediction (see the module docstring)."""
    members = predictor.members if isinstance(predictor, Ensemble) else [predictor]
    parts = [_integrated_gradients(m, smiles, steps) for m in members]
    out = {key: np.mean([p[key] for p in parts], axis=0) * _members_share(predictor) for key in parts[0]}
    trees = _trees(predictor)
    out["trees"] = 0.0 if trees is None else trees.weight * float(trees.predict([smiles])[0])
    out["prediction"] += out["trees"]
    out["baseline"] += out["trees"]
    return out


def _integrated_gradients(model: RegressionModel, smiles: str, steps: int) -> dict:
    model.eval()
    device = next(model.parameters()).device
    encoding = model.tokenizer(smiles, return_offsets_mapping=True, truncation=True, max_length=model.max_tokens)
    ids = torch.tensor([encoding["input_ids"]], device=device)
    special = set(model.tokenizer.all_special_ids)
    editable = torch.tensor([i not in special for i in encoding["input_ids"]], device=device)
    embed = model.backbone.get_input_embeddings()
    with torch.no_grad():
        real = embed(ids)
        blank = model.tokenizer.mask_token_id if model.tokenizer.mask_token_id is not None else \
            model.tokenizer.pad_token_id
        baseline = torch.where(editable[None, :, None], embed(torch.tensor([[blank]], device=device)), real)
    alphas = ((torch.arange(steps, device=device) + 0.5) / steps)[:, None, None]
    path = (baseline + alphas * (real - baseline)).requires_grad_(True)
    mask = torch.ones(path.shape[:2], dtype=torch.long, device=device)
    features = model.molecule_features([smiles])

    def predict(embeddings: torch.Tensor) -> torch.Tensor:
        hidden = model.backbone(inputs_embeds=embeddings, attention_mask=mask[: len(embeddings)]).last_hidden_state
        extra = None if features is None else features.expand(len(embeddings), -1)
        return model.head_output(model.pool(hidden, mask[: len(embeddings)]), extra) * model.label_std

    grads = torch.autograd.grad(predict(path).sum(), path)[0].mean(0)
    shares = ((real - baseline)[0] * grads).sum(-1).detach().cpu().numpy()
    with torch.no_grad():
        ends = predict(torch.cat([real, baseline])).cpu().numpy()
    with rdBase.BlockLogs():
        n_atoms = Chem.MolFromSmiles(smiles).GetNumAtoms()
    atoms, other, k = np.zeros(n_atoms), 0.0, 0
    for share, (a, b), keep in zip(shares, encoding["offset_mapping"], editable.tolist()):
        if not keep:
            continue
        if _ATOM_TOKEN.match(smiles[a:b]) and k < n_atoms:
            atoms[k] += share
            k += 1
        else:
            other += share
    label_mean = float(model.label_mean)
    return {"atoms": atoms, "other": other, "prediction": ends[0] + label_mean, "baseline": ends[1] + label_mean}


def draw_atom_contributions(smiles: str, atoms: np.ndarray, size: tuple[int, int] = (460, 340),
                            legend: str = "") -> bytes:
    """PNG of the molecule with atoms coloured by contribution: red raises the prediction, blue lowers it
    (intensity relative to the largest share)."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if too_large_to_draw(mol):
        return placeholder_png(f"atom map {too_large_to_draw(mol)}", size)
    scale = float(np.abs(atoms).max()) or 1.0
    colours = {}
    for i, w in enumerate(atoms):
        t = min(abs(w) / scale, 1.0)
        colours[i] = (1.0, 1 - 0.75 * t, 1 - 0.75 * t) if w > 0 else (1 - 0.75 * t, 1 - 0.75 * t, 1.0)
    drawer = rdMolDraw2D.MolDraw2DCairo(*size)
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, mol, legend=legend, highlightAtoms=list(colours),
                                       highlightAtomColors=colours, highlightBonds=[])
    drawer.FinishDrawing()
    return drawer.GetDrawingText()


@dataclass
class Explanation:
    smiles: str
    prediction: float
    atoms: dict | None  # see atom_contributions; None for a molecule too large to draw (not attributed)
    training: pd.DataFrame  # every training molecule: smiles, label, contribution, similarity
    picture: bytes  # the atom map (PNG)

    def top(self, k: int = 10) -> pd.DataFrame:
        """The ``k`` training molecules pushing the prediction up most, the ``k`` pushing it down most, and the
        ``k`` nearest by similarity (for contrast; of equals, the first in the training set, as the results' nearest
        training molecule), with a ``role`` column."""
        t = self.training
        return pd.concat([t.nlargest(k, "contribution").assign(role="pushes up"),
                          t.nsmallest(k, "contribution").assign(role="pushes down"),
                          t.sort_index().nlargest(k, "similarity").assign(role="nearest")], ignore_index=True)


def _prediction(predictor: RegressionModel | Ensemble, smiles: str) -> float:
    """The number prediction gives for this (canonical) SMILES, so that "Why?" never shows another one."""
    smiles = one_enantiomer(smiles)  # as prediction reads it
    if isinstance(predictor, Ensemble):
        return float(predictor.predict([smiles])[0][0])
    return float(predict_values(predictor, [smiles])[0])


def signed(value: float, decimals: int = 2) -> str:
    """A logD contribution with its sign; one that rounds to zero reads +0.00, not -0.00."""
    return f"{round(value, decimals) + 0.0:+.{decimals}f}"


def explain(predictor: RegressionModel | Ensemble, folder: str | Path, smiles: str,
            reference: TrainingReference | None = None) -> Explanation:
    """Both attributions for one (canonical) SMILES, and the atom map. ``reference``: the folder's training set, if
    already loaded."""
    reference = reference or TrainingReference.load(folder)  # read once: contributions and similarities need it
    training = training_contributions(predictor, folder, smiles, reference)
    assert reference is not None  # training_contributions refuses a folder without a training set
    similarity = DataStructs.BulkTanimotoSimilarity(fingerprints([smiles])[0], reference.fingerprints)
    training["similarity"] = training["smiles"].map(dict(zip(reference.smiles, similarity)))
    prediction = _prediction(predictor, smiles)
    with rdBase.BlockLogs():
        unmapped = too_large_to_draw(Chem.MolFromSmiles(smiles))
    if unmapped:  # integrated gradients through every member took minutes on such a molecule, for no map
        return Explanation(smiles, prediction, None, training, placeholder_png(f"atom map {unmapped}", (460, 340)))
    atoms = atom_contributions(predictor, smiles)
    trees = f"of which trees {signed(atoms['trees'])}; " if atoms["trees"] else ""  # held fixed: in both ends
    legend = f"logD {prediction:.2f} ({trees}baseline {atoms['baseline']:.2f}); red raises, blue lowers"
    return Explanation(smiles, prediction, atoms, training,
                       draw_atom_contributions(smiles, atoms["atoms"], legend=legend))
