#!/usr/bin/python3
"""End to end: pack real catalogue formats on 1 and 3 ranks, kill a pack and resume it, and
screen what was packed.

- An Enamine REAL-format .cxsmiles.bz2 (tab-separated, header, enhanced-stereo extensions,
  malformed rows), a ZINC-format .smi.gz (header `smiles zinc_id`) and a .csv.xz with an
  unterminated quote are packed without mpirun, under mpirun -np 1 and -np 3: the same shard
  list, the same records (read with h5py), the same pack_rejects.csv; every row the test wrote
  is in a shard or in pack_rejects.csv; the ids are the idnumber / zinc_id / id values.
- screen on that library completes and scores the enhanced-stereo records.
- A pack on 2 ranks is killed with SIGKILL (every process of the job) once its first input is
  finished (its completion record on disk) and before its manifest exists; screen refuses the folder with "this library's pack
  did not complete; rerun pack with --resume"; pack --resume (on 3 ranks) gives the library of
  an uninterrupted pack.
- An input that turns out to be truncated on one of 3 ranks: exit 1, one report, no manifest.
- A 1 MB SMILES in a library is rejected by screen as too_long and the rest is scored.

Nothing here depends on timing; the waits have a guard only so that a hang fails the test."""
import bz2
import fcntl
import glob
import gzip
import lzma
import os
import random
import signal
import subprocess
import time

from common import check, e2e_args, finish, fresh, mpirun, read_csv, read_json, read_library, run
import gen_library

HANG_GUARD_S = 600
ENAMINE_HEADER = ["smiles", "idnumber", "reagent1", "reagent2", "reaction", "MW", "HAC", "slogP", "HBA", "HBD",
                  "RotBonds", "FSP3", "TPSA", "lead-like", "350/3_lead-like", "fragments", "strict_fragments",
                  "PPI_modulators", "natural_product-like", "mol_name", "InChIKey"]
STEREO = ["C[C@H](N)C(=O)O |&1:1|", "C[C@@H](O)c1ccccc1 |o1:1|", "N[C@@H](Cc1ccccc1)C(=O)O |&1:2|",
          "C[C@H]1CCC[C@@H](C)N1 |&1:1,&2:7|"]


def smiles_list(n, seed):
    return [line.split()[0] for line in gen_library.compounds(n, random.Random(seed))]


def write_enamine(path, n, seed, n_bad=0):
    """A REAL-format file; returns (good rows as (idnumber, smiles), 1-based line numbers of the bad rows)."""
    rng = random.Random(seed)
    good, bad_lines = [], []
    lines = ["\t".join(ENAMINE_HEADER)]
    bad_at = set(rng.sample(range(n), n_bad)) if n_bad else set()
    for i, smi in enumerate(smiles_list(n, seed)):
        if i % 17 == 5:
            smi = STEREO[i % len(STEREO)]
        ident = f"PV-{seed:03d}{i:09d}" if i % 3 else f"Z{seed:02d}{i:08d}"
        fields = [smi, ident, f"r1_{i}", f"r2_{i}", "m_22", f"{200 + i % 300}.1", str(10 + i % 20), "1.23", "3", "1",
                  "4", "0.41", "55.6", "TRUE", "FALSE", "FALSE", "FALSE", "FALSE", "FALSE", ident, "ABCDEFGHIJKLMN-UHFFFAOYSA-N"]
        if i in bad_at:
            fields = fields[:5] if i % 2 else fields + ["one too many"]  # wrong field counts
            bad_lines.append(len(lines) + 1)
        else:
            good.append((ident, smi))
        lines.append("\t".join(fields))
    with bz2.open(path, "wt") as f:
        f.write("\n".join(lines) + "\n")
    return good, bad_lines


def make_inputs(work):
    real = os.path.join(work, "Enamine_REAL_HAC_11_21_demo_CXSMILES.cxsmiles.bz2")
    real_good, real_bad = write_enamine(real, 420, 1, n_bad=4)

    zinc = os.path.join(work, "ZINC-downloader-2D-smi.smi.gz")
    zinc_good = [(f"ZINC{i + 1000:012d}", s) for i, s in enumerate(smiles_list(230, 2))]
    with gzip.open(zinc, "wt", newline="") as f:  # space-separated with a header; CRLF line ends
        f.write("smiles zinc_id\r\n" + "".join(f"{s} {i}\r\n" for i, s in zinc_good))

    extra = os.path.join(work, "inhouse.csv.xz")
    extra_good, extra_bad = [], []
    lines = ["id,smiles,MW"]
    for i, s in enumerate(smiles_list(150, 3)):
        if i == 40:
            lines.append(f'"unterminated{i},{s},1.0')
            extra_bad.append(len(lines))
            continue
        extra_good.append((f"inhouse-{i}", s))
        lines.append(f"inhouse-{i},{s},{i}.5")
    with lzma.open(extra, "wt") as f:
        f.write("\n".join(lines) + "\n")
    # (file, good rows, bad line numbers, rows written without the header)
    return [(real, real_good, real_bad, 420), (zinc, zinc_good, [], 230), (extra, extra_good, extra_bad, 150)]


