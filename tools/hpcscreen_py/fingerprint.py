"""Morgan fingerprints as hpcscreen's `morgan` featurizer defines them, made by RDKit's own
rdFingerprintGenerator (the reference the C++ featurizer is tested against), and the
hpcscreen.json of a fingerprint model (data_schemas/model_contract.md)."""
import json

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem import rdFingerprintGenerator

from . import gnn

DEFAULTS = {"radius": 2, "bits": 2048, "counts": False, "chirality": False, "features": False}


def spec(**params):
    """The featurizer object of hpcscreen.json: {"name": "morgan", "version": 1, ...}."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown morgan parameters {sorted(unknown)}")
    return {"name": "morgan", "version": 1, **DEFAULTS, **params}


def generator(s):
    kw = dict(radius=s["radius"], fpSize=s["bits"], includeChirality=s["chirality"])
    if s["features"]:
        kw["atomInvariantsGenerator"] = rdFingerprintGenerator.GetMorganFeatureAtomInvGen()
    return rdFingerprintGenerator.GetMorganGenerator(**kw)


def fingerprint(mol, s, gen=None):
    """float32 [bits]: 0/1 bits, or counts."""
    gen = gen or generator(s)
    fp = gen.GetCountFingerprintAsNumPy(mol) if s["counts"] else gen.GetFingerprintAsNumPy(mol)
    return np.asarray(fp, dtype=np.float32)


def smiles_to_fingerprint(smiles, s, gen=None):
    mol = Chem.MolFromSmiles(smiles)
    return None if mol is None or mol.GetNumAtoms() == 0 else fingerprint(mol, s, gen)


def metadata(tasks, featurizer, rank_by=None, higher_is_better=True, name="", **extra):
    meta = gnn.metadata(tasks, rank_by=rank_by, higher_is_better=higher_is_better, name=name, **extra)
    meta["featurizer"] = featurizer
    return meta


class MLP(torch.nn.Module):
    """A feed-forward network over a fingerprint: forward(x float32 [B, bits]) -> [B, T]."""

    def __init__(self, bits, hidden, n_tasks, layers=2, dropout=0.0):
        super().__init__()
        mods, width = [], bits
        for _ in range(layers):
            mods += [torch.nn.Linear(width, hidden), torch.nn.ReLU(), torch.nn.Dropout(dropout)]
            width = hidden
        mods.append(torch.nn.Linear(width, n_tasks))
        self.net = torch.nn.Sequential(*mods)

    def forward(self, x):
        return self.net(x)


def save(model, path, meta):
    scripted = torch.jit.script(model.eval())
    torch.jit.save(scripted, path, _extra_files={"hpcscreen.json": json.dumps(meta, indent=2)})
