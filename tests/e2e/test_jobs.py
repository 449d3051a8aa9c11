#!/usr/bin/python3
"""The job templates in jobs/, filled by tools/hpcscreen-submit, run for real:
  slurm  on a single-node Slurm started by the test (tests/slurm/cluster.py): a job cut short by
         --max-chunks is resubmitted unchanged until it completes (automatic --resume), and
         Slurm's walltime warning (USR1 to the batch shell) stops a job cleanly.
  pbs    PBS has no Debian package: the script runs under a shim that provides the PBS
         environment and $PBS_NODEFILE; its directives are checked by a parser."""
import os
import re
import signal
import subprocess
import sys
import time

from common import e2e_args, NCI, check, finish, fresh, mpirun, read_csv, read_json, run

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "slurm"))
SUBMIT = os.path.join(ROOT, "tools", "hpcscreen-submit")


def directives(script, prefix):
    """#SBATCH/#PBS lines as (option, value) pairs, the way the schedulers read them: only the
    comment block before the first command counts."""
    out = []
    for line in open(script):
        line = line.strip()
        if line and not line.startswith("#"):
            break
        if line.startswith(prefix + " "):
            out.append(line[len(prefix) + 1:].strip())
    return out


def library(a, work, copies):
    smi = os.path.join(work, f"nci{copies}.smi")
    with open(NCI) as f:
        lines = f.readlines()
    with open(smi, "w") as f:
        f.writelines((lines * copies)[: 400 * copies if copies == 1 else None])
    lib = os.path.join(work, f"lib{copies}")
    run([a.hpcscreen, "pack", "compounds", "--input", smi, "--out", lib], expect=0)
    return lib


def submit(a, scheduler, lib, out, script, *extra, time_limit="00:10:00", launcher="mpirun"):
    r = run([sys.executable, SUBMIT, scheduler, "screen", "--library", lib, "--model", a.model, "--out", out, "--nodes", "1",
             "--cpus", "2", "--time", time_limit, "--script", script, "--hpcscreen", a.hpcscreen,
             *(["--launcher", launcher] if scheduler == "slurm" else []), "--", "--top-k", "10", *extra], expect=0)
    return r.stdout.strip()


def test_slurm(a, work):
    import cluster
    lib = library(a, work, 1)
    reference = os.path.join(work, "reference")
    mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", a.model, "--out", reference, "--top-k", "10"], expect=0)
    # The cut-short job runs with --chunk-rows 80: its batches, and so the last bits of its scores
    # (a matrix product's rounding depends on the batch's size), are those of this run.
    reference80 = os.path.join(work, "reference80")
    mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", a.model, "--out", reference80, "--top-k", "10",
               "--chunk-rows", "80"], expect=0)
    c = cluster.Cluster(os.path.join(work, "slurm-state")).start()
    try:
        print("== a job cut short, resubmitted unchanged until complete")
        out = os.path.join(work, "slurm-run")
        script = os.path.join(work, "screen.sbatch")
        cmd = submit(a, "slurm", lib, out, script, "--chunk-rows", "80", "--max-chunks", "2", "--progress-interval", "0.01")
        check(cmd == f"sbatch {script}", f"hpcscreen-submit prints the sbatch command ({cmd})")
        d = directives(script, "#SBATCH")
        check("--ntasks-per-node=1" in d and "--cpus-per-task=2" in d and "--nodes=1" in d, "one rank per node, all CPUs to it")
        check(any(re.fullmatch(r"--signal=B:USR1@\d+", x) for x in d), "the walltime warning is USR1 to the batch shell")
        states = []
        for attempt in range(3):
            job = c.sbatch(script, work)
            info = c.wait(job)
            states.append((info["JobState"], info["ExitCode"]))
        check(states == [("FAILED", "75:0"), ("FAILED", "75:0"), ("COMPLETED", "0:0")],
              f"400 records in 5 chunks, 2 per job: exit 75 twice, then COMPLETED ({states})")
        check(open(os.path.join(out, "hits.csv")).read() == open(os.path.join(reference80, "hits.csv")).read(),
              "hits.csv equals an uninterrupted run with the same --chunk-rows")
        rj = read_json(os.path.join(out, "run.json"))
        check(rj["scheduler"]["name"] == "slurm" and rj["scheduler"]["job_id"] == job and rj["scheduler"]["cpus_per_task"] == 2
              and rj["threads_per_rank"] == 2, f"run.json records the Slurm job ({rj['scheduler']})")
        log = open(out + f".{job}.log").read()
        check("[hpcscreen]" in log and "\r" not in log and "ETA" in log, "progress lines in the job's output file, no carriage returns")
        check("--resume" in read_json(os.path.join(out, "run_config.json"))["attempts"][2]["command_line"],
              "the resubmitted job added --resume by itself")

        print("== Slurm's walltime warning: USR1 to the batch shell stops the job cleanly")
        big = library(a, work, 8)
        out = os.path.join(work, "slurm-warned")
        script = os.path.join(work, "warned.sbatch")
        submit(a, "slurm", big, out, script, "--chunk-rows", "500")
        job = c.sbatch(script, work)
        t0 = time.time()
        while not os.path.exists(os.path.join(out, "journal")) or not any(
                open(os.path.join(out, "journal", f)).read() for f in os.listdir(os.path.join(out, "journal"))):
            if time.time() - t0 > 120:
                raise SystemExit("the job made no progress")
            time.sleep(0.05)
        subprocess.run(["scancel", "--batch", "--signal=USR1", job], env=c.env, check=True)
        info = c.wait(job)
        rj = read_json(os.path.join(out, "run.json"))
        check(info["ExitCode"] == "75:0" and not rj["complete"] and rj["accounting_ok"],
              f"stopped with exit 75, run.json complete=false ({info['JobState']} {info['ExitCode']})")
        job = c.sbatch(script, work)
        info = c.wait(job)
        check(info["JobState"] == "COMPLETED" and read_json(os.path.join(out, "run.json"))["complete"], "resubmitted: COMPLETED")

        print("== srun --mpi=pmix as the launcher")
        out = os.path.join(work, "slurm-srun")
        script = os.path.join(work, "srun.sbatch")
        submit(a, "slurm", lib, out, script, launcher="srun")
        info = c.wait(c.sbatch(script, work))
        check(info["JobState"] == "COMPLETED" and open(os.path.join(out, "hits.csv")).read() == open(os.path.join(reference, "hits.csv")).read(),
              f"srun --mpi=pmix job COMPLETED with the same hits ({info['JobState']} {info['ExitCode']})")
    finally:
        c.stop()