def pack_cmd(a, inputs, lib, *extra):
    return [a.hpcscreen, "pack", "compounds", "--input", *inputs, "--out", lib, *extra]


def library_view(lib):
    manifest, records = read_library(lib)
    shards = [(s["file"], s["n_records"]) for s in manifest["shards"]]
    recs = [{k: v for k, v in r.items() if k != "shard_index"} for r in records]
    with open(os.path.join(lib, "pack_rejects.csv")) as f:
        rejects = f.read()
    return manifest, shards, recs, rejects


def formats_test(a, work):
    print("== Enamine .cxsmiles.bz2, ZINC .smi.gz and .csv.xz on 1 and 3 ranks")
    inputs = make_inputs(work)
    files = [f for f, *_ in inputs]
    libs = {}
    libs["plain"] = os.path.join(work, "lib_plain")
    run(pack_cmd(a, files, libs["plain"], "--shard-size", "100"), expect=0)
    for np in (1, 3):
        libs[np] = os.path.join(work, f"lib_np{np}")
        r = mpirun(np, pack_cmd(a, files, libs[np], "--shard-size", "100"), threads=None, expect=0)
        check(f"packed by {np} ranks" in r.stdout and r.stdout.count("records packed") == 1,
              f"{np} rank(s): one summary, from rank 0 ({r.stdout.strip()!r})")
    views = {k: library_view(v) for k, v in libs.items()}
    manifest, shards, records, rejects = views[3]
    for k in ("plain", 1):
        check(views[k][1] == shards, f"shard list of {k} == 3 ranks ({len(shards)} shards)")
        check(views[k][2] == records, f"records of {k} == 3 ranks ({len(records)} records, read with h5py)")
        check(views[k][3] == rejects, f"pack_rejects.csv of {k} == 3 ranks")
    check([f for f, _ in shards] == sorted(f for f, _ in shards) and shards[0][0] == "shard-00000-00000.h5",
          f"shards named per input, listed in input order: {[f for f, _ in shards]}")
    check(not os.path.exists(os.path.join(libs[3], "INCOMPLETE")) and not os.path.exists(os.path.join(libs[3], "pack_parts")),
          "a finished pack leaves no INCOMPLETE marker and no pack_parts/")

    pr = read_csv(os.path.join(libs[3], "pack_rejects.csv"))
    for idx, (path, good, bad, n_rows) in enumerate(inputs):
        mine = [r for r in records if r["shard"].startswith(f"shard-{idx:05d}-")]
        my_rejects = [r for r in pr if r["file"] == path]
        check(len(mine) + len(my_rejects) == n_rows,
              f"{os.path.basename(path)}: {n_rows} rows written = {len(mine)} in shards + {len(my_rejects)} in pack_rejects.csv")
        check(sorted(int(r["line"]) for r in my_rejects) == bad, f"{os.path.basename(path)}: rejected lines {bad}")
        check([(r["id"], r["smiles"]) for r in mine] == good, f"{os.path.basename(path)}: ids and SMILES in order, as written")
    check([r["file"] for r in pr] == sorted((r["file"] for r in pr), key=files.index), "pack_rejects.csv in input order")
    check(manifest["n_records"] == len(records) and manifest["provenance"]["n_rows_read"] == 800,
          "manifest: records and rows read (800)")
    return libs[3], [r for r in records if " |" in r["smiles"]]


def screen_test(a, work, lib, stereo):
    print("== screen the packed library")
    rd = fresh(os.path.join(work, "screen"))
    model = os.path.join(a.models, "gnn.pt")
    mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", model, "--out", rd, "--chunk-rows", "64",
               "--all-scores", "--progress-interval", "0"], expect=0)
    rj = read_json(os.path.join(rd, "run.json"))
    check(rj["complete"] and rj["records_read"] == rj["records_total"], f"screen complete ({rj['records_read']} records)")
    scored = set()
    for path in glob.glob(os.path.join(rd, "scores", "*.csv")):
        scored |= {(r["shard"], int(r["row"])) for r in read_csv(path)}
    rejected = {(r["shard"], int(r["row"])): r["reason"] for r in read_csv(os.path.join(rd, "rejects.csv"))}
    check(len(stereo) >= 20 and all((r["shard"], r["row"]) in scored for r in stereo),
          f"all {len(stereo)} enhanced-stereo records scored")
    check(not any((r["shard"], r["row"]) in rejected for r in stereo), "no enhanced-stereo record rejected")


