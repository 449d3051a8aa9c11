"""ogb-smiles2graph/1 in Python: the Open Graph Benchmark smiles2graph featurization.

Written from OGB's published allowable-feature lists, independently of the C++ code, so that
parity tests between the two mean something."""
from rdkit import Chem

NAME = "ogb-smiles2graph"
MAX_DUMMY_ATOMS = 8  # as the C++ featurizer: more '*' atoms are rejected before parsing
VERSION = 1

ALLOWABLE = {
    "atomic_num": list(range(1, 119)) + ["misc"],
    "chirality": ["CHI_UNSPECIFIED", "CHI_TETRAHEDRAL_CW", "CHI_TETRAHEDRAL_CCW", "CHI_OTHER", "misc"],
    "degree": list(range(0, 11)) + ["misc"],
    "formal_charge": list(range(-5, 6)) + ["misc"],
    "num_h": list(range(0, 9)) + ["misc"],
    "radical_e": list(range(0, 5)) + ["misc"],
    "hybridization": ["SP", "SP2", "SP3", "SP3D", "SP3D2", "misc"],
    "is_aromatic": [False, True],
    "is_in_ring": [False, True],
    "bond_type": ["SINGLE", "DOUBLE", "TRIPLE", "AROMATIC", "misc"],
    "bond_stereo": ["STEREONONE", "STEREOZ", "STEREOE", "STEREOCIS", "STEREOTRANS", "STEREOANY"],
    "is_conjugated": [False, True],
}
ATOM_FEATURE_DIMS = [len(ALLOWABLE[k]) for k in ("atomic_num", "chirality", "degree", "formal_charge",
                                                 "num_h", "radical_e", "hybridization", "is_aromatic",
                                                 "is_in_ring")]
BOND_FEATURE_DIMS = [len(ALLOWABLE[k]) for k in ("bond_type", "bond_stereo", "is_conjugated")]


def _index(name, value):
    values = ALLOWABLE[name]
    try:
        return values.index(value)
    except ValueError:
        return len(values) - 1


def atom_features(atom):
    return [
        _index("atomic_num", atom.GetAtomicNum()),
        _index("chirality", str(atom.GetChiralTag())),
        _index("degree", atom.GetTotalDegree()),
        _index("formal_charge", atom.GetFormalCharge()),
        _index("num_h", atom.GetTotalNumHs()),
        _index("radical_e", atom.GetNumRadicalElectrons()),
        _index("hybridization", str(atom.GetHybridization())),
        _index("is_aromatic", atom.GetIsAromatic()),
        _index("is_in_ring", atom.IsInRing()),
    ]


def bond_features(bond):
    return [
        _index("bond_type", str(bond.GetBondType())),
        _index("bond_stereo", str(bond.GetStereo())),
        _index("is_conjugated", bond.GetIsConjugated()),
    ]


def smiles_to_graph(smiles):
    """Returns (x [n,9], edges [(src, dst)] two per bond, edge_attr [e,3]) as lists, or None when
    RDKit cannot read the SMILES."""
    if smiles.count("*") > MAX_DUMMY_ATOMS:  # RDKit's kekulization is exponential in them
        return None
    mol = Chem.MolFromSmiles(smiles)
    if mol is None or mol.GetNumAtoms() == 0:
        return None
    x = [atom_features(a) for a in mol.GetAtoms()]
    edges, edge_attr = [], []
    for b in mol.GetBonds():
        i, j = b.GetBeginAtomIdx(), b.GetEndAtomIdx()
        f = bond_features(b)
        edges += [(i, j), (j, i)]
        edge_attr += [f, f]
    return x, edges, edge_attr
