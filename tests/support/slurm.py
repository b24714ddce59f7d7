"""A one-node Slurm cluster for the tests (docs/agents.md, "Slurm"; the recipe in the
reference study's appendix 1): Debian's ``munged``, ``slurmctld`` and ``slurmd`` run as
root in a private network, mount and PID namespace (``unshare``), so only its loopback
carries their traffic and no port of the machine is taken. A veth pair with a TEST-NET
address exists in that namespace only because Slurm 22.05 calls
``getaddrinfo(AI_ADDRCONFIG)``, which fails where only loopback is up.

The Slurm commands (``sbatch``, ``squeue``, ``sacct``, ``scancel``, ``scontrol``,
``sinfo``) reach the cluster through small wrappers in ``tools`` (prepend it to PATH): each
runs the real command in the cluster's network namespace (``nsenter``), with
``SLURM_CONF`` naming this cluster's configuration. Munge's socket is a file, so the
wrappers' requests are signed by the cluster's munged.

``start`` raises ``SlurmUnavailable`` with the reason (never a skip: CI runs as root with
the packages installed by scripts/install-system-deps)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["CLIENT_COMMANDS", "SlurmCluster", "SlurmUnavailable"]

CLIENT_COMMANDS = ("sbatch", "squeue", "sacct", "scancel", "scontrol", "sinfo")
_DAEMONS = ("munged", "mungekey", "slurmctld", "slurmd", "slurmstepd")
_READY = 60.0  # seconds for the node to come up idle

_CONF = """\
ClusterName=safeboardtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
AuthInfo=socket={base}/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={base}/ctld
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/builtin
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
MinJobAge=600
KillWait=2
InactiveLimit=0
SlurmdTimeout=30
NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=1024 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""

_INSIDE = """\
set -eu
ip link set lo up
ip link add sbveth0 type veth peer name sbveth1
ip addr add 192.0.2.10/32 dev sbveth0
ip link set sbveth0 up
ip link set sbveth1 up
mungekey --create --keyfile={base}/munge/munge.key --force >/dev/null
munged --force --key-file={base}/munge/munge.key --socket={base}/munge/munge.socket \
  --pid-file={base}/munge/munged.pid --log-file={base}/munge/munged.log \
  --seed-file={base}/munge/munged.seed
export SLURM_CONF={base}/slurm.conf
{slurmctld} -D -i -f {base}/slurm.conf &
{slurmd} -D -f {base}/slurm.conf -d {slurmstepd} &
echo ready >{base}/inside.started
wait
"""

_WRAPPER = """\
#!/bin/sh
export SLURM_CONF={base}/slurm.conf
exec nsenter --net=/proc/{pid}/ns/net -- {real} "$@"
"""


class SlurmUnavailable(RuntimeError):
    """The cluster could not start; the message says why."""


