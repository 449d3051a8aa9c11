"""Helpers for the end-to-end tests: run the real hpcscreen binary under mpirun and read its
outputs. Expected values come from Python (RDKit + PyTorch + h5py), never from hpcscreen."""
import csv
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))

NCI = "/usr/share/RDKit/Data/NCI/first_5K.smi"
FAILURES = []


def check(cond, what):
    if cond:
        print(f"  ok: {what}")
    else:
        print(f"  FAIL: {what}")
        FAILURES.append(what)
    return cond


def finish():
    n_fail = len(FAILURES)
    print(f"{n_fail and 'FAILED' or 'passed'}: {n_fail} check(s) failed")
    sys.exit(1 if n_fail else 0)


def run(cmd, expect=None, timeout=600, **kw):
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if expect is not None and p.returncode != expect:
        print(p.stdout[-3000:])
        print(p.stderr[-3000:])
        raise SystemExit(f"expected exit {expect}, got {p.returncode}: {' '.join(cmd)}")
    return p


def mpirun(np, args, threads=1, **kw):
    """args under mpirun with np ranks; `--threads threads` is appended unless threads is None
    (for tests that pass their own --threads)."""
    extra = [] if threads is None else ["--threads", str(threads)]
    return run(["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none",
                "-x", "OPENBLAS_NUM_THREADS=1", args[0], *args[1:], *extra], **kw)


def fresh(path):
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return path


def e2e_args(*extra):
    """The arguments every end-to-end test takes; `extra` are (name, kwargs) pairs."""
    import argparse
    p = argparse.ArgumentParser()
    for name, kw in extra:
        p.add_argument(name, **kw)
    p.add_argument("--hpcscreen", required=True)
    p.add_argument("--models", required=True)
    p.add_argument("--work", required=True)
    a = p.parse_args()
    fresh(a.work)
    os.makedirs(a.work)
    return a


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_json(path):
    with open(path) as f:
        return json.load(f)


def read_library(lib):
    """Every record of a library, read with h5py alone from the documented schema."""
    import h5py
    manifest = read_json(os.path.join(lib, "manifest.json"))
    records = []
    for si, shard in enumerate(manifest["shards"]):
        with h5py.File(os.path.join(lib, shard["file"]), "r") as f:
            fields = {}
            for name in manifest["fields"]:
                data = f[name]["bytes"][()].tobytes()
                off = f[name]["offsets"][()]
                fields[name] = [data[off[i]:off[i + 1]].decode("utf-8", "surrogateescape")
                                for i in range(len(off) - 1)]
            for row in range(shard["n_records"]):
                records.append(dict(shard_index=si, shard=shard["file"], row=row,
                                    **{k: v[row] for k, v in fields.items()}))
    return manifest, records