def test_pbs(a, work):
    lib = library(a, work, 1)
    reference = os.path.join(work, "reference")
    mpirun(1, [a.hpcscreen, "screen", "--library", lib, "--model", a.model, "--out", reference, "--top-k", "10"], expect=0)
    out = os.path.join(work, "pbs-run")
    script = os.path.join(work, "screen.pbs")
    cmd = submit(a, "pbs", lib, out, script, time_limit="01:00:00")
    check(cmd == f"qsub {script}", f"hpcscreen-submit prints the qsub command ({cmd})")
    d = directives(script, "#PBS")
    check("-l select=1:ncpus=2:mpiprocs=1" in d and "-l walltime=01:00:00" in d and "-j oe" in d,
          f"PBS directives: one MPI process per node, the walltime ({d})")
    check(all(not x.startswith("--") for x in d), "no Slurm syntax in the PBS script")
    nodefile = os.path.join(work, "nodefile")
    with open(nodefile, "w") as f:
        f.write("localhost\n")
    env = dict(os.environ, PBS_JOBID="4242.pbs-shim", PBS_NODEFILE=nodefile, NCPUS="2", PBS_O_WORKDIR=work,
               PBS_JOBNAME="hpcscreen-screen")
    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=600)
    check(r.returncode == 0 and "complete" in r.stdout, f"the PBS script ran to completion under the shim (exit {r.returncode})")
    rj = read_json(os.path.join(out, "run.json"))
    check(rj["scheduler"] == {"name": "pbs", "job_id": "4242.pbs-shim", "nodes": 1, "cpus_per_task": 2} and rj["threads_per_rank"] == 2,
          f"run.json records the PBS job ({rj['scheduler']})")
    check(open(os.path.join(out, "hits.csv")).read() == open(os.path.join(reference, "hits.csv")).read(), "same hits as a direct run")
    check(rj["config"]["stop_after_s"] > 3000, "the PBS script stops from inside before the walltime (--stop-after)")
    r = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=600)
    check(r.returncode == 0 and read_json(os.path.join(out, "run.json"))["attempt"] == 2, "run again: resumed (nothing left to do)")


def main():
    a = e2e_args(("which", {"choices": ["slurm", "pbs"]}))
    a.model = os.path.join(a.models, "gnn.pt")
    work = a.work
    (test_slurm if a.which == "slurm" else test_pbs)(a, work)
    finish()


if __name__ == "__main__":
    main()
