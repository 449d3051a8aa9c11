#!/usr/bin/python3
"""Runs that are cut off: --max-chunks, SIGKILL of the whole mpirun or of one rank, SIGUSR1
through mpirun, SIGUSR2 to every rank (as srun delivers a signal), SIGTERM to one rank alone, and SIGHUP. Each is resumed, possibly with
another rank count, and must end with exactly the outputs of an uninterrupted run: the same
hits.csv and rejects.csv, and every scored record once in scores/.

Nothing here depends on timing: a run is killed or signalled only while its ranks are stopped
(SIGSTOP) with chunks still to do, so it cannot end first, and a signal is let through only once
every rank has it pending. The waits have a generous guard only so that a hung run fails the
test instead of hanging it."""
import glob
import json
import os
import shutil
import signal
import subprocess
import time

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, run

CHUNK_ROWS = 500
HANG_GUARD_S = 600  # only against a hung run; no check depends on how long anything takes


def screen_args(a, lib, rd, *extra):
    return [a.hpcscreen, "screen", "--library", lib, "--model", a.model, "--out", rd, "--top-k", "50",
            "--chunk-rows", str(CHUNK_ROWS), "--all-scores", "--progress-interval", "0.5", *extra]


def outputs(rd):
    rows = []
    for path in sorted(glob.glob(os.path.join(rd, "scores", "*.csv"))):
        # every score column (MODEL:TASK) of every scored record
        rows += [(r["shard"], int(r["row"]), *(v for k, v in r.items() if ":" in k)) for r in read_csv(path)]
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


def wait_for_commits(p, rd, n):
    t0 = time.monotonic()
    while committed(rd) < n:
        if p.poll() is not None:
            raise SystemExit(f"the run ended before {n} chunks were committed: {p.stderr.read()[-2000:]}")
        if time.monotonic() - t0 > HANG_GUARD_S:
            raise SystemExit(f"no {n} chunks committed in {HANG_GUARD_S} s: the run hangs")
        time.sleep(0.01)


def wait_until(cond, what):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > HANG_GUARD_S:
            raise SystemExit(f"gave up after {HANG_GUARD_S} s waiting until {what}")
        time.sleep(0.01)


