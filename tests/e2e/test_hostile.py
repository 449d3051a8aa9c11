#!/usr/bin/python3
"""What the third hostile pass found (issue 23), each case as a user would meet it with the real
binary: values from the scheduler's environment and sizes that overflow, hit lists that would
overwrite each other, models that break their contract only on real batches or name a column
twice, a resume with another precision, an export over an existing file, an id holding a NUL
byte in the report, the report of a two-model reduced-precision screen, pack stopped by a
signal and an input that changes while it is packed. Expected outcomes are the documented exit
statuses and messages, never values computed by hpcscreen."""
import os
import shutil
import signal
import subprocess
import sys
import time

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, run

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import torch  # noqa: E402

from hpcscreen_py import gnn  # noqa: E402


class NanScores(torch.nn.Module):
    """Finite for the probe's two molecules, NaN in its second task for every molecule of more
    than 2 atoms."""

    def forward(self, x, edge_index, edge_attr, batch, num_graphs: int):
        atoms = torch.zeros(num_graphs).index_add_(0, batch, torch.ones(batch.shape[0]))
        second = torch.where(atoms > 3, torch.full_like(atoms, float("nan")), atoms)
        return torch.stack([atoms, second], dim=1)


class BadOnBigBatches(torch.nn.Module):
    """Right shape on the load-time probe (2 molecules), one row short on any larger batch."""

    def forward(self, x, edge_index, edge_attr, batch, num_graphs: int):
        n = num_graphs if num_graphs <= 2 else num_graphs - 1
        return torch.zeros(n, 2)


def screen(a, lib, rd, *extra, **kw):
    return run(["mpirun", "-np", "1", "--bind-to", "none", a.hpcscreen, "screen", "--library", lib,
                "--out", rd, "--threads", "1", *extra], **kw)


