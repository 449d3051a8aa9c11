#!/usr/bin/python3
"""Runs that are cut off: --max-chunks, SIGKILL of the whole mpirun or of one rank, SIGUSR1
through mpirun and SIGTERM to every rank (as srun delivers it). Each is resumed, possibly with
another rank count, and must end with exactly the outputs of an uninterrupted run: the same
hits.csv and rejects.csv, and every scored record once in scores/."""
import glob
import os
import signal
import subprocess
import time

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, run

CHUNK_ROWS = 500


def screen_args(a, lib, rd, *extra):
    return [a.hpcscreen, "screen", "--library", lib, "--model", a.model, "--out", rd, "--top-k", "50",
            "--chunk-rows", str(CHUNK_ROWS), "--all-scores", "--progress-interval", "0.5", *extra]


def outputs(rd):
    rows = []
    for path in sorted(glob.glob(os.path.join(rd, "scores", "*.csv"))):
        rows += [(r["shard"], int(r["row"]), r["activity"], r["toxicity"]) for r in read_csv(path)]
    return (open(os.path.join(rd, "hits.csv")).read(), open(os.path.join(rd, "rejects.csv")).read(), rows)


def committed(rd):
    n = 0
    for path in glob.glob(os.path.join(rd, "journal", "*.log")):
        n += open(path).read().count("\n")
    return n


def rank_pids(rd, exclude):
    """The hpcscreen processes of the run in rd (mpirun's own command line matches too: left out)."""
    out = subprocess.run(["pgrep", "-f", f"hpcscreen screen .*--out {rd}( |$)"], capture_output=True, text=True).stdout
    return [int(x) for x in out.split() if int(x) != exclude]


def start(np, args):
    cmd = ["mpirun", "-np", str(np), "--oversubscribe", "--bind-to", "none", "-x", "OPENBLAS_NUM_THREADS=1",
           *args, "--threads", "1"]
    print("$", " ".join(cmd), flush=True)
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_commits(p, rd, n, timeout=120):
    t0 = time.time()
    while committed(rd) < n:
        if p.poll() is not None:
            raise SystemExit(f"the run ended before {n} chunks were committed: {p.stderr.read()[-2000:]}")
        if time.time() - t0 > timeout:
            raise SystemExit("no progress")
        time.sleep(0.01)


def compare(name, reference, rd):
    hits, rejects, scores = outputs(rd)
    keys = [(s, r) for s, r, _, _ in scores]
    check(hits == reference[0], f"{name}: hits.csv identical to the uninterrupted run")
    check(rejects == reference[1], f"{name}: rejects.csv identical")
    check(len(keys) == len(set(keys)), f"{name}: no record scored twice in scores/ ({len(keys) - len(set(keys))} duplicates)")
    check(sorted(scores) == sorted(reference[2]), f"{name}: scores/ holds every scored record, with identical values")
    rj = read_json(os.path.join(rd, "run.json"))
    check(rj["complete"] and rj["accounting_ok"] and rj["records_read"] == rj["records_total"],
          f"{name}: run.json complete with exact accounting")


