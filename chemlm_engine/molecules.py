"""One molecule from text: input checks, RDKit parsing, standardisation (rdMolStandardize) and canonical SMILES.

Every path that reads a SMILES (training data, prediction, libraries, Ray workers) goes through
:func:`prepare_smiles`, so the limits and the clean-up are the same everywhere and recorded with a model.
"""
from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass

from rdkit import Chem, rdBase
from rdkit.Chem.MolStandardize import rdMolStandardize

from .errors import InvalidSmilesError

__all__ = ["MAX_SMILES_LENGTH", "Standardization", "PreparedSmiles", "check_smiles_text", "split_smiles_line",
           "is_molecule", "carbon_and_charge", "prepare_smiles", "canonicalize", "try_canonicalize", "randomize_smiles",
           "one_enantiomer"]

# RDKit's recursive SMILES writer overflows the stack (a segfault that kills the whole process, app server
# included) somewhere between 15,000 and 20,000 chained atoms, and parsing 100,000 characters takes minutes.
# The largest molecules in ChEMBL are a few hundred atoms; 5,000 characters is far above any of them.
MAX_SMILES_LENGTH = 5000
# A CXSMILES extension (enhanced stereo, atom labels, radicals; Enamine's REAL files carry one on most molecules)
# follows the SMILES after whitespace, between bars. RDKit reads it; the model reads the canonical SMILES.
_CXSMILES = re.compile(r"(\S+)(\s+\|[^|]*\|(?=\s|$))?")


@dataclass(frozen=True)
class Standardization:
    """How a molecule is cleaned before it is canonicalised (the same in training and prediction).

    ``enabled``: keep the largest organic fragment (drops counter-ions and solvents), drop isotope labels (a
    deuterated or ¹³C-labelled compound is predicted as its parent) and neutralise charges that can be neutralised.
    ``tautomer``: also replace it by RDKit's canonical tautomer (slower).
    """

    enabled: bool = True
    tautomer: bool = False

    def to_dict(self) -> dict[str, bool]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict | None) -> Standardization:
        """The recorded settings; a model folder without them was trained on unstandardised SMILES."""
        return cls(**raw) if raw else cls(enabled=False)


@dataclass(frozen=True)
class PreparedSmiles:
    """What became of one input: the canonical SMILES, or the reason there is none; what standardisation changed."""

    input: str
    smiles: str | None
    error: str | None = None
    changes: tuple[str, ...] = ()
    heavy_atoms: int = 0


def check_smiles_text(text: str) -> str:
    """The stripped text, or :class:`InvalidSmilesError` for what RDKit would misread or choke on.

    RDKit stops reading at whitespace and at some non-ASCII characters, so ``"C C O"`` would silently
    become methane: both are errors here, as are empty and over-long strings. Whitespace before a CXSMILES
    extension (``"CC(O)CC |&1:1|"``) and inside it is allowed.
    """
    text = text.strip()
    if not text:
        raise InvalidSmilesError("empty")
    if len(text) > MAX_SMILES_LENGTH:
        raise InvalidSmilesError(f"too long: {len(text):,} characters (the limit is {MAX_SMILES_LENGTH:,})")
    cxsmiles = _CXSMILES.fullmatch(text)
    smiles_end = len(cxsmiles.group(1)) if cxsmiles else len(text)
    for position, char in enumerate(text, start=1):
        if char.isspace():
            if position <= smiles_end:
                raise InvalidSmilesError(f"whitespace inside the SMILES at character {position}")
        elif not char.isascii() or not char.isprintable():
            raise InvalidSmilesError(f"character {char!r} at position {position} is not SMILES (ASCII only)")
    return text


def split_smiles_line(line: str) -> tuple[str, str]:
    """One line of a SMILES file or of pasted text: the SMILES (with its CXSMILES extension, if any) and what
    follows it (a name; ``""`` if none)."""
    line = line.strip()
    match = _CXSMILES.match(line)
    return (match.group(0), line[match.end():].strip()) if match else ("", "")


def is_molecule(text: str) -> bool:
    """Whether ``text`` is a SMILES that RDKit reads (e.g. to tell a SMILES file's header line from a molecule)."""
    return prepare_smiles(text, Standardization(enabled=False)).smiles is not None


def _parse_error(log: str) -> str:
    """RDKit's reason for a SMILES it cannot parse ("unclosed ring", "extra open parentheses") and where."""
    said = re.search(r"SMILES Parse Error: (.+?)(?: while parsing| for input|:?\n|$)", log)
    where = re.search(r"around position (\d+)", log)
    return (f"cannot parse SMILES: {said[1] if said else 'syntax error'}"
            + (f" (around character {where[1]})" if where else ""))


