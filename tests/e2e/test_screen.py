#!/usr/bin/python3
"""End to end: pack .smi/.csv/.sdf with bad records, screen under mpirun with 1, 2 and 3 ranks,
and check hits, rejects and accounting against an independent Python reference."""
import math
import os

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, read_library, run

import torch
from rdkit import Chem

from hpcscreen_py import featurize, gnn

BAD = [  # (smiles line, id, expected reason)
    ("", None, "empty_smiles"),
    ("   ", None, "whitespace_only"),
    ("C1CC", "unclosed_ring", "smiles_syntax"),
    ("CN(C)(C)(C)C", "pentavalent_n", "valence"),
    ("c1cccc1", "bad_aromatic", "kekulization"),
    ("C\u00e9C", "non_ascii", "non_ascii"),
    ("C" * 60, "too_big", "too_many_atoms"),
    ("[*]", "dummy_only", None),  # a valid SMILES of one dummy atom: scored
]
MAX_ATOMS = 50


def make_inputs(work):
    smi = os.path.join(work, "nci.smi")
    with open(NCI) as f:
        lines = f.readlines()[:420]
    with open(smi, "w", encoding="utf-8") as f:
        f.write("# NCI sample with bad records appended\n")
        f.writelines(lines)
        for s, ident, _ in BAD:
            f.write(f"{s} {ident}\n" if ident else f"{s}\n")
        f.write("CCO dup_id\nCCN dup_id\n")  # duplicate ids stay two records
    csv_path = os.path.join(work, "extra.csv")
    with open(csv_path, "w") as f:
        f.write('name,SMILES\n"ibuprofen, racemic",CC(C)Cc1ccc(cc1)C(C)C(=O)O\n"caffeine",Cn1cnc2c1c(=O)n(C)c(=O)n2C\n')
        f.write("only_one_field\n")  # pack reject: wrong field count
    sdf = os.path.join(work, "extra.sdf")
    w = Chem.SDWriter(sdf)
    for name, s in [("phenol", "c1ccccc1O"), ("alanine", "N[C@@H](C)C(=O)O")]:
        m = Chem.MolFromSmiles(s)
        m.SetProp("_Name", name)
        w.write(m)
    w.close()
    with open(sdf, "a") as f:
        f.write("broken\n  junk\n\n  2  1  0  0  0  0  0  0  0  0999 V2000\nthis is not an atom line\nM  END\n$$$$\n")
    return [smi, csv_path, sdf]


def reference(records, model_path):
    """Score every record in Python: Python featurizer + the same TorchScript model."""
    model = torch.jit.load(model_path)
    scores, rejected = {}, set()
    with torch.no_grad():
        for r in records:
            s = r["smiles"]
            key = (r["shard_index"], r["row"])
            if not s.strip() or not s.isascii() or any(c.isspace() for c in s):
                rejected.add(key)
                continue
            g = featurize.smiles_to_graph(s)
            if g is None or len(g[0]) > MAX_ATOMS:
                rejected.add(key)
                continue
            scores[key] = float(model(*gnn.batch_graphs([g]))[0, 0])
    return scores, rejected