def thread_states(pid):
    """The state letter of every thread of pid ([] once it is gone)."""
    states = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                states.append(f.read().rsplit(")", 1)[1].split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return states


def stopped(pid):
    """pid is alive and every one of its threads is stopped: it can do nothing more."""
    states = thread_states(pid)
    return bool(states) and all(s in "Tt" for s in states)


def gone(pid):
    states = thread_states(pid)
    return not states or all(s in "ZX" for s in states)


def freeze(pids):
    """SIGSTOP every rank and wait until all their threads are stopped. True when every rank was
    still alive: then the run had not ended, and while stopped it commits nothing more."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGSTOP)
        except ProcessLookupError:
            return False
    wait_until(lambda: all(stopped(pid) or gone(pid) for pid in pids), "the ranks are stopped")
    return all(stopped(pid) for pid in pids)


def thaw(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


def pending(pid, sig):
    """sig is pending for pid (sent, not yet handled: pid is stopped)."""
    mask = 0
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("ShdPnd:", "SigPnd:")):
                    mask |= int(line.split()[1], 16)
    except FileNotFoundError:
        return False
    return bool(mask >> (int(sig) - 1) & 1)


def world_rank(pid):
    """The MPI rank of a rank process, from the environment Open MPI gives it."""
    with open(f"/proc/{pid}/environ", "rb") as f:
        for item in f.read().split(b"\0"):
            if item.startswith(b"OMPI_COMM_WORLD_RANK="):
                return int(item.split(b"=", 1)[1])
    return None


def start_and_freeze(np, args, rd, n_commits, n_chunks, name):
    """Starts a run, waits until n_commits chunks are committed, stops every rank and checks that
    the run was caught mid-way: every rank alive, not every chunk committed."""
    proc = start(np, args)
    wait_for_commits(proc, rd, 1)
    ranks = rank_pids(rd, proc.pid)  # before the wait below, so that the stop follows it at once
    check(len(ranks) == np, f"{name}: found the {np} rank processes {ranks}")
    wait_for_commits(proc, rd, n_commits)
    if not check(freeze(ranks), f"{name}: all {np} ranks stopped while still running"):
        proc.kill()
        raise SystemExit(f"{name}: the run ended before it could be stopped: nothing below would test a cut-off run")
    done = committed(rd)
    check(n_commits <= done < n_chunks, f"{name}: caught mid-run with {done} of {n_chunks} chunks committed")
    return proc, ranks


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
    # The committed records rewritten as hpcscreen wrote them before December 2026 (the first
    # ranking's top-K under "hits", further rankings under "extra_hits"): such a run folder
    # still resumes, its chunks counted as done, not done again.
    for path in glob.glob(os.path.join(rd, "parts", "chunk-*.json")):
        rec = read_json(path)
        lists = rec.pop("hit_lists")
        rec["hits"], rec["extra_hits"] = lists[0], lists[1:]
        with open(path, "w") as f:
            json.dump(rec, f)
    r = mpirun(3, screen_args(a, lib, rd, "--resume"), expect=0)
    check("8 of" in r.stderr and "already committed" in r.stderr and "cannot be read" not in r.stderr,
          "resume says what it skips (8 chunks whose records have the earlier layout)")
    compare("max-chunks + resume on 3 ranks", reference, rd)

    print("== a finished run whose --all-scores files were deleted, cut short or swapped: --resume redoes them")
    # Chunk 0's record has the earlier layout (no list of outputs: its file's presence is
    # checked); the last chunks' records list their files with sizes and checksums.
    scores = sorted(glob.glob(os.path.join(rd, "scores", "*.csv")))
    lost = scores[0]
    os.remove(lost)
    with open(scores[-1], "r+b") as f:
        f.truncate(os.path.getsize(scores[-1]) - 40)
    shutil.copyfile(scores[-2], scores[-3])
    r = mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
    check("outputs of 3 committed chunks are missing or not as written" in r.stderr and os.path.exists(lost),
          f"the chunks whose scores files are gone, cut or replaced are named and done again ({r.stderr.strip()[-160:]})")
    compare("deleted, cut and swapped scores files + resume", reference, rd)

    print("== the library moved between attempts: followed when its manifest is the same")
    first, moved = os.path.join(work, "lib_first"), os.path.join(work, "lib_moved")
    for path in (first, moved):
        fresh(path)
    shutil.copytree(lib, first)
    rd = fresh(os.path.join(work, "moved"))
    r = mpirun(2, screen_args(a, first, rd, "--max-chunks", "2"))
    check(r.returncode == 75, f"first attempt stopped after 2 chunks per rank (exit {r.returncode})")
    os.rename(first, moved)
    other = os.path.join(work, "lib_other")
    run([a.hpcscreen, "pack", "compounds", "--input", NCI, "--out", fresh(other)], expect=0)
    r = mpirun(2, screen_args(a, other, rd, "--resume"))
    check(r.returncode == 1 and "cannot resume" in r.stderr and "holds another (its manifest differs)" in r.stderr,
          f"another library at another path is refused: exit {r.returncode} ({r.stderr.strip()[-200:]})")
    # A copy whose shards are not the manifest's (one copied over another) is another library.
    swapped = fresh(os.path.join(work, "lib_swapped"))
    shutil.copytree(moved, swapped)
    shards = read_json(os.path.join(swapped, "manifest.json"))["shards"]
    shutil.copyfile(os.path.join(swapped, shards[1]["file"]), os.path.join(swapped, shards[0]["file"]))
    r = mpirun(2, screen_args(a, swapped, rd, "--resume"))
    check(r.returncode == 1 and "is not the file its manifest lists" in r.stderr
          and read_json(os.path.join(rd, "run_config.json"))["identity"]["library"] == os.path.realpath(first),
          f"a moved copy with a shard replaced is refused, the run's identity unchanged: exit {r.returncode} "
          f"({r.stderr.strip()[-200:]})")
    # rejects.csv cannot be written (a folder in its way; a full disk does the same): the run is
    # not complete, and the other outputs are still made from every committed record.
    os.remove(os.path.join(rd, "rejects.csv"))
    os.mkdir(os.path.join(rd, "rejects.csv"))
    r = mpirun(2, screen_args(a, moved, rd, "--resume"))
    rj = read_json(os.path.join(rd, "run.json"))
    check(r.returncode == 1 and not rj["complete"] and rj["records_read"] == rj["records_total"]
          and any(e.startswith("rejects.csv") for e in rj["output_errors"])
          and open(os.path.join(rd, "hits.csv")).read() == reference[0],
          f"rejects.csv unwritable: exit {r.returncode}, every record counted ({rj['records_read']} of "
          f"{rj['records_total']}), hits.csv whole, the error named ({rj['output_errors']})")
    check("lib_moved" in r.stderr and "lib_first" in r.stderr and "manifest is the same" in r.stderr,
          f"the resume names the library's old and new places ({r.stderr.strip()[-300:]})")
    os.rmdir(os.path.join(rd, "rejects.csv"))
    r = mpirun(2, screen_args(a, moved, rd, "--resume"), expect=0)
    check(read_json(os.path.join(rd, "run_config.json"))["identity"]["library"] == os.path.realpath(moved),
          "run_config.json holds the library's new place")
    compare("library moved + resume", reference, rd)

    for point in (3, n_chunks // 2):
        print(f"== SIGKILL of the whole mpirun after {point} chunks, resumed on 1 rank")
        name = f"kill at {point}"
        rd = fresh(os.path.join(work, f"kill_all_{point}"))
        proc, ranks = start_and_freeze(2, screen_args(a, lib, rd), rd, point, n_chunks, name)
        done = committed(rd)
        # As a node failure would: nothing of the job survives. mpirun is stopped and the ranks
        # killed before mpirun: were mpirun killed while the ranks are stopped, the kernel would
        # send their orphaned process group SIGHUP and SIGCONT, and a rank could commit one more
        # chunk before its own SIGKILL (seen once: 41 chunks after a freeze at 40).
        os.kill(proc.pid, signal.SIGSTOP)
        for pid in ranks:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.kill()
        proc.wait(timeout=HANG_GUARD_S)
        check(proc.returncode == -signal.SIGKILL, f"{name}: mpirun was killed, not finished (exit {proc.returncode})")
        wait_until(lambda: all(gone(pid) for pid in ranks), "the killed ranks are gone")
        check(not rank_pids(rd, proc.pid), f"{name}: no process of the killed job is left")
        check(committed(rd) == done, f"{name}: nothing committed after the kill ({committed(rd)} of {n_chunks} chunks)")
        mpirun(1, screen_args(a, lib, rd, "--resume"), expect=0)
        compare(f"{name} + resume", reference, rd)

    print("== SIGKILL of one rank, resumed on 2 ranks")
    rd = fresh(os.path.join(work, "kill_rank"))
    proc, ranks = start_and_freeze(3, screen_args(a, lib, rd), rd, 6, n_chunks, "one rank killed")
    os.kill(ranks[-1], signal.SIGKILL)
    thaw(ranks[:-1])
    proc.wait(timeout=HANG_GUARD_S)
    check(proc.returncode != 0, f"the job fails when a rank dies (mpirun exit {proc.returncode})")
    mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
    compare("one rank killed + resume", reference, rd)

    # (SIGTERM is sent to one rank below; SIGUSR2 here, a warning signal Slurm users pick too.)
    for how in ("SIGUSR1 to mpirun", "SIGUSR2 to every rank"):
        print(f"== {how}: clean stop, then resume")
        rd = fresh(os.path.join(work, how.split()[0]))
        proc, ranks = start_and_freeze(2, screen_args(a, lib, rd), rd, 4, n_chunks, how)
        # While the ranks are stopped the signal only becomes pending; they go on once every rank
        # has it, and then take no new chunk, so the run cannot reach its end first.
        sig = signal.SIGUSR1 if how.startswith("SIGUSR1") else signal.SIGUSR2
        if sig == signal.SIGUSR1:
            proc.send_signal(sig)  # mpirun passes it on to every rank
        else:
            for pid in ranks:
                os.kill(pid, sig)
        wait_until(lambda: all(pending(pid, sig) for pid in ranks), f"every rank has {sig.name} pending")
        thaw(ranks)
        out, err = proc.communicate(timeout=HANG_GUARD_S)
        rj = read_json(os.path.join(rd, "run.json"))
        check(proc.returncode == 75, f"{how}: exit {proc.returncode} (75 expected)")
        check("--resume" in err, f"{how}: the message says how to continue")
        check(not rj["complete"] and rj["interrupted"] and rj["accounting_ok"], f"{how}: run.json complete=false, accounting exact")
        check(rj["chunks_committed"] == committed(rd) < n_chunks,
              f"{how}: run.json agrees with the journals ({rj['chunks_committed']} of {n_chunks} chunks committed)")
        mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
        compare(f"{how} + resume", reference, rd)

    print("== SIGTERM to one rank only (a node preempted alone): every rank stops within seconds")
    rd = fresh(os.path.join(work, "one_rank_term"))
    proc, ranks = start_and_freeze(2, screen_args(a, lib, rd), rd, 4, n_chunks, "SIGTERM to one rank")
    done = committed(rd)
    signalled = [pid for pid in ranks if world_rank(pid) == 1]
    check(len(signalled) == 1, f"found rank 1 among {ranks}")
    os.kill(signalled[0], signal.SIGTERM)
    wait_until(lambda: pending(signalled[0], signal.SIGTERM), "rank 1 has SIGTERM pending")
    thaw(ranks)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    rj = read_json(os.path.join(rd, "run.json"))
    check(proc.returncode == 75, f"one rank signalled: exit {proc.returncode} (75 expected)")
    check(rj.get("stop_signal") == signal.SIGTERM,
          f"run.json (written by rank 0, which had no signal) names the stop signal: {rj.get('stop_signal')}")
    # Without the shared stop the other rank screens the whole rest of the library (~{n_chunks - done} chunks).
    check(committed(rd) - done <= 8 < n_chunks - done,
          f"the unsignalled rank stopped too: {committed(rd) - done} chunks committed after the signal, {n_chunks - done} were left")
    mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
    compare("one rank signalled + resume", reference, rd)

    print("== SIGHUP (a login session dropping) is a clean stop")
    rd = fresh(os.path.join(work, "hup"))
    proc, ranks = start_and_freeze(2, screen_args(a, lib, rd), rd, 4, n_chunks, "SIGHUP")
    for pid in ranks:
        os.kill(pid, signal.SIGHUP)
    wait_until(lambda: all(pending(pid, signal.SIGHUP) for pid in ranks), "every rank has SIGHUP pending")
    thaw(ranks)
    out, err = proc.communicate(timeout=HANG_GUARD_S)
    check(proc.returncode == 75, f"SIGHUP: exit {proc.returncode} (75 expected)")
    check(os.path.exists(os.path.join(rd, "run.json")) and read_json(os.path.join(rd, "run.json"))["interrupted"],
          "SIGHUP: run.json written, interrupted")
    mpirun(2, screen_args(a, lib, rd, "--resume"), expect=0)
    compare("SIGHUP + resume", reference, rd)

    print("== resume refuses another model")
    other = os.path.join(a.models, "gnn_lower.pt")
    r = run(["mpirun", "-np", "1", a.hpcscreen, "screen", "--library", lib, "--model", other, "--out", ref_dir, "--top-k", "50",
             "--chunk-rows", str(CHUNK_ROWS), "--all-scores", "--resume"])
    check(r.returncode == 1 and "model_checksum" in r.stderr, "a resume with another model is refused")

    print("== ranks that loaded different models (a node's own copy that differs) are refused")
    rd = fresh(os.path.join(work, "two_models"))
    rank_args = lambda model: ["-np", "1", "-x", "OPENBLAS_NUM_THREADS=1", a.hpcscreen, "screen", "--library", lib,
                               "--model", model, "--out", rd, "--threads", "1"]
    r = run(["mpirun", "--oversubscribe", "--bind-to", "none", *rank_args(a.model), ":", *rank_args(other)])
    check(r.returncode == 1 and "set up another run than rank 0" in r.stderr and not os.path.exists(rd),
          f"rank 1 with another model file: exit {r.returncode} (1 expected), said, no run folder ({r.stderr.strip()[-200:]})")
    # One rank only checking would leave the other waiting in a collective call: refused, no hang.
    r = run(["mpirun", "--oversubscribe", "--bind-to", "none", *rank_args(a.model), ":", *rank_args(a.model), "--check"],
            timeout=HANG_GUARD_S)
    check(r.returncode == 1 and "set up another run than rank 0" in r.stderr and not os.path.exists(rd),
          f"--check on rank 1 alone: exit {r.returncode} (1 expected), no run folder ({r.stderr.strip()[-200:]})")

    print("== resume refuses a run folder that does not exist")
    nowhere = fresh(os.path.join(work, "never_started"))
    r = mpirun(1, screen_args(a, lib, nowhere, "--resume"))
    check(r.returncode == 1 and nowhere in r.stderr and not os.path.exists(nowhere),
          f"--resume on a folder that does not exist: exit {r.returncode} (1 expected), names it, starts no fresh run")
    finish()


if __name__ == "__main__":
    main()