# Atom checks every molecule passes through, as queries: RDKit answers them ~25x faster than a Python loop over the
# atoms (2 us against 44 for a drug-sized molecule; standardisation reads each molecule twice)
_WILDCARD = Chem.MolFromSmarts("[#0]")
_ISOTOPE = Chem.MolFromSmarts("[!0*]")  # an isotope label: any mass number but none
_CHARGED = Chem.MolFromSmarts("[!+0]")  # what the uncharger changes: most molecules have none


def _parse(text: str) -> Chem.Mol:
    with rdBase.BlockLogs(), rdBase.CaptureErrorLog() as log:
        mol = Chem.MolFromSmiles(text, sanitize=False)
        if mol is None:
            raise InvalidSmilesError(_parse_error(log.messages))
        try:
            Chem.SanitizeMol(mol)
        except Exception as exc:  # RDKit raises several sanitisation exception types
            raise InvalidSmilesError(f"invalid chemistry: {exc}") from None
        if mol.GetNumAtoms() == 0:
            raise InvalidSmilesError("no atoms")
        if mol.HasSubstructMatch(_WILDCARD):
            raise InvalidSmilesError("a wildcard or attachment point (*): a fragment or a query, not a whole molecule")
        # hydrogens written as atoms ([H]OC([H])[H]) are the same molecule: folded in, as an SD file's are (the
        # model's vocabulary reads [H] as unknown); RDKit keeps those that carry an isotope or define stereo
        return Chem.RemoveHs(mol)


def _organic(mol: Chem.Mol) -> bool:
    return any(atom.GetAtomicNum() == 6 for atom in mol.GetAtoms())


def carbon_and_charge(smiles: str) -> tuple[bool, int]:
    """Whether a (canonical) SMILES has a carbon atom (water, ammonia, a metal salt's inorganic part have none), and
    its net formal charge: not 0 for an ion neutralising leaves charged (a quaternary ammonium, a pyridinium); a
    zwitterion's charges cancel. One read for both (no need to sanitise to count atoms and charges)."""
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles, sanitize=False)
    if mol is None:
        return True, 0
    return _organic(mol), Chem.GetFormalCharge(mol)


# one for every molecule: building it (its charge patterns) cost twice what it takes to neutralise one
_UNCHARGER = rdMolStandardize.Uncharger(canonicalOrder=True)
# atomic numbers whose removal is not "a metal removed": non-metals, and Li Na K Rb Cs, Mg Ca Sr Ba (a salt's
# counter-ions, not a complex's metal)
_UNSAID = {1, 2, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 33, 34, 35, 36, 52, 53, 54, 85, 86, 3, 11, 19, 37, 55, 12,
           20, 38, 56}


