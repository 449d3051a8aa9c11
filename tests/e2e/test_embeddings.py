#!/usr/bin/python3
"""End to end: `annotate --embeddings` with an encoder under mpirun with 1, 2 and 3 ranks, every
embedding checked against an independent PyTorch reference: the contract's tokenizer, window plan
and stitching rule re-implemented here from data_schemas/bert_contract.md, the same TorchScript
encoder run per window, per-sequence = the residue-weighted mean of the windows' means over their
residues, then float16 rounding. Also: the Python reader, `hpcscreen export embeddings` read back
with h5py, run.json's sizes, non-finite and out-of-float16-range outputs rejected, resume, and the
refusals."""
import json
import os
import random

import h5py
import numpy as np
import torch

from common import check, e2e_args, finish, fresh, mpirun, read_csv, read_json, run
from hpcscreen_py import embeddings, protein

AA = "ACDEFGHIKLMNPQRSTVWY"
WINDOW = 46  # the test models take 48 positions: [CLS] + 46 residues + [SEP]
OVERLAP = 11  # hpcscreen's default, a quarter of the window
HIDDEN = 16


def write_fasta(path, records):
    with open(path, "w") as f:
        for ident, seq in records:
            f.write(f">{ident} test\n{seq}\n")


def make_records(seed, n):
    rng = random.Random(seed)
    recs = []
    for i in range(n):
        length = rng.choice([rng.randint(3, 45), rng.randint(46, 140)])
        recs.append((f"p{i}|x/{i}", "".join(rng.choice(AA) for _ in range(length))))
    recs.append(("long_one", "".join(rng.choice(AA) for _ in range(3000))))
    recs.append(("exactly_window", "".join(rng.choice(AA) for _ in range(WINDOW))))
    recs.append(("bad_digit", "MK1AK"))
    return recs


class Reference:
    """What the contract says an encoder run must store, computed in PyTorch."""

    def __init__(self, model_path):
        extra = {"hpcscreen.json": ""}
        self.model = torch.jit.load(model_path, _extra_files=extra)
        self.cfg = json.loads(extra["hpcscreen.json"])["tokenizer"]

    def hidden(self, ids):
        with torch.no_grad():
            out = self.model(*protein.batch([ids], self.cfg))
        if isinstance(out, tuple):
            out = out[0]
        return out[0, 1:1 + len(ids)].double()  # residue positions only

    def __call__(self, seq):
        ids, _ = protein.encode(seq, self.cfg)
        if ids is None:
            return None
        per_res = torch.zeros(len(ids), HIDDEN, dtype=torch.double)
        per_seq = torch.zeros(HIDDEN, dtype=torch.double)
        for b, e, kb, ke in protein.plan_windows(len(ids), WINDOW, OVERLAP):
            h = self.hidden(ids[b:e])
            per_res[kb:ke] = h[kb - b:ke - b]
            per_seq += (ke - kb) / len(ids) * h.mean(0)
        return per_seq.numpy(), per_res.numpy()


def close_to(got, ref, dtype):
    """float16: within one float16 rounding of the reference (half an ulp, 2^-11 relative, plus
    float32 arithmetic noise); float32: 1e-4."""
    got = np.asarray(got, dtype=np.float64)
    if dtype == "float16":
        tol = np.abs(ref) * 2.0 ** -10 + 2e-5
    else:
        tol = np.abs(ref) * 1e-5 + 1e-4
    return bool(np.all(np.abs(got - ref) <= tol)), float(np.max(np.abs(got - ref)))


