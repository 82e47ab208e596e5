"""Chemical structures -> SMILES, validated and canonicalised with RDKit when it is installed.

DeepSeek-OCR reads a drawn structure as a SMILES string (the released HF code wraps such
outputs in `<smiles>...</smiles>`). `find_smiles` picks SMILES out of an output; `read_smiles`
makes the typed payload. With the `chem` extra (RDKit) a string is parsed, canonicalised and
given its InChIKey; one RDKit cannot parse is kept exactly as written with `is_valid=False`
and the flag `invalid_smiles`: never silently fixed. Without RDKit `is_valid` is None and the
flag is `unvalidated`.
"""

from __future__ import annotations

import re

from dsocr_connectors.document import Chemistry

_WRAPPED = re.compile(r"<smiles>(.*?)(?:</smiles>|$)", re.DOTALL | re.IGNORECASE)
# One SMILES token: the SMILES alphabet only, with at least one atom symbol.
_TOKEN = re.compile(r"^[A-Za-z0-9@+\-\[\]()=#$%/\\.:*]+$")
_ATOMS = re.compile(r"Cl|Br|\[[^\]]+\]|[BCNOPSFIbcnops]")
_WORDS = re.compile(r"^[A-Z]?[a-z]{3,}$")  # an English word, not a SMILES


def find_smiles(text: str) -> list[str]:
    """SMILES strings in a model output: `<smiles>` spans, else SMILES-shaped tokens."""
    wrapped = [m.strip() for m in _WRAPPED.findall(text) if m.strip()]
    if wrapped:
        return wrapped
    found = []
    for token in re.split(r"[\s,;]+", text.strip()):
        token = token.strip("`'\".")
        if looks_like_smiles(token):
            found.append(token)
    return found


def looks_like_smiles(token: str) -> bool:
    """A cheap shape test, not a validation: SMILES alphabet, an atom, not an English word."""
    if len(token) < 2 or not _TOKEN.match(token) or _WORDS.match(token):
        return False
    atoms = _ATOMS.findall(token)
    if not atoms:
        return False
    has_structure = any(c in token for c in "=#()[]123456789@/\\")
    # Plain letter runs like "CCO" are valid SMILES; a run of only letters must be atoms only.
    only_atoms = _ATOMS.sub("", token) == ""
    return has_structure or only_atoms


def read_smiles(smiles: str) -> Chemistry:
    """The typed payload for one SMILES string, validated when RDKit is available."""
    try:
        from rdkit import Chem, RDLogger
    except ImportError:
        return Chemistry(smiles=smiles, is_valid=None, flags=["unvalidated"])
    RDLogger.DisableLog("rdApp.*")
    molecule = Chem.MolFromSmiles(smiles)
    if molecule is None:
        return Chemistry(smiles=smiles, is_valid=False, flags=["invalid_smiles"])
    inchikey = None
    try:
        inchikey = Chem.MolToInchiKey(molecule) or None
    except Exception:  # RDKit built without InChI support
        pass
    return Chemistry(smiles=smiles, canonical_smiles=Chem.MolToSmiles(molecule),
                     inchikey=inchikey, is_valid=True)
