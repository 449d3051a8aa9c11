#!/usr/bin/python3
"""Chemprop model files (issue 21), Python side: the restricted reader, the reference against
Chemprop's published predictions, the imported TorchScript model against the reference, and
refusals. Needs ../shared/data/chemprop/ (skips, exit 77, without it); no hpcscreen binary.

  /usr/bin/python3 tests/tools/test_chemprop_import.py
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import torch  # noqa: E402

from hpcscreen_py import chemprop_dump, chemprop_file, chemprop_ref  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data", "chemprop")
REGRESSION = os.path.join(DATA, "example_model_v2_regression_mol.pt")
CLASSIFICATION = os.path.join(DATA, "example_model_v2_classification_mol.pt")

# Chemprop's published predictions of example_model_v2_regression_mol (.ckpt of the same run in
# examples/predicting.ipynb, rows of tests/data/regression/mol/mol.csv = regression_mol.csv;
# examples/shapley_value_with_customized_featurizers.ipynb: row 0 = 2.25354147)
PUBLISHED_ROWS = {0: 2.253542, 1: 2.235016, 2: 2.245891, 3: 2.249847, 4: 2.228097,
                  95: 2.233408, 96: 2.236931, 97: 2.237789, 98: 2.252625, 99: 2.235702}
# examples/interpreting_monte_carlo_tree_search.ipynb scores these fragments with the .pt
PUBLISHED_FRAGMENTS = {
    "c1ccc2c(c1)n[cH:1][nH:1]2": 2.275024, "O=[SH:1]c1c[cH:1][cH:1]cc1[OH:1]": 2.252582,
    "c1cc[cH:1]c([CH2:1][CH2:1][OH:1])c1": 2.249289, "c1c([CH3:1])[nH]c2s[cH:1]cc12": 2.267990,
    "c1cc(C[CH2:1][NH2:1])c[cH:1]c1": 2.247070,
    "c1c([OH:1])c([S:1][NH2:1])c[cH:1][cH:1]1": 2.252185,
    "O=[CH:1][CH2:1]c1cccc[cH:1]1": 2.249207, "Clc1cc2c[cH:1][nH]c2s1": 2.267004,
    "c1cc(C[CH2:1][CH3:1])c[cH:1]c1": 2.245314,
    "c1c(N[CH3:1])[cH:1]c[cH:1]c1[SH:1]": 2.251067,
    "c1cc[cH:1]c([C@@H]([CH3:1])[NH2:1])c1": 2.247827,
    "O=C1N(C[CH3:1])[CH:1]=[CH:1]C[CH2:1]1": 2.211323,
    "Cn1nc([CH3:1])cc1[CH2:1][NH2:1]": 2.225729,
    "c1c([S:1][NH2:1])[cH:1]cc([OH:1])[cH:1]1": 2.250288,
    "Clc1ccccc1[CH2:1][NH2:1]": 2.245391, "C[CH2:1]c1cc([CH2:1][NH2:1])[nH:1]n1": 2.223793,
    "c1c([NH2:1])[cH:1]c[cH:1]c1[S:1][NH2:1]": 2.249267, "Clc1ccccc1[CH2:1][CH3:1]": 2.243280,
    "c1c([CH3:1])n[nH:1]c1[CH2:1]N[CH3:1]": 2.223478,
}
ODD_SMILES = ["", "C", "[Na+].[Cl-]", "[2H]C([2H])([2H])O", "F/C=C/F", "C[C@@H](N)C(=O)O",
              "*C(=O)O", "[Fe+2]", "C->[Fe]", "[H][H]", "c1ccccc1.O", "C#N", "[U]", "[I-]",
              "CCO ethanol", "[13CH3]C", "C1CC1", "[NH4+]", "[O-][n+]1ccccc1"]

failures = []


def check(ok, what):
    print(("ok    " if ok else "FAIL  ") + what)
    if not ok:
        failures.append(what)


def training_smiles():
    out = []
    for name in ("regression_mol.csv", "classification_mol.csv"):
        with open(os.path.join(DATA, name), newline="") as f:
            out += [row[0] for row in list(csv.reader(f))[1:]]
    return out


def test_published():
    ref = chemprop_ref.Reference(REGRESSION)
    with open(os.path.join(DATA, "regression_mol.csv"), newline="") as f:
        smiles = [row[0] for row in list(csv.reader(f))[1:]]
    out, rejected = ref.predict_smiles(smiles)
    worst = max(abs(out[i, 0].item() - v) for i, v in PUBLISHED_ROWS.items())
    check(not rejected and worst <= 1e-6,
          f"published predictions (6 decimals) of 10 rows: max |diff| {worst:.2g}")
    check(abs(out[0, 0].item() - 2.25354147) <= 5e-8, "row 0 = 2.25354147 (8 digits)")
    out, rejected = ref.predict_smiles(list(PUBLISHED_FRAGMENTS))
    worst = max(abs(out[i, 0].item() - v) for i, v in enumerate(PUBLISHED_FRAGMENTS.values()))
    check(not rejected and worst <= 1e-6,
          f"published MCTS fragment scores ({len(PUBLISHED_FRAGMENTS)}): max |diff| {worst:.2g}")


def test_features():
    v2 = chemprop_ref.ATOM_FEATURIZERS
    check([v2[k].width for k in ("v2", "v1", "organic")] == [72, 133, 44], "d_v 72 / 133 / 44")
    g = chemprop_ref.featurize("")
    check(g.V.shape == (1, 72) and not g.V.any() and g.E.shape == (0, 14),
          "empty SMILES: one zero atom row, no edges (as Chemprop)")
    g = chemprop_ref.featurize("CI")  # iodine: V2's 37th atomic-number choice, SP3
    check(g.V[1, 36] == 1 and g.V[1, 66] == 1 and g.V[1, 71] == torch.tensor(1.26904).item(),
          "iodine: atomic-number slot 36, SP3 slot 66, mass 1.26904")
    check(g.edge_index.tolist() == [[0, 1], [1, 0]] and g.rev_edge_index.tolist() == [1, 0],
          "edge 2i = begin->end, 2i+1 = end->begin, rev = e ^ 1")
    g = chemprop_ref.featurize("C->[Fe]")
    check(not g.E[:, 1:5].any(), "dative bond: no bond-type bit (no 'other' slot)")
    line = chemprop_dump.dump_line("c1cccc1", "v2", False, False)
    check(line == {**line, "ok": False, "reason": "invalid_smiles"},
          "kekulization failure rejected")


def test_import(path, smiles, tasks=None):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "m.pt")
        cmd = [sys.executable, os.path.join(ROOT, "tools", "import_chemprop.py"), path,
               "--out", out]
        if tasks:
            cmd += ["--tasks", tasks]
        smi_file = os.path.join(tmp, "smiles.txt")
        with open(smi_file, "w") as f:
            f.write("".join(s + "\n" for s in smiles if s and " " not in s))
        result = subprocess.run(cmd + ["--check", smi_file], capture_output=True, text=True)
        name = os.path.basename(path)
        if os.path.basename(path).startswith("refuse_"):
            check(result.returncode == 1 and "cannot run this model" in result.stderr
                  and not os.path.exists(out), f"{name} refused: {result.stderr.strip()[-90:]}")
            return
        last = result.stdout.strip().splitlines()[-1:] or [""]
        check(result.returncode == 0,
              f"{name}: {last[0] if result.returncode == 0 else result.stderr.strip()[-300:]}")
        if result.returncode:
            return
        with zipfile.ZipFile(out) as z:
            meta = json.loads(z.read(next(n for n in z.namelist()
                                          if n.endswith("extra/hpcscreen.json"))))
        desc = meta["chemprop"]
        check(meta["contract"] == "hpcscreen.gnn/1" and meta["featurizer"]["name"] == "chemprop"
              and meta["tasks"] == chemprop_file.column_names(desc, tasks and tasks.split(","))
              and meta["rank_by"] == meta["tasks"][0],
              f"{name}: hpcscreen.json {meta['featurizer']['atom_featurizer']} {meta['tasks'][:4]}")


def main():
    if not os.path.isdir(DATA):
        print(f"skip: no {DATA}")
        return 77
    test_published()
    test_features()
    check("chemprop" not in sys.modules and "lightning" not in sys.modules,
          "reading Chemprop files imported neither chemprop nor lightning")
    smiles = training_smiles() + ODD_SMILES
    test_import(REGRESSION, smiles, tasks="lipo")
    test_import(CLASSIFICATION, smiles, tasks="NR-AhR,NR-ER,SR-ARE,SR-MMP")
    with tempfile.TemporaryDirectory() as made:
        subprocess.run([sys.executable, os.path.join(ROOT, "tests", "make_chemprop_files.py"),
                        made], check=True, capture_output=True)
        for name in sorted(os.listdir(made)):
            test_import(os.path.join(made, name), smiles[:120] + ODD_SMILES)
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
