"""A pretraining corpus that looks like what chemists measure (issue #24), built offline from what installs:
MOSES molecules (250–350 Da, neutral, few acids or bases), BRICS recombinations of their pieces grown to drug
size and beyond, and every molecule's dominant charge state at pH 7.4 (dimorphite-dl). Together they bring
the lengths, charged atoms and acids / bases of measured sets into pretraining. A molecule of the excluded
set (every Lipophilicity molecule) never enters, in any charge state or spelling.
"""
from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from rdkit import Chem, rdBase
from rdkit.Chem import BRICS

from ...ionisation import count_ionisable
from ...molecules import Standardization, prepare_smiles

__all__ = ["CorpusRecipe", "IONISABLE_BLOCKS", "build_corpus", "build_corpus_parallel", "merge_parts", "recombine",
           "at_ph74", "neutral_key", "corpus_statistics", "statistics_table"]


@dataclass(frozen=True)
class CorpusRecipe:
    """How many molecules of each kind (shares of ``size``) and how large the recombined ones grow."""

    size: int = 1_000_000
    recombined: float = 0.5  # the rest are seed (MOSES) molecules
    large: float = 0.15  # of the recombined: grown to LARGE heavy atoms (long SMILES, past position 256)
    charged: float = 0.5  # of all: also added in their dominant state at pH 7.4, where it differs
    drug_size: tuple[int, int] = (20, 70)  # heavy atoms
    large_size: tuple[int, int] = (70, 150)
    seed: int = 0


def neutral_key(smiles: str) -> str | None:
    """The canonical SMILES of the molecule's largest fragment, neutralised: the same key for every charge
    state and spelling of one molecule (what exclusion compares)."""
    return prepare_smiles(smiles, Standardization(enabled=True)).smiles


# Building blocks with the ionisable groups MOSES lacks (carboxylic acids, tetrazoles, acyl sulfonamides,
# sulfonic acids, aliphatic amines, amidines): cut like the seed molecules, their pieces join recombinations.
IONISABLE_BLOCKS = (
    "OC(=O)c1ccc(N)cc1", "OC(=O)Cc1ccccc1", "OC(=O)CCC(=O)N1CCCC1", "OC(=O)c1cccnc1", "c1ccc(cc1)-c1nn[nH]n1",
    "CS(=O)(=O)NC(=O)c1ccccc1", "OC(=O)C1CCN(CC1)C(=O)c1ccccc1", "OC(=O)c1ccc2[nH]ccc2c1", "OS(=O)(=O)c1ccccc1",
    "OC(=O)C(C)Oc1ccccc1", "OC(=O)c1ccccc1Nc1ccccc1", "NCCc1ccccc1", "CN1CCN(CC1)c1ccccc1", "NC1CCN(CC1)C(=O)C",
    "CN(C)CCOc1ccccc1", "NC1CCCCC1", "CN1CCC(CC1)c1ccccc1", "NC(=N)c1ccccc1", "C1CN(CCN1)C(=O)c1ccccc1",
    "CCN(CC)CC(=O)Nc1ccccc1", "CN1CCC(CC1)Oc1ccccc1", "NCc1ccc(cc1)C(=O)N",
)
_COMPATIBLE = {(int(a.rstrip("ab")), int(b.rstrip("ab"))) for defs in BRICS.reactionDefs for a, b, _ in defs}
_COMPATIBLE |= {(b, a) for a, b in _COMPATIBLE}


def _pieces(seeds: Sequence[str], rng: random.Random) -> list[Chem.Mol]:
    """Each molecule cut at one or two random BRICS bonds: large pieces carrying their BRICS link labels (a
    middle piece has two, so molecules can grow in a chain)."""
    pieces: list[Chem.Mol] = []
    with rdBase.BlockLogs():
        for smiles in seeds:
            mol = Chem.MolFromSmiles(smiles)
            bonds = list(BRICS.FindBRICSBonds(mol)) if mol is not None else []
            if bonds:
                cut = BRICS.BreakBRICSBonds(mol, rng.sample(bonds, min(len(bonds), rng.choice((1, 2)))))
                pieces.extend(Chem.GetMolFrags(cut, asMols=True))
    return pieces


