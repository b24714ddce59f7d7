"""Starts, caps and stops the TensorBoard children of one server.

Each instance is ``python -m safeboard.tensorboards.child`` in a directory of its own,
``<data_dir>/tensorboard/<id>/`` (0700): its Unix socket (0600) and its private ``TMPDIR``
live there, so no other OS user can connect to it or read what it writes. Instances live
as long as the server process (they are not in the database): a restart stops them all.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from safeboard.errors import InvalidRequest, RateLimited, ServiceUnavailable
from safeboard.settings_tensorboard import TensorboardSettings

__all__ = ["Instance", "Supervisor", "extra_installed"]

_DIR = "tensorboard"
_SOCKET = "tb.sock"


def extra_installed() -> bool:
    """True when ``safeboard[tensorboard]`` is installed (TensorBoard importable)."""
    return find_spec("tensorboard") is not None


@dataclass
class Instance:
    id: str
    owner_id: int
    owner: str
    logdir: Path
    directory: Path
    process: subprocess.Popen[bytes]
    last_used: float = field(default_factory=time.monotonic)
    # The directory, held open: a Unix socket's path may hold at most 107 bytes, which a
    # deep data directory exceeds; /proc/self/fd/N/tb.sock names it in about 25.
    dir_fd: int = -1
    # TensorBoard over runs (the dashboard's button): the runs shown, whose read access
    # the proxy checks again; empty for an instance on a directory of the server.
    run_ids: frozenset[str] = frozenset()

    @property
    def socket_path(self) -> Path:
        if self.dir_fd >= 0:
            return Path(f"/proc/self/fd/{self.dir_fd}/{_SOCKET}")
        return self.directory / _SOCKET

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1

    @property
    def prefix(self) -> str:
        """TensorBoard's ``--path_prefix``: everything it serves is under it."""
        return f"/tb/{self.id}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def touch(self) -> None:
        self.last_used = time.monotonic()