def hpcscreen_pids(lib):
    out = subprocess.run(["pgrep", "-f", f"hpcscreen pack .*--out {lib}( |$)"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def kill_resume_test(a, work):
    print("== kill -9 a pack on 2 ranks once one input is finished, resume on 3")
    files, n_good = [], 0
    for k, n in enumerate((30000, 30000, 150000)):  # the last input keeps a rank busy well after the first is done
        path = os.path.join(work, f"big{k}.cxsmiles.bz2")
        write_enamine(path, n, 10 + k, n_bad=3)
        files.append(path)
        n_good += n - 3
    args = ["--shard-size", "1000"]
    whole = os.path.join(work, "big_whole")
    run(pack_cmd(a, files, whole, *args), expect=0)

    lib = os.path.join(work, "big_killed")
    cmd = ["mpirun", "-np", "2", "--oversubscribe", "--bind-to", "none", *pack_cmd(a, files, lib, *args)]
    print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    t0 = time.monotonic()
    # An input's completion record is written (atomically) after its shards are on disk.
    while not glob.glob(os.path.join(lib, "pack_parts", "input-*.json")):
        if proc.poll() is not None or time.monotonic() - t0 > HANG_GUARD_S:
            raise SystemExit(f"the pack ended before a shard was written: {proc.stderr.read()[-2000:]}")
        time.sleep(0.005)
    ranks = hpcscreen_pids(lib)
    os.killpg(proc.pid, signal.SIGSTOP)  # freeze the job while the finished input's shards are listed
    os.killpg(proc.pid, signal.SIGKILL)  # mpirun and its ranks (same session): nothing survives
    for pid in ranks:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=HANG_GUARD_S)
    t0 = time.monotonic()
    while hpcscreen_pids(lib) and time.monotonic() - t0 < HANG_GUARD_S:
        time.sleep(0.05)
    check(not hpcscreen_pids(lib), "no process of the killed pack is left")
    check(not os.path.exists(os.path.join(lib, "manifest.json")), "killed before the manifest existed")
    check(os.path.exists(os.path.join(lib, "INCOMPLETE")), "the folder is marked INCOMPLETE")
    done = [int(os.path.basename(p)[6:11]) for p in glob.glob(os.path.join(lib, "pack_parts", "input-*.json"))]
    kept = {p: os.stat(p).st_mtime_ns for i in done for p in glob.glob(os.path.join(lib, f"shard-{i:05d}-*.h5"))}
    check(done and kept, f"inputs {done} were finished before the kill ({len(kept)} shards)")

    rd = fresh(os.path.join(work, "screen_incomplete"))
    r = mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd])
    check(r.returncode != 0 and "this library's pack did not complete; rerun pack with --resume" in r.stderr,
          f"screen on the incomplete library says to rerun pack with --resume (exit {r.returncode})")
    r = run(pack_cmd(a, files, lib, *args))
    check(r.returncode == 2 and "--resume" in r.stderr, "pack without --resume refuses the folder and names --resume")

    # A pack still running holds pack_parts/lock (flock): a --resume started meanwhile is refused
    # and changes nothing. (Here this test holds the lock, as the running pack's rank 0 would.)
    marker = open(os.path.join(lib, "INCOMPLETE")).read()
    with open(os.path.join(lib, "pack_parts", "lock"), "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        r = run(pack_cmd(a, files, lib, *args, "--resume"))
    check(r.returncode == 1 and "is in use by another pack" in r.stderr
          and open(os.path.join(lib, "INCOMPLETE")).read() == marker
          and all(os.stat(p).st_mtime_ns == t for p, t in kept.items()),
          f"pack --resume while another pack holds the folder: exit {r.returncode} (1 expected), nothing touched "
          f"({r.stderr.strip()[-160:]})")

    r = mpirun(3, pack_cmd(a, files, lib, *args, "--resume"), threads=None, expect=0)
    print(r.stdout)
    check(f"resumed: {len(done)} input(s) finished earlier, {len(kept)} shard(s) kept" in r.stdout,
          "resume says which inputs it kept")
    check(all(os.stat(p).st_mtime_ns == t for p, t in kept.items()), "the finished inputs' shards were kept, not rewritten")
    got, want = library_view(lib), library_view(whole)
    check(got[1] == want[1], f"resumed shard list == uninterrupted ({len(want[1])} shards)")
    check(got[2] == want[2], f"resumed records == uninterrupted ({len(want[2])} records)")
    check(got[3] == want[3], "resumed pack_rejects.csv == uninterrupted")
    check(got[0]["n_records"] == n_good, f"every good row packed ({n_good})")


def failure_test(a, work):
    print("== an input that breaks mid-way on one of 3 ranks: all ranks agree, one report, no manifest")
    files = []
    for k in range(3):
        path = os.path.join(work, f"fail{k}.cxsmiles.bz2")
        write_enamine(path, 30000 if k == 1 else 3000, 20 + k)  # several bzip2 blocks: the first reads fine
        files.append(path)
    with open(files[1], "rb") as f:
        data = f.read()
    with open(files[1], "wb") as f:  # cut short: its start reads fine, its end is missing
        f.write(data[:len(data) * 2 // 3])
    lib = os.path.join(work, "lib_fail")
    r = mpirun(3, pack_cmd(a, files, lib, "--shard-size", "500"), threads=None, timeout=HANG_GUARD_S)
    errors = [line for line in r.stderr.splitlines() if line.startswith("hpcscreen pack: error")]
    check(r.returncode == 1 and len(errors) == 1 and "fail1.cxsmiles.bz2" in errors[0],
          f"exit 1, the error reported once and naming the file (exit {r.returncode}: {errors})")
    check(not os.path.exists(os.path.join(lib, "manifest.json")) and os.path.exists(os.path.join(lib, "INCOMPLETE")),
          "no manifest; the folder stays INCOMPLETE")


def long_smiles_test(a, work):
    print("== a 1 MB SMILES is rejected by screen (too_long), the rest is scored")
    smi = os.path.join(work, "long.smi")
    good = smiles_list(60, 4)
    with open(smi, "w") as f:
        for i, s in enumerate(good[:30]):
            f.write(f"{s} ok{i}\n")
        f.write("C" * 1_000_000 + " huge\n")
        for i, s in enumerate(good[30:], 30):
            f.write(f"{s} ok{i}\n")
    lib = os.path.join(work, "lib_long")
    run(pack_cmd(a, [smi], lib, "--max-line-bytes", "2000000"), expect=0)
    rd = fresh(os.path.join(work, "screen_long"))
    mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd,
               "--chunk-rows", "16", "--progress-interval", "0"], expect=0)
    rj = read_json(os.path.join(rd, "run.json"))
    rejects = read_csv(os.path.join(rd, "rejects.csv"))
    check([(r["id"], r["reason"].split(":")[0]) for r in rejects] == [("huge", "too_long")],
          f"the 1 MB SMILES is the one reject, too_long ({[(r['id'], r['reason'][:60]) for r in rejects]})")
    check(rj["complete"] and rj["records_scored"] == 60, f"the other 60 records scored ({rj['records_scored']})")


def keep_columns_test(a, work):
    print("== --keep-columns: kept in the shards and shown in hits.csv after smiles")
    csv_path = os.path.join(work, "kept.csv")
    rows = [(s, f"k{i}", f"{100 + i}.5", f"{i / 10:.1f}") for i, s in enumerate(smiles_list(40, 7))]
    with open(csv_path, "w") as f:
        f.write("SMILES,ID,MW,slogP,unused\n")
        for s, ident, mw, logp in rows:
            f.write(f"{s},{ident},{mw},{logp},x\n")
    lib = os.path.join(work, "lib_kept")
    run([a.hpcscreen, "pack", "compounds", "--input", csv_path, "--out", lib, "--keep-columns", "MW,slogP"], expect=0)
    rd = fresh(os.path.join(work, "screen_kept"))
    mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd,
               "--top-k", "10", "--chunk-rows", "16"], expect=0)
    with open(os.path.join(rd, "hits.csv")) as f:
        header = f.readline().strip().split(",")
    hits = read_csv(os.path.join(rd, "hits.csv"))
    expect = {ident: (mw, logp) for _, ident, mw, logp in rows}
    check(header[-3:] == ["smiles", "MW", "slogP"], f"hits.csv ends with smiles,MW,slogP ({header})")
    check(len(hits) == 10 and all((h["MW"], h["slogP"]) == expect[h["id"]] for h in hits),
          f"each hit carries its own row's MW and slogP ({len(hits)} hits)")
    # A kept column named like a hit list's own (rank, id, score, shard, row) would make two
    # columns of one name in hits.csv: refused when packing, before the library is written.
    with open(csv_path.replace("kept.csv", "scored.csv"), "w") as f:
        f.write("SMILES,ID,score\nCCO,a,0.5\n")
    out = os.path.join(work, "lib_scored")
    r = run([a.hpcscreen, "pack", "compounds", "--input", csv_path.replace("kept.csv", "scored.csv"), "--out", out,
             "--keep-columns", "score"])
    check(r.returncode == 2 and "a column of the hit lists" in r.stderr
          and not os.path.exists(os.path.join(out, "manifest.json")),
          f"--keep-columns score: exit {r.returncode} (2), refused before writing ({r.stderr.strip()[-120:]})")