def _standardize(mol: Chem.Mol, settings: Standardization) -> tuple[Chem.Mol, list[str]]:
    changes: list[str] = []
    with rdBase.BlockLogs():
        fragments = Chem.GetMolFrags(mol, asMols=True)
        if len(fragments) > 1:
            mol = rdMolStandardize.LargestFragmentChooser(preferOrganic=True).choose(mol)
            kept = Chem.MolToSmiles(mol)
            others = [(Chem.MolToSmiles(f), f) for f in fragments]
            copies = sum(text == kept for text, _ in others) - 1  # a 2:1 salt holds the molecule twice
            removed = [text for text, _ in others if text != kept]
            # a pamoate's or a co-crystal's other half may be the compound itself: the larger part is not always it
            rivals = [text for text, f in others if text != kept and _organic(f)
                      and f.GetNumHeavyAtoms() >= max(6, mol.GetNumHeavyAtoms() // 2)]
            gone = [*([".".join(removed)] if removed else []),
                    *([f"{copies} more {'copy' if copies == 1 else 'copies'} of the kept molecule"] if copies else [])]
            changes.append(f"removed {' and '.join(gone)}" + (f" (kept the larger of {1 + len(rivals)} organic "
                                                             "parts: check that it is the compound)" if rivals else ""))
            metals = sorted({a.GetSymbol() for text, f in others if text != kept for a in f.GetAtoms()
                             if a.GetAtomicNum() not in _UNSAID})
            if metals:  # a complex's logD is not its ligand's: the number is for what is left
                changes.append(f"removed the metal ({', '.join(metals)}): predicted as the part left, not as a "
                               "complex or salt of the metal")
        labels = sorted({f"[{a.GetIsotope()}{a.GetSymbol()}]" for a in mol.GetAtoms() if a.GetIsotope()}
                        if mol.HasSubstructMatch(_ISOTOPE) else [])
        if labels:  # the model's vocabulary reads [13CH3] as unknown, and logD barely moves with isotopes
            mol = Chem.RemoveHs(rdMolStandardize.IsotopeParent(mol, skipStandardize=True))  # [2H] → H: folded in
            changes.append(f"removed isotope labels ({', '.join(labels)})")
        if mol.HasSubstructMatch(_CHARGED):
            before = Chem.MolToSmiles(mol)
            mol = _UNCHARGER.uncharge(mol)
            if Chem.MolToSmiles(mol) != before:
                changes.append("neutralised")
        if settings.tautomer:
            before = Chem.MolToSmiles(mol)
            mol = rdMolStandardize.TautomerEnumerator().Canonicalize(mol)
            if Chem.MolToSmiles(mol) != before:
                changes.append("canonical tautomer")
    return mol, changes


def prepare_smiles(text: object, standardization: Standardization = Standardization()) -> PreparedSmiles:
    """Check, parse, (optionally) standardise and canonicalise one input; never raises."""
    raw = "" if text is None else str(text)
    try:
        mol = _parse(check_smiles_text(raw))
        changes: list[str] = []
        if standardization.enabled:
            mol, changes = _standardize(mol, standardization)
        with rdBase.BlockLogs():
            canonical = Chem.MolToSmiles(mol)
        try:  # every later step (model, fingerprints, descriptors) reads the canonical SMILES again
            _parse(canonical)
        except InvalidSmilesError as exc:  # e.g. [CH2+3]C, which neutralising turns into C[CH5]
            metal = next((c for c in changes if c.startswith("removed the metal")), None)
            if metal:  # ferrocene's rings: no molecule without the iron they are bound to
                raise InvalidSmilesError(f"an organometallic: {metal.split(':')[0]} leaves {canonical}, which is no "
                                         f"molecule on its own (RDKit: {exc}); a complex whose ligands need the "
                                         "metal, as ferrocene's, is not predicted") from None
            made = "standardisation makes it" if changes else "its canonical form is"
            raise InvalidSmilesError(f"{made} {canonical}, which RDKit cannot read back ({exc})") from None
        return PreparedSmiles(raw, canonical, None, tuple(changes), mol.GetNumHeavyAtoms())
    except InvalidSmilesError as exc:
        return PreparedSmiles(raw, None, str(exc))


def canonicalize(smiles: str, standardization: Standardization = Standardization(enabled=False)) -> str:
    """RDKit's canonical SMILES, or :class:`InvalidSmilesError` with the reason."""
    prepared = prepare_smiles(smiles, standardization)
    if prepared.smiles is None:
        raise InvalidSmilesError(prepared.error)
    return prepared.smiles


def try_canonicalize(smiles: str) -> tuple[str | None, str | None]:
    """``(canonical, None)`` or ``(None, reason)``; never raises."""
    prepared = prepare_smiles(smiles, Standardization(enabled=False))
    return prepared.smiles, prepared.error


def randomize_smiles(smiles: list[str], seed: int) -> list[str]:
    """One random (non-canonical) spelling of each valid SMILES, reproducible from ``seed`` and the SMILES itself
    (SMILES enumeration): not from its place in the list, which made a test-time-augmented prediction depend on the
    molecules listed before it."""
    out = []
    with rdBase.BlockLogs():
        for text in smiles:
            mol = Chem.MolFromSmiles(text)
            own_seed = (seed * 1_000_003 + zlib.crc32(text.encode())) % 2**31
            out.append(Chem.MolToRandomSmilesVect(mol, 1, randomSeed=own_seed)[0]
                       if mol is not None and mol.GetNumAtoms() > 1 else text)
    return out


_MIRRORED = {Chem.ChiralType.CHI_TETRAHEDRAL_CW: Chem.ChiralType.CHI_TETRAHEDRAL_CCW,
             Chem.ChiralType.CHI_TETRAHEDRAL_CCW: Chem.ChiralType.CHI_TETRAHEDRAL_CW}


def one_enantiomer(smiles: str) -> str:
    """Of a chiral molecule's canonical SMILES and its mirror image's (every tetrahedral centre inverted), the one
    that sorts first; any other SMILES as it is. Enantiomers have one logD, but a model that reads stereo marks gave
    the two up to 0.03 apart (bench/stereo.py): prediction reads this one for both, at no cost in accuracy."""
    if "@" not in smiles:
        return smiles
    with rdBase.BlockLogs():
        mol = Chem.MolFromSmiles(smiles)
    if mol is None:
        return smiles
    for atom in mol.GetAtoms():
        atom.SetChiralTag(_MIRRORED.get(atom.GetChiralTag(), atom.GetChiralTag()))
    return min(smiles, Chem.MolToSmiles(mol))
