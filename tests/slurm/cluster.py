"""A single-node Slurm cluster for the tests: munged, slurmctld and slurmd started by hand (no
systemd) with every file under one folder, stopped by their PID files."""
import os
import shutil
import signal
import socket
import subprocess
import time

SLURM_CONF = """\
ClusterName=hpcscreen-test
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={state}/munge.socket.2
CredType=cred/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/d
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={state}/jobcomp.txt
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MinJobAge=600
KillWait=10
SlurmdTimeout=60
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self, state_dir):
        self.state = os.path.abspath(state_dir)
        self.conf = os.path.join(self.state, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)

    def start(self):
        for tool in ("munged", "slurmctld", "slurmd", "sbatch"):
            if not shutil.which(tool) and not os.path.exists(f"/usr/sbin/{tool}"):
                raise SystemExit(f"{tool} is missing: install slurmctld slurmd slurm-client munge (tools/install-deps.sh does)")
        shutil.rmtree(self.state, ignore_errors=True)
        for d in ("ctld", "d", "munge"):
            os.makedirs(os.path.join(self.state, d))
        key = os.path.join(self.state, "munge.key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        os.chmod(self.state, 0o755)
        subprocess.run(["/usr/sbin/munged", "--force", f"--socket={self.state}/munge.socket.2", f"--key-file={key}",
                        f"--pid-file={self.state}/munged.pid", f"--log-file={self.state}/munged.log",
                        f"--seed-file={self.state}/munge.seed"], check=True)
        with open(self.conf, "w") as f:
            f.write(SLURM_CONF.format(state=self.state, ctld_port=free_port(), d_port=free_port(), cpus=os.cpu_count()))
        subprocess.run(["/usr/sbin/slurmctld", "-f", self.conf, "-c"], check=True, env=self.env)
        subprocess.run(["/usr/sbin/slurmd", "-f", self.conf, "-N", "localhost"], check=True, env=self.env)
        t0 = time.time()
        while time.time() - t0 < 60:
            out = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env).stdout.strip()
            if out in ("idle", "mixed"):
                return self
            time.sleep(0.2)
        raise SystemExit(f"the Slurm node did not come up (sinfo: {out!r}); see {self.state}/*.log")

    def sbatch(self, script, cwd):
        out = subprocess.run(["sbatch", "--parsable", script], capture_output=True, text=True, env=self.env, cwd=cwd)
        if out.returncode != 0:
            raise SystemExit(f"sbatch failed: {out.stderr}")
        return out.stdout.strip().split(";")[0]

    def job(self, job_id):
        out = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, env=self.env).stdout
        return dict(kv.split("=", 1) for kv in out.split() if "=" in kv)

    def wait(self, job_id, timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            j = self.job(job_id)
            if j.get("JobState") in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return j
            time.sleep(0.3)
        raise SystemExit(f"job {job_id} did not finish in {timeout} s")

    def stop(self):
        for name in ("slurmd", "slurmctld", "munged"):
            pid_file = os.path.join(self.state, f"{name}.pid")
            try:
                pid = int(open(pid_file).read().strip())
                os.kill(pid, signal.SIGTERM)
                for _ in range(50):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except (OSError, ValueError):
                pass