def _daemon(name: str) -> str:
    """Debian installs ``slurmctld-wlm`` (``slurmctld`` is an alternatives link)."""
    for candidate in (f"{name}-wlm", name):
        for directory in ("/usr/sbin", "/usr/bin"):
            path = Path(directory) / candidate
            if path.exists():
                return str(path)
    found = shutil.which(name)
    if found is None:
        raise SlurmUnavailable(f"{name} is not installed: run scripts/install-system-deps "
                               "(Debian: slurmctld slurmd slurm-client munge)")  # fmt: skip
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for its parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class SlurmCluster:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.host = socket.gethostname().split(".")[0]
        self.tools = base / "tools"
        self.conf = base / "slurm.conf"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> SlurmCluster:
        if os.geteuid() != 0:
            raise SlurmUnavailable("the test Slurm cluster runs as root (unshare, slurmd)")
        for name in ("unshare", "nsenter", "ip"):
            if shutil.which(name) is None:
                raise SlurmUnavailable(f"{name} is missing (util-linux, iproute2)")
        daemons = {name: _daemon(name) for name in _DAEMONS}
        for sub in ("munge", "ctld", "spool", "tools"):
            (self.base / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        self.base.chmod(0o700)
        cpus = max(2, os.cpu_count() or 2)
        self.conf.write_text(_CONF.format(host=self.host, base=self.base, cpus=cpus))
        script = self.base / "inside.sh"
        script.write_text(_INSIDE.format(base=self.base, slurmctld=daemons["slurmctld"],
                                         slurmd=daemons["slurmd"],
                                         slurmstepd=daemons["slurmstepd"]))  # fmt: skip
        with (self.base / "inside.log").open("wb") as log:
            self.process = subprocess.Popen(
                ["unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc",
                 "--kill-child", "sh", str(script)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        for name in CLIENT_COMMANDS:
            real = shutil.which(name, path="/usr/bin:/usr/sbin")
            if real is None:
                self.stop()
                raise SlurmUnavailable(f"{name} is not installed (Debian: slurm-client)")
            wrapper = self.tools / name
            wrapper.write_text(_WRAPPER.format(base=self.base, pid=self.process.pid, real=real))
            wrapper.chmod(0o755)
        self._wait_idle()
        return self

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with the wrappers first on PATH and SLURM_CONF set."""
        return {**env, "PATH": f"{self.tools}:{env.get('PATH', os.defpath)}",
                "SLURM_CONF": str(self.conf)}  # fmt: skip

    def command(self, name: str, *args: str, check: bool = True) -> str:
        """Run a Slurm command against the cluster; its stdout."""
        done = subprocess.run(
            [str(self.tools / name), *args], capture_output=True, text=True, timeout=30,
            check=False,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{name} {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def restart_controller(self, *, clear: bool) -> None:
        """Kill slurmctld (SIGKILL) and start it again in the namespace; ``clear``: with
        its state wiped (``-c``), so that it has forgotten every job (a scheduler that
        lost its jobs)."""
        assert self.process is not None
        for pid in self._pids("slurmctld"):
            os.kill(pid, signal.SIGKILL)
            while _alive(pid):
                time.sleep(0.1)
        first = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        inside = first.read_text().split()[0]  # the namespace's first process (sh)
        args = [_daemon("slurmctld"), "-i", "-f", str(self.conf), *(["-c"] if clear else [])]
        subprocess.run(
            ["nsenter", "-t", inside, "--net", "--mount", "--pid", "--", *args],
            env={**os.environ, "SLURM_CONF": str(self.conf)}, check=True, timeout=30,
            capture_output=True,
        )  # fmt: skip
        self._wait_idle(states=("idle", "mixed", "allocated"))

    def _pids(self, daemon: str) -> list[int]:
        """This cluster's ``daemon`` processes (its argv names our slurm.conf)."""
        found = []
        for entry in Path("/proc").iterdir():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            name = Path(argv[0].decode(errors="replace")).name
            if name.startswith(daemon) and str(self.conf).encode() in argv:
                found.append(int(entry.name))
        return found

    def node_state(self) -> str:
        return self.command("sinfo", "--noheader", "-N", "-o", "%T").strip()

    def _wait_idle(self, states: tuple[str, ...] = ("idle",)) -> None:
        deadline = time.monotonic() + _READY
        last = ""
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                self.stop()
                raise SlurmUnavailable(f"the cluster's namespace ended: {self._logs()}")
            if (self.base / "inside.started").exists():
                done = subprocess.run(
                    [str(self.tools / "sinfo"), "--noheader", "-N", "-o", "%T"],
                    capture_output=True, text=True, timeout=30, check=False,
                )  # fmt: skip
                last = (done.stdout + done.stderr).strip()
                if done.returncode == 0 and last in states:
                    return
            time.sleep(0.5)
        self.stop()
        raise SlurmUnavailable(f"the node is not idle within {_READY:g} s ({last!r}): "
                               f"{self._logs()}")  # fmt: skip

    def _logs(self) -> str:
        parts = []
        for name in ("inside.log", "slurmctld.log", "slurmd.log", "munge/munged.log"):
            path = self.base / name
            if path.exists():
                parts.append(f"{name}: {path.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts) or "no logs"

    def stop(self) -> None:
        """Kill the namespace's first process: the kernel ends every process in it."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