def refusal_test(a, work):
    print("== inputs pack refuses before writing anything")
    smi = os.path.join(work, "twice.smi")
    with open(smi, "w") as f:
        f.write("CCO a\nCCN b\n")
    for inputs, kind, words in [([smi, os.path.join(work, ".", "twice.smi")], "compounds", "given twice"),
                                ([smi], "proteins", "is not FASTA")]:
        out = os.path.join(work, "refused")
        r = run([a.hpcscreen, "pack", kind, "--input", *inputs, "--out", out])
        check(r.returncode == 2 and words in r.stderr and not os.path.exists(os.path.join(out, "manifest.json")),
              f"pack {kind} {' '.join(os.path.basename(i) for i in inputs)}: exit 2, '{words}'")

    print("== a pack cut off (kill -9) before its INCOMPLETE marker: the folder holds no pack, the same command packs into it")
    out = os.path.join(work, "cut_before_marker")
    os.makedirs(os.path.join(out, "pack_parts"))
    open(os.path.join(out, "pack_parts", "lock"), "w").close()
    with open(os.path.join(out, "INCOMPLETE.tmp"), "w") as f:
        f.write('{"inp')
    r = run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", out])
    left = [n for n in os.listdir(out) if n not in ("manifest.json", "pack_rejects.csv") and not n.startswith("shard-")]
    check(r.returncode == 0 and read_json(os.path.join(out, "manifest.json"))["n_records"] == 2 and not left,
          f"exit {r.returncode}, a library of 2 records and nothing else ({sorted(os.listdir(out))})")
    out = os.path.join(work, "not_a_leftover")
    os.makedirs(os.path.join(out, "pack_parts"))
    open(os.path.join(out, "pack_parts", "input-00000.json"), "w").close()
    r = run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", out])
    check(r.returncode == 2 and "not empty" in r.stderr, f"a folder with more than a cut-off start's leftovers: exit {r.returncode} (2)")
    out = os.path.join(work, "not_a_leftover_2")
    os.makedirs(os.path.join(out, "INCOMPLETE.tmp"))  # a folder under the temporary's name
    open(os.path.join(out, "INCOMPLETE.tmp", "keep"), "w").close()
    r = run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", out])
    check(r.returncode == 2 and "not empty" in r.stderr and os.path.exists(os.path.join(out, "INCOMPLETE.tmp", "keep")),
          f"a folder named as the marker's temporary is not a leftover: exit {r.returncode} (2), kept")


