#!/usr/bin/python3
"""End to end: pack FASTA (gzip, CRLF, multi-line, bad records), annotate under mpirun with 1, 2
and 3 ranks, and check every result against an independent Python reference: the contract's
tokenizer rules, the window plan and the stitching rule re-implemented here from
data_schemas/bert_contract.md, the same TorchScript model run per window in PyTorch."""
import glob
import gzip
import os
import random
import shutil

import h5py
import torch

from common import e2e_args, check, finish, fresh, mpirun, read_csv, read_json, run
from hpcscreen_py import protein

AA = "ACDEFGHIKLMNPQRSTVWY"
WINDOW = 46  # the test models take 48 positions: [CLS] + 46 residues + [SEP]
OVERLAP = 11  # a quarter of the window, rounded down: hpcscreen's default


def make_fasta(work):
    rng = random.Random(7)
    records = []
    for i in range(60):
        n = rng.choice([rng.randint(5, 40), rng.randint(40, 130)])
        records.append((f"prot{i}", f"random protein {i}", "".join(rng.choice(AA) for _ in range(n))))
    records += [
        ("lower", "lower case", "mktayiakqrqisfvk"),
        ("rare", "U Z O B map to X", "MKUZOBAK"),
        ("stop_end", "terminal stop", "MKTAYIAK*"),
        ("dup", "first of two with this id", "MKTAYIAKQR"),
        ("dup", "second of two with this id", "GGGGSGGGGS"),
        ("unknown_one", "one J", "MKJAK"),
        ("titin_like", "35,000 residues", "".join(rng.choice(AA) for _ in range(35000))),
    ]
    bad = [("empty", "no sequence", "", "empty_sequence"), ("only_unknown", "", "JJJJ", "all_unknown"),
           ("digits", "", "MK12AK", "invalid_character"), ("star_inside", "", "MK*AK", "invalid_character")]
    path = os.path.join(work, "proteins.fa.gz")
    with gzip.open(path, "wt", newline="") as f:
        for ident, desc, seq in records + [(b[0], b[1], b[2]) for b in bad]:
            f.write(f">{ident} {desc}\r\n")
            for k in range(0, len(seq), 60):
                f.write(seq[k:k + 60] + "\r\n")
            f.write("\r\n")
        f.write(">cut_off_at_end\r\n")
    return path, records, bad


def reference(model_path, seq, per_residue, policy="window"):
    """What the contract says hpcscreen must produce for one sequence, computed here."""
    model = torch.jit.load(model_path)
    extra = {"hpcscreen.json": ""}
    torch.jit.load(model_path, _extra_files=extra)
    import json
    cfg = json.loads(extra["hpcscreen.json"])["tokenizer"]
    ids, reason = protein.encode(seq, cfg)
    if ids is None:
        return None
    if policy == "truncate":
        ids = ids[:WINDOW]
    with torch.no_grad():
        if per_residue:
            out = torch.zeros(len(ids), 3)
            for b, e, kb, ke in protein.plan_windows(len(ids), WINDOW, OVERLAP):
                y = model(*protein.batch([ids[b:e]], cfg))[0, 1:1 + e - b]
                out[kb:ke] = y[kb - b:ke - b]
            return out
        acc = torch.zeros(2)
        for b, e, kb, ke in protein.plan_windows(len(ids), WINDOW, OVERLAP):
            acc += (ke - kb) / len(ids) * model(*protein.batch([ids[b:e]], cfg))[0]
        return acc


def read_results(rd):
    """Every annotated record from the HDF5 outputs, via annotations.json, with h5py alone."""
    manifest = read_json(os.path.join(rd, "annotations.json"))
    out = {}
    for f in manifest["files"]:
        with h5py.File(os.path.join(rd, f["file"]), "r") as h:
            rows = h["row"][()]
            idb, ido = h["id/bytes"][()].tobytes(), h["id/offsets"][()]
            for i, row in enumerate(rows):
                key = (f["shard"], int(row))
                assert key not in out, f"record {key} appears twice"
                ident = idb[ido[i]:ido[i + 1]].decode()
                if manifest["output_level"] == "residue":
                    o = h["residue_offsets"][()]
                    out[key] = (ident, torch.tensor(h["logits"][o[i]:o[i + 1]]), h["prediction"][o[i]:o[i + 1]])
                else:
                    out[key] = (ident, torch.tensor(h["scores"][i]), None)
    return manifest, out