def read_run(rd):
    """{(shard, row): (id, per_seq or None, per_res or None)} with h5py alone."""
    m = read_json(os.path.join(rd, "annotations.json"))
    out = {}
    for f in m["files"]:
        with h5py.File(os.path.join(rd, f["file"]), "r") as h:
            data, off = h["id/bytes"][()].tobytes(), h["id/offsets"][()]
            seq = h["embedding_per_sequence"][()] if "embedding_per_sequence" in h else None
            res = h["embedding_per_residue"][()] if "embedding_per_residue" in h else None
            ro = h["residue_offsets"][()] if res is not None else None
            for i, row in enumerate(h["row"][()]):
                key = (f["shard"], int(row))
                assert key not in out, f"{key} twice"
                out[key] = (data[off[i]:off[i + 1]].decode(), None if seq is None else seq[i],
                            None if res is None else res[ro[i]:ro[i + 1]])
    return m, out


def library_records(lib):
    m = read_json(os.path.join(lib, "manifest.json"))
    recs = {}
    for s in m["shards"]:
        with h5py.File(os.path.join(lib, s["file"]), "r") as h:
            b, o = h["sequence/bytes"][()].tobytes(), h["sequence/offsets"][()]
            ib, io_ = h["id/bytes"][()].tobytes(), h["id/offsets"][()]
            for r in range(s["n_records"]):
                recs[(s["file"], r)] = (ib[io_[r]:io_[r + 1]].decode(), b[o[r]:o[r + 1]].decode())
    return recs


def compare(rd, lib_recs, ref, dtype, what):
    m, got = read_run(rd)
    worst, ok_all, n_ok, n_expected = 0.0, True, 0, 0
    for key, (ident, seq) in lib_recs.items():
        r = ref(seq)
        if r is None:
            ok_all &= key not in got
            continue
        n_expected += 1
        if key not in got or got[key][0] != ident:
            ok_all = False
            continue
        for g, want in zip(got[key][1:], r):
            if g is None:
                continue
            ok_all &= g.dtype == np.dtype(dtype) and g.shape == want.shape
            if g.shape == want.shape:
                ok, d = close_to(g, want, dtype)
                ok_all &= ok
                worst = max(worst, d)
        n_ok += 1
    check(ok_all and n_ok == n_expected and len(got) == n_expected,
          f"{what}: {n_ok} of {n_expected} records equal the PyTorch reference ({dtype}, max diff {worst:.2e})")
    return m, got


