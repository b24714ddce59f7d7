"""Server processes for the benchmark: free ports, start in a new session, wait until ready,
memory of the whole process tree (from /proc), and a stop that always ends the tree."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Memory", "MemorySampler", "Server", "free_port", "start_server"]

MIB = 1024 * 1024


def free_port() -> int:
    """A port free on 127.0.0.1 right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def tree_pids(root: int) -> list[int]:
    """``root`` and every process below it."""
    tree = _children()
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(tree.get(pid, []))
    return pids


@dataclass(frozen=True)
class Memory:
    """Summed over a process tree: RSS counts shared pages once per process (forked
    workers share their imports), PSS splits them fairly."""

    rss: int
    pss: int
    processes: int

    @property
    def rss_mib(self) -> float:
        return self.rss / MIB

    @property
    def pss_mib(self) -> float:
        return self.pss / MIB


def _kib_field(path: Path, name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(name):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def tree_memory(root: int) -> Memory:
    pids = tree_pids(root)
    rss = sum(_kib_field(Path(f"/proc/{pid}/status"), "VmRSS:") for pid in pids)
    pss = sum(_kib_field(Path(f"/proc/{pid}/smaps_rollup"), "Pss:") for pid in pids)
    return Memory(rss, pss, len(pids))


class MemorySampler:
    """Samples a process tree every ``interval`` s in a thread; keeps the peak."""

    def __init__(self, root: int, interval: float = 0.5) -> None:
        self.root = root
        self.interval = interval
        self.peak = Memory(0, 0, 0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> Memory:
        now = tree_memory(self.root)
        if now.rss > self.peak.rss:
            self.peak = Memory(now.rss, max(now.pss, self.peak.pss), now.processes)
        elif now.pss > self.peak.pss:
            self.peak = Memory(self.peak.rss, now.pss, self.peak.processes)
        return now

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory(self) -> Memory:
        return tree_memory(self.proc.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the server's own process group (it was started in a new session),
        SIGKILL after 10 s; also any process of its tree that left the group."""
        if self.proc.poll() is not None and not tree_pids(self.proc.pid)[1:]:
            return
        stragglers = tree_pids(self.proc.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        deadline = time.monotonic() + 5
        for pid in stragglers[1:]:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def start_server(
    name: str,
    cmd: Sequence[str],
    *,
    url: str,
    log_path: Path,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 120.0,
) -> Server:
    """Start ``cmd`` in its own session (so one signal ends its whole group) and wait until
    ``ready()`` is true; raise with the log's tail if it exits or times out first."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            list(cmd),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
            start_new_session=True,
        )
    server = Server(name, url, proc, log_path)
    try:
        problem = _wait_ready(server, ready, timeout)
    except BaseException:
        server.stop()
        raise
    if problem:
        server.stop()
        raise RuntimeError(f"{name} {problem}:\n{server.log_tail()}")
    return server


def _wait_ready(server: Server, ready: Callable[[], bool], timeout: float) -> str | None:
    """None once ready, else what went wrong."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            return f"exited with {server.proc.returncode}"
        if ready():
            return None
        time.sleep(0.25)
    return f"not ready after {timeout:.0f} s"
