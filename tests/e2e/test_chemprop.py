#!/usr/bin/python3
"""Chemprop model files screened by hpcscreen: the two trained files Chemprop ships in its tests
(../shared/data/chemprop/) and files of every other predictor kind in Chemprop's layout
(tests/make_chemprop_files.py), converted by tools/import_chemprop.py, screened over their
training SMILES, the NCI set and hostile SMILES on 1, 2 and 3 ranks. Expected values come from
the Python reference written from Chemprop's source (tools/hpcscreen_py/chemprop_ref.py), itself
checked against Chemprop's published predictions (tests/tools/test_chemprop_import.py); a
molecule Chemprop fails on must be a reject. Skips (77) without ../shared/data/chemprop."""
import csv
import glob
import os
import subprocess
import sys

from common import NCI, check, e2e_args, finish, fresh, mpirun, read_csv, read_json, run

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tools"))
from hpcscreen_py import chemprop_ref  # noqa: E402

DATA = os.path.join(ROOT, "..", "shared", "data", "chemprop")
HOSTILE = ["C1CC", "c1cccc1", "C(C)(C)(C)(C)C", "[Na+].[Cl-]", "[2H]C([2H])([2H])O", "[H][H]", "*C", "[U]",
           "F/C=C\\F", "C[C@@H](O)[C@H](N)C(=O)O", "c1ccccc1 |c:0|", "O=[N+]([O-])c1ccccc1", "[Fe+2]", "CéC",
           "C" * 600, "[CH2]C", "B(O)(O)c1ccccc1", "C->[Fe]"]


def scores_by_row(rd):
    rows = {}
    for path in sorted(glob.glob(os.path.join(rd, "scores", "*.csv"))):
        for r in read_csv(path):
            rows[int(r["id"][1:])] = r
    return rows


def main():
    a = e2e_args()
    if not os.path.isdir(DATA):
        print(f"skipped: {DATA} is absent")
        sys.exit(77)
    work = a.work
    files = os.path.join(work, "files")
    run(["/usr/bin/python3", os.path.join(ROOT, "tests", "make_chemprop_files.py"), files], expect=0)

    smiles = []
    for name in ("regression_mol.csv", "classification_mol.csv"):
        with open(os.path.join(DATA, name), newline="") as f:
            smiles += [r["smiles"] for r in csv.DictReader(f)]
    smiles += [l.split()[0] for l in open(NCI) if l.split()][:2000] + HOSTILE
    smi = os.path.join(work, "in.smi")
    with open(smi, "w") as f:
        for i, s in enumerate(smiles):
            f.write(f"{s} m{i}\n")
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib, "--shard-size", "700"], expect=0)

    sources = [os.path.join(DATA, "example_model_v2_regression_mol.pt"),
               os.path.join(DATA, "example_model_v2_classification_mol.pt")]
    sources += sorted(p for p in glob.glob(os.path.join(files, "*")) if not os.path.basename(p).startswith("refuse_"))
    models = []
    for src in sources:
        out = os.path.join(work, os.path.splitext(os.path.basename(src))[0] + ".hpcscreen.pt")
        r = run(["/usr/bin/python3", os.path.join(ROOT, "tools", "import_chemprop.py"), src, "--out", out])
        if check(r.returncode == 0, f"imported {os.path.basename(src)}"):
            models.append((src, out))
    for bad in sorted(glob.glob(os.path.join(files, "refuse_*"))):
        r = run(["/usr/bin/python3", os.path.join(ROOT, "tools", "import_chemprop.py"), bad, "--out", os.path.join(work, "bad.pt")])
        check(r.returncode != 0 and "Traceback" not in r.stderr and not os.path.exists(os.path.join(work, "bad.pt")),
              f"{os.path.basename(bad)} refused with a message: {r.stderr.strip()[-120:]}")

    # The Chemprop file itself, not converted: refused, pointing to the importer.
    rd = fresh(os.path.join(work, "run_raw"))
    r = mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--out", rd, "--model", sources[0]])
    check(r.returncode == 1 and "tools/import_chemprop.py" in r.stderr and not os.path.exists(rd),
          f"a Chemprop file given to screen as it is: exit {r.returncode} (1), names the importer")

    # The reference: every model's columns for every SMILES Chemprop accepts.
    expected, chemprop_rejects = {}, set()
    for src, out in models:
        ref = chemprop_ref.Reference(src)
        cols, rejected = ref.predict_smiles(smiles)
        ok = [i for i in range(len(smiles)) if i not in rejected]
        expected[out] = {i: cols[k].tolist() for k, i in enumerate(ok)}
        if src == sources[0]:
            chemprop_rejects = set(rejected)

    results = {}
    for np_ in (1, 2, 3):
        print(f"== {len(models)} imported Chemprop models in one screen, {np_} rank(s)")
        rd = fresh(os.path.join(work, f"run_np{np_}"))
        args = [a.hpcscreen, "screen", "--library", lib, "--out", rd, "--all-scores", "--chunk-rows", "400"]
        for _, out in models:
            args += ["--model", out]
        mpirun(np_, args, expect=0)
        results[np_] = (open(os.path.join(rd, "hits.csv")).read(), open(os.path.join(rd, "rejects.csv")).read(),
                        scores_by_row(rd))
        rj = read_json(os.path.join(rd, "run.json"))
        check(rj["complete"] and rj["accounting_ok"] and rj["records_read"] == len(smiles),
              f"{np_} rank(s): every one of {len(smiles)} records accounted for")
    for np_ in (2, 3):
        check(results[np_] == results[1], f"{np_} ranks: hits, rejects and every score identical to 1 rank")
    hits, rejects, got = results[1]

    reject_rows = {int(r["id"][1:]): r for r in csv.DictReader(rejects.splitlines())}
    check(chemprop_rejects <= set(reject_rows),
          f"every molecule Chemprop fails on ({len(chemprop_rejects)}) is a reject: {sorted(chemprop_rejects - set(reject_rows))}")
    stricter = {i: reject_rows[i]["reason"].split(":")[0] for i in set(reject_rows) - chemprop_rejects}
    check(all(r in ("non_ascii", "too_many_atoms", "too_long", "no_atoms", "empty_smiles") for r in stricter.values()),
          f"records hpcscreen rejects and Chemprop accepts are the documented stricter checks: {stricter}")
    for src, out in models:
        name = read_json_meta(out)
        exp = expected[out]
        worst = 0.0
        n = 0
        for i, row in got.items():
            cols = [c for c in row if c.startswith(name + ":")]
            for k, c in enumerate(cols):
                ref_value = exp[i][k]
                worst = max(worst, abs(float(row[c]) - ref_value) / max(1.0, abs(ref_value)))
            n += 1
        check(n == len(got) and worst <= 1e-5,
              f"{os.path.basename(src)}: {n} molecules within 1e-5 (relative) of Chemprop's computation (max {worst:.2e})")
    finish()


def read_json_meta(path):
    import json
    import zipfile
    with zipfile.ZipFile(path) as z:
        for n in z.namelist():
            if n.endswith("extra/hpcscreen.json"):
                return json.loads(z.read(n))["name"]
    raise SystemExit(f"{path}: no hpcscreen.json")


if __name__ == "__main__":
    main()