def main():
    a = e2e_args()
    work = a.work
    enc = os.path.join(a.models, "bert_encoder.pt")
    ref = Reference(enc)
    hp = a.hpcscreen
    records = make_records(11, 40)
    fasta = os.path.join(work, "proteins.fa")
    write_fasta(fasta, records)
    lib = os.path.join(work, "lib")
    run([hp, "pack", "proteins", "--input", fasta, "--out", lib, "--shard-size", "17"], expect=0)
    lib_recs = library_records(lib)
    n_good = len(records) - 1

    print("== --embeddings both, float16, windows, 1, 2 and 3 ranks")
    runs = {}
    for np_ in (1, 2, 3):
        rd = fresh(os.path.join(work, f"both{np_}"))
        mpirun(np_, [hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--chunk-rows", "6",
                     "--embeddings", "both", "--long-sequences", "window", "--max-tokens", "600"],
               threads=1 if np_ > 1 else 2, expect=0)
        runs[np_] = compare(rd, lib_recs, ref, "float16", f"{np_} rank(s), per-sequence and per-residue")[1]
    same = all(runs[1].keys() == runs[n].keys() and all(
        np.array_equal(runs[1][k][1], runs[n][k][1]) and np.array_equal(runs[1][k][2], runs[n][k][2]) for k in runs[1])
        for n in (2, 3))
    check(same, "embeddings bitwise identical for 1, 2 and 3 ranks")
    long_key = [k for k, v in lib_recs.items() if v[0] == "long_one"][0]
    check(runs[2][long_key][2].shape == (3000, HIDDEN) and runs[2][long_key][1].shape == (HIDDEN,),
          "the 3,000-residue sequence (windows of 46): one vector per residue, one per-sequence vector")
    rd2 = os.path.join(work, "both2")
    rj = read_json(os.path.join(rd2, "run.json"))
    e = rj["annotate"]["embeddings"]
    n_res = sum(len(protein.encode(s, ref.cfg)[0]) for _, s in records if protein.encode(s, ref.cfg)[0])
    check(e["per_sequence_shape"] == [n_good, HIDDEN] and e["per_residue_shape"] == [n_res, HIDDEN]
          and e["dtype"] == "float16" and e["bytes_per_residue"] == 2 * HIDDEN
          and e["payload_bytes"] == 2 * HIDDEN * (n_good + n_res) and e["file_bytes"] > 0,
          f"run.json records shapes, dtype and bytes ({e})")
    check(rj["records_rejected"] == 1 and read_csv(os.path.join(rd2, "rejects.csv"))[0]["id"] == "bad_digit",
          "the invalid sequence is rejected, the others embedded")

    print("== the Python reader")
    ids, X = embeddings.load(rd2)
    want_ids = [v[0] for k, v in sorted(runs[2].items())]
    check(ids == want_ids and X.shape == (n_good, HIDDEN) and X.dtype == np.float16,
          f"embeddings.load: {len(ids)} ids in library order, [{X.shape[0]}, {X.shape[1]}] float16")
    one = embeddings.get(rd2, "long_one", "per-residue")
    check(np.array_equal(one, runs[2][long_key][2]), "embeddings.get looks one id up (per residue)")
    ids_r, per_res = embeddings.load(rd2, "per-residue")
    check(ids_r == ids and all(np.array_equal(per_res[i], runs[2][k][2]) for i, k in enumerate(sorted(runs[2]))),
          "embeddings.load per-residue: one [L, H] array per id")

    print("== float32, per-sequence only; a Hugging Face-style tuple output")
    rd = fresh(os.path.join(work, "f32"))
    mpirun(2, [hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--embeddings", "per-sequence",
               "--embedding-dtype", "float32", "--long-sequences", "window"], expect=0)
    m, _ = compare(rd, lib_recs, ref, "float32", "float32 per-sequence")
    check(m["embeddings"] == {"per_sequence": True, "per_residue": False, "dtype": "float32", "hidden_size": HIDDEN},
          "annotations.json says what the files hold")
    rd = fresh(os.path.join(work, "tuple"))
    tup = os.path.join(a.models, "bert_encoder_tuple.pt")
    mpirun(1, [hp, "annotate", "--library", lib, "--model", tup, "--out", rd, "--embeddings", "per-residue",
               "--long-sequences", "window"], expect=0)
    compare(rd, lib_recs, Reference(tup), "float16", "tuple (last_hidden_state, pooled) output, per-residue")

    print("== export embeddings (bio_embeddings layout), read back with h5py")
    out = os.path.join(work, "export.h5")
    r = run([hp, "export", "embeddings", rd2, "--out", out], expect=0)
    with h5py.File(out, "r") as h:
        names = sorted(h.keys())
        orig = {h[n].attrs["original_id"]: n for n in names}
        check(all(isinstance(k, str) for k in orig),
              "original_id reads back as a str (a UTF-8 string, as h5py and bio_embeddings write it)")
        by_id = {v[0]: v for v in runs[2].values()}
        ok = len(names) == n_good and set(orig) == set(by_id)
        ok &= all(h[orig[i]].shape == (HIDDEN,) and h[orig[i]].dtype == np.float16 and np.array_equal(h[orig[i]][()], by_id[i][1])
                  for i in by_id)
        check(ok, f"export per-sequence: {len(names)} datasets [{HIDDEN}] named by id, equal to the run's")
        check("p3|x%2F3" in names and orig.get("p3|x/3") == "p3|x%2F3", "an id with '/' becomes %2F, original_id kept")
    out_r = os.path.join(work, "export_res.h5")
    run([hp, "export", "embeddings", rd2, "--out", out_r, "--level", "per-residue"], expect=0)
    with h5py.File(out_r, "r") as h:
        ok, worst = True, 0.0
        for key, (ident, seq) in lib_recs.items():
            rr = ref(seq)
            if rr is None:
                continue
            g = h[ident.replace("/", "%2F")][()]
            good, d = close_to(g, rr[1], "float16")
            ok &= good and g.shape == rr[1].shape
            worst = max(worst, d)
        check(ok, f"export per-residue: [L, {HIDDEN}] per id equal to the PyTorch reference (max diff {worst:.2e})")
    r = run([hp, "export", "embeddings", rd2, "--out", os.path.join(work, "big.h5"), "--max-bytes", "1000"])
    check(r.returncode == 1 and "above --max-bytes" in r.stderr and not os.path.exists(os.path.join(work, "big.h5")),
          f"a run above --max-bytes is refused with its size stated: {r.stderr.strip()[:160]}")
    r = run([hp, "export", "embeddings", os.path.join(work, "f32"), "--out", os.path.join(work, "x.h5"), "--level", "per-residue"])
    check(r.returncode == 1 and "no per-residue embeddings" in r.stderr, "export of a level the run does not have is refused")
    dup_fa = os.path.join(work, "dup.fa")
    write_fasta(dup_fa, [("same", "MKTAYIAK"), ("other", "GGSGG"), ("same", "MKKK")])
    dup_lib = os.path.join(work, "dup_lib")
    run([hp, "pack", "proteins", "--input", dup_fa, "--out", dup_lib], expect=0)
    dup_run = fresh(os.path.join(work, "dup_run"))
    mpirun(1, [hp, "annotate", "--library", dup_lib, "--model", enc, "--out", dup_run, "--embeddings", "per-sequence"], expect=0)
    r = run([hp, "export", "embeddings", dup_run, "--out", os.path.join(work, "dup.h5")])
    check(r.returncode == 1 and "'same' appears twice" in r.stderr, "duplicate ids: export refused, both places named")

    odd_fa = os.path.join(work, "odd.fa")
    odd_ids = ["prot_é_日本", "L" * 70000, "plain"]
    write_fasta(odd_fa, [(i, "MKTAYIAK") for i in odd_ids])
    with open(odd_fa, "ab") as f:  # an id in Latin-1, not UTF-8
        f.write(b">latin\xe9 test\nMKTAYIAK\n")
    odd_lib, odd_run, odd_h5 = os.path.join(work, "odd_lib"), fresh(os.path.join(work, "odd_run")), os.path.join(work, "odd.h5")
    run([hp, "pack", "proteins", "--input", odd_fa, "--out", fresh(odd_lib)], expect=0)
    mpirun(1, [hp, "annotate", "--library", odd_lib, "--model", enc, "--out", odd_run, "--embeddings", "per-sequence"],
           expect=0)
    run([hp, "export", "embeddings", odd_run, "--out", odd_h5], expect=0)
    with h5py.File(odd_h5, "r") as h:
        got = [h[n].attrs["original_id"] for n in h.keys()]
    # (h5py reads a string that is not UTF-8 with surrogateescape: its bytes come back from it.)
    got = sorted(g.encode("utf-8", "surrogateescape") for g in got)
    check(got == sorted([i.encode() for i in odd_ids] + [b"latin\xe9"]),
          "a non-ASCII id and a 70,000-character id (beyond an object header's 64 KiB) are kept whole "
          "in original_id; an id that is not UTF-8 keeps its bytes")

    print("== values beyond float16's range and NaN are rejects, not written")
    ovf = os.path.join(a.models, "bert_encoder_overflow.pt")
    with_w = {v[0] for v in lib_recs.values() if "W" in v[1] and protein.encode(v[1], ref.cfg)[0]}
    rd = fresh(os.path.join(work, "overflow16"))
    mpirun(2, [hp, "annotate", "--library", lib, "--model", ovf, "--out", rd, "--embeddings", "per-sequence",
               "--long-sequences", "window"], expect=0)
    rej = {x["id"]: x["reason"] for x in read_csv(os.path.join(rd, "rejects.csv"))}
    check(len(with_w) > 3 and all(rej.get(i, "").startswith("non_finite_output") for i in with_w)
          and set(embeddings.load(rd)[0]).isdisjoint(with_w),
          f"float16: the {len(with_w)} sequences with outputs beyond 65504 are rejected as non_finite_output")
    rd = fresh(os.path.join(work, "overflow32"))
    mpirun(1, [hp, "annotate", "--library", lib, "--model", ovf, "--out", rd, "--embeddings", "per-sequence",
               "--embedding-dtype", "float32", "--long-sequences", "window"], expect=0)
    check(read_json(os.path.join(rd, "run.json"))["records_scored"] == n_good, "float32 keeps them (finite)")

    print("== resume after a cut-off run gives the same embeddings")
    rd = fresh(os.path.join(work, "resumed"))
    base = [hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--chunk-rows", "6", "--long-sequences", "window"]
    r = mpirun(2, base + ["--embeddings", "both", "--max-chunks", "1"])
    check(r.returncode == 75, f"--max-chunks 1 stops early (exit {r.returncode})")
    r = mpirun(2, base + ["--embeddings", "per-sequence", "--resume"])
    check(r.returncode == 1 and "embeddings" in r.stderr, f"--resume with other --embeddings is refused (exit {r.returncode})")
    mpirun(3, base + ["--embeddings", "both", "--resume"], expect=0)
    _, resumed = read_run(rd)
    check(resumed.keys() == runs[1].keys() and all(np.array_equal(resumed[k][2], runs[1][k][2]) and
                                                   np.array_equal(resumed[k][1], runs[1][k][1]) for k in resumed),
          "resumed run equals the uninterrupted one, bit for bit")
    rj = read_json(os.path.join(rd, "run.json"))["annotate"]["embeddings"]
    check(rj["per_sequence_shape"] == [n_good, HIDDEN], "run.json after resume counts every chunk, earlier attempts too")

    print("== refusals")
    rd = fresh(os.path.join(work, "bad"))
    r = mpirun(1, [hp, "annotate", "--library", lib, "--model", os.path.join(a.models, "bert_encoder_wrong_shape.pt"),
                   "--out", rd, "--embeddings", "per-sequence"])
    check(r.returncode == 1 and "expected float32 [2, 7, H]" in r.stderr and not os.path.exists(rd),
          f"an encoder whose output is not [B, L, H] is refused at start: exit {r.returncode}")
    r = mpirun(1, [hp, "annotate", "--library", lib, "--model", enc, "--out", rd])
    check(r.returncode == 2 and "--embeddings per-sequence|per-residue|both" in r.stderr and not os.path.exists(rd),
          "an encoder without --embeddings: exit 2, the choices named")
    r = mpirun(1, [hp, "annotate", "--library", lib, "--model", os.path.join(a.models, "bert_residue.pt"), "--out", rd,
                   "--embeddings", "both"])
    check(r.returncode == 2 and "output_level 'residue'" in r.stderr, "--embeddings with a per-residue model: exit 2")
    r = mpirun(1, [hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--embeddings", "both", "--top-k", "5"])
    check(r.returncode == 2 and "nothing to rank" in r.stderr, "--top-k with an encoder: exit 2, nothing to rank")
    r = run([hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--embeddings", "mean"])
    check(r.returncode == 2 and "--embeddings" in r.stderr, "a bad --embeddings value is named")
    r = run([hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--embeddings", "both", "--embedding-dtype", "bfloat16"])
    check(r.returncode == 2 and "--embedding-dtype" in r.stderr, "a bad --embedding-dtype value is named")
    r = run([hp, "annotate", "--library", lib, "--model", enc, "--out", rd, "--embedding-dtype", "float32"])
    check(r.returncode == 2 and "give --embeddings too" in r.stderr, "--embedding-dtype without --embeddings: exit 2")
    finish()


if __name__ == "__main__":
    main()
