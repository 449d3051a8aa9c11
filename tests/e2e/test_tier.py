#!/usr/bin/python3
"""The memory tier end to end, on the dense GNN (its adjacency grows with the square of the
batch): a batch whose adjacency alone is several hundred MB runs with a DRAM budget of 32 MB and
a spill folder under the build tree, with the same scores as small batches without the tier;
a spill tier too small for the batch makes hpcscreen retry in halves; bad configurations are
refused at start."""
import os
import subprocess

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, run

BIG = ["--batch-molecules", "1000", "--batch-atoms", "12000"]


def main():
    a = e2e_args()
    work = a.work
    model = os.path.join(a.models, "gnn_dense.pt")
    smi = os.path.join(work, "in.smi")
    with open(NCI) as f, open(smi, "w") as o:
        o.writelines(f.readlines()[:2000])
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib], expect=0)
    pmem = os.path.join(work, "pmem")
    os.makedirs(pmem)
    screen = [a.hpcscreen, "screen", "--library", lib, "--model", model, "--top-k", "50"]

    small = os.path.join(work, "small")
    mpirun(1, screen + ["--out", small, "--batch-molecules", "32"], threads=2, expect=0)
    tier = os.path.join(work, "tier")
    r = mpirun(1, screen + ["--out", tier, *BIG, "--dram-budget", "32M", "--pmem-dir", pmem], threads=2, expect=0)
    rj = read_json(os.path.join(tier, "run.json"))
    t = rj["screen"]["memory_tier"]
    check(t["spill_total_bytes"] > 0 and t["spill_peak_bytes_max"] > 300e6,
          f"batches of ~1000 molecules spill: peak {t['spill_peak_bytes_max'] / 1e6:.0f} MB in the tier, {t['dram_peak_bytes_max'] / 1e6:.0f} MB DRAM")
    check(t["dram_peak_bytes_max"] <= 32 * 2**20 and t["dram_budget_bytes_per_rank"] == 32 * 2**20, "DRAM stays within the 32 MiB budget")
    check("spilling to pmem-dir" in r.stderr, "the progress output says when spilling starts")
    a_hits, b_hits = read_csv(os.path.join(small, "hits.csv")), read_csv(os.path.join(tier, "hits.csv"))
    check(all(abs(float(x["score"]) - float(y["score"])) < 1e-5 for x, y in zip(a_hits, b_hits)) and len(a_hits) == len(b_hits) == 50,
          "scores equal those of 32-molecule batches without the tier (1e-5)")
    same_keys = sum((x["shard"], x["row"]) == (y["shard"], y["row"]) for x, y in zip(a_hits, b_hits))
    check(len(a_hits) == len(b_hits) == 50 and same_keys >= 48, f"the same hit list ({same_keys}/50 positions; the rest are ties within 1e-5)")

    notier = os.path.join(work, "notier")
    mpirun(1, screen + ["--out", notier, *BIG], threads=2, expect=0)
    check(open(os.path.join(notier, "hits.csv")).read() == open(os.path.join(tier, "hits.csv")).read(),
          "the same batches with and without the tier: hits.csv byte-identical")
    check(read_json(os.path.join(notier, "run.json"))["screen"]["memory_tier"] == {"installed": False}, "no tier unless asked for")

    print("== a spill tier too small for the batch: retried in halves")
    backoff = os.path.join(work, "backoff")
    r = mpirun(1, screen + ["--out", backoff, *BIG, "--dram-budget", "32M", "--pmem-dir", pmem, "--pmem-max", "64M"], threads=2, expect=0)
    rj = read_json(os.path.join(backoff, "run.json"))
    check(rj["screen"]["batch_backoffs"] > 0 and rj["screen"]["memory_tier"]["failed_allocations"] > 0 and rj["records_rejected"] == read_json(os.path.join(small, "run.json"))["records_rejected"],
          f"{rj['screen']['batch_backoffs']} back-offs reported, nothing rejected for memory")
    check("retrying in halves" in r.stderr, "the back-off is reported")
    c_hits = read_csv(os.path.join(backoff, "hits.csv"))
    check(len(a_hits) == len(c_hits) == 50 and all(abs(float(x["score"]) - float(y["score"])) < 1e-5 for x, y in zip(a_hits, c_hits)),
          f"scores after the back-off are unchanged ({len(c_hits)} of 50 hits compared)")

    print("== bad configurations")
    # Command-line errors exit 2 (README); 1 is for what the options cannot show, like the machine lacking DAX KMEM.
    for args, code, words in [(["--dram-budget", "32M", "--pmem-dir", os.path.join(work, "missing")], 2, "is not an existing folder"),
                              (["--dram-budget", "32M", "--pmem-kmem"], 1, "MEMKIND_DAX_KMEM is not available"),
                              (["--dram-budget", "lots", "--pmem-dir", pmem], 2, "--dram-budget"),
                              (["--pmem-dir", pmem], 2, "need --dram-budget"),
                              (["--dram-budget", "32M"], 2, "exactly one spill tier")]:
        rd = fresh(os.path.join(work, "bad"))
        r = mpirun(2, screen + ["--out", rd, *args])
        check(r.returncode == code and words in r.stderr and not os.path.exists(os.path.join(rd, "parts")),
              f"{' '.join(args)}: exit {r.returncode}, '{words}'")

    print("== a --pmem-dir the job cannot write to: the node's file system, exit 1, said plainly")
    ro = os.path.join(work, "pmem_ro")
    os.makedirs(ro)
    mounted = False
    if os.geteuid() != 0:
        os.chmod(ro, 0o555)
    else:  # root writes through permission bits: a read-only bind mount instead
        mounted = (subprocess.run(["mount", "--bind", ro, ro]).returncode == 0 and
                   subprocess.run(["mount", "-o", "remount,ro,bind", ro]).returncode == 0)
    try:
        if os.geteuid() != 0 or mounted:
            rd = fresh(os.path.join(work, "bad"))
            r = mpirun(1, screen + ["--out", rd, "--dram-budget", "32M", "--pmem-dir", ro])
            check(r.returncode == 1 and "is not writable" in r.stderr, f"read-only --pmem-dir: exit {r.returncode} (1 expected)")
        else:
            print("  (this machine cannot make a read-only folder for root: not checked)")
    finally:
        if mounted:
            subprocess.run(["umount", ro])
    finish()


if __name__ == "__main__":
    main()
