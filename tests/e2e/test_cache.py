#!/usr/bin/python3
"""Feature caches (`hpcscreen featurize`, issue 22): built on 1 and 3 ranks with the same
content, used by screen on 1, 2 and 3 ranks with results identical to featurizing from SMILES
(scores, rejects with their reasons, accounting, hits) for every registered featurizer in one
screen; a cache made with other parameters or another --max-atoms is not used (and
--require-cache refuses); a damaged cache shard is featurized from SMILES with a warning; a
build cut off resumes; a finished cache is kept when featurize runs again (one more featurizer
builds only its own); a cache shard copied in from another cache is refused on open, and a
record whose cached features cannot be decoded is featurized from SMILES."""
import glob
import json
import os
import shutil
import subprocess
import sys

from common import NCI, check, e2e_args, finish, fresh, mpirun, read_csv, read_json, run

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
CHEMPROP = os.path.join(ROOT, "..", "shared", "data", "chemprop", "example_model_v2_regression_mol.pt")
HOSTILE = ["C1CC", "c1cccc1", "C(C)(C)(C)(C)C", "[Na+].[Cl-]", "*C", "CéC", "C" * 600, "", "[2H]C([2H])([2H])O",
           "F/C=C\\F", "c1ccccc1 |c:0|", "[H][H]"]


def outputs(rd):
    scores = {}
    for path in sorted(glob.glob(os.path.join(rd, "scores", "*.csv"))):
        for r in read_csv(path):
            scores[(r["shard"], r["row"])] = r
    return open(os.path.join(rd, "hits.csv")).read(), open(os.path.join(rd, "rejects.csv")).read(), scores


def cache_contents(lib):
    import h5py
    out = {}
    for path in sorted(glob.glob(os.path.join(lib, "features", "*", "*.h5"))):
        with h5py.File(path, "r") as f:
            out[os.path.relpath(path, lib)] = {k: f[k]["bytes"][()].tobytes() + f[k]["offsets"][()].tobytes()
                                               for k in ("reason", "detail", "features")}
    return out


