"""A one-node SLURM cluster on this machine, for the tests: Debian's munge, slurmctld and slurmd,
installed with apt when missing, started with their state, sockets, logs and pid files in one
directory, and stopped by their PIDs. Clients find it through ``SLURM_CONF``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ["munge", "slurmctld", "slurmd", "slurm-client"]
DAEMONS = ["/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd"]


class ClusterUnavailable(RuntimeError):
    pass


def ensure_installed() -> None:
    """apt-get install the packages when a daemon or a client command is missing (needs root)."""
    if all(Path(d).exists() for d in DAEMONS) and shutil.which("sbatch"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise ClusterUnavailable("SLURM is not installed and apt-get cannot install it here (needs root and apt)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        update = subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, text=True)
        proc = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterUnavailable(f"apt-get install {' '.join(PACKAGES)} failed: {(proc.stderr or update.stderr).strip()[-500:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _conf(root: Path) -> str:
    host = socket.gethostname()
    mem = max(1024, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 2048)
    return f"""ClusterName=infogap-test
SlurmctldHost={host}
SlurmctldPort={_free_port()}
SlurmdPort={_free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={root}/munge/munge.socket
CredType=cred/munge
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=600
KillWait=10
Waittime=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
"""


class LocalCluster:
    """``with LocalCluster(tmpdir) as env: subprocess.run(["sbatch", ...], env=env)``"""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.env = {**os.environ, "SLURM_CONF": str(self.root / "slurm.conf")}
        self.pids: list[int] = []

    def __enter__(self) -> dict:
        ensure_installed()
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        munge = self.root / "munge"
        shutil.chown(munge, "munge", "munge")
        os.chmod(self.root, 0o755)
        os.chmod(munge, 0o755)  # munged wants its socket directory searchable by all
        (self.root / "slurm.conf").write_text(_conf(self.root))
        try:
            self._start(["runuser", "-u", "munge", "--", DAEMONS[0], f"--socket={munge}/munge.socket",
                         f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
                        munge / "munged.pid")
            self._start([DAEMONS[1], "-f", str(self.root / "slurm.conf")], self.root / "slurmctld.pid")
            self._start([DAEMONS[2], "-f", str(self.root / "slurm.conf")], self.root / "slurmd.pid")
            self._wait_idle()
        except BaseException:
            self.stop()
            raise
        return self.env

    def __exit__(self, *exc) -> None:
        self.stop()

    def _start(self, argv: list[str], pid_file: Path) -> None:
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ClusterUnavailable(f"{argv[0]} failed to start: {proc.stderr.strip() or proc.stdout.strip()} ({self.logs()})")
        deadline = time.time() + 20
        while not (pid_file.is_file() and pid_file.read_text().strip()):
            if time.time() > deadline:
                raise ClusterUnavailable(f"{argv[0]} wrote no pid file {pid_file} ({self.logs()})")
            time.sleep(0.1)
        self.pids.append(int(pid_file.read_text().split()[0]))

    def _wait_idle(self, timeout: float = 60) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = subprocess.run(["sinfo", "-h", "-o", "%t"], env=self.env, capture_output=True, text=True).stdout.strip()
            if out in ("idle", "mix", "alloc"):
                return
            time.sleep(0.5)
        raise ClusterUnavailable(f"the node did not become idle within {timeout:.0f} s ({self.logs()})")

    def logs(self) -> str:
        return f"logs in {self.root}"

    def stop(self) -> None:
        """SIGTERM each daemon by PID (slurmd, slurmctld, munged), then SIGKILL what is left."""
        for pid in reversed(self.pids):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.time() + 15
        for pid in reversed(self.pids):
            while time.time() < deadline and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.pids.clear()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def squeue_state(env: dict, job: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], env=env, capture_output=True, text=True).stdout.strip()


def wait_for_jobs(env: dict, jobs: list[str], timeout: float) -> None:
    """Until none of the jobs (array jobs included) is pending or running."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        out = subprocess.run(["squeue", "-h", "-o", "%i %T"], env=env, capture_output=True, text=True).stdout
        active = [line for line in out.splitlines() if line.split()[0].split("_")[0] in jobs]
        if not active:
            return
        time.sleep(1)
    raise TimeoutError(f"jobs {jobs} still queued or running after {timeout:.0f} s")