def main():
    a = e2e_args()
    work = a.work
    res_model = os.path.join(a.models, "bert_residue.pt")
    seq_model = os.path.join(a.models, "bert_sequence.pt")
    fasta, records, bad = make_fasta(work)
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "proteins", "--input", fasta, "--out", lib, "--shard-size", "25"], expect=0)
    manifest = read_json(os.path.join(lib, "manifest.json"))
    n_total = len(records) + len(bad)
    check(manifest["n_records"] == n_total, f"all {n_total} FASTA records packed ({manifest['n_records']})")
    pr = read_csv(os.path.join(lib, "pack_rejects.csv"))
    check(len(pr) == 1 and "truncated" in pr[0]["reason"], "the header cut off at the end of the file is a pack reject")

    print("== per residue, --long-sequences window, 1, 2 and 3 ranks")
    runs = {}
    for np in (1, 2, 3):
        rd = fresh(os.path.join(work, f"res{np}"))
        mpirun(np, [a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd, "--chunk-rows", "10",
                    "--long-sequences", "window", "--tsv", "--max-tokens", "2000"], threads=1 if np > 1 else 2, expect=0)
        runs[np] = rd
    tsv = {np: open(os.path.join(rd, "annotations.tsv")).read() for np, rd in runs.items()}
    rej = {np: open(os.path.join(rd, "rejects.csv")).read() for np, rd in runs.items()}
    check(tsv[1] == tsv[2] == tsv[3], "annotations.tsv identical for 1, 2 and 3 ranks")
    # --tsv given to an attempt cut short, not to the resume: the TSV is written whole anyway.
    rd = fresh(os.path.join(work, "res_tsv_resumed"))
    cmd = [a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd, "--chunk-rows", "10",
           "--long-sequences", "window", "--max-tokens", "2000"]
    mpirun(1, cmd + ["--tsv", "--max-chunks", "1"], expect=75)
    mpirun(1, cmd + ["--resume"], expect=0)
    check(open(os.path.join(rd, "annotations.tsv")).read() == tsv[1],
          "a TSV asked for before a cut is written whole by the resume without --tsv")
    check(rej[1] == rej[2] == rej[3], "rejects.csv identical for 1, 2 and 3 ranks")
    results = {np: read_results(rd)[1] for np, rd in runs.items()}
    check(len(results[1]) == len(records) and results[1].keys() == results[3].keys()
          and all(torch.equal(results[1][k][1], results[3][k][1]) for k in results[1]),
          f"HDF5 logits bitwise identical for 1 and 3 ranks ({len(results[1])} of {len(records)} records)")

    rj = read_json(os.path.join(runs[2], "run.json"))
    check(rj["records_read"] == n_total and rj["records_scored"] + rj["records_rejected"] == n_total and rj["complete"],
          "read = annotated + rejected = manifest")
    check(0 <= rj["annotate"]["padding_fraction"] < 0.25, f"padding fraction reported ({rj['annotate']['padding_fraction']:.3f})")
    check(rj["annotate"]["tokens"]["unknown_residues"] == 1 and rj["annotate"]["tokens"]["mapped_residues"] == 4 and rj["annotate"]["tokens"]["terminal_stops_removed"] == 1,
          "unknown, mapped and stop counts in run.json")
    by_id = {r["id"]: r["reason"].split(":")[0] for r in read_csv(os.path.join(runs[2], "rejects.csv"))}
    for ident, _, _, reason in bad:
        check(by_id.get(ident) == reason, f"{ident} rejected as {reason} (got {by_id.get(ident)})")

    _, got = read_results(runs[2])
    lib_records = {}
    import h5py as _h
    for s in manifest["shards"]:
        with _h.File(os.path.join(lib, s["file"]), "r") as h:
            b, o = h["sequence/bytes"][()].tobytes(), h["sequence/offsets"][()]
            ib, io_ = h["id/bytes"][()].tobytes(), h["id/offsets"][()]
            for r in range(s["n_records"]):
                lib_records[(s["file"], r)] = (ib[io_[r]:io_[r + 1]].decode(), b[o[r]:o[r + 1]].decode())
    worst, n_checked, every_residue = 0.0, 0, True
    for key, (ident, seq) in lib_records.items():
        ref = reference(res_model, seq, True)
        if ref is None:
            check(key not in got, f"{ident}: rejected, no result")
            continue
        n_checked += 1
        g = got[key]
        every_residue &= g[1].shape[0] == ref.shape[0]
        worst = max(worst, float((g[1] - ref).abs().max()))
        check(g[0] == ident, f"{key}: result under its own id") if g[0] != ident else None
    check(n_checked == len(records) and every_residue,
          f"every residue of every sequence has a prediction (the 35,000-residue one too; {n_checked} of {len(records)} sequences)")
    check(n_checked == len(records) and worst < 1e-4, f"{n_checked} sequences: logits equal the Python reference with windows stitched per the contract (max diff {worst:.2e})")
    dups = [k for k, v in got.items() if v[0] == "dup"]
    check(len(dups) == 2, "two records with the same id are kept apart")
    tsv_rows = read_csv_tsv(os.path.join(runs[2], "annotations.tsv"))
    titin = [r for r in tsv_rows if r["id"] == "titin_like"]
    check(len(titin) == 1 and len(titin[0]["prediction"]) == 35000 and titin[0]["length"] == "35000",
          "annotations.tsv: the titin-like sequence has 35,000 predicted labels")

    print("== --long-sequences reject and truncate")
    rd = fresh(os.path.join(work, "reject"))
    mpirun(2, [a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd], expect=0)
    rr = {r["id"]: r["reason"] for r in read_csv(os.path.join(rd, "rejects.csv"))}
    long_ids = [i for i, _, s in records if len(s) > WINDOW]
    check(len(long_ids) > 1 and all(rr.get(i, "").startswith("too_long") for i in long_ids) and "--long-sequences window" in rr.get("titin_like", ""),
          f"{len(long_ids)} sequences over {WINDOW} residues rejected as too_long, with advice")
    rd = fresh(os.path.join(work, "truncate"))
    mpirun(2, [a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd, "--long-sequences", "truncate"], expect=0)
    _, tr = read_results(rd)
    tkey = [k for k, v in tr.items() if v[0] == "titin_like"][0]
    ref = reference(res_model, lib_records[tkey][1], True, policy="truncate")
    check(tr[tkey][1].shape[0] == WINDOW and float((tr[tkey][1] - ref).abs().max()) < 1e-4, "truncate keeps the first 46 residues")
    check(read_json(os.path.join(rd, "run.json"))["annotate"]["tokens"]["truncated_residues"] > 35000 - WINDOW, "truncated residues counted")

    print("== per sequence with --top-k, fixed batching gives the same scores")
    outs = {}
    for batching in ("length", "fixed"):
        rd = fresh(os.path.join(work, f"seq_{batching}"))
        mpirun(3, [a.hpcscreen, "annotate", "--library", lib, "--model", seq_model, "--out", rd, "--top-k", "5",
                   "--long-sequences", "window", "--batching", batching, "--max-sequences", "8"], expect=0)
        outs[batching] = rd
    _, sres = read_results(outs["length"])
    worst = max(float((v[1] - reference(seq_model, lib_records[k][1], False)).abs().max()) for k, v in sres.items())
    check(worst < 1e-4, f"per-sequence scores equal the Python reference (max diff {worst:.2e})")
    hits = read_csv(os.path.join(outs["length"], "hits.csv"))
    ranked = sorted(((float(v[1][0]), k) for k, v in sres.items()), key=lambda t: (-t[0], t[1]))
    check([(h["shard"], int(h["row"])) for h in hits] == [k for _, k in ranked[:5]], "hits.csv: the five highest 'membrane' scores")
    descriptions = {i: d for i, d, _ in records}
    check(len(hits) == 5 and all(h["description"] == descriptions[h["id"]] for h in hits),
          f"hits.csv carries each record's FASTA description ({len(hits)} of 5 hits)")
    _, fres = read_results(outs["fixed"])
    check(max(float((fres[k][1] - v[1]).abs().max()) for k, v in sres.items()) < 1e-4, "fixed and length-aware batching agree")
    pf = read_json(os.path.join(outs["fixed"], "run.json"))["annotate"]["padding_fraction"]
    pl = read_json(os.path.join(outs["length"], "run.json"))["annotate"]["padding_fraction"]
    check(pl < pf, f"length-aware batching pads less ({pl:.3f}) than fixed ({pf:.3f})")
    # Chunk files of a finished run deleted, cut short, and one replaced by another chunk's:
    # --resume does those chunks again rather than leaving their records out of annotations.json
    # or listing damaged files (each record keeps its files' sizes and checksums).
    files = sorted(glob.glob(os.path.join(outs["fixed"], "annotations", "chunk-*.h5")))
    check(len(files) >= 3, f"{len(files)} chunk files to damage")
    os.remove(files[0])
    shutil.copyfile(files[2], files[1])
    with open(files[2], "r+b") as f:
        f.truncate(os.path.getsize(files[2]) // 2)
    r = mpirun(2, [a.hpcscreen, "annotate", "--library", lib, "--model", seq_model, "--out", outs["fixed"], "--top-k", "5",
                   "--long-sequences", "window", "--batching", "fixed", "--max-sequences", "8", "--resume"], expect=0)
    _, again = read_results(outs["fixed"])
    check("outputs of 3 committed chunks are missing or not as written" in r.stderr and os.path.exists(files[0])
          and set(again) == set(fres) and all(torch.equal(again[k][1], fres[k][1]) for k in fres),
          f"deleted, cut and swapped chunk files are redone on --resume: {len(again)} of {len(fres)} records, "
          f"the same scores ({r.stderr.strip()[-200:]})")

    print("== refusals")
    rd = fresh(os.path.join(work, "bad"))
    r = mpirun(1, [a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd, "--top-k", "3"])
    check(r.returncode == 2 and "output_level is 'residue'" in r.stderr,
          f"--top-k with a per-residue model is a command-line error: exit {r.returncode} (2 expected)")
    r = mpirun(1, [a.hpcscreen, "annotate", "--library", lib, "--model", os.path.join(a.models, "bert_wrong_level.pt"), "--out", rd])
    check(r.returncode == 1 and "expected float32 [2, 7, 3]" in r.stderr, "a model whose output breaks its declared level is refused")
    r = mpirun(1, [a.hpcscreen, "annotate", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd])
    check(r.returncode == 1 and "kind is 'gnn'" in r.stderr, "a GNN is refused by annotate")
    r = run([a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd, "--long-sequences", "chop"])
    check(r.returncode == 2 and "--long-sequences" in r.stderr, "a bad --long-sequences value is named")
    rd = fresh(os.path.join(work, "bad_overlap"))
    r = mpirun(1, [a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd,
                   "--long-sequences", "window", "--window-overlap", "600"])
    check(r.returncode == 2 and "--window-overlap" in r.stderr and not os.path.exists(rd),
          f"--window-overlap 600 with a {WINDOW}-residue window: exit {r.returncode} (2 expected), the option named, no run folder")
    r = run([a.hpcscreen, "annotate", "--library", lib, "--model", res_model, "--out", rd, "--window-overlap", "100"])
    check(r.returncode == 2 and "--long-sequences window" in r.stderr and not os.path.exists(rd),
          f"--window-overlap without --long-sequences window (it would be ignored): exit {r.returncode} (2 expected)")
    finish()


def read_csv_tsv(path):
    import csv
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


if __name__ == "__main__":
    main()