def main():
    a = e2e_args()
    a.model = os.path.join(a.models, "gnn.pt")
    work = a.work
    smi = os.path.join(work, "big.smi")
    with open(NCI) as f:
        nci = f.read()
    with open(smi, "w") as f:
        for _ in range(8):
            f.write(nci)
        f.write("C1CC bad\n\n")
    lib = os.path.join(work, "lib")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib, "--shard-size", "7000"], expect=0)
    n_chunks = sum((s["n_records"] + CHUNK_ROWS - 1) // CHUNK_ROWS for s in read_json(os.path.join(lib, "manifest.json"))["shards"])

    print("== uninterrupted reference, 2 ranks")
    ref_dir = fresh(os.path.join(work, "reference"))
    mpirun(2, screen_args(a, lib, ref_dir), expect=0)
    reference = outputs(ref_dir)
    check(len(reference[2]) > 39000, f"reference scored {len(reference[2])} records")

    print("== 5 ranks, oversubscribed")
    rd = fresh(os.path.join(work, "np5"))
    mpirun(5, screen_args(a, lib, rd), expect=0)
    compare("5 ranks", reference, rd)

    print("== --max-chunks on 2 ranks, resumed on 3")
    rd = fresh(os.path.join(work, "quota"))
    r = mpirun(2, screen_args(a, lib, rd, "--max-chunks", "4"))
    rj = read_json(os.path.join(rd, "run.json"))
    check(r.returncode == 75 and not rj["complete"] and rj["chunks_committed"] == 8 and rj["records_pending"] > 0,
          f"stopped after 4 chunks per rank: exit {r.returncode}, {rj['chunks_committed']} committed, complete={rj['complete']}")
    check("--resume" in r.stderr, "the message says how to continue")
    r = mpirun(3, screen_args(a, lib, rd, "--resume"), expect=0)
    check("8 of" in r.stderr and "already committed" in r.stderr, "resume says what it skips")
    compare("max-chunks + resume on 3 ranks", reference, rd)

    for point in (3, n_chunks // 2):
        print(f"== SIGKILL of the whole mpirun after {point} chunks, resumed on 1 rank")
        rd = fresh(os.path.join(work, f"kill_all_{point}"))
        proc = start(2, screen_args(a, lib, rd))
        wait_for_commits(proc, rd, point)
        pids = rank_pids(rd, proc.pid)
        proc.kill()
        for pid in pids:  # as a node failure would: nothing of the job survives
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        time.sleep(0.2)
        check(not rank_pids(rd, proc.pid), "no process of the killed job is left")
        done = committed(rd)
        check(0 < done < n_chunks, f"killed mid-run with {done} of {n_chunks} chunks committed")
        mpirun(1, screen_args(a, lib, rd, "--resume"), expect=0)
        compare(f"kill at {point} + resume", reference, rd)

    print("== SIGKILL of one rank, resumed on 2 ranks")
    rd = fresh(os.path.join(work, "kill_rank"))
    proc = start(3, screen_args(a, lib, rd))
    wait_for_commits(proc, rd, 6)
    ranks = rank_pids(rd, proc.pid)
    check(len(ranks) == 3, f"found the rank processes {ranks}")
    os.kill(ranks[-1], signal.SIGKILL)
    proc.wait(timeout=120)
    check(proc.returncode != 0, f"the job fails when a rank dies (mpirun exit {proc.returncode})")
    mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
    compare("one rank killed + resume", reference, rd)

    for how in ("SIGUSR1 to mpirun", "SIGTERM to every rank"):
        print(f"== {how}: clean stop, then resume")
        rd = fresh(os.path.join(work, how.split()[0]))
        proc = start(2, screen_args(a, lib, rd))
        wait_for_commits(proc, rd, 4)
        t0 = time.time()
        if how.startswith("SIGUSR1"):
            proc.send_signal(signal.SIGUSR1)
        else:
            for pid in rank_pids(rd, proc.pid):
                os.kill(pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        stop_s = time.time() - t0
        rj = read_json(os.path.join(rd, "run.json"))
        check(proc.returncode == 75 and stop_s < 10, f"{how}: exit 75 within {stop_s:.1f} s")
        check(not rj["complete"] and rj["interrupted"] and rj["accounting_ok"], f"{how}: run.json complete=false, accounting exact")
        check(rj["chunks_committed"] == committed(rd), f"{how}: run.json agrees with the journals")
        mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
        compare(f"{how} + resume", reference, rd)

    print("== resume refuses another model")
    other = os.path.join(a.models, "gnn_lower.pt")
    r = run(["mpirun", "-np", "1", a.hpcscreen, "screen", "--library", lib, "--model", other, "--out", ref_dir, "--top-k", "50",
             "--chunk-rows", str(CHUNK_ROWS), "--all-scores", "--resume"])
    check(r.returncode == 1 and "model_checksum" in r.stderr, "a resume with another model is refused")
    finish()


if __name__ == "__main__":
    main()