def main():
    a = e2e_args()
    work = a.work
    gnn_model = os.path.join(a.models, "gnn.pt")
    smi = os.path.join(work, "small.smi")
    with open(NCI) as f:
        lines = f.read().splitlines()[:300]
    with open(smi, "w") as f:
        f.write("\n".join(lines) + "\n")
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib], expect=0)

    print("== thread counts from the scheduler's environment must be whole positive numbers")
    for var, job in (("SLURM_CPUS_PER_TASK", "SLURM_JOB_ID"), ("NCPUS", "PBS_JOBID")):
        for value in ("abc", "0", "-4", "1e3", "2x"):
            env = dict(os.environ, **{job: "77", var: value})
            env.pop("OMP_NUM_THREADS", None)
            rd = fresh(os.path.join(work, "env"))
            r = run([a.hpcscreen, "screen", "--library", lib, "--model", gnn_model, "--out", rd], env=env)
            check(r.returncode == 2 and var in r.stderr and not os.path.exists(rd),
                  f"{var}={value}: exit {r.returncode} (2 expected), names the variable, no run folder")
    print("== a job id that is not UTF-8 is kept as text (it is only shown)")
    env = dict(os.environ, SLURM_JOB_ID="77\udcff", SLURM_CPUS_PER_TASK="1")
    rd = fresh(os.path.join(work, "env"))
    r = run([a.hpcscreen, "screen", "--library", lib, "--model", gnn_model, "--out", rd], env=env)
    job = read_json(os.path.join(rd, "run.json"))["scheduler"]["job_id"] if r.returncode == 0 else None
    check(r.returncode == 0 and job == "77\\xff", f"SLURM_JOB_ID=77<0xff>: exit {r.returncode}, job_id {job!r}")
    env = dict(os.environ, OMP_NUM_THREADS="1e3")
    r = run([a.hpcscreen, "screen", "--library", lib, "--model", gnn_model, "--out", fresh(os.path.join(work, "env"))], env=env)
    check(r.returncode == 2 and "OMP_NUM_THREADS" in r.stderr, f"OMP_NUM_THREADS=1e3: exit {r.returncode} (2 expected)")

    print("== a thread count from the environment above 1024 is refused by every command that uses it")
    env = dict(os.environ, OMP_NUM_THREADS="5000")
    r = run([a.hpcscreen, "screen", "--library", lib, "--model", gnn_model, "--out", fresh(os.path.join(work, "env"))], env=env)
    check(r.returncode == 2 and "5000 threads per rank from the environment" in r.stderr,
          f"screen, OMP_NUM_THREADS=5000: exit {r.returncode} (2 expected), names where it came from")
    flib = fresh(os.path.join(work, "flib"))
    shutil.copytree(lib, flib)
    r = run([a.hpcscreen, "featurize", "--library", flib, "--model", gnn_model], env=env)
    check(r.returncode == 2 and "between 1 and 1024" in r.stderr and not os.path.exists(os.path.join(flib, "features")),
          f"featurize, OMP_NUM_THREADS=5000: exit {r.returncode} (2 expected), no cache started")
    print("== more threads than the CPUs a rank may use: a warning (they spin against each other)")
    cpus = len(os.sched_getaffinity(0))
    r = run(["mpirun", "-np", "1", "--bind-to", "none", a.hpcscreen, "screen", "--library", lib, "--out",
             fresh(os.path.join(work, "many")), "--model", gnn_model, "--threads", str(cpus + 2), "--max-chunks", "1"])
    check(f"{cpus + 2} threads per rank, and this rank may use {cpus} CPU(s)" in r.stderr,
          f"--threads {cpus + 2} on {cpus} CPUs is warned about (exit {r.returncode})")
    r = screen(a, lib, fresh(os.path.join(work, "few")), "--model", gnn_model, "--max-chunks", "1")
    check("threads per rank, and this rank may use" not in r.stderr, "--threads 1: no warning")
    print("== featurize takes its threads from the environment when --threads is not given, as screen does")
    r = run([a.hpcscreen, "featurize", "--library", flib, "--model", gnn_model], env=dict(os.environ, OMP_NUM_THREADS="2"))
    check(r.returncode == 0 and "1 rank(s) x 2 threads" in r.stdout, f"featurize, OMP_NUM_THREADS=2: exit {r.returncode}, 2 threads")

    print("== sizes beyond 64 bits are refused, never wrapped to 0")
    rd = fresh(os.path.join(work, "size"))
    r = screen(a, lib, rd, "--model", gnn_model, "--dram-budget", "18446744073709551616", "--pmem-dir", work)
    check(r.returncode == 2 and "64 bits" in r.stderr and not os.path.exists(rd),
          f"--dram-budget 2^64: exit {r.returncode} (2 expected), says why")
    r = run([a.hpcscreen, "export", "embeddings", rd, "--out", os.path.join(work, "x.h5"), "--max-bytes", "99999999999999999999G"])
    check(r.returncode == 2 and "--max-bytes" in r.stderr, f"export --max-bytes 1e20G: exit {r.returncode} (2 expected)")

    print("== two rankings that would write the same hit list")
    torch.manual_seed(1)
    net = gnn.GNNSparse(8, 1, 2)
    ab, a_ = os.path.join(work, "ab.pt"), os.path.join(work, "a.pt")
    gnn.save(net, ab, gnn.metadata(["c", "d"], name="a-b"))
    gnn.save(net, a_, gnn.metadata(["b-c", "e"], name="a"))
    rd = fresh(os.path.join(work, "collide"))
    r = screen(a, lib, rd, "--model", ab, "--model", a_, "--rank-by", "a-b:d", "--rank-by", "a-b:c", "--rank-by", "a:b-c")
    check(r.returncode == 2 and "hits-a-b-c.csv" in r.stderr and not os.path.exists(rd),
          f"a-b:c and a:b-c both map to hits-a-b-c.csv: exit {r.returncode} (2 expected), no run folder")
    r = screen(a, lib, rd, "--model", ab, "--rank-by", "a-b:c", "--rank-by", "a-b:c")
    check(r.returncode == 2 and "twice" in r.stderr, f"the same --rank-by twice: exit {r.returncode} (2 expected)")
    r = screen(a, lib, rd, "--model", ab, "--model", a_, "--rank-by", "a-b:c", "--rank-by", "a:e", expect=0)
    check(os.path.exists(os.path.join(rd, "hits-a-e.csv")), "distinct rankings still write their lists")
    last = [l for l in r.stderr.splitlines() if l.startswith("[hpcscreen]")][-1:]
    check(last and "ranks finished 1/1" in last[0], f"the last progress line counts the finished rank: {last}")

    print("== a model declaring one task name twice is refused at load")
    dup = os.path.join(work, "dup.pt")
    gnn.save(net, dup, gnn.metadata(["x", "x"], name="dup"))
    rd = fresh(os.path.join(work, "dup"))
    r = screen(a, lib, rd, "--model", dup)
    check(r.returncode == 1 and "'x' twice" in r.stderr, f"tasks [x, x]: exit {r.returncode} (1 expected), names it")

    print("== a model that breaks its output contract on real batches stops the run")
    bad = os.path.join(work, "bad_big.pt")
    gnn.save(BadOnBigBatches(), bad, gnn.metadata(["p", "q"], name="bad"))
    rd = fresh(os.path.join(work, "bad_big"))
    r = screen(a, lib, rd, "--model", bad)
    check(r.returncode == 1 and "expected float32" in r.stderr and "returned [" in r.stderr,
          f"wrong shape on a real batch: exit {r.returncode} (1 expected), says what was expected and found")
    check("retrying" not in r.stderr and "model_error" not in r.stderr, "no batch splitting, no per-record model_error")

    print("== a NaN score is a reject that names the model and task")
    nan_model = os.path.join(work, "nan.pt")
    gnn.save(NanScores(), nan_model, gnn.metadata(["size", "oops"], name="nanny"))
    rd = fresh(os.path.join(work, "nan"))
    screen(a, lib, rd, "--model", gnn_model, "--model", nan_model, expect=0)
    rows = read_csv(os.path.join(rd, "rejects.csv"))
    nan_rows = [x for x in rows if x["reason"].startswith("non_finite_score")]
    check(nan_rows and all("model 'nanny' returned nan for oops" in x["reason"] for x in nan_rows),
          f"{len(nan_rows)} non-finite rejects, each naming model and task: {nan_rows[:1]}")

    print("== --resume keeps the precision the run started with")
    rd = fresh(os.path.join(work, "prec"))
    r = screen(a, lib, rd, "--model", gnn_model, "--precision", "bf16", "--chunk-rows", "50", "--max-chunks", "1")
    if check(r.returncode == 75, f"bf16 run stopped after a chunk: exit {r.returncode}"):
        for other, says in (([], 'the run started with precision "bf16" and this command runs with precision at its default'),
                            (["--precision", "fp32"], "runs with precision at its default"),
                            (["--precision", "int8"], 'precision was "bf16" when the run started and is "int8" now')):
            r = screen(a, lib, rd, "--model", gnn_model, "--chunk-rows", "50", "--resume", *other)
            check(r.returncode == 1 and says in r.stderr,
                  f"resume of a bf16 run with {other or 'no --precision'}: exit {r.returncode} (1 expected), says {says!r}")
        screen(a, lib, rd, "--model", gnn_model, "--precision", "bf16", "--chunk-rows", "50", "--resume", expect=0)
    rd = fresh(os.path.join(work, "prec32"))
    screen(a, lib, rd, "--model", gnn_model, "--chunk-rows", "50", "--max-chunks", "1", expect=75)
    r = screen(a, lib, rd, "--model", gnn_model, "--chunk-rows", "50", "--resume", "--precision", "bf16")
    says = 'the run started with precision at its default and this command sets it to "bf16"'
    check(r.returncode == 1 and says in r.stderr, f"resume of an fp32 run with bf16: exit {r.returncode} (1 expected), says {says!r}")

    print("== --precision int8 on a model with no linear layer: refused, never reported as int8")
    env = dict(os.environ, HPCSCREEN_FAKE_CPU_FEATURES="avx512f,avx512_vnni")
    rd = fresh(os.path.join(work, "int8_nothing"))
    r = screen(a, lib, rd, "--model", nan_model, "--precision", "int8", env=env)
    check(r.returncode == 1 and "no linear layer" in r.stderr, f"int8 with nothing to quantize: exit {r.returncode} (1 expected)")

    print("== the report of a two-model bf16 screen shows what ran; a NUL byte in an id is escaped")
    rd = fresh(os.path.join(work, "two"))
    screen(a, lib, rd, "--model", gnn_model, "--model", ab, "--precision", "bf16", expect=0)
    html = open(os.path.join(rd, "report.html"), encoding="utf-8", errors="replace").read()
    cfg = read_json(os.path.join(rd, "run_config.json"))
    check("test-gnn" in html and "a-b" in html and ab in html and gnn_model in html,
          "report.html names both models and their files")
    check(all(c in html for c in cfg["identity"]["model_checksums"]), "report.html shows each model's checksum")
    check("bf16" in html, "report.html shows the precision")
    check(">null<" not in html, "no version shown as null")
    hits_path = os.path.join(rd, "hits.csv")
    data = open(hits_path, "rb").read().split(b"\n")
    first = data[1].split(b",")
    first[1] = b"evil\x00id<script>"
    data[1] = b",".join(first)
    second = data[2].split(b",")  # a Latin-1 id, and one in UTF-8
    second[1] = b"caf\xe9-\xc3\xa9t\xc3"
    data[2] = b",".join(second)
    open(hits_path, "wb").write(b"\n".join(data))
    os.remove(os.path.join(rd, "report.html"))
    r = run([a.hpcscreen, "report", rd])
    html = open(os.path.join(rd, "report.html"), "rb").read()
    check(r.returncode == 0 and b"\x00" not in html and b"evil\\x00id&lt;script&gt;" in html,
          f"an id holding NUL: report exit {r.returncode} (0 expected), written with the byte escaped")
    try:
        html.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    check(valid and b"caf\\xe9-\xc3\xa9t\\xc3" in html,
          "a Latin-1 byte in an id is shown as \\xe9, UTF-8 kept: report.html is valid UTF-8")

    print("== under an address-space limit (ulimit -v 1 GB): a clear error, not a hang")
    import resource

    def limit_address_space():
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    rd = fresh(os.path.join(work, "ulimit"))
    t0 = time.monotonic()
    r = subprocess.run([a.hpcscreen, "screen", "--library", lib, "--model", gnn_model, "--out", rd, "--threads", "2"],
                       capture_output=True, text=True, timeout=120, preexec_fn=limit_address_space)
    check(r.returncode == 1 and "ulimit -v" in r.stderr and time.monotonic() - t0 < 60,
          f"ulimit -v 1 GB: exit {r.returncode} (1 expected) in {time.monotonic() - t0:.0f} s, says what to change")

    print("== a shard replaced by a FIFO (a hung file system) is a failed shard, not a hang")
    flib = fresh(os.path.join(work, "fifo_lib"))
    shutil.copytree(lib, flib)
    shard = read_json(os.path.join(flib, "manifest.json"))["shards"][0]["file"]
    os.remove(os.path.join(flib, shard))
    os.mkfifo(os.path.join(flib, shard))
    rd = fresh(os.path.join(work, "fifo"))
    r = screen(a, flib, rd, "--model", gnn_model, timeout=120)
    check(r.returncode == 3 and "not a regular file" in r.stderr,
          f"FIFO shard: exit {r.returncode} (3 expected), named as not a regular file")

    print("== export never replaces an existing file")
    fasta = os.path.join(work, "p.fa")
    with open(fasta, "w") as f:
        for i in range(6):
            f.write(f">p{i}\n{'MKTAYIAKQR'[: 4 + i]}GGSLV\n")
    plib = os.path.join(work, "plib")
    run([a.hpcscreen, "pack", "proteins", "--input", fasta, "--out", plib], expect=0)
    erd = fresh(os.path.join(work, "emb"))
    mpirun(1, [a.hpcscreen, "annotate", "--library", plib, "--model", os.path.join(a.models, "bert_encoder.pt"),
               "--out", erd, "--embeddings", "per-sequence"], expect=0)
    target = os.path.join(work, "existing.h5")
    with open(target, "w") as f:
        f.write("precious, not HDF5\n")
    r = run([a.hpcscreen, "export", "embeddings", erd, "--out", target])
    check(r.returncode == 1 and "exists" in r.stderr and open(target).read() == "precious, not HDF5\n",
          f"export over an existing file: exit {r.returncode} (1 expected), file untouched")
    run([a.hpcscreen, "export", "embeddings", erd, "--out", os.path.join(work, "new.h5")], expect=0)

    print("== annotate: outputs bit-identical for any thread and rank count")
    import random
    import h5py
    import numpy as np
    rng = random.Random(7)
    fasta = os.path.join(work, "det.fa")
    with open(fasta, "w") as f:
        for i in range(90):
            f.write(f">d{i}\n{''.join(rng.choice('ACDEFGHIKLMNPQRSTVWY') for _ in range(rng.randint(10, 150)))}\n")
    dlib = os.path.join(work, "dlib")
    run([a.hpcscreen, "pack", "proteins", "--input", fasta, "--out", dlib], expect=0)

    def datasets(rd):
        out = {}
        for name in sorted(os.listdir(os.path.join(rd, "annotations"))):
            with h5py.File(os.path.join(rd, "annotations", name), "r") as f:
                f.visititems(lambda n, o: out.__setitem__((name, n), np.asarray(o[()]).tobytes())
                             if isinstance(o, h5py.Dataset) else None)
        return out

    for model, extra in (("bert_residue.pt", []), ("bert_sequence.pt", []),
                         ("bert_encoder.pt", ["--embeddings", "both"])):
        results = {}
        for np_, threads in ((1, 1), (1, 2), (2, 1), (3, 1)):
            rd = fresh(os.path.join(work, f"det_{model}_{np_}x{threads}"))
            mpirun(np_, [a.hpcscreen, "annotate", "--library", dlib, "--model", os.path.join(a.models, model),
                         "--out", rd, "--long-sequences", "window", "--chunk-rows", "20", *extra],
                   threads=threads, expect=0)
            results[(np_, threads)] = datasets(rd)
        base = results[(1, 1)]
        for key, got in results.items():
            check(got == base, f"{model} {' '.join(extra)}: {key[0]} rank(s) x {key[1]} thread(s) bit-identical to 1 x 1 "
                               f"({sum(got.get(k) != v for k, v in base.items())} of {len(base)} datasets differ)")

    print("== pack stopped by a signal exits 75 and resumes")
    big = os.path.join(work, "big.smi")
    with open(NCI) as f:
        nci = f.read()
    with open(big, "w") as f:
        for _ in range(60):
            f.write(nci)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        plib2 = fresh(os.path.join(work, f"packstop_{sig.name}"))
        cmd = [a.hpcscreen, "pack", "compounds", "--input", big, "--out", plib2, "--shard-size", "5000"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        t0 = time.monotonic()
        while not any(n.endswith(".h5") for n in (os.listdir(plib2) if os.path.isdir(plib2) else [])):
            if p.poll() is not None or time.monotonic() - t0 > 300:
                break
            time.sleep(0.01)
        # Stopped while mid-way (no manifest yet), the signal is made pending, then let through.
        os.kill(p.pid, signal.SIGSTOP)
        time.sleep(0.2)
        finished_first = p.poll() is not None or os.path.exists(os.path.join(plib2, "manifest.json"))
        p.send_signal(sig)
        os.kill(p.pid, signal.SIGCONT)
        out, err = p.communicate(timeout=300)
        if finished_first:
            check(False, f"pack of 300,000 rows ended before the {sig.name} could be sent: the test proves nothing")
            continue
        check(p.returncode == 75 and "--resume" in err, f"pack + {sig.name}: exit {p.returncode} (75 expected), says --resume")
        run(cmd + ["--resume"], expect=0)
        m = read_json(os.path.join(plib2, "manifest.json"))
        check(sum(s["n_records"] for s in m["shards"]) == 60 * len(nci.splitlines()),
              f"pack + {sig.name} + resume: every row packed")
    finish()


if __name__ == "__main__":
    main()