def main():
    a = e2e_args()
    work = a.work
    model = os.path.join(a.models, "gnn.pt")
    lib = os.path.join(work, "lib")

    print("== pack")
    out = run([a.hpcscreen, "pack", "compounds", "--input", *make_inputs(work), "--out", lib, "--shard-size", "150"], expect=0)
    manifest, records = read_library(lib)
    n_smi = 420 + len(BAD) + 2
    check(manifest["n_records"] == n_smi + 2 + 2, f"manifest counts every packable record ({manifest['n_records']})")
    check(len(records) == manifest["n_records"], "shards hold what the manifest says (read with h5py)")
    pack_rejects = read_csv(os.path.join(lib, "pack_rejects.csv"))
    check(len(pack_rejects) == 2, f"the CSV row with one field and the broken SDF record are pack rejects: {pack_rejects}")
    check([r["id"] for r in records if r["smiles"] == "CC(C)Cc1ccc(cc1)C(C)C(=O)O"] == ["ibuprofen, racemic"], "CSV id with a comma kept")
    check(sum(1 for r in records if r["id"] in ("phenol", "alanine")) == 2, "SDF titles become ids")
    no_id = [r for r in records if r["smiles"] == ""]
    check(len(no_id) == 1 and no_id[0]["id"] == f"{no_id[0]['shard'][:-3]}:{no_id[0]['row']}", "a record with no id gets shard:row")
    check("comment" in out.stdout, "pack reports skipped comment lines")

    print("== screen with 1, 2 and 3 ranks")
    runs = {}
    for np, threads in [(1, 2), (2, 1), (3, 1)]:
        rd = fresh(os.path.join(work, f"run{np}"))
        mpirun(np, [a.hpcscreen, "screen", "--library", lib, "--model", model, "--out", rd, "--top-k", "25",
                    "--chunk-rows", "40", "--max-atoms", str(MAX_ATOMS), "--batch-molecules", "16"], threads=threads, expect=0)
        runs[np] = rd
    hits = {np: open(os.path.join(rd, "hits.csv")).read() for np, rd in runs.items()}
    rejects = {np: open(os.path.join(rd, "rejects.csv")).read() for np, rd in runs.items()}
    check(hits[1] == hits[2] == hits[3], "hits.csv byte-identical for 1, 2 and 3 ranks")
    check(rejects[1] == rejects[2] == rejects[3], "rejects.csv byte-identical for 1, 2 and 3 ranks")
    # The stage pool's other settings: a fixed thread split, and one chunk in flight at a time.
    for extra in (["--featurize-threads", "1"], ["--chunks-in-flight", "1"]):
        rd = fresh(os.path.join(work, "run-" + extra[0].strip("-")))
        mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", model, "--out", rd, "--top-k", "25",
                   "--chunk-rows", "40", "--max-atoms", str(MAX_ATOMS), "--batch-molecules", "16", *extra], threads=2, expect=0)
        check(open(os.path.join(rd, "hits.csv")).read() == hits[1] and open(os.path.join(rd, "rejects.csv")).read() == rejects[1],
              f"hits.csv and rejects.csv byte-identical with {' '.join(extra)}")

    for np, rd in runs.items():
        rj = read_json(os.path.join(rd, "run.json"))
        check(rj["records_read"] == rj["records_scored"] + rj["records_rejected"] + rj["records_failed"]
              and rj["records_read"] == manifest["n_records"] and rj["complete"], f"np={np}: read = scored + rejected = manifest")
        check(rj["ranks"] == np and rj["records_failed"] == 0, f"np={np}: run.json names {np} ranks")

    print("== against the Python reference")
    ref_scores, ref_rejected = reference(records, model)
    got_rejects = read_csv(os.path.join(runs[2], "rejects.csv"))
    got_keys = {(manifest_index(manifest, r["shard"]), int(r["row"])) for r in got_rejects}
    check(got_keys == ref_rejected, f"rejected records are exactly the ones Python cannot featurize ({len(got_keys)})")
    by_id = {r["id"]: r["reason"].split(":")[0] for r in got_rejects}
    for s, ident, reason in BAD:
        if ident and reason:
            check(by_id.get(ident) == reason, f"{ident!r} rejected as {reason} (got {by_id.get(ident)})")
    check(sum(1 for r in got_rejects if r["reason"].startswith("empty_smiles")) == 1 and
          sum(1 for r in got_rejects if r["reason"].startswith("whitespace_only")) == 1, "blank and whitespace-only lines rejected")
    got_hits = read_csv(os.path.join(runs[2], "hits.csv"))
    check(len(got_hits) == 25 and [int(h["rank"]) for h in got_hits] == list(range(1, 26)), "25 hits ranked 1..25")
    ranked = sorted(ref_scores.items(), key=lambda kv: (-kv[1], kv[0]))
    threshold = ranked[24][1]
    ok_scores = all(abs(float(h["score"]) - ref_scores[(manifest_index(manifest, h["shard"]), int(h["row"]))]) < 1e-5 for h in got_hits)
    check(len(got_hits) == 25 and ok_scores, "every one of the 25 hits' scores equals the Python score of that record (1e-5)")
    check(len(got_hits) == 25 and all(ref_scores[(manifest_index(manifest, h["shard"]), int(h["row"]))] >= threshold - 1e-5 for h in got_hits),
          "every one of the 25 hits is in Python's top 25")
    scores = [float(h["score"]) for h in got_hits]
    check(len(scores) == 25 and scores == sorted(scores, reverse=True), "the 25 hits best first")
    rec = {(r["shard"], r["row"]): r for r in records}
    check(len(got_hits) == 25 and all(rec[(h["shard"], int(h["row"]))]["smiles"] == h["smiles"] and rec[(h["shard"], int(h["row"]))]["id"] == h["id"]
                                      for h in got_hits), "the 25 hits' ids and SMILES are those of the shard rows")

    print("== lower is better, second task")
    rd = fresh(os.path.join(work, "run_lower"))
    mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn_lower.pt"), "--out", rd,
               "--top-k", "5", "--max-atoms", str(MAX_ATOMS)], expect=0)
    low = [float(h["score"]) for h in read_csv(os.path.join(rd, "hits.csv"))]
    model_t = torch.jit.load(os.path.join(a.models, "gnn_lower.pt"))
    with torch.no_grad():
        tox = sorted(float(model_t(*gnn.batch_graphs([featurize.smiles_to_graph(r["smiles"])]))[0, 1])
                     for r in records if (r["shard_index"], r["row"]) in ref_scores)
    check(len(low) == 5 and len(tox) >= 5 and all(abs(x - y) < 1e-5 for x, y in zip(low, tox[:5])),
          f"rank_by toxicity, lower is better: {len(low)} hits, the five lowest of {len(tox)} Python scores")

    print("== refusals")
    again = mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", model, "--out", runs[1]])
    check(again.returncode == 1 and "already exists" in again.stderr, "an existing run folder is refused")
    for bad_model, words in [("missing.pt", "does not exist"), ("featurizer_v2.pt", "ogb-smiles2graph/2"),
                             ("no_metadata.pt", "no hpcscreen.json"), ("wrong_shape.pt", "expected float32")]:
        rd = fresh(os.path.join(work, "refused"))
        r = mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, bad_model), "--out", rd])
        check(r.returncode == 1 and words in r.stderr and not os.path.exists(rd), f"{bad_model}: refused before any work ({words})")
    r = run([a.hpcscreen, "screen", "--library", lib, "--modle", model, "--out", "x"])
    check(r.returncode == 2 and "--modle" in r.stderr, "a misspelt option is named")
    r = run([a.hpcscreen, "screen", "--library", lib, "--out", "x"])
    check(r.returncode == 2 and "--model" in r.stderr, "a missing required option is named")
    r = mpirun(1, [a.hpcscreen, "screen", "--library", os.path.join(work, "nowhere"), "--model", model, "--out", fresh(os.path.join(work, "r"))])
    check(r.returncode == 1 and "manifest.json" in r.stderr, "a missing library names its manifest")
    r = run([a.hpcscreen, "pack", "compounds", "--input", NCI, "--out", lib])
    check(r.returncode == 2 and "not empty" in r.stderr, "pack never overwrites a library")

    print("== bad option values: exit 2, the option named, no run folder")
    # Each is a command-line error (README: exit 2, the offending option named), found before any
    # work: no run folder may be left. Where a case gives --threads itself, mpirun() adds none.
    bad_values = [(["--top-k", "0"], "--top-k"), (["--top-k", "-5"], "--top-k"),
                  (["--chunk-rows", "0"], "--chunk-rows"), (["--chunk-rows", "-1"], "--chunk-rows"),
                  (["--chunks-in-flight", "0"], "--chunks-in-flight"),
                  (["--threads", "-1"], "--threads"), (["--threads", "100000"], "--threads"),
                  (["--progress-interval", "-1"], "--progress-interval"),
                  (["--featurize-threads", "5", "--threads", "2"], "--featurize-threads")]
    for args, option in bad_values:
        rd = fresh(os.path.join(work, "bad_value"))
        r = mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", model, "--out", rd, *args],
                   threads=None if "--threads" in args else 1)
        check(r.returncode == 2 and option in r.stderr and not os.path.exists(rd),
              f"{' '.join(args)}: exit {r.returncode} (2 expected), {option} named: {option in r.stderr}, "
              f"no run folder: {not os.path.exists(rd)}")

    print("== help and report usage")
    r = run([a.hpcscreen, "pack", "--help"])
    check(r.returncode == 0 and "compounds" in r.stdout and "proteins" in r.stdout,
          f"pack --help: exit {r.returncode} (0 expected), names both kinds")
    pc = run([a.hpcscreen, "pack", "compounds", "--help"])
    check(pc.returncode == 0 and "--input" in pc.stdout and "--smiles-column" in pc.stdout,
          f"pack compounds --help: exit {pc.returncode} (0 expected), lists --input and --smiles-column")
    pp = run([a.hpcscreen, "pack", "proteins", "--help"])
    check(pp.returncode == 0 and "--input" in pp.stdout and "--smiles-column" not in pp.stdout,
          f"pack proteins --help: exit {pp.returncode} (0 expected), lists --input but not --smiles-column")
    r = run([a.hpcscreen, "report", "--help"])
    check(r.returncode == 0 and "usage: hpcscreen report RUN" in r.stdout,
          f"report --help: exit {r.returncode} (0 expected), usage line 'hpcscreen report RUN'")
    r = run([a.hpcscreen, "report"])
    check(r.returncode == 2 and "RUN" in r.stderr and "--run" not in r.stderr,
          f"report without a run folder: exit {r.returncode} (2 expected), asks for RUN as its usage says, not --run")
    nowhere = os.path.join(work, "no_such_run")
    r = run([a.hpcscreen, "report", nowhere])
    check(r.returncode == 1 and nowhere in r.stderr and not os.path.exists(nowhere),
          f"report on a run folder that does not exist: exit {r.returncode} (1 expected), names it, creates nothing")
    finish()


def manifest_index(manifest, shard_file):
    return [s["file"] for s in manifest["shards"]].index(shard_file)


if __name__ == "__main__":
    main()