def empty_test(a, work):
    print("== inputs without a row (an empty file, a header alone, a folder without images): exit 1")
    empty_smi = os.path.join(work, "empty.smi")
    header_csv = os.path.join(work, "header.csv")
    empty_fasta = os.path.join(work, "empty.fasta")
    no_images = os.path.join(work, "no_images")
    os.makedirs(no_images, exist_ok=True)
    for path, text in [(empty_smi, ""), (header_csv, "smiles,id\n"), (empty_fasta, "")]:
        with open(path, "w") as f:
            f.write(text)
    for kind, inputs in [("compounds", [empty_smi]), ("compounds", [header_csv, empty_smi]),
                         ("proteins", [empty_fasta]), ("images", [no_images])]:
        out = fresh(os.path.join(work, "lib_empty"))
        r = run([a.hpcscreen, "pack", kind, "--input", *inputs, "--out", out])
        check(r.returncode == 1 and "nothing was packed" in r.stderr and "no rows" in r.stderr,
              f"pack {kind} {' '.join(os.path.basename(i) for i in inputs)}: exit {r.returncode} (1), "
              f"'nothing was packed' ({r.stderr.strip()[-120:]})")


def main():
    a = e2e_args()
    work = a.work
    lib, stereo = formats_test(a, work)
    screen_test(a, work, lib, stereo)
    kill_resume_test(a, work)
    failure_test(a, work)
    long_smiles_test(a, work)
    refusal_test(a, work)
    keep_columns_test(a, work)
    empty_test(a, work)
    finish()


if __name__ == "__main__":
    main()
