"""A Python reference of what Chemprop (v2.3) computes for one-molecule models: its molecule
parsing, its V2 / V1 / organic atom featurizers and its bond featurizer, the directed-edge graph,
and the forward pass from a model file's weights.

Written from Chemprop's source (chemprop/utils/utils.py make_mol, featurizers/atom.py, bond.py,
featurizers/molgraph/molecule.py, nn/message_passing/, nn/agg.py, nn/predictors.py,
nn/transforms.py), keeping its order of operations, so that it stands in for Chemprop where no
Chemprop is installed. data_schemas/chemprop_features.md describes the same features in words;
the TorchScript model of tools/import_chemprop.py is a second, independent implementation of the
forward pass that is checked against this one.
"""
from dataclasses import dataclass
import warnings

import numpy as np
import torch
from rdkit import Chem
from rdkit.Chem.rdchem import BondType, HybridizationType
from torch.nn import functional as F

from hpcscreen_py import chemprop_file


class Rejected(ValueError):
    """A SMILES Chemprop fails on; `reason` is a stable code."""

    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class AtomFeaturizer:
    """One parameterization of Chemprop's MultiHotAtomFeaturizer: six one-hot blocks, each with
    one more slot than its choices for "anything else", then aromatic (0/1) and mass / 100."""

    name: str
    atomic_nums: tuple
    hybridizations: tuple
    degrees: tuple = tuple(range(6))
    formal_charges: tuple = (-1, -2, 1, 2, 0)
    chiral_tags: tuple = tuple(range(4))
    num_hs: tuple = tuple(range(5))

    def blocks(self):
        return [("atomic_num", self.atomic_nums), ("total_degree", self.degrees),
                ("formal_charge", self.formal_charges), ("chiral_tag", self.chiral_tags),
                ("total_num_hs", self.num_hs), ("hybridization", self.hybridizations)]

    @property
    def width(self):
        return sum(len(choices) + 1 for _, choices in self.blocks()) + 2

    def __call__(self, atom):
        x = np.zeros(self.width)
        values = [atom.GetAtomicNum(), atom.GetTotalDegree(), atom.GetFormalCharge(),
                  int(atom.GetChiralTag()), int(atom.GetTotalNumHs()), atom.GetHybridization()]
        offset = 0
        for value, (_, choices) in zip(values, self.blocks()):
            x[offset + (choices.index(value) if value in choices else len(choices))] = 1
            offset += len(choices) + 1
        x[offset] = int(atom.GetIsAromatic())
        x[offset + 1] = 0.01 * atom.GetMass()
        return x


ATOM_FEATURIZERS = {
    "v2": AtomFeaturizer(
        "v2", tuple(range(1, 37)) + (53,),
        (HybridizationType.S, HybridizationType.SP, HybridizationType.SP2, HybridizationType.SP2D,
         HybridizationType.SP3, HybridizationType.SP3D, HybridizationType.SP3D2)),
    "v1": AtomFeaturizer(
        "v1", tuple(range(1, 101)),
        (HybridizationType.SP, HybridizationType.SP2, HybridizationType.SP3,
         HybridizationType.SP3D, HybridizationType.SP3D2)),
    "organic": AtomFeaturizer(
        "organic", (1, 5, 6, 7, 8, 9, 14, 15, 16, 17, 35, 53),
        (HybridizationType.S, HybridizationType.SP, HybridizationType.SP2, HybridizationType.SP3)),
}

BOND_TYPES = (BondType.SINGLE, BondType.DOUBLE, BondType.TRIPLE, BondType.AROMATIC)
BOND_STEREOS = tuple(range(6))
BOND_WIDTH = 1 + len(BOND_TYPES) + 2 + len(BOND_STEREOS) + 1  # 14


def bond_features(bond):
    """Chemprop's MultiHotBondFeaturizer: [is-null, bond type (no slot for other types),
    conjugated, in ring, stereo one-hot with a slot for other values]."""
    x = np.zeros(BOND_WIDTH)
    bond_type = bond.GetBondType()
    if bond_type in BOND_TYPES:
        x[1 + BOND_TYPES.index(bond_type)] = 1
    x[5] = int(bond.GetIsConjugated())
    x[6] = int(bond.IsInRing())
    stereo = int(bond.GetStereo())
    x[7 + (BOND_STEREOS.index(stereo) if stereo in BOND_STEREOS else len(BOND_STEREOS))] = 1
    return x


def make_mol(smiles, keep_h=False, add_h=False):
    """Chemprop's make_mol with its defaults for the other options (stereo kept, atoms not
    reordered)."""
    params = Chem.SmilesParserParams()
    params.removeHs = not keep_h
    mol = Chem.MolFromSmiles(smiles, params)
    if mol is None:
        raise Rejected("invalid_smiles", f"RDKit could not parse or sanitize {smiles!r}; "
                       "Chemprop's make_mol raises on it")
    if add_h:
        mol = Chem.AddHs(mol)
    return mol