def main():
    a = e2e_args()
    work = a.work
    smi = os.path.join(work, "in.smi")
    nci = [l.split()[0] for l in open(NCI) if l.split()][:2500]
    with open(smi, "w") as f:
        for i, s in enumerate(nci + HOSTILE):
            f.write(f"{s} m{i}\n")
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib, "--shard-size", "700"], expect=0)
    models = [os.path.join(a.models, m) for m in ("gnn.pt", "fp_mlp.pt", "fp_mlp_b.pt", "fp_counts.pt")]
    if os.path.exists(CHEMPROP):
        cp = os.path.join(work, "chemprop.pt")
        run(["/usr/bin/python3", os.path.join(ROOT, "tools", "import_chemprop.py"), CHEMPROP, "--out", cp], expect=0)
        models.append(cp)
    model_args = [x for m in models for x in ("--model", m)]
    screen = [a.hpcscreen, "screen", "--library", lib, "--all-scores", "--chunk-rows", "300", *model_args]

    def on(library):  # the same screen of a copy of the library
        return [library if x == lib else x for x in screen]

    print("== from SMILES (reference)")
    ref_dir = fresh(os.path.join(work, "from_smiles"))
    mpirun(1, screen + ["--out", ref_dir], expect=0)
    reference = outputs(ref_dir)
    rj = read_json(os.path.join(ref_dir, "run.json"))
    fc = rj["screen"]["feature_cache"]
    check(fc["used"] is False and fc["chunks_from_smiles"] == rj["chunks_total"] and fc["chunks_from_cache"] == 0,
          f"no cache yet: run.json says none was used, every chunk from SMILES ({fc}, {rj['chunks_total']} chunks)")
    r = mpirun(1, screen + ["--out", fresh(os.path.join(work, "required")), "--require-cache"])
    check(r.returncode == 1 and "--require-cache" in r.stderr, f"--require-cache without a cache: exit {r.returncode} (1 expected)")

    print("== featurize on 1 rank and on 3 ranks: the same caches")
    lib3 = os.path.join(work, "lib3")
    shutil.copytree(lib, lib3)
    r = mpirun(1, [a.hpcscreen, "featurize", "--library", lib, *model_args], expect=0)
    print(r.stdout)
    mpirun(3, [a.hpcscreen, "featurize", "--library", lib3, *model_args], expect=0)
    c1, c3 = cache_contents(lib), cache_contents(lib3)
    n_featurizers = 4 if os.path.exists(CHEMPROP) else 3  # two models share one morgan setting
    check(len(glob.glob(os.path.join(lib, "features", "*", "cache.json"))) == n_featurizers,
          f"one cache per distinct featurizer ({n_featurizers})")
    check(c1 == c3 and len(c1) == n_featurizers * 4, f"caches built on 3 ranks identical to 1 rank ({len(c1)} cache shards)")
    index_times = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(lib, "features", "*", "cache.json"))}
    r = mpirun(1, [a.hpcscreen, "featurize", "--library", lib, *model_args])
    check(r.returncode == 0 and r.stdout.count("(complete already: kept)") == n_featurizers and cache_contents(lib) == c1
          and index_times == {p: os.stat(p).st_mtime_ns for p in index_times},
          f"featurize again: every finished cache kept as it was, nothing rebuilt (exit {r.returncode}, {r.stdout!r})")
    lib_more = os.path.join(work, "lib_more")
    shutil.copytree(lib3, lib_more)
    radius3 = json.dumps({"name": "morgan", "version": 1, "radius": 3, "bits": 2048})
    r = mpirun(2, [a.hpcscreen, "featurize", "--library", lib_more, *model_args, "--featurizer", radius3])
    more = cache_contents(lib_more)
    check(r.returncode == 0 and r.stdout.count("(complete already: kept)") == n_featurizers
          and len(glob.glob(os.path.join(lib_more, "features", "*", "cache.json"))) == n_featurizers + 1
          and {k: v for k, v in more.items() if k in {x.replace("lib3", "lib_more") for x in c3}} ==
          {k.replace("lib3", "lib_more"): v for k, v in c3.items()} and len(more) == len(c3) + 4,
          f"one more featurizer: its cache built, the others kept (exit {r.returncode}, {r.stderr.strip()[-300:]!r})")

    print("== screen from the caches on 1, 2 and 3 ranks")
    for np_ in (1, 2, 3):
        rd = fresh(os.path.join(work, f"cached_np{np_}"))
        mpirun(np_, screen + ["--out", rd, "--require-cache"], expect=0)
        got = outputs(rd)
        rj = read_json(os.path.join(rd, "run.json"))
        fc = rj["screen"]["feature_cache"]
        check(got[0] == reference[0], f"{np_} ranks: hits.csv identical to the screen from SMILES")
        check(got[1] == reference[1], f"{np_} ranks: rejects.csv (rows, stages, reasons) identical")
        check(got[2] == reference[2], f"{np_} ranks: every score of every model identical ({len(got[2])} records)")
        check(fc["used"] and fc["chunks_from_cache"] == rj["chunks_total"] and fc["chunks_from_smiles"] == 0,
              f"{np_} ranks: run.json says every chunk came from the caches ({fc})")
        check(rj["accounting_ok"] and rj["complete"], f"{np_} ranks: accounting exact")

    print("== a cache of other parameters or another --max-atoms is not used")
    other = os.path.join(work, "lib_other")
    shutil.copytree(lib, other, ignore=shutil.ignore_patterns("features"))
    mpirun(1, [a.hpcscreen, "featurize", "--library", other, "--featurizer",
               json.dumps({"name": "morgan", "version": 1, "radius": 3, "bits": 2048})], expect=0)
    rd = fresh(os.path.join(work, "other_params"))
    mpirun(1, [a.hpcscreen, "screen", "--library", other, "--model", models[1], "--out", rd, "--all-scores", "--chunk-rows", "300"], expect=0)
    fc = read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]
    check(not fc["used"] and "no cache of morgan/1 radius=2" in fc["why_not"], f"radius-3 cache not used for a radius-2 model: {fc}")
    rd = fresh(os.path.join(work, "other_max_atoms"))
    mpirun(1, screen + ["--out", rd, "--max-atoms", "80"], expect=0)
    check(not read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]["used"], "--max-atoms 80: the caches (made with 500) are not used")

    print("== a damaged cache shard is featurized from SMILES, with a warning")
    victim = sorted(glob.glob(os.path.join(lib, "features", "morgan-*", "*.h5")))[1]
    data = bytearray(open(victim, "rb").read())
    for k in range(len(data) // 3, 2 * len(data) // 3, 16):  # whatever the layout, data chunks are hit
        data[k] ^= 0xFF
    open(victim, "wb").write(bytes(data))
    rd = fresh(os.path.join(work, "damaged"))
    r = mpirun(2, screen + ["--out", rd], expect=0)
    got = outputs(rd)
    fc = read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]
    check("cannot be read" in r.stderr and fc["damaged_cache_shards"] >= 1 and fc["chunks_from_smiles"] >= 1,
          f"the damage is reported and those chunks featurized from SMILES ({fc})")
    check(got == reference, "results identical to the screen from SMILES")

    print("== a cache shard copied in from another featurizer's cache is not used")
    lib_swap = os.path.join(work, "lib_swap")
    shutil.copytree(lib3, lib_swap)
    by_featurizer = {read_json(p)["featurizer"]: os.path.dirname(p)
                     for p in glob.glob(os.path.join(lib_swap, "features", "morgan-*", "cache.json"))}
    bits = [d for f, d in by_featurizer.items() if "bits=2048" in f and "radius=2" in f]
    counts = [d for f, d in by_featurizer.items() if "bits=1024" in f]
    check(len(bits) == 1 and len(counts) == 1, f"the two morgan caches found ({sorted(by_featurizer)})")
    shard = sorted(os.path.basename(p) for p in glob.glob(os.path.join(counts[0], "*.h5")))[0]
    for suffix in ("", ".json"):
        shutil.copyfile(os.path.join(bits[0], shard + suffix), os.path.join(counts[0], shard + suffix))
    rd = fresh(os.path.join(work, "swapped"))
    r = mpirun(2, on(lib_swap) + ["--out", rd], expect=0)
    fc = read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]
    check("copied from another cache" in r.stderr and fc["damaged_cache_shards"] >= 1 and fc["chunks_from_smiles"] >= 1,
          f"the copied shard is named and its chunks featurized from SMILES ({fc})")
    check(outputs(rd) == reference, "results identical to the screen from SMILES")
    r = mpirun(1, on(lib_swap) + ["--out", fresh(os.path.join(work, "swapped_required")), "--require-cache"])
    check(r.returncode == 1 and "--require-cache: 1 of the library's 4 shards have no usable shard" in r.stderr,
          f"--require-cache refuses a cache that does not serve every shard: exit {r.returncode} (1)")

    print("== each cached record carries its SMILES' CRC-32; a library shard replaced in place is not paired with them")
    import h5py
    import zlib

    def column(path, field):
        with h5py.File(path, "r") as f:
            data, offsets = f[field]["bytes"][()].tobytes(), f[field]["offsets"][()]
        return [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]

    shards = sorted(glob.glob(os.path.join(lib3, "shard-*.h5")))
    for d in glob.glob(os.path.join(lib3, "features", "*", "")):
        for shard in shards:
            want = [zlib.crc32(x).to_bytes(4, "big") for x in column(shard, "smiles")]
            check(column(os.path.join(d, os.path.basename(shard)), "smiles_crc32") == want,
                  f"{os.path.basename(d[:-1])}/{os.path.basename(shard)}: every record's SMILES CRC-32, as zlib computes it")
    lib_rev = os.path.join(work, "lib_reversed")  # the same records in reverse order: shards of the same sizes
    rev = os.path.join(work, "reversed.smi")
    with open(smi) as f, open(rev, "w") as g:
        g.writelines(reversed(f.readlines()))
    run([a.hpcscreen, "pack", "compounds", "--input", rev, "--out", lib_rev, "--shard-size", "700"], expect=0)
    lib_replaced = os.path.join(work, "lib_replaced")
    shutil.copytree(lib3, lib_replaced)
    replaced = os.path.basename(shards[1])
    shutil.copyfile(os.path.join(lib_rev, replaced), os.path.join(lib_replaced, replaced))  # manifest left as it was
    rd, plain = fresh(os.path.join(work, "replaced")), fresh(os.path.join(work, "replaced_plain"))
    r = mpirun(2, on(lib_replaced) + ["--out", rd], expect=0)
    mpirun(1, on(lib_replaced) + ["--out", plain, "--no-feature-cache"], expect=0)
    fc = read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]
    check("made from another SMILES" in r.stderr and fc["damaged_cache_shards"] >= 1 and fc["chunks_from_smiles"] >= 1,
          f"the replaced shard is named and its chunks featurized from SMILES ({fc})")
    check(outputs(rd) == outputs(plain), "results identical to the screen of the replaced library without a cache")
    r = mpirun(1, on(lib_replaced) + ["--out", fresh(os.path.join(work, "replaced_required")), "--require-cache"])
    check(r.returncode == 1 and "--require-cache: the feature cache of" in r.stderr and "made from another SMILES" in r.stderr,
          f"--require-cache: the run stops at the replaced shard (exit {r.returncode}, 1 expected)")
    for index in glob.glob(os.path.join(lib_replaced, "features", "*", "cache.json")):
        j = read_json(index)
        j["smiles_checks"] = False  # as a cache finished by this version after one before it began it
        with open(index, "w") as f:
            json.dump(j, f)
    rd = fresh(os.path.join(work, "replaced_mixed"))
    r = mpirun(1, on(lib_replaced) + ["--out", rd], expect=0)
    check("made from another SMILES" in r.stderr and "built, in part, before" in r.stderr and outputs(rd) == outputs(plain),
          "a cache built in part before the checks: its shards that carry them are still checked, and a warning says so")
    for index in glob.glob(os.path.join(lib_replaced, "features", "*", "cache.json")):
        with open(index) as f:
            text = f.read().replace('"smiles_checks": false', '"smiles_checks": "yes"')
        with open(index, "w") as f:
            f.write(text)
    rd = fresh(os.path.join(work, "replaced_odd_index"))
    r = mpirun(1, on(lib_replaced) + ["--out", rd])  # was a raw JSON type error, exit 1
    check(r.returncode == 0 and "made from another SMILES" in r.stderr and outputs(rd) == outputs(plain),
          f"a cache.json whose smiles_checks is not a boolean counts it as not true: exit {r.returncode} (0), shards still checked")

    print("== a cached record that cannot be decoded, or decodes to no molecule, is featurized from SMILES")
    import h5py
    import numpy as np

    def damaged_blob(name, edit, says):
        """A copy of the library whose OGB cache shard 0 has one record's blob changed by
        edit(bytes, offsets), rewritten by h5py (HDF5's checksums hold): the record is named
        once, counted, featurized from its SMILES, and the results equal the screen from SMILES."""
        lib_x = os.path.join(work, f"lib_{name}")
        shutil.copytree(lib3, lib_x)
        victim = sorted(glob.glob(os.path.join(lib_x, "features", "ogb-*", "*.h5")))[0]
        with h5py.File(victim, "r+") as f:
            g = f["features"]
            data, offsets = edit(g["bytes"][()], g["offsets"][()].astype(np.int64))
            for ds, values in (("bytes", data), ("offsets", offsets.astype(g["offsets"].dtype))):
                del g[ds]
                g.create_dataset(ds, data=values, chunks=True, compression="gzip", fletcher32=True)
        rd = fresh(os.path.join(work, name))
        r = mpirun(1, on(lib_x) + ["--out", rd, "--require-cache"], expect=0)
        fc = read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]
        check(says in r.stderr and fc["records_not_decoded"] == 1,
              f"{name}: the record is named once and counted ({fc}; {r.stderr.strip()[-300:]!r})")
        check(outputs(rd) == reference, f"{name}: results identical to the screen from SMILES")

    def cut_record_5(data, offsets):  # its blob cut to 3 bytes
        cut = int(offsets[5]) + 3
        data = np.concatenate([data[:cut], data[int(offsets[6]):]])
        offsets[6:] -= int(offsets[6]) - cut
        return data, offsets

    def bond_out_of_graph(data, offsets):  # record 7's first bond names atom n_atoms + 1000
        at = int(offsets[7])  # blob: u32 atoms, u32 edges, 9 bytes an atom, then u32 pairs
        n_atoms = int(np.frombuffer(data[at:at + 4].tobytes(), "<u4")[0])
        first_edge = at + 8 + 9 * n_atoms
        data[first_edge:first_edge + 4] = np.frombuffer(np.array([n_atoms + 1000], "<u4").tobytes(), np.uint8)
        return data, offsets

    damaged_blob("blob", cut_record_5, "cannot be decoded")
    damaged_blob("edge", bond_out_of_graph, "names an atom the graph lacks")

    print("== a shard without its identity in a cache whose shards all carry one is not used; featurize --resume rebuilds it")
    lib_bare = os.path.join(work, "lib_bare")
    shutil.copytree(lib3, lib_bare)
    bits_dir = [os.path.dirname(p) for p in glob.glob(os.path.join(lib_bare, "features", "morgan-*", "cache.json"))
                if "bits=2048" in read_json(p)["featurizer"] and "radius=2" in read_json(p)["featurizer"]][0]
    shards = sorted(glob.glob(os.path.join(bits_dir, "*.h5")))
    shutil.copyfile(shards[0], shards[1])  # another library shard's cache, its attributes removed
    with h5py.File(shards[1], "r+") as f:
        for name in ("cache_identity", "library_shard", "library_checksum"):
            del f.attrs[name]
    rd = fresh(os.path.join(work, "bare"))
    r = mpirun(1, on(lib_bare) + ["--out", rd], expect=0)
    fc = read_json(os.path.join(rd, "run.json"))["screen"]["feature_cache"]
    check("has no cache_identity attribute" in r.stderr and fc["damaged_cache_shards"] >= 1,
          f"the shard without its identity is named and not used ({fc})")
    check(outputs(rd) == reference, "results identical to the screen from SMILES")
    r = mpirun(1, [a.hpcscreen, "featurize", "--library", lib_bare, *model_args])
    check(r.returncode == 1 and os.path.basename(shards[1])[:-3] in r.stderr and "--resume" in r.stderr,
          f"featurize names the shard and says --resume (exit {r.returncode}; {r.stderr.strip()[-200:]!r})")
    r = mpirun(2, [a.hpcscreen, "featurize", "--library", lib_bare, *model_args, "--resume"], expect=0)
    check(cache_contents(lib_bare) == {k.replace("lib3", "lib_bare"): v for k, v in c3.items()},
          "featurize --resume rebuilt that shard: the caches equal an untouched build")

    print("== a featurizer failing on a parsed molecule fails it in its own cache only")
    # Chemprop with keep_h parses again keeping H atoms: RDKit refuses "[H+]C" and "CC=[H]" then,
    # which parse with H removed. A cache built with it beside the OGB graph must not hold that
    # failure in the OGB cache: a GNN-only screen from the caches scores them, as from SMILES.
    kh_smi = os.path.join(work, "keep_h.smi")
    with open(kh_smi, "w") as f:
        f.write("[H+]C x1\nCCO x2\nCC=[H] x3\nc1ccccc1O x4\n")
    lib_kh = os.path.join(work, "lib_keep_h")
    run([a.hpcscreen, "pack", "compounds", "--input", kh_smi, "--out", lib_kh], expect=0)
    mpirun(1, [a.hpcscreen, "featurize", "--library", lib_kh, "--featurizer",
               json.dumps({"name": "chemprop", "version": 1, "keep_h": True}), "--featurizer",
               json.dumps({"name": "ogb-smiles2graph", "version": 1})], expect=0)
    gnn_only = [a.hpcscreen, "screen", "--library", lib_kh, "--model", models[0], "--all-scores"]
    kh_ref, kh_cached = fresh(os.path.join(work, "kh_smiles")), fresh(os.path.join(work, "kh_cached"))
    mpirun(1, gnn_only + ["--out", kh_ref, "--no-feature-cache"], expect=0)
    mpirun(1, gnn_only + ["--out", kh_cached, "--require-cache"], expect=0)
    check(outputs(kh_cached) == outputs(kh_ref) and len(outputs(kh_ref)[2]) == 4,
          "GNN-only screen from a cache built beside chemprop keep_h: all 4 scored, as from SMILES")

    print("== a build cut off resumes")
    lib_r = os.path.join(work, "lib_resume")
    shutil.copytree(lib3, lib_r)
    for d in glob.glob(os.path.join(lib_r, "features", "*", "")):
        os.remove(os.path.join(d, "cache.json"))
        for side in sorted(glob.glob(os.path.join(d, "*.h5.json")))[2:]:
            os.remove(side)
            os.remove(side[:-5])
    r = mpirun(1, [a.hpcscreen, "featurize", "--library", lib_r, *model_args])
    check(r.returncode == 1 and "--resume" in r.stderr, f"a partial build is not restarted silently: exit {r.returncode}")
    mpirun(2, [a.hpcscreen, "featurize", "--library", lib_r, *model_args, "--resume"], expect=0)
    check(cache_contents(lib_r) == {k.replace("lib3", "lib_resume"): v for k, v in c3.items()},
          "the resumed build equals an uninterrupted one")

    print("== two builds in one library at once: the second is refused while the first holds the lock")
    import fcntl
    lib_l = os.path.join(work, "lib_locked")
    shutil.copytree(lib3, lib_l)
    shutil.rmtree(os.path.join(lib_l, "features"))
    os.makedirs(os.path.join(lib_l, "features"))
    with open(os.path.join(lib_l, "features", "lock"), "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a featurize still running holds it
        r = mpirun(1, [a.hpcscreen, "featurize", "--library", lib_l, *model_args])
    check(r.returncode == 1 and "being built by another" in r.stderr
          and glob.glob(os.path.join(lib_l, "features", "*", "")) == [],
          f"featurize while another holds the library's features/lock: exit {r.returncode} (1), nothing written")
    mpirun(1, [a.hpcscreen, "featurize", "--library", lib_l, *model_args], expect=0)

    print("== a build cut off, its library shard packed again since: --resume builds that shard again")
    lib_s = os.path.join(work, "lib_resume_stale")
    shutil.copytree(lib3, lib_s)
    for d in glob.glob(os.path.join(lib_s, "features", "*", "")):
        os.remove(os.path.join(d, "cache.json"))
        sides = sorted(glob.glob(os.path.join(d, "*.h5.json")))
        for side in sides[2:]:
            os.remove(side)
            os.remove(side[:-5])
        with open(sides[0]) as f:  # as if made from the shard's earlier contents
            record = json.load(f)
        record["library_checksum"] = "crc32:00000000"
        with open(sides[0], "w") as f:
            json.dump(record, f)
    mpirun(2, [a.hpcscreen, "featurize", "--library", lib_s, *model_args, "--resume"], expect=0)
    firsts = [sorted(glob.glob(os.path.join(d, "*.h5.json")))[0] for d in glob.glob(os.path.join(lib_s, "features", "*", ""))]
    check(all(json.load(open(p))["library_checksum"] != "crc32:00000000" for p in firsts)
          and cache_contents(lib_s) == {k.replace("lib3", "lib_resume_stale"): v for k, v in c3.items()},
          "the shard made from other library contents was built again: the caches equal an uninterrupted build")

    print("== a library shard that cannot be read: featurize names it and says what to do")
    lib_d = os.path.join(work, "lib_damaged_shard")
    shutil.copytree(lib, lib_d, ignore=shutil.ignore_patterns("features"))
    victim = sorted(glob.glob(os.path.join(lib_d, "shard-*.h5")))[2]
    os.truncate(victim, os.path.getsize(victim) // 2)
    r = mpirun(2, [a.hpcscreen, "featurize", "--library", lib_d, *model_args])
    check(r.returncode == 1 and f"library shard {os.path.basename(victim)} cannot be read" in r.stderr
          and "featurize --resume" in r.stderr, f"exit {r.returncode} (1), the shard named: {r.stderr.strip()[-300:]!r}")
    finish()


if __name__ == "__main__":
    main()
