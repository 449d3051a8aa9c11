#!/usr/bin/python3
"""data_schemas/shard.md says a shard written with h5py alone is accepted: write one exactly as
the page shows and screen it; then one without Fletcher-32, which must be refused."""
import json
import os

import h5py
import numpy as np

from common import e2e_args, check, finish, fresh, mpirun, read_csv, read_json


def packed(strings):
    data = [s.encode("utf-8") for s in strings]
    offsets = np.zeros(len(data) + 1, dtype=np.uint64)
    offsets[1:] = np.cumsum([len(d) for d in data])
    return np.frombuffer(b"".join(data), dtype=np.uint8), offsets


def write_library(lib, fletcher32=True):
    os.makedirs(lib)
    ids, smiles = ["aspirin", "caffeine"], ["CC(=O)Oc1ccccc1C(=O)O", "Cn1cnc2c1c(=O)n(C)c(=O)n2C"]
    with h5py.File(os.path.join(lib, "shard-00000.h5"), "w") as f:
        f.attrs["schema"] = "hpcscreen.compounds/1"
        f.attrs["n_records"] = np.uint64(len(ids))
        for name, values in (("id", ids), ("smiles", smiles)):
            b, o = packed(values)
            f.create_dataset(f"{name}/bytes", data=b, chunks=True, maxshape=(None,), compression="gzip", fletcher32=fletcher32)
            f.create_dataset(f"{name}/offsets", data=o, chunks=True, maxshape=(None,), shuffle=True, compression="gzip",
                             fletcher32=fletcher32)
    json.dump({"schema": "hpcscreen.manifest/1", "kind": "compounds", "shard_schema": "hpcscreen.compounds/1",
               "fields": ["id", "smiles"], "shards": [{"file": "shard-00000.h5", "n_records": len(ids)}]},
              open(os.path.join(lib, "manifest.json"), "w"))


def main():
    a = e2e_args()
    work = a.work
    model = os.path.join(a.models, "gnn.pt")
    write_library(os.path.join(work, "lib"))
    rd = os.path.join(work, "run")
    mpirun(1, [a.hpcscreen, "screen", "--library", os.path.join(work, "lib"), "--model", model, "--out", rd], expect=0)
    check(sorted(h["id"] for h in read_csv(os.path.join(rd, "hits.csv"))) == ["aspirin", "caffeine"], "h5py-written shard screened")
    write_library(os.path.join(work, "lib_nochecksum"), fletcher32=False)
    rd = os.path.join(work, "run2")
    r = mpirun(1, [a.hpcscreen, "screen", "--library", os.path.join(work, "lib_nochecksum"), "--model", model, "--out", rd])
    check(r.returncode == 3 and "Fletcher-32" in r.stderr and read_json(os.path.join(rd, "run.json"))["records_failed"] == 2,
          "a shard without Fletcher-32 is refused and its rows counted as failed")
    finish()


if __name__ == "__main__":
    main()
