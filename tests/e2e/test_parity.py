#!/usr/bin/python3
"""No train/serve skew: the C++ featurizer and the Python one (tools/hpcscreen_py/featurize.py,
used for training) agree on every integer, the C++ Morgan fingerprints equal RDKit's
rdFingerprintGenerator bit for bit, and the C++ and Python tokenizers agree. Molecules:
the NCI set Debian ships, HIV-set molecules when ../shared/data is present, and a list chosen
for charges, stereo, isotopes, metals, salts, radicals and aromatic heterocycles."""
import argparse
import json
import os
import random
import subprocess

from common import NCI, check, finish

from hpcscreen_py import chemprop_dump, featurize, fingerprint, protein

EXTRA = ["[2H]C([2H])([2H])O", "[13CH3]C(=O)O", "[18F]c1ccccc1", "C[C@@H](O)[C@H](N)C(=O)O", "F/C=C\\F", "C/C=C/C=C/C",
         "[Na+].[Cl-]", "[Fe+2].[O-]S(=O)(=O)[O-]", "[Pt](Cl)(Cl)(N)N", "C[Si](C)(C)Cl", "[CH2]C", "[O-][n+]1ccccc1",
         "c1ccc2[nH]ccc2c1", "c1ncncn1", "c1ccoc1", "c1ccsc1", "O=c1cc[nH]cc1", "[NH3+]CC([O-])=O", "C1=CC=CC=C1",
         "B(O)(O)c1ccccc1", "[Se]1C=CC=C1", "C[N+](C)(C)C", "[Cu+2]", "O", "[H][H]", "C#C", "N#N", "[Li+].[B-](F)(F)(F)F",
         "CC(C)(C)[S@@](=O)N", "C1CC[C@H]2CCCC[C@@H]2C1", "c1cc2ccc3cccc4ccc(c1)c2c34", "[U]", "*C"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dump", required=True)
    p.add_argument("--data", default="")
    a = p.parse_args()
    smiles = [l.split()[0] for l in open(NCI) if l.split()]
    hiv = os.path.join(a.data, "hiv.txt")
    hiv_all = []
    if a.data and os.path.exists(hiv):
        lines = open(hiv).read().splitlines()
        hiv_all = [l.split()[0] for l in lines if l.split()]
        smiles += [l.split()[0] for l in random.Random(1).sample(lines, 3000)]
    smiles += EXTRA
    out = subprocess.run([a.dump, "graph"], input="\n".join(smiles) + "\n", capture_output=True, text=True, check=True).stdout.splitlines()
    check(len(out) == len(smiles), f"{len(smiles)} molecules featurized by C++")
    mismatches, n_ok = [], 0
    for s, line in zip(smiles, out):
        c = json.loads(line)
        g = featurize.smiles_to_graph(s)
        if g is None or not c["ok"]:
            if (g is None) != (not c["ok"]):
                mismatches.append((s, "one side rejects"))
            continue
        n_ok += 1
        x = [v for row in g[0] for v in row]
        e = [v for pair in g[1] for v in pair]
        b = [v for row in g[2] for v in row]
        if (x, e, b) != (c["x"], c["edges"], c["edge_attr"]):
            mismatches.append((s, "features differ"))
    check(not mismatches, f"{n_ok} molecules: every atom feature, edge and bond feature identical ({mismatches[:5]})")
    check(all(json.loads(l)["ok"] for l in out[-len(EXTRA):-2]), "isotopes, metals, salts, radicals and heterocycles featurize")

    # Morgan fingerprints: every molecule both sides accept, bit for bit (counts value for value)
    # against RDKit's rdFingerprintGenerator, for ECFP4/ECFP6, counts, chirality and FCFP.
    # The defaults run over the whole HIV set as well.
    whole = [l.split()[0] for l in open(NCI) if l.split()] + hiv_all + EXTRA
    for params in ({}, {"radius": 3, "bits": 1024}, {"counts": True}, {"chirality": True, "bits": 4096},
                   {"features": True}, {"radius": 1, "bits": 64, "counts": True, "chirality": True, "features": True}):
        s = fingerprint.spec(**params)
        mols = whole if params == {} else smiles
        out = subprocess.run([a.dump, "featurizer", json.dumps(s)], input="\n".join(mols) + "\n",
                             capture_output=True, text=True, check=True).stdout.splitlines()
        gen = fingerprint.generator(s)
        mismatches, n_ok = [], 0
        for smi, line in zip(mols, out):
            c = json.loads(line)
            ref = fingerprint.smiles_to_fingerprint(smi, s, gen) if featurize.smiles_to_graph(smi) is not None else None
            if ref is None or not c["ok"]:
                if (ref is None) != (not c["ok"]):
                    mismatches.append((smi, "one side rejects"))
                continue
            n_ok += 1
            on = [int(i) for i in ref.nonzero()[0]]
            if on != c["on"] or [float(ref[i]) for i in on] != c["values"]:
                mismatches.append((smi, "fingerprint differs"))
        check(len(out) == len(mols) and not mismatches and n_ok > 5000,
              f"morgan {params or 'defaults'}: {n_ok} molecules identical to rdFingerprintGenerator ({mismatches[:3]})")

    # Chemprop's graph: every molecule both sides accept, every float32 value and edge identical
    # to the Python reference written from Chemprop's source (tools/hpcscreen_py/chemprop_ref.py).
    chemprop_mols = smiles if not hiv_all else [l.split()[0] for l in open(NCI) if l.split()] + hiv_all + EXTRA
    for params in ({"atom_featurizer": "v2"}, {"atom_featurizer": "v1"}, {"atom_featurizer": "organic"},
                   {"atom_featurizer": "v2", "keep_h": True}, {"atom_featurizer": "v2", "add_h": True}):
        s = {"name": "chemprop", "version": 1, "bond_featurizer": "multihot", "keep_h": False, "add_h": False, **params}
        mols = chemprop_mols if params == {"atom_featurizer": "v2"} else smiles
        out = subprocess.run([a.dump, "featurizer", json.dumps(s)], input="\n".join(mols) + "\n",
                             capture_output=True, text=True, check=True).stdout.splitlines()
        mismatches, n_ok = [], 0
        for smi, line in zip(mols, out):
            c = json.loads(line)
            ok_py = featurize.smiles_to_graph(smi) is not None
            try:
                ref = chemprop_dump.dump_line(smi, s["atom_featurizer"], s["keep_h"], s["add_h"]) if ok_py else None
            except Exception as e:  # noqa: BLE001
                ref = {"ok": False, "message": str(e)}
            if ref is None or not ref["ok"] or not c["ok"]:
                if (ref is not None and ref["ok"]) != c["ok"]:
                    mismatches.append((smi, "one side rejects"))
                continue
            n_ok += 1
            if any(ref[k] != c[k] for k in ("n_atoms", "V", "E", "edge_index", "rev_edge_index")):
                mismatches.append((smi, [k for k in ("n_atoms", "V", "E", "edge_index", "rev_edge_index") if ref[k] != c[k]]))
        check(len(out) == len(mols) and not mismatches and n_ok > 5000,
              f"chemprop {params}: {n_ok} molecules identical to Chemprop's featurization ({mismatches[:3]})")

    cfg = protein.tokenizer_config(1024)
    meta = os.path.join(os.path.dirname(a.dump), "parity_hpcscreen.json")
    json.dump({"tokenizer": cfg}, open(meta, "w"))
    rng = random.Random(3)
    alphabet = "ACDEFGHIKLMNPQRSTVWYXUZOBJacdefghiklmnpqrstvwy*1 -"
    seqs = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(3000)] + ["MKT*", "*", "", "JJJ", "uzob"]
    out = subprocess.run([a.dump, "tokens", meta], input="\n".join(seqs) + "\n", capture_output=True, text=True, check=True).stdout.splitlines()
    bad = []
    for s, line in zip(seqs, out):
        c = json.loads(line)
        ids, reason = protein.encode(s, cfg)
        if (ids if ids is not None else reason) != (c["ids"] if c["ok"] else c["reason"]):
            bad.append(s)
    check(len(out) == len(seqs) and not bad, f"{len(seqs)} sequences: token ids and reject reasons identical ({bad[:5]})")
    finish()


if __name__ == "__main__":
    main()