def _join(a: Chem.Mol, b: Chem.Mol, rng: random.Random) -> Chem.Mol | None:
    """``a`` and ``b`` bonded at one pair of BRICS attachment points that BRICS allows to meet."""
    ends = [(i.GetIdx(), j.GetIdx()) for i in a.GetAtoms() if i.GetAtomicNum() == 0
            for j in b.GetAtoms() if j.GetAtomicNum() == 0 and (i.GetIsotope(), j.GetIsotope()) in _COMPATIBLE]
    if not ends:
        return None
    i, j = rng.choice(ends)
    a, b = Chem.RWMol(a), Chem.RWMol(b)
    a.GetAtomWithIdx(i).SetAtomMapNum(1)
    b.GetAtomWithIdx(j).SetAtomMapNum(1)
    return Chem.molzip(a, b)


def _open(mol: Chem.Mol) -> int:
    return sum(a.GetAtomicNum() == 0 for a in mol.GetAtoms())


def _capped(mol: Chem.Mol) -> Chem.Mol | None:
    """Open attachment points become hydrogens; ``None`` when the result is not a valid molecule."""
    editable = Chem.RWMol(mol)
    for atom in editable.GetAtoms():
        if atom.GetAtomicNum() == 0:
            atom.SetAtomicNum(1)
            atom.SetIsotope(0)
            atom.SetAtomMapNum(0)
    try:
        return Chem.RemoveHs(editable.GetMol())
    except Exception:  # noqa: BLE001 - RDKit raises several sanitisation types: not a molecule
        return None


