#!/usr/bin/python3
"""tools/hpcscreen-submit against hostile and bad values, with no scheduler and no hpcscreen:
every value that reaches a job script is checked (a control character, a name outside a plain
character set, a malformed walltime, a count out of range: exit 2 naming the option, and no
script written); a log path with spaces is written so that the scheduler reads it as one
argument; and the filled scripts, run by bash with stub mpirun/srun on PATH, hand every path and
argument over unchanged and run nothing else. Arguments after `--` that the script sets itself,
paths that are not there, and a --submit with no sbatch/qsub are refused the same way.
Where the built hpcscreen (--hpcscreen) is given to the tool, it reads the arguments after `--`
against that binary's own option list, and with a real library and model the run is checked by
`hpcscreen ... --check` as the job would start it (values, library kind, a resume's settings).
(--models gives the built models; --work is the scratch folder.)"""
import os
import subprocess
import sys

from common import e2e_args, NCI, check, finish

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SUBMIT = os.path.join(ROOT, "tools", "hpcscreen-submit")
CASE = [0]
HPCSCREEN = [None]  # the built binary, for the cases that need hpcscreen's own option list
FIX = {}  # a library folder, a model file and an executable: the tool checks that they exist
REAL = {}  # a packed library and built models, for the run's own check


def make_fixtures(work):
    FIX["lib"] = make_library(os.path.join(work, "data", "lib"))
    FIX["model"] = make_file(os.path.join(work, "data", "m.pt"))
    FIX["hpcscreen"] = make_file(os.path.join(work, "opt", "hpcscreen"), executable=True)
    FIX["scratch"] = os.path.join(work, "scratch")
    os.makedirs(FIX["scratch"])


