#!/usr/bin/python3
"""A file system that fills while hpcscreen writes (a scratch quota, a full node-local disk):
pack, featurize, annotate and export stop with exit 1 and the system's reason ("No space left
on device"), never a crash, and what they leave resumes, once there is room, to the files an
untroubled run writes, byte for byte. Each case writes into a tmpfs mounted small for it (root
only: elsewhere the cases say they were not checked)."""
import glob
import os
import random
import shutil
import subprocess

from common import NCI, check, e2e_args, finish, fresh, mpirun, run

FULL = "No space left on device"


def tree_size(path):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(path) for f in fs)


def files_of(root, pattern):
    """{path below root: bytes} of the files matching pattern."""
    out = {}
    for p in sorted(glob.glob(os.path.join(root, pattern), recursive=True)):
        with open(p, "rb") as f:
            out[os.path.relpath(p, root)] = f.read()
    return out


class small_disk:
    """A tmpfs of `size` bytes at path, grown with grow(), unmounted on exit."""

    def __init__(self, path, size):
        self.path, self.size = path, size

    def __enter__(self):
        fresh(self.path)
        os.makedirs(self.path)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", self.path], check=True)
        return self

    def grow(self, size):
        subprocess.run(["mount", "-o", f"remount,size={size}", self.path], check=True)

    def __exit__(self, *exc):
        subprocess.run(["umount", self.path])


def failed_cleanly(r, what):
    return check(r.returncode == 1 and FULL in r.stderr and "Segmentation" not in r.stderr
                 and len(r.stderr) < 4000,
                 f"{what}: exit {r.returncode} (1), says '{FULL}' in a short message "
                 f"({r.stderr.strip()[-200:]!r})")


def pack_case(a, work, ranks):
    print(f"== pack compounds onto a disk that fills, {ranks} rank(s); --resume once there is room")
    ref = fresh(os.path.join(work, "lib_ref"))
    pack = [a.hpcscreen, "pack", "compounds", "--input", NCI, "--shard-size", "500"]
    run(pack + ["--out", ref], expect=0)
    size = tree_size(ref)
    with small_disk(os.path.join(work, "disk_pack"), size // 2) as d:
        lib = os.path.join(d.path, "lib")
        r = mpirun(ranks, pack + ["--out", lib], threads=None)
        failed_cleanly(r, f"pack on {ranks} rank(s)")
        d.grow(size * 2)
        mpirun(ranks, pack + ["--out", lib, "--resume"], threads=None, expect=0)
        check(files_of(lib, "*.h5") == files_of(ref, "*.h5") and files_of(ref, "*.h5"),
              "the resumed pack's shards are the untroubled pack's, byte for byte")
    return ref


def featurize_case(a, work, ref_lib):
    print("== featurize into a library on a disk that fills; --resume once there is room")
    model = os.path.join(a.models, "gnn.pt")
    ref = fresh(os.path.join(work, "lib_cached"))
    shutil.copytree(ref_lib, ref)
    run([a.hpcscreen, "featurize", "--library", ref, "--model", model, "--threads", "1"], expect=0)
    lib_size, cache_size = tree_size(ref_lib), tree_size(os.path.join(ref, "features"))
    with small_disk(os.path.join(work, "disk_feat"), lib_size + cache_size // 2) as d:
        lib = os.path.join(d.path, "lib")
        shutil.copytree(ref_lib, lib)
        r = mpirun(2, [a.hpcscreen, "featurize", "--library", lib, "--model", model])
        failed_cleanly(r, "featurize on 2 ranks")
        d.grow((lib_size + cache_size) * 2)
        mpirun(2, [a.hpcscreen, "featurize", "--library", lib, "--model", model, "--resume"], expect=0)
        want = files_of(ref, "features/**/*.h5")
        check(want and files_of(lib, "features/**/*.h5") == want,
              f"the resumed cache's {len(want)} shards are the untroubled build's, byte for byte")


def annotate_case(a, work):
    print("== annotate (embeddings) onto a disk that fills; --resume once there is room; export to a full disk")
    rng = random.Random(5)
    fasta = os.path.join(work, "p.fa")
    with open(fasta, "w") as f:
        for i in range(300):
            f.write(f">p{i}\n" + "".join(rng.choice("ACDEFGHIKLMNPQRSTVWY") for _ in range(rng.randint(20, 40))) + "\n")
    lib = fresh(os.path.join(work, "plib"))
    run([a.hpcscreen, "pack", "proteins", "--input", fasta, "--out", lib], expect=0)
    annotate = [a.hpcscreen, "annotate", "--library", lib, "--model", os.path.join(a.models, "bert_encoder.pt"),
                "--embeddings", "both", "--chunk-rows", "100", "--long-sequences", "truncate",
                "--progress-interval", "0"]
    ref = fresh(os.path.join(work, "ann_ref"))
    mpirun(1, annotate + ["--out", ref], expect=0)
    size = tree_size(ref)
    with small_disk(os.path.join(work, "disk_ann"), size // 2) as d:
        out = os.path.join(d.path, "ann")
        r = mpirun(2, annotate + ["--out", out])
        failed_cleanly(r, "annotate on 2 ranks")
        d.grow(size * 3)
        mpirun(2, annotate + ["--out", out, "--resume"], expect=0)
        want = files_of(ref, "annotations/*.h5")
        check(want and files_of(out, "annotations/*.h5") == want,
              f"the resumed run's {len(want)} annotation files are the untroubled run's, byte for byte")
    export = [a.hpcscreen, "export", "embeddings", ref, "--level", "per-residue"]
    whole = os.path.join(work, "e.h5")
    if os.path.exists(whole):
        os.remove(whole)
    run(export + ["--out", whole], expect=0)
    with small_disk(os.path.join(work, "disk_export"), os.path.getsize(whole) // 2) as d:
        r = run(export + ["--out", os.path.join(d.path, "e.h5")])
        failed_cleanly(r, "export")
        check(os.listdir(d.path) == [], f"export leaves nothing behind ({os.listdir(d.path)})")


def main():
    a = e2e_args()
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    if os.geteuid() != 0:
        print("  (not root: this machine cannot mount a small file system here: not checked)")
        finish()
    lib = pack_case(a, work, 1)
    pack_case(a, work, 2)
    featurize_case(a, work, lib)
    annotate_case(a, work)
    finish()


if __name__ == "__main__":
    main()