@dataclass
class MolGraph:
    V: np.ndarray               # [n_atoms, d_v] float32 (one zero row for a molecule of no atoms)
    E: np.ndarray               # [2 * n_bonds, 14] float32
    edge_index: np.ndarray      # [2, 2 * n_bonds] int64
    rev_edge_index: np.ndarray  # [2 * n_bonds] int64


def featurize_mol(mol, atom_featurizer="v2"):
    featurizer = ATOM_FEATURIZERS[atom_featurizer]
    if mol.GetNumAtoms() == 0:
        V = np.zeros((1, featurizer.width), dtype=np.float32)
    else:
        V = np.array([featurizer(a) for a in mol.GetAtoms()], dtype=np.float32)
    n_bonds = mol.GetNumBonds()
    E = np.zeros((2 * n_bonds, BOND_WIDTH), dtype=np.float32)
    edge_index = np.zeros((2, 2 * n_bonds), dtype=np.int64)
    for bond in mol.GetBonds():
        i = bond.GetIdx()
        u, v = bond.GetBeginAtomIdx(), bond.GetEndAtomIdx()
        E[2 * i] = E[2 * i + 1] = bond_features(bond)
        edge_index[:, 2 * i] = (u, v)
        edge_index[:, 2 * i + 1] = (v, u)
    rev_edge_index = np.arange(2 * n_bonds, dtype=np.int64) ^ 1
    return MolGraph(V, E, edge_index, rev_edge_index)


def featurize(smiles, atom_featurizer="v2", keep_h=False, add_h=False):
    return featurize_mol(make_mol(smiles, keep_h, add_h), atom_featurizer)


def batch_graphs(graphs):
    """Chemprop's BatchMolGraph: (V, E, edge_index, rev_edge_index, batch, num_graphs)."""
    n_atoms = np.cumsum([0] + [len(g.V) for g in graphs])
    n_edges = np.cumsum([0] + [g.E.shape[0] for g in graphs])
    V = torch.from_numpy(np.concatenate([g.V for g in graphs]))
    E = torch.from_numpy(np.concatenate([g.E for g in graphs]).reshape(-1, BOND_WIDTH))
    edge_index = torch.from_numpy(
        np.hstack([g.edge_index + n_atoms[i] for i, g in enumerate(graphs)]).reshape(2, -1))
    rev = torch.from_numpy(
        np.concatenate([g.rev_edge_index + n_edges[i] for i, g in enumerate(graphs)]))
    batch = torch.from_numpy(
        np.concatenate([np.full(len(g.V), i, dtype=np.int64) for i, g in enumerate(graphs)]))
    return V.float(), E.float(), edge_index.long(), rev.long(), batch, len(graphs)


def _activation(name, prelu_weight=None):
    if name == "relu":
        return F.relu
    if name == "leakyrelu":
        return lambda x: F.leaky_relu(x, 0.1)
    if name == "prelu":
        return lambda x: F.prelu(x, prelu_weight)
    if name == "tanh":
        return torch.tanh
    if name == "elu":
        return F.elu
    if name == "selu":
        return F.selu
    raise ValueError(f"activation {name!r}")


warnings.filterwarnings("ignore", message="scatter_reduce\\(\\) is in beta")


def _scatter_sum(H, index, n):
    # Chemprop's zeros(n, d).scatter_reduce_(0, index, H, "sum", include_self=False)
    index = index.unsqueeze(1).repeat(1, H.shape[1])
    return torch.zeros(n, H.shape[1], dtype=H.dtype).scatter_reduce_(
        0, index, H, reduce="sum", include_self=False)


