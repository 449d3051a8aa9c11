#!/usr/bin/python3
"""A library with a truncated shard, a shard with flipped bytes inside a compressed chunk, a
shard whose record count disagrees with the manifest, and a manifest entry whose file is
missing: each is named, its rows are counted as failed, the healthy shards are fully scored,
and the run exits 3 unless --allow-failed-shards is given."""
import json
import os

import h5py

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_json, run


def flip_byte_in_chunk(path, dataset):
    with h5py.File(path, "r") as f:
        info = f[dataset].id.get_chunk_info(0)
    with open(path, "r+b") as f:
        f.seek(info.byte_offset + info.size // 2)
        b = f.read(1)
        f.seek(info.byte_offset + info.size // 2)
        f.write(bytes([b[0] ^ 0xFF]))


def main():
    a = e2e_args()
    work = a.work
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", NCI, "--out", lib, "--shard-size", "1000"], expect=0)
    manifest_path = os.path.join(lib, "manifest.json")
    manifest = read_json(manifest_path)
    files = [s["file"] for s in manifest["shards"]]
    rows = {s["file"]: s["n_records"] for s in manifest["shards"]}

    truncated, flipped, miscounted, missing = files[1], files[2], files[3], files[4]
    path = os.path.join(lib, truncated)
    os.truncate(path, os.path.getsize(path) // 3)
    flip_byte_in_chunk(os.path.join(lib, flipped), "smiles/bytes")
    os.remove(os.path.join(lib, missing))
    manifest["shards"][3]["n_records"] += 7  # the shard holds 7 fewer than the manifest says
    del manifest["n_records"]
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    bad = {truncated, flipped, miscounted, missing}
    expected_failed = sum(rows[f] for f in bad) + 7

    for np in (1, 3):
        rd = fresh(os.path.join(work, f"run{np}"))
        r = mpirun(np, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd,
                        "--chunk-rows", "300"])
        check(r.returncode == 3, f"np={np}: exit 3 for failed shards (got {r.returncode})")
        for f in bad:
            check(f in r.stderr, f"np={np}: {f} named in the error output")
        check("Fletcher32" in r.stderr, f"np={np}: the flipped bytes are reported as a checksum failure")
        rj = read_json(os.path.join(rd, "run.json"))
        check(rj["records_failed"] == expected_failed, f"np={np}: {rj['records_failed']} rows failed, expected {expected_failed}")
        check(set(rj["failed_shards"]) == bad, f"np={np}: run.json lists exactly the damaged shards")
        check(rj["records_read"] == rj["records_scored"] + rj["records_rejected"] + rj["records_failed"]
              and rj["records_read"] == rj["records_total"], f"np={np}: read = scored + rejected + failed = manifest")
        healthy = sum(rows[f] for f in files if f not in bad)
        check(rj["records_scored"] + rj["records_rejected"] == healthy, f"np={np}: healthy shards fully processed ({healthy} rows)")

    rd = fresh(os.path.join(work, "allowed"))
    r = mpirun(2, [a.hpcscreen, "screen", "--library", lib, "--model", os.path.join(a.models, "gnn.pt"), "--out", rd,
                   "--allow-failed-shards"])
    check(r.returncode == 0 and read_json(os.path.join(rd, "run.json"))["records_failed"] == expected_failed,
          "--allow-failed-shards: exit 0, failures still counted")
    finish()


if __name__ == "__main__":
    main()