class Supervisor:
    def __init__(
        self,
        data_dir: Path,
        settings: TensorboardSettings,
        *,
        child: Sequence[str] = (sys.executable, "-m", "safeboard.tensorboards.child"),
    ) -> None:
        """``child``: the command run with ``SOCKET LOGDIR PATH_PREFIX`` (tests give an
        upstream of their own that records what reaches it)."""
        self.root = data_dir / _DIR
        self.settings = settings
        self.child = tuple(child)
        self._instances: dict[str, Instance] = {}
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._reaper: threading.Thread | None = None

    def start(self, owner_id: int, owner: str, logdir: Path) -> tuple[Instance, bool]:
        """The owner's instance on ``logdir``: the running one, else a new one (True).

        Blocks until TensorBoard listens (run it off the event loop)."""
        logdir = logdir.expanduser().resolve()
        if not logdir.is_dir():
            raise InvalidRequest(f"no such directory: {logdir}")
        return self._start(
            owner_id, owner, lambda i: not i.run_ids and i.logdir == logdir, logdir=logdir
        )

    def start_runs(
        self, owner_id: int, owner: str, run_ids: frozenset[str], fill: Callable[[Path], None]
    ) -> tuple[Instance, bool]:
        """The owner's instance over these runs: the running one, else a new one (True).
        ``fill(logdir)`` lays out the runs' event files in the instance's own logdir (on a
        reused instance too: what is new since)."""
        return self._start(owner_id, owner, lambda i: i.run_ids == run_ids, runs=(run_ids, fill))

    def _start(
        self,
        owner_id: int,
        owner: str,
        same: Callable[[Instance], bool],
        *,
        logdir: Path | None = None,
        runs: tuple[frozenset[str], Callable[[Path], None]] | None = None,
    ) -> tuple[Instance, bool]:
        self.reap()
        with self._lock:
            mine = [i for i in self._instances.values() if i.owner_id == owner_id]
            for instance in mine:
                if same(instance):
                    if runs is not None:
                        runs[1](instance.logdir)
                    instance.touch()
                    return instance, False
            if len(mine) >= self.settings.max_per_user:
                raise RateLimited(
                    f"{len(mine)} TensorBoard instances are running for you (the most "
                    "allowed, tensorboard.max_per_user); stop one or wait for its idle "
                    "timeout"
                )
            instance = self._spawn(owner_id, owner, logdir, runs)
            self._instances[instance.id] = instance
            self._start_reaper()
        try:
            self._wait_listening(instance)
        except BaseException:
            self.stop(instance.id)
            raise
        return instance, True

    def get(self, instance_id: str) -> Instance | None:
        instance = self._instances.get(instance_id)
        return instance if instance is not None and instance.alive() else None

    def instances(self) -> list[Instance]:
        return [i for i in self._instances.values() if i.alive()]

    def reap(self) -> list[Instance]:
        """Stop the instances idle longer than ``idle_minutes`` and forget dead ones."""
        limit = time.monotonic() - self.settings.idle_minutes * 60
        gone = [i for i in list(self._instances.values()) if not i.alive() or i.last_used < limit]
        for instance in gone:
            self.stop(instance.id)
        return gone

    def stop(self, instance_id: str) -> None:
        with self._lock:
            instance = self._instances.pop(instance_id, None)
        if instance is None:
            return
        if instance.alive():
            instance.process.terminate()
            try:
                instance.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                instance.process.kill()
                instance.process.wait()
        instance.close()
        shutil.rmtree(instance.directory, ignore_errors=True)

    def stop_all(self) -> None:
        self._closing.set()
        for instance_id in list(self._instances):
            self.stop(instance_id)

    def _start_reaper(self) -> None:
        """A thread that stops idle instances even when nobody asks for them (from the
        first start until ``stop_all``)."""
        if self._reaper is not None:
            return
        every = min(60.0, self.settings.idle_minutes * 60 / 4)

        def run() -> None:
            while not self._closing.wait(every):
                self.reap()

        self._reaper = threading.Thread(target=run, name="tensorboard-reaper", daemon=True)
        self._reaper.start()

    def _spawn(
        self,
        owner_id: int,
        owner: str,
        logdir: Path | None,
        runs: tuple[frozenset[str], Callable[[Path], None]] | None,
    ) -> Instance:
        self.root.mkdir(mode=0o700, exist_ok=True)
        self.root.chmod(0o700)
        if self._reaper is None:  # this server's first: what is there is an earlier one's
            for stale in self.root.iterdir():
                shutil.rmtree(stale, ignore_errors=True)
        instance_id = secrets.token_hex(8)
        directory = self.root / instance_id
        directory.mkdir(mode=0o700)
        tmp = directory / "tmp"
        tmp.mkdir(mode=0o700)
        run_ids: frozenset[str] = frozenset()
        if runs is not None:  # the runs' own files, copied into the instance's directory
            run_ids, fill = runs
            logdir = directory / "logdir"
            logdir.mkdir(mode=0o700)
            try:
                fill(logdir)
            except BaseException:
                shutil.rmtree(directory, ignore_errors=True)
                raise
        assert logdir is not None  # noqa: S101  (one of the two is given)
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("SAFEBOARD")  # the child needs none of the server's
        }
        env["TMPDIR"] = str(tmp)
        prefix = f"/tb/{instance_id}"
        with (directory / "tensorboard.log").open("wb") as log:
            process = subprocess.Popen(  # noqa: S603  (our own interpreter and module)
                # The socket's path relative to the child's working directory: short,
                # however deep the data directory (a socket path holds at most 107 bytes).
                [*self.child, _SOCKET, str(logdir), prefix],
                cwd=directory,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,  # a Ctrl-C at the terminal reaches the server only
            )
        dir_fd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        return Instance(
            instance_id, owner_id, owner, logdir, directory, process, dir_fd=dir_fd,
            run_ids=run_ids,
        )  # fmt: skip

    def _wait_listening(self, instance: Instance) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        while time.monotonic() < deadline:
            if not instance.alive():
                raise ServiceUnavailable(
                    f"TensorBoard stopped while starting: {_last_line(instance)}"
                )
            if instance.socket_path.is_socket():
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    if probe.connect_ex(str(instance.socket_path)) == 0:
                        return
            time.sleep(0.1)
        raise ServiceUnavailable("TensorBoard did not start in time (start_timeout_seconds)")


def _last_line(instance: Instance) -> str:
    """The last line TensorBoard wrote to its log (its error, when it stopped)."""
    try:
        lines = (instance.directory / "tensorboard.log").read_text(errors="replace").split("\n")
    except OSError:
        return "(no log)"
    found = [line.strip() for line in lines if line.strip()]
    return found[-1][:300] if found else "(no log)"