def make_file(path, executable=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" if executable else "")
    if executable:
        os.chmod(path, 0o755)
    return path


def make_library(path):
    make_file(os.path.join(path, "manifest.json"))
    return path


def case_dir(work):
    """A fresh, empty folder for one invocation."""
    CASE[0] += 1
    d = os.path.join(work, f"case{CASE[0]:03d}")
    os.makedirs(d)
    return d


def submit(scheduler, d, *opts, out=None, script=None, extra=(), workload="screen", model=None, env=None):
    """hpcscreen-submit run in folder d with ordinary values, then `opts` (a repeated option
    overrides; --model adds one unless `model` is given): a relative path in `opts` lands in d."""
    models = ["--model", FIX["model"]] if model is None else [x for m in model for x in ("--model", m)]
    cmd = [sys.executable, SUBMIT, scheduler, workload, "--library", FIX["lib"], *models,
           "--out", out or os.path.join(d, "run"), "--cpus", "2", "--time", "01:00:00",
           "--script", script or os.path.join(d, "job.sh"), "--hpcscreen", FIX["hpcscreen"], *opts]
    if extra:
        cmd += ["--", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=d, env=env)


def refused(work, scheduler, option, opts=(), named=None, says=None, **kw):
    """The invocation exits 2, names the option (`hpcscreen-submit: OPTION:`, or `named`), shows
    no traceback and writes nothing."""
    d = case_dir(work)
    r = submit(scheduler, d, *opts, **kw)
    named = named or f"hpcscreen-submit: {option}:"
    ok = (r.returncode == 2 and named in r.stderr and "Traceback" not in r.stderr
          and (says is None or says in r.stderr) and os.listdir(d) == [])
    check(ok, f"{scheduler} {' '.join(map(repr, opts)) or repr(kw)}: exit 2 naming {named}, nothing written "
              f"(exit {r.returncode}, {r.stderr.strip()!r}, left {os.listdir(d)})")


def slurm_words(line):
    """The arguments sbatch takes from a #SBATCH line (src/sbatch/opt.c, _get_argument): split at
    whitespace outside quotes, quotes removed, a backslash escapes, an unquoted '#' ends it.
    None where sbatch would stop at an unmatched quote."""
    words, ptr = [], line[len("#SBATCH"):]
    while True:
        ptr = ptr.lstrip()
        if not ptr:
            return words
        arg, quoted, q, escape, i = "", False, "", False, 0
        while i < len(ptr) and (quoted or not ptr[i].isspace()) and ptr[i] != "\n":
            c = ptr[i]
            i += 1
            if escape:
                escape = False
            elif c == "\\":
                escape = True
                continue
            elif quoted:
                if c == q:
                    quoted = False
                    continue
            elif c in "\"'":
                quoted, q = True, c
                continue
            elif c == "#":
                return words + ([arg] if arg else [])
            arg += c
        if quoted:
            return None
        words.append(arg)
        ptr = ptr[i:]


def lines(script):
    if not os.path.exists(script):
        return []
    with open(script, encoding="utf-8", errors="surrogateescape") as f:
        return f.read().splitlines()


def snapshot(root):
    return {os.path.join(dp, f) for dp, dn, fn in os.walk(root) for f in fn + dn}


def stub_bin(work):
    """mpirun and srun that only record their arguments (NUL-separated) in $STUB_RECORD."""
    d = os.path.join(work, "stub bin")
    os.makedirs(d)
    for name in ["mpirun", "srun"]:
        with open(os.path.join(d, name), "w") as f:
            f.write('#!/bin/bash\nprintf "%s\\0" "$(basename "$0")" "$@" > "$STUB_RECORD"\nexit 0\n')
        os.chmod(os.path.join(d, name), 0o755)
    return d


def run_script(script, env, record, cwd):
    """The filled script under bash; returns (exit, stdout, argv recorded by the stub, new files)."""
    before = snapshot(os.path.dirname(cwd))
    r = subprocess.run(["bash", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    new = snapshot(os.path.dirname(cwd)) - before
    argv = None
    if os.path.exists(record):
        with open(record, "rb") as f:
            argv = [os.fsdecode(x) for x in f.read().split(b"\0")[:-1]]
        os.remove(record)
    return r.returncode, r.stdout + r.stderr, argv, new - {record}


def test_ordinary(work):
    print("== ordinary values: the script the tool wrote before these checks")
    run1, lib, model, exe = os.path.join(FIX["scratch"], "run1"), FIX["lib"], FIX["model"], FIX["hpcscreen"]
    for scheduler, expected in [
        ("slurm", ["#SBATCH --job-name=hpcscreen-screen", "#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=1",
                   "#SBATCH --cpus-per-task=40", "#SBATCH --time=24:00:00", f"#SBATCH --output={run1}.%j.log",
                   "#SBATCH --signal=B:USR1@300", "#SBATCH --partition=batch", "#SBATCH --account=proj1",
                   f"HPCSCREEN={exe}", f"OUT={run1}",
                   f"ARGS=(screen --library {lib} --model {model} --out \"$OUT\" --top-k 1000 'a b')"]),
        ("pbs", ["#PBS -N hpcscreen-screen", "#PBS -l select=4:ncpus=40:mpiprocs=1", "#PBS -l walltime=24:00:00",
                 "#PBS -j oe", f"#PBS -o {run1}.log", "#PBS -q workq", "#PBS -A proj1",
                 f"HPCSCREEN={exe}", f"OUT={run1}",
                 f"ARGS=(screen --library {lib} --model {model} --out \"$OUT\" --top-k 1000 'a b')",
                 "ARGS+=(--stop-after 86100s)"])]:
        d = case_dir(work)
        script = os.path.join(d, "job.sh")
        r = submit(scheduler, d, "--out", run1, "--nodes", "4", "--cpus", "40", "--time", "24:00:00",
                   "--partition", "batch", "--account", "proj1", "--queue", "workq", extra=["--top-k", "1000", "a b"])
        cmd = "sbatch" if scheduler == "slurm" else "qsub"
        check(r.returncode == 0 and r.stdout == f"{cmd} {script}\n", f"{scheduler}: exit 0, prints `{cmd} SCRIPT` "
              f"(exit {r.returncode}, {r.stdout!r}, {r.stderr.strip()!r})")
        got = lines(script)
        missing = [x for x in expected if x not in got]
        check(not missing, f"{scheduler}: the same directive and shell lines as before ({missing or 'all there'})")
        check(not any("{{" in x for x in got), f"{scheduler}: no placeholder left")
        check(subprocess.run(["bash", "-n", script]).returncode == 0, f"{scheduler}: bash -n accepts the script")

    print("== walltimes in Slurm's forms; PBS gets HH:MM:SS")
    for given, pbs in [("90", "01:30:00"), ("30:00", "00:30:00"), ("01:00:00", "01:00:00"), ("1-0", "24:00:00"),
                       ("1-02:03", "26:03:00"), ("2-00:00:30", "48:00:30"), ("100:00:00", "100:00:00")]:
        for scheduler in ["slurm", "pbs"]:
            d = case_dir(work)
            r = submit(scheduler, d, "--time", given, "--warn", "60")
            want = f"#SBATCH --time={given}" if scheduler == "slurm" else f"#PBS -l walltime={pbs}"
            check(r.returncode == 0 and want in lines(os.path.join(d, "job.sh")),
                  f"{scheduler} --time {given}: {want!r} (exit {r.returncode}, {r.stderr.strip()!r})")

    print("== a value is never read again as a placeholder")
    d = case_dir(work)
    odd = make_library(os.path.join(work, "data", "{{SLURM_EXTRA}}{{ARGS}}"))
    r = submit("slurm", d, "--library", odd, "--partition", "p", extra=["x"])
    check(r.returncode == 0 and f"ARGS=(screen --library '{odd}' --model {model} "
          "--out \"$OUT\" x)" in lines(os.path.join(d, "job.sh")), "a library path with {{...}} is written as it is")

    print("== several models for screen, one for annotate and classify")
    m2 = make_file(os.path.join(work, "data", "second model.pt"))
    for scheduler in ["slurm", "pbs"]:
        d = case_dir(work)
        r = submit(scheduler, d, model=[model, m2])
        check(r.returncode == 0 and f"ARGS=(screen --library {lib} --model {model} --model '{m2}' --out \"$OUT\" )"
              in lines(os.path.join(d, "job.sh")), f"{scheduler}: screen with two --model keeps both, in order "
              f"({r.stderr.strip()!r})")
    d = case_dir(work)
    r = submit("slurm", d, workload="classify")
    check(r.returncode == 0 and f"ARGS=(classify --library {lib} --model {model} --out \"$OUT\" )"
          in lines(os.path.join(d, "job.sh")), f"classify is a workload the tool submits ({r.stderr.strip()!r})")
    d = case_dir(work)
    r = submit("slurm", d, extra=["--stop-after", "5m"])
    check(r.returncode == 0, f"slurm: --stop-after after -- is the user's (the Slurm script sets none) ({r.stderr.strip()!r})")


def test_refused(work):
    print("== a control character in any value that reaches the script: exit 2, nothing written")
    nl = "x\ntouch PWNED"
    for scheduler, options in [("slurm", ["--job-name", "--partition", "--account", "--out", "--library", "--model",
                                          "--hpcscreen", "--script", "--time"]),
                               ("pbs", ["--job-name", "--queue", "--account", "--out", "--library", "--model",
                                        "--hpcscreen", "--script", "--time"])]:
        for option in options:  # a relative path lands in the case's folder, which must stay empty
            refused(work, scheduler, option, (option, nl), says="contains a control character (newline)")
        refused(work, scheduler, "arguments after --", extra=["--top-k", "10", nl],
                says="control character (newline)")
    for ch, name in [("\r", "carriage return"), ("\t", "tab"), ("\x1b", "0x1b"), ("\x7f", "DEL"), ("\x01", "0x01")]:
        refused(work, "slurm", "--job-name", ("--job-name", f"a{ch}b"), says=f"control character ({name})")

    print("== names outside a plain character set, or with a leading '-'")
    for scheduler, option, value in [("slurm", "--job-name", "a b"), ("slurm", "--job-name", "a;b"),
                                     ("pbs", "--job-name", "-x"), ("pbs", "--job-name", "a$(id)"),
                                     ("slurm", "--partition", "p #q"), ("slurm", "--partition", ""),
                                     ("slurm", "--account", "a=b"), ("pbs", "--account", "-A"),
                                     ("pbs", "--queue", "q\"x"), ("pbs", "--queue", "q'x")]:
        refused(work, scheduler, option, (f"{option}={value}",))  # '=': argparse takes "-x" as a value

    print("== a log path the directive line cannot carry")
    for ch in ['"', "\\", "#"]:
        refused(work, "slurm", "--out", out=os.path.join(work, f"run{ch}x"))
    for ch in [" ", "'", ":", "#", '"']:
        refused(work, "pbs", "--out", out=os.path.join(work, f"run{ch}x"))

    print("== walltimes that are not Slurm's forms")
    for scheduler in ["slurm", "pbs"]:
        for t in ["abc", "1:2:3:4:5", "0:61:00", "1:2:3:4", "10:60", "1-24", "1-00:60", "-5", "1-", "", "0",
                  "00:00:00", "1.5", "٣٠", "1 h"]:
            refused(work, scheduler, "--time", ("--time", t))

    print("== counts out of range")
    for scheduler in ["slurm", "pbs"]:
        for opts in [("--nodes", "-3"), ("--nodes", "0"), ("--cpus", "0"), ("--cpus", "-1"), ("--warn", "-1"),
                     ("--time", "01:00:00", "--warn", "3600"), ("--nodes", "abc"), ("--cpus", "2.5")]:
            argparse_error = opts[-1] in ("abc", "2.5")  # argparse's own message: exit 2 as well
            refused(work, scheduler, opts[-2], opts, named=f"argument {opts[0]}" if argparse_error else None)
    refused(work, "slurm", "--warn", ("--time", "2-0", "--warn", "70000"))

    print("== arguments after -- that the script sets itself would be given twice when the job starts")
    for scheduler in ["slurm", "pbs"]:
        for extra in (["--threads", "4"], ["--threads=4"], ["-t4"], ["-t", "4"], ["--thr", "4"], ["--resume"],
                      ["--res"], ["--out", "x"], ["-o", "x"], ["--library=x"], ["--lib", "x"], ["-m", "x.pt"],
                      ["--top-k", "5", "--model", "x.pt"]):
            refused(work, scheduler, "arguments after --", extra=extra, says="which the job script sets")
    for extra in (["--stop-after", "5m"], ["--stop-after=5m"], ["--stop", "5m"]):
        refused(work, "pbs", "arguments after --", extra=extra, says="set --warn")

    print("== with a real hpcscreen, arguments after -- are read as it reads them")
    real = ("--hpcscreen", HPCSCREEN[0])
    for extra in (["--pmem-dir", "-tmpdir", "--dram-budget", "1G"], ["--where", "m:t < -1"], ["-k5"],
                  ["-k", "5", "--rank-by", "-m:t"], ["--top=5"], ["--all-scores", "--precision=bf16"]):
        d = case_dir(work)
        # (--no-check: the library and model here are empty files; the run's check is below)
        r = submit("slurm", d, *real, "--no-check", extra=extra)
        check(r.returncode == 0, f"-- {' '.join(extra)}: a value that looks like an option is hpcscreen's "
                                 f"(exit {r.returncode}, {r.stderr.strip()!r})")
    for extra, says in [(["--topk", "5"], "has no such option"), (["-x"], "has no option -x"),
                        (["--t", "4"], "is ambiguous: --threads, --top-k"), (["--top-k"], "needs a value"),
                        (["--top-k", "5", "10"], "is not an option, nor the value of one"),
                        (["--thr=4"], "which the job script sets"),
                        (["--top-k", "5", "--top-k", "6"], "cannot be specified more than once"),
                        (["--allow-failed-shards=yes"], "does not take any arguments"),
                        (["-h"], "print the help and run nothing"),
                        (["--check"], "would check the run and score nothing"),
                        (["--che"], "would check the run and score nothing")]:
        refused(work, "slurm", "arguments after --", real, extra=extra, says=says)
    refused(work, "slurm", "arguments after --", real, extra=["--batch-images", "8"], says="has no such option",
            workload="annotate")

    print("== with a real hpcscreen, library and model, the run is checked as the job would start it")
    lib, gnn = REAL["lib"], REAL["model"]
    checked = ("--hpcscreen", HPCSCREEN[0], "--library", lib)
    for scheduler in ["slurm", "pbs"]:
        d = case_dir(work)
        r = submit(scheduler, d, *checked, model=[gnn], extra=["--top-k", "10"])
        check(r.returncode == 0 and os.listdir(d) == ["job.sh"],
              f"{scheduler}: a run hpcscreen would start: the script is written, nothing else "
              f"(exit {r.returncode}, {r.stderr.strip()!r}, {os.listdir(d)})")
    # Each would be refused by hpcscreen only once the job has left the queue.
    for extra, says in [(["--top-k", "0"], "--top-k must be an integer from 1"),
                        (["--top-k", "abc"], "--top-k must be an integer"),
                        (["--precision", "fp16"], "--precision must be"),
                        (["--stop-after", "3x"], "expected a duration"),
                        (["--stop-after", "0s"], "a duration above 0"),
                        (["--rank-by", "nosuch:x"], "is not a score of this screen")]:
        refused(work, "slurm", "the run", checked, model=[gnn], extra=extra, says=says)
    refused(work, "slurm", "the run", checked, model=[REAL["bert"]], workload="annotate",
            says="holds compounds, 'annotate' needs proteins")
    # A run folder holding a run: the script adds --resume, and the run's settings must match.
    d = case_dir(work)
    started = os.path.join(work, "started")
    r = subprocess.run([HPCSCREEN[0], "screen", "--library", lib, "--model", gnn, "--out", started,
                        "--threads", "1", "--max-chunks", "1", "--chunk-rows", "100"], capture_output=True, text=True)
    check(r.returncode == 75, f"a run started and stopped after one chunk (exit {r.returncode}, {r.stderr.strip()[-200:]!r})")
    refused(work, "slurm", "the run", checked, model=[gnn], out=started, extra=["--chunk-rows", "50"],
            says="chunk_rows was 100 when the run started and is 50 now")
    r = submit("slurm", d, *checked, model=[gnn], out=started, extra=["--chunk-rows", "100"])
    check(r.returncode == 0, f"the same settings: the resume is accepted (exit {r.returncode}, {r.stderr.strip()!r})")
    d = case_dir(work)
    r = submit("slurm", d, *checked, "--no-check", model=[gnn], extra=["--top-k", "0"])
    check(r.returncode == 0, f"--no-check: the run is not checked here (exit {r.returncode}, {r.stderr.strip()!r})")

    print("== several models for a workload that takes one")
    for workload in ["annotate", "classify"]:
        refused(work, "slurm", "--model", workload=workload, model=[FIX["model"], FIX["model"]], says="takes one model")

    print("== paths that are not there: refused now, not after the queue")
    refused(work, "slurm", "--library", ("--library", os.path.join(work, "no such lib")), says="manifest.json")
    refused(work, "slurm", "--library", ("--library", FIX["scratch"]), says="manifest.json")
    refused(work, "pbs", "--model", model=[FIX["model"], os.path.join(work, "no such.pt")], says="is not a file")
    refused(work, "slurm", "--hpcscreen", ("--hpcscreen", FIX["model"]), says="not an executable file")
    refused(work, "slurm", "--out", out=os.path.join(work, "no such folder", "run"), says="does not exist")
    refused(work, "pbs", "--script", script=FIX["scratch"], says="is a folder")
    refused(work, "slurm", "--script", script=os.path.join(work, "no such folder", "job.sh"), says="does not exist")

    print("== an existing --out that holds no run, a --script over a file the tool did not write")
    refused(work, "slurm", "--out", out=FIX["lib"], says="holds no hpcscreen run")
    manifest = os.path.join(FIX["lib"], "manifest.json")
    with open(manifest, "w") as f:
        f.write("{}")
    refused(work, "pbs", "--script", script=manifest, says="is not a job script written by hpcscreen-submit")
    check(open(manifest).read() == "{}", "the library's manifest.json is left as it was")
    d = case_dir(work)
    run_dir = os.path.join(d, "run")
    make_file(os.path.join(run_dir, "run_config.json"))
    first = submit("slurm", d, out=run_dir)
    again = submit("slurm", d, "--nodes", "2", out=run_dir)
    check(first.returncode == 0 and again.returncode == 0 and "#SBATCH --nodes=2" in lines(os.path.join(d, "job.sh")),
          f"a run folder to resume and the tool's own script: written again ({again.stderr.strip()!r})")

    d = case_dir(work)
    made = os.path.join(d, "made by the job script")
    os.makedirs(made)
    r = submit("slurm", d, out=made)
    check(r.returncode == 0, f"an empty --out made beforehand: a new run starts in it (exit {r.returncode}, {r.stderr.strip()!r})")

    print("== --submit where the scheduler's command is missing")
    for scheduler, cmd in [("slurm", "sbatch"), ("pbs", "qsub")]:
        refused(work, scheduler, "--submit", ("--submit",), env=dict(os.environ, PATH=os.path.join(work, "empty path")),
                says=f"{cmd} is not on PATH")


def test_stub_runs(work):
    print("== the filled scripts run under bash with stub launchers: arguments arrive unchanged")
    bindir = stub_bin(work)
    record = os.path.join(work, "stub record")
    top = os.path.join(work, "odd dir $(touch PWNED1)")
    os.makedirs(top)
    lib, model = make_library(os.path.join(top, "lib 'one'")), make_file(os.path.join(top, 'model "x".pt'))
    hpcscreen = make_file(os.path.join(top, "bin dir", "hpcscreen `touch PWNED2`"), executable=True)
    extra = ["--top-k", "10", "a b; touch PWNED3", "$(touch PWNED4)", "'", '"', "*", ""]
    base_env = dict(os.environ, PATH=bindir + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"), STUB_RECORD=record)

    # Slurm: a run folder with spaces, quotes, '%' and shell syntax in its name.
    out = os.path.join(top, "run 1 it's 100% $(touch PWNED5); `touch PWNED6`")
    for launcher in ["mpirun", "srun"]:
        d = case_dir(work)
        script = os.path.join(d, "job.sbatch")
        r = submit("slurm", d, "--library", lib, "--hpcscreen", hpcscreen, "--launcher", launcher,
                   out=out, script=script, extra=extra, model=[model])
        check(r.returncode == 0, f"slurm {launcher}: exit 0 for an odd but valid --out ({r.stderr.strip()!r})")
        text = lines(script)
        log_line = [x for x in text if x.startswith("#SBATCH --output=")] or [""]
        want = out.replace("%", "%%") + ".%j.log"
        check(log_line == [f'#SBATCH --output="{want}"'], f"slurm: the log path in double quotes, % as %% ({log_line})")
        check(slurm_words(log_line[0]) == [f"--output={want}"],
              f"slurm: sbatch reads the line as one argument ({slurm_words(log_line[0])})")
        check(subprocess.run(["bash", "-n", script]).returncode == 0, "slurm: bash -n accepts the script")
        env = dict(base_env, SLURM_CPUS_PER_TASK="2", SLURM_NTASKS="1", SLURM_JOB_ID="77", SLURM_JOB_NUM_NODES="1")
        rc, log, argv, new = run_script(script, env, record, d)
        tail = ["screen", "--library", lib, "--model", model, "--out", out, *extra, "--threads", "2"]
        head = (["mpirun", "-np", "1", "--map-by", "ppr:1:node", "--bind-to", "none", "-x", "OMP_NUM_THREADS",
                 "-x", "OPENBLAS_NUM_THREADS"] if launcher == "mpirun" else
                ["srun", "--mpi=pmix", "--ntasks-per-node=1", "--cpus-per-task=2"])
        check(rc == 0 and "hpcscreen job: complete" in log, f"slurm {launcher}: the script ran to the end (exit {rc})")
        check(argv == head + [hpcscreen] + tail, f"slurm {launcher}: the launcher got every path and argument as one "
              f"argument each ({argv})")
        check(not new, f"slurm {launcher}: nothing else ran (no new files: {sorted(new)})")

    # PBS: -o cannot carry whitespace, so a run folder with shell syntax but no spaces.
    out = os.path.join(work, "pbs$(touch${IFS}PWNED7)", "run;`touch${IFS}PWNED8`&x|y>z")
    os.makedirs(os.path.dirname(out))
    d = case_dir(work)
    script = os.path.join(d, "job.pbs")
    r = submit("pbs", d, "--library", lib, "--hpcscreen", hpcscreen, "--time", "1-0",
               out=out, script=script, extra=extra, model=[model])
    check(r.returncode == 0, f"pbs: exit 0 for an odd but valid --out ({r.stderr.strip()!r})")
    text = lines(script)
    check(f"#PBS -o {out}.log" in text and "#PBS -l walltime=24:00:00" in text, "pbs: -o and walltime lines")
    check(subprocess.run(["bash", "-n", script]).returncode == 0, "pbs: bash -n accepts the script")
    nodefile = os.path.join(d, "nodefile")
    with open(nodefile, "w") as f:
        f.write("localhost\n")
    env = dict(base_env, PBS_JOBID="4242.shim", PBS_NODEFILE=nodefile, NCPUS="2", PBS_O_WORKDIR=d)
    rc, log, argv, new = run_script(script, env, record, d)
    want = (["mpirun", "-np", "1", "--hostfile", nodefile, "--map-by", "ppr:1:node", "--bind-to", "none",
             "-x", "OMP_NUM_THREADS", "-x", "OPENBLAS_NUM_THREADS", hpcscreen, "screen", "--library", lib,
             "--model", model, "--out", out, *extra, "--threads", "2", "--stop-after", f"{24 * 3600 - 300}s"])
    check(rc == 0 and "hpcscreen job: complete" in log, f"pbs: the script ran to the end (exit {rc})")
    check(argv == want, f"pbs: mpirun got every path and argument as one argument each ({argv})")
    check(not new, f"pbs: nothing else ran (no new files: {sorted(new)})")
    pwned = [os.path.join(dp, f) for dp, dn, fn in os.walk(work) for f in fn if f.startswith("PWNED")]
    check(not pwned, f"no PWNED file anywhere ({pwned})")


def main():
    a = e2e_args()
    HPCSCREEN[0] = os.path.abspath(a.hpcscreen)
    work = os.path.abspath(a.work)
    make_fixtures(work)
    # A real library and models, for the run's own check (hpcscreen --check).
    smi = os.path.join(work, "data", "nci300.smi")
    with open(NCI) as src, open(smi, "w") as f:
        f.writelines(src.readlines()[:300])
    REAL["lib"] = os.path.join(work, "data", "real lib")
    r = subprocess.run([HPCSCREEN[0], "pack", "compounds", "--input", smi, "--out", REAL["lib"]], capture_output=True, text=True)
    check(r.returncode == 0, f"a real library packed ({r.stderr.strip()!r})")
    REAL["model"] = os.path.join(a.models, "gnn.pt")
    REAL["bert"] = os.path.join(a.models, "bert_sequence.pt")
    test_ordinary(work)
    test_refused(work)
    test_stub_runs(work)
    finish()


if __name__ == "__main__":
    main()