class Reference:
    """Chemprop's MPNN forward pass (eval mode) from a model file, in Chemprop's own order of
    operations. native() returns what Chemprop's model returns; columns() the flat columns of
    chemprop_file.column_names()."""

    def __init__(self, path):
        data = chemprop_file.load(path)
        self.desc = chemprop_file.describe(data, path)
        if self.desc["refused"]:
            raise ValueError(f"{path}: " + "; ".join(self.desc["refused"]))
        self.w = chemprop_file.weights(data, self.desc)

    def featurize(self, smiles):
        mol = self.desc["molecule"]
        return featurize(smiles, self.desc["atom_featurizer"], mol["keep_h"], mol["add_h"])

    def _linear(self, x, name):
        return F.linear(x, self.w[f"{name}.weight"], self.w.get(f"{name}.bias"))

    def fingerprint(self, V, E, edge_index, rev_edge_index, batch, num_graphs):
        mp = self.desc["message_passing"]
        tau = _activation(mp["activation"], self.w.get("tau.weight"))
        src, dst = edge_index[0], edge_index[1]
        n_atoms = V.shape[0]
        if mp["kind"] == "bond":
            H_0 = self._linear(torch.cat([V[src], E], dim=1), "W_i")
        else:
            H_0 = self._linear(V[src], "W_i")
        H = tau(H_0)
        for _ in range(1, mp["depth"]):
            if mp["undirected"]:
                H = (H + H[rev_edge_index]) / 2
            if mp["kind"] == "bond":
                M = _scatter_sum(H, dst, n_atoms)[src] - H[rev_edge_index]
            else:
                M = _scatter_sum(torch.cat((H, E), dim=1), dst, n_atoms)[src]
            H = tau(H_0 + self._linear(M, "W_h"))
        M = _scatter_sum(H, dst, n_atoms)
        H_v = tau(self._linear(torch.cat((V, M), dim=1), "W_o"))

        agg = self.desc["aggregation"]
        index = batch.unsqueeze(1).repeat(1, H_v.shape[1])
        out = torch.zeros(num_graphs, H_v.shape[1])
        reduce = "mean" if agg["kind"] == "mean" else "sum"
        H_g = out.scatter_reduce_(0, index, H_v, reduce=reduce, include_self=False)
        if agg["kind"] == "norm":
            H_g = H_g / agg["norm"]
        if self.desc["batch_norm"] is not None:
            H_g = F.batch_norm(H_g, self.w["bn.running_mean"], self.w["bn.running_var"],
                               self.w.get("bn.weight"), self.w.get("bn.bias"), training=False,
                               eps=self.desc["batch_norm"]["eps"])
        return H_g

    def native(self, V, E, edge_index, rev_edge_index, batch, num_graphs):
        Z = self.fingerprint(V, E, edge_index, rev_edge_index, batch, num_graphs)
        act = _activation(self.desc["ffn"]["activation"], self.w.get("ffn_act.weight"))
        n_layers = len(self.desc["ffn"]["layers"])
        Y = self._linear(Z, "ffn.0")
        for i in range(1, n_layers):
            Y = self._linear(act(Y), f"ffn.{i}")
        return self._predict(Y)

    def _unscale(self, X):
        if "output.mean" not in self.w:
            return X
        return X * self.w["output.scale"] + self.w["output.mean"]

    def _unscale_variance(self, X):
        if "output.mean" not in self.w:
            return X
        return X * self.w["output.scale"] ** 2

    def _predict(self, Y):
        pred = self.desc["predictor"]
        kind = pred["kind"]
        B = Y.shape[0]
        if kind == "regression":
            return self._unscale(Y)
        if kind == "regression-mve":
            mean, var = torch.chunk(Y, 2, 1)
            return torch.stack((self._unscale(mean), self._unscale_variance(F.softplus(var))), 2)
        if kind == "regression-evidential":
            mean, v, alpha, beta = torch.chunk(Y, 4, 1)
            return torch.stack((self._unscale(mean), F.softplus(v), F.softplus(alpha) + 1,
                                self._unscale_variance(F.softplus(beta))), 2)
        if kind == "regression-quantile":
            lower, upper = (self._unscale(x) for x in torch.chunk(Y, 2, 1))
            return torch.stack(((lower + upper) / 2, upper - lower), 2)
        if kind == "classification":
            return Y.sigmoid()
        if kind == "classification-dirichlet":
            alpha = F.softplus(Y.reshape(B, -1, 2)) + 1
            u = 2 / alpha.sum(-1)
            p = alpha / alpha.sum(-1, keepdim=True)
            return torch.stack((p[..., 1], u), 2)
        if kind == "multiclass":
            return Y.reshape(B, -1, pred["n_classes"]).softmax(-1)
        if kind == "multiclass-dirichlet":
            alpha = F.softplus(Y.reshape(B, -1, pred["n_classes"])) + 1
            return alpha / alpha.sum(-1, keepdim=True)
        raise ValueError(f"predictor {kind!r}")

    def columns(self, native):
        """Chemprop's output as hpcscreen's [B, T] columns (see chemprop_file.column_names)."""
        kind = self.desc["predictor"]["kind"]
        B = native.shape[0]
        if kind in ("regression", "classification"):
            return native
        if kind in ("regression-mve", "regression-quantile", "classification-dirichlet"):
            return torch.cat((native[..., 0], native[..., 1]), 1)
        if kind == "regression-evidential":
            mean, v, alpha, beta = native.unbind(-1)
            aleatoric = beta / (alpha - 1)  # Chemprop's evidential-* estimators
            total = (1 + 1 / v) * aleatoric
            epistemic = (1 / v) * aleatoric
            return torch.cat((mean, total, aleatoric, epistemic), 1)
        return native.reshape(B, -1)  # multiclass: task-major, class-minor

    def predict_smiles(self, smiles_list):
        """([B, T] columns for the SMILES Chemprop accepts, {index: Rejected} for the others)."""
        graphs, rejected = [], {}
        for i, smi in enumerate(smiles_list):
            try:
                graphs.append(self.featurize(smi))
            except Rejected as e:
                rejected[i] = e
        with torch.no_grad():
            out = self.columns(self.native(*batch_graphs(graphs))) if graphs else None
        return out, rejected
