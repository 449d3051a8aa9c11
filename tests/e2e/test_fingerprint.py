#!/usr/bin/python3
"""Fingerprint models in `screen`: Morgan features made in C++, scored by TorchScript MLPs, beside
the OGB GNN in one screen, on 1, 2 and 3 ranks. Expected scores come from RDKit's
rdFingerprintGenerator and the same TorchScript files run in PyTorch (tools/hpcscreen_py);
rejects must be those of the GNN alone (one parse per record decides them); models that share a
featurizer share its work; a featurizer the registry lacks, or a model whose input width is not
the featurizer's, is refused at start."""
import csv
import glob
import os
import sys

import torch

from common import NCI, check, e2e_args, finish, fresh, mpirun, read_csv, read_json, run

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools"))
from hpcscreen_py import featurize, fingerprint  # noqa: E402

NASTY = ["C1CC", "", "CéC", "[Na+].[Cl-]", "C[C@@H](O)[C@H](N)C(=O)O", "c1ccccc1 |c:0|", "[U]", "*C",
         "C" * 600, "F/C=C\\F", "[2H]C([2H])([2H])O", "O", "C(C)(C)(C)(C)C"]


def python_scores(model_path, smiles):
    extra = {"hpcscreen.json": ""}
    model = torch.jit.load(model_path, _extra_files=extra)
    import json
    spec = json.loads(extra["hpcscreen.json"])["featurizer"]
    gen = fingerprint.generator(spec)
    out = {}
    with torch.no_grad():
        for key, s in smiles.items():
            fp = fingerprint.smiles_to_fingerprint(s, spec, gen)
            if fp is not None:
                out[key] = model(torch.from_numpy(fp)[None, :])[0].tolist()
    return out


def all_scores(rd):
    rows = {}
    for path in sorted(glob.glob(os.path.join(rd, "scores", "*.csv"))):
        for r in read_csv(path):
            rows[(r["shard"], int(r["row"]))] = r
    return rows


def main():
    a = e2e_args()
    work = a.work
    smi = os.path.join(work, "in.smi")
    nci = [l.split()[0] for l in open(NCI) if l.split()][:1500]
    with open(smi, "w") as f:
        for i, s in enumerate(nci + NASTY):
            f.write(f"{s} m{i}\n" if s else f" m{i}\n")
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib, "--shard-size", "400"], expect=0)
    manifest = read_json(os.path.join(lib, "manifest.json"))
    gnn, fp, fp_b, fpc = (os.path.join(a.models, m) for m in ("gnn.pt", "fp_mlp.pt", "fp_mlp_b.pt", "fp_counts.pt"))

    print("== GNN alone (reference for rejects)")
    ref = fresh(os.path.join(work, "gnn_only"))
    mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", gnn, "--out", ref, "--all-scores", "--chunk-rows", "300"], expect=0)
    ref_rejects = open(os.path.join(ref, "rejects.csv")).read()
    ref_scores = all_scores(ref)

    # Every record's SMILES as the shard holds it, for the Python reference.
    import h5py
    smiles = {}
    for sh in manifest["shards"]:
        with h5py.File(os.path.join(lib, sh["file"]), "r") as h:
            data, off = h["smiles"]["bytes"][()].tobytes(), h["smiles"]["offsets"][()]
            for row in range(sh["n_records"]):
                smiles[(sh["file"], row)] = data[off[row]:off[row + 1]].decode("utf-8", "surrogateescape")
    accepted = {k: s for k, s in smiles.items() if featurize.smiles_to_graph(s) is not None}
    expected = {m: python_scores(m, accepted) for m in (fp, fp_b, fpc)}

    runs = {}
    for np_ in (1, 2, 3):
        print(f"== GNN + three fingerprint models on {np_} rank(s)")
        rd = fresh(os.path.join(work, f"mixed_np{np_}"))
        mpirun(np_, [a.hpcscreen, "screen", "--library", lib, "--model", gnn, "--model", fp, "--model", fp_b, "--model", fpc,
                     "--out", rd, "--all-scores", "--chunk-rows", "300", "--rank-by", "test-fp-mlp:p_active"], expect=0)
        runs[np_] = (open(os.path.join(rd, "hits.csv")).read(), open(os.path.join(rd, "rejects.csv")).read(), all_scores(rd))
        rj = read_json(os.path.join(rd, "run.json"))
        check(rj["accounting_ok"] and rj["complete"], f"{np_} ranks: complete, accounting exact")
    hits1, rejects1, scores1 = runs[1]
    for np_ in (2, 3):
        check(runs[np_][0] == hits1 and runs[np_][1] == rejects1 and runs[np_][2] == scores1,
              f"{np_} ranks: hits.csv, rejects.csv and every score identical to 1 rank")
    check(rejects1 == ref_rejects, "rejects (rows, stages, reasons) identical to the GNN alone")
    check(set(scores1) == set(ref_scores), f"the same {len(ref_scores)} records scored as by the GNN alone")
    check(all(scores1[k]["test-gnn:activity"] == ref_scores[k]["test-gnn:activity"] for k in ref_scores),
          "the GNN's scores are those of its single-model run, bit for bit")
    worst = {}
    for m, name in ((fp, "test-fp-mlp"), (fp_b, "test-fp-mlp-b"), (fpc, "test-fp-counts")):
        exp = expected[m]
        check(set(scores1) <= set(exp), f"{name}: Python scores every record hpcscreen scored ({len(scores1)} of {len(exp)})")
        worst[name] = max(abs(float(scores1[k][f"{name}:{t}"]) - exp[k][i])
                          for k in scores1 if k in exp for i, t in enumerate(("p_active", "p_toxic")))
        check(worst[name] <= 1e-5, f"{name}: every score within 1e-5 of RDKit fingerprints + PyTorch (max {worst[name]:.2e})")
    versions = rj["screen"]["versions"]["featurizer"]
    check(versions.count("morgan/1") == 2 and versions.count("ogb-smiles2graph/1") == 1,
          f"run.json lists each featurizer once (two morgan settings, one OGB): {versions}")

    print("== refused at start")
    for bad, what in (("fp_unknown_param.pt", "no parameter 'diameter'"), ("fp_wrong_width.pt", "probe batch")):
        rd = fresh(os.path.join(work, "bad"))
        r = mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, bad), "--out", rd])
        check(r.returncode == 1 and what in r.stderr and not os.path.exists(rd), f"{bad}: exit {r.returncode} (1 expected), '{what}'")
    finish()


if __name__ == "__main__":
    main()