def recombine(seeds: Sequence[str], n: int, heavy_atoms: tuple[int, int], seed: int = 0) -> list[str]:
    """``n`` new molecules (canonical SMILES) of ``heavy_atoms`` (inclusive) heavy atoms, grown piece by piece
    from BRICS pieces of the seed molecules and of :data:`IONISABLE_BLOCKS`, joined where BRICS allows."""
    rng = random.Random(seed)
    sample = rng.sample(list(seeds), min(len(seeds), 2 * n))  # pieces of ~2 molecules per product: enough variety
    pieces = _pieces(sample, rng) + _pieces(IONISABLE_BLOCKS, rng) * max(1, len(sample) // 100)
    links = [p for p in pieces if _open(p) > 1]  # pieces that leave a point open to grow on
    low, high = heavy_atoms
    out: dict[str, None] = {}
    with rdBase.BlockLogs():
        for _ in range(20 * n):
            if len(out) >= n or not links:
                break
            mol, target = rng.choice(pieces), rng.randint(low, high)
            for _ in range(50):
                if mol.GetNumHeavyAtoms() - _open(mol) >= target or not _open(mol):
                    break
                grow = _open(mol) == 1 and mol.GetNumHeavyAtoms() - 1 + 10 < target  # far from the target
                mol = _join(mol, rng.choice(links if grow else pieces), rng) or mol
            product = _capped(mol)
            if product is not None and low <= product.GetNumHeavyAtoms() <= high:
                out[Chem.MolToSmiles(product)] = None
    return list(out)


def at_ph74(smiles: Sequence[str]) -> list[str]:
    """Each molecule in its dominant protonation state at pH 7.4 (dimorphite-dl, one variant), canonical."""
    from dimorphite_dl import protonate_smiles  # only corpus building needs it

    out = []
    for s in smiles:
        try:
            variants = protonate_smiles(s, ph_min=7.4, ph_max=7.4, max_variants=1)
        except Exception:  # noqa: BLE001 - a molecule dimorphite cannot handle keeps its neutral form
            variants = []
        mol = Chem.MolFromSmiles(variants[0]) if variants else None
        out.append(Chem.MolToSmiles(mol) if mol is not None else s)
    return out


def build_corpus(seeds: Sequence[str], exclude: Iterable[str], recipe: CorpusRecipe = CorpusRecipe()) -> list[str]:
    """Seed molecules, drug-size and large recombinations, and charged forms at pH 7.4, de-duplicated, in a
    seeded order; no molecule whose :func:`neutral_key` is that of an ``exclude`` molecule."""
    rng = random.Random(recipe.seed)
    banned = {neutral_key(s) for s in exclude} - {None}
    n_new = round(recipe.size * recipe.recombined)
    n_large = round(n_new * recipe.large)
    base = rng.sample(list(seeds), min(len(seeds), recipe.size - n_new))
    grown = recombine(seeds, n_new - n_large, recipe.drug_size, recipe.seed) + \
        recombine(seeds, n_large, recipe.large_size, recipe.seed + 1)
    molecules = [s for s in dict.fromkeys(base + grown) if neutral_key(s) not in banned]
    chosen = rng.sample(molecules, round(len(molecules) * recipe.charged))
    charged = [c for c, s in zip(at_ph74(chosen), chosen) if c != s]
    corpus = list(dict.fromkeys(molecules + charged))
    rng.shuffle(corpus)
    return corpus


def build_corpus_parallel(seeds: Sequence[str], exclude: Iterable[str], recipe: CorpusRecipe = CorpusRecipe(),
                          workers: int = 1) -> list[str]:
    """:func:`build_corpus` in ``workers`` processes (recombination is single-threaded RDKit work): worker ``i``
    builds a ``size / workers`` corpus with seed ``recipe.seed + 1 + i``; the parts are merged, de-duplicated
    and shuffled. One worker is :func:`build_corpus` itself."""
    if workers <= 1:
        return build_corpus(seeds, exclude, recipe)
    from concurrent.futures import ProcessPoolExecutor

    parts = [replace(recipe, size=recipe.size // workers, seed=recipe.seed + 1 + i) for i in range(workers)]
    exclude = list(exclude)
    with ProcessPoolExecutor(workers) as pool:
        built = list(pool.map(build_corpus, [seeds] * workers, [exclude] * workers, parts))
    return merge_parts(built, recipe.seed)


def merge_parts(parts: Sequence[Sequence[str]], seed: int) -> list[str]:
    """Corpus parts joined, de-duplicated and shuffled in a seeded order."""
    corpus = list(dict.fromkeys(s for part in parts for s in part))
    random.Random(seed).shuffle(corpus)
    return corpus


def corpus_statistics(smiles: Sequence[str], tokenizer) -> pd.DataFrame:
    """Per molecule: SMILES tokens (this project's tokenizer, no special tokens), heavy atoms, net formal
    charge, acidic and basic groups at pH 7.4."""
    lengths = [len(ids) for ids in tokenizer(list(smiles), add_special_tokens=False)["input_ids"]]
    rows = []
    with rdBase.BlockLogs():
        for s, tokens in zip(smiles, lengths):
            mol = Chem.MolFromSmiles(s)
            acids, bases = count_ionisable(mol)
            rows.append({"tokens": tokens, "heavy_atoms": mol.GetNumHeavyAtoms(),
                         "formal_charge": Chem.GetFormalCharge(mol),
                         "charged_atoms": sum(a.GetFormalCharge() != 0 for a in mol.GetAtoms()),
                         "acid_groups": acids, "base_groups": bases})
    return pd.DataFrame(rows)


_BINS = {"tokens": [0, 44, 54, 80, 128, 256, 10**6], "heavy_atoms": [0, 19, 30, 45, 70, 110, 10**6]}


def statistics_table(corpora: dict[str, pd.DataFrame]) -> str:
    """A Markdown table comparing corpora (share of molecules per bin) — the model card's histograms."""
    lines = ["| | " + " | ".join(corpora) + " |", "|---|" + "---|" * len(corpora)]

    def row(label: str, shares: list[float]) -> None:
        lines.append(f"| {label} | " + " | ".join(f"{100 * v:.1f} %" for v in shares) + " |")

    for column, edges in _BINS.items():
        for low, high in zip(edges[:-1], edges[1:]):
            span = f"> {low}" if high == 10**6 else f"{low + 1}–{high}"
            row(f"{column.replace('_', ' ')} {span}",
                [float(((s[column] > low) & (s[column] <= high)).mean()) for s in corpora.values()])
    row("any charged atom", [float((s["charged_atoms"] > 0).mean()) for s in corpora.values()])
    row("an acidic group", [float((s["acid_groups"] > 0).mean()) for s in corpora.values()])
    row("a basic group", [float((s["base_groups"] > 0).mean()) for s in corpora.values()])
    lines.append("| molecules | " + " | ".join(f"{len(s):,}" for s in corpora.values()) + " |")
    lines.append("| longest (tokens) | " + " | ".join(f"{int(np.max(s['tokens']))}" for s in corpora.values())
                 + " |")
    return "\n".join(lines)
