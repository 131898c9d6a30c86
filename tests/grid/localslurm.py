"""A single-node SLURM for the tests: munge, slurmctld and slurmd from Debian's packages
(slurm-wlm, munge; ``.ci/run`` installs them), one node with this machine's CPUs and memory,
started as root with ``SlurmUser=root``, no cgroups (``proctrack/linuxproc``, ``task/none``).
``start`` returns the environment clients need (``SLURM_CONF``) or raises ``Unavailable``
saying why; ``stop`` ends the jobs and the daemons."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

CONF = """ClusterName=vlsmtest
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
NodeName={host} CPUs={cpus} RealMemory={memory} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "sinfo", "scancel")


class Unavailable(RuntimeError):
    """No single-node SLURM can start here (not root, packages absent, a daemon failed)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(folder: Path) -> dict[str, str]:
    """Start munge (if not running), slurmctld and slurmd; wait for the node to be idle."""
    if os.geteuid() != 0:
        raise Unavailable("the single-node SLURM starts its daemons as root")
    absent = [d for d in DAEMONS if not shutil.which(d) and not Path(f"/usr/sbin/{d}").exists()]
    if absent:
        raise Unavailable(f"{absent} not installed (apt-get install slurm-wlm munge)")
    folder.mkdir(parents=True, exist_ok=True)
    for sub in ("state", "spool"):
        (folder / sub).mkdir(exist_ok=True)
    _munge()
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20 - 1024
    conf = folder / "slurm.conf"
    conf.write_text(
        CONF.format(
            host=socket.gethostname().split(".")[0],
            folder=folder,
            cpus=os.cpu_count(),
            memory=memory,
            ctld_port=_free_port(),
            d_port=_free_port(),
        )
    )
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for daemon in ("slurmctld", "slurmd"):
        done = subprocess.run(
            [f"/usr/sbin/{daemon}", "-f", str(conf)], env=env, capture_output=True
        )
        if done.returncode:
            stop(folder)
            raise Unavailable(f"{daemon} did not start: {done.stderr.decode()[-400:]}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, capture_output=True, text=True)
        if state.stdout.strip() == "idle":
            return {"SLURM_CONF": str(conf)}
        time.sleep(0.5)
    log = (folder / "slurmd.log").read_text()[-400:] if (folder / "slurmd.log").exists() else ""
    stop(folder)
    raise Unavailable(f"the node never became idle: {log}")


def _munge() -> None:
    if subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode == 0:
        return
    key = Path("/etc/munge/munge.key")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.write_bytes(os.urandom(1024))
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    done = subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], capture_output=True)
    if done.returncode:
        raise Unavailable(f"munged did not start: {done.stderr.decode()[-300:]}")


def stop(folder: Path) -> None:
    """Cancel every job, then end slurmd and slurmctld (munge keeps running for the next)."""
    env = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    subprocess.run(["scancel", "--user=root"], env=env, capture_output=True)
    for daemon in ("slurmd", "slurmctld"):
        pid_file = folder / f"{daemon}.pid"
        try:
            pid = int(pid_file.read_text())
        except (OSError, ValueError):
            continue
        for sig, wait_s in ((15, 10.0), (9, 5.0)):  # TERM, then KILL if it lingers
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait_s
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
