"""Server processes for the end-to-end tests, forked from an interpreter that has already
imported the server, instead of a new ``python -m safeboard server`` each time.

A server start cost about 3 CPU s on the test machines, 2.3 s of it importing FastAPI,
pydantic, SQLAlchemy and safeboard's routes and 0.5 s building the routes; the end-to-end
tier starts a few hundred. Each test worker starts one fork server (``python -m
tests.support.forkserver SOCKET``): it imports all that once, then for every start forks a
child that takes the test's command line, environment, working directory and log file, and
runs the same entry point as ``python -m safeboard`` (``safeboard.__main__.run``), exiting
as the interpreter would (threads joined, ``atexit`` run, streams flushed).

What a new interpreter would do differently is what ran at import, before the test's
environment was set: nothing in safeboard reads the environment at import (every setting is
read when the server starts), and the tests of the start itself (``test_server_start.py``,
marked ``exec_server``) still start ``python -m safeboard server`` as a user does.

The test holds a ``ForkedProcess``: the parts of ``subprocess.Popen`` the tests use (pid,
poll, wait, signals); its exit status comes from the fork server, which reaps its children.

CLI commands (``tests/e2e/conftest.py: run_cli``) are forked the same way (:func:`run`):
the test's ends of three pipes (stdin, stdout, stderr) travel with the request over the
socket (``SCM_RIGHTS``), and the child runs the command on them. A local command (``key
create``, ``user add``) cost about 1.8 CPU s in a new interpreter when it built all the
server's services (about 1 s now), most of it imports; the suite runs a few hundred, and the
tests of the CLI itself still run every other command a user types in a new one (their
own ``subprocess`` calls, and ``run_cli(..., fresh=True)``).

Under coverage (``scripts/coverage``) servers and CLI commands are started the usual way,
so that they are measured.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from tests.support.scratch import scratch_dir

__all__ = ["ForkedProcess", "available", "run", "spawn"]

# What the server imports as it starts, beyond its module: migrations, the HTTP protocol.
_PRELOAD = (
    "safeboard.__main__",
    "safeboard.cli",
    "safeboard.server.run",
    "safeboard.api.app",
    "safeboard.server.import_runner",  # the import socket's, loaded at its first import
    "alembic.command",
    "alembic.runtime.migration",
    "uvicorn.protocols.http.h11_impl",
    "uvicorn.protocols.http.httptools_impl",
    "uvicorn.protocols.websockets.auto",
    "uvicorn.lifespan.on",
    "uvicorn.loops.auto",
)
_READY = b"ready\n"
_START_SECONDS = 60


class ForkedProcess:
    """A server forked by the fork server: what the tests use of ``subprocess.Popen``."""

    def __init__(self, pid: int, status: Path, args: list[str]) -> None:
        self.pid = pid
        self.args = args
        self.returncode: int | None = None
        self._status = status

    def poll(self) -> int | None:
        if self.returncode is None and self._status.exists():
            self.returncode = int(self._status.read_text())
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(self.args, timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # as Popen: never signal a pid that may have been reused
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def available() -> bool:
    """Whether servers may be forked: not under coverage, which measures new interpreters."""
    return not any(name.startswith(("COV_CORE_", "COVERAGE_")) for name in os.environ)


_lock = threading.Lock()
_server: tuple[subprocess.Popen[bytes], Path] | None = None


def spawn(args: list[str], env: dict[str, str], log: Path) -> ForkedProcess:
    """Start ``python -m safeboard ARGS`` with ``env``, its output to ``log``."""
    log.write_bytes(b"")  # there at once, as with Popen's stdout=log
    return _start(args, env, [], log=str(log))


def _start(args: list[str], env: dict[str, str], fds: list[int], **fields: str) -> ForkedProcess:
    """Have this worker's fork server fork ``python -m safeboard ARGS`` with ``env``;
    ``fds``: a CLI command's stdin, stdout and stderr, sent with the request."""
    socket_path = _fork_server()
    status = scratch_dir("forked-") / "status"
    request = {"args": args, "env": env, "cwd": str(Path.cwd()), "status": str(status), **fields}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(_START_SECONDS)
        conn.connect(str(socket_path))
        socket.send_fds(conn, [json.dumps(request).encode() + b"\n"], fds)
        answer = json.loads(conn.makefile("rb").readline())
    if "pid" not in answer:
        raise AssertionError(f"the fork server did not start safeboard {args}: {answer}")
    return ForkedProcess(int(answer["pid"]), status, [sys.executable, "-m", "safeboard", *args])


def run(
    args: list[str],
    env: dict[str, str],
    *,
    input: str | None = None,
    timeout: float = 60,
    hold_stdin: bool = False,
) -> subprocess.CompletedProcess[str]:
    """``python -m safeboard ARGS`` with ``env``, forked: what ``subprocess.run`` with
    ``capture_output=True, text=True`` returns (TimeoutExpired, the child killed, past
    ``timeout``). ``input``: its stdin (else /dev/null); ``hold_stdin``: a pipe that stays
    open until the command ends (one that reads it waits: the harness's test of the
    timeout)."""
    if hold_stdin:
        input = ""
    stdin_read, stdin_write = os.pipe() if input is not None else (os.open(os.devnull, 0), -1)
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    try:
        child = _start(args, env, [stdin_read, out_write, err_write])
    except BaseException:
        for fd in (stdin_write, out_read, err_read):
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in (stdin_read, out_write, err_write):
            os.close(fd)
    command = child.args
    if stdin_write >= 0 and not hold_stdin:
        with os.fdopen(stdin_write, "wb") as sink, contextlib.suppress(BrokenPipeError):
            sink.write((input or "").encode())  # small: the pipe holds it
    try:
        out, err = _read_both(out_read, err_read, time.monotonic() + timeout)
    finally:
        if hold_stdin:
            os.close(stdin_write)
    if out is None or err is None:
        child.kill()
        child.wait()
        raise subprocess.TimeoutExpired(command, timeout)
    code = child.wait(timeout)
    return subprocess.CompletedProcess(command, code, out.decode(), err.decode())


def _read_both(out: int, err: int, deadline: float) -> tuple[bytes | None, bytes | None]:
    """Everything written to the two pipes until both are closed; (None, None) past
    ``deadline``. Both read ends are closed."""
    chunks: dict[int, list[bytes]] = {out: [], err: []}
    open_ends = [out, err]
    try:
        while open_ends:
            left = deadline - time.monotonic()
            if left <= 0:
                return None, None
            ready, _, _ = select.select(open_ends, [], [], left)
            for fd in ready:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    open_ends.remove(fd)
    finally:
        os.close(out)
        os.close(err)
    return b"".join(chunks[out]), b"".join(chunks[err])


def _fork_server() -> Path:
    """The socket of this worker's fork server, started on first use."""
    global _server  # noqa: PLW0603  (one per test worker)
    with _lock:
        if _server is not None and _server[0].poll() is None:
            return _server[1]
        socket_path = scratch_dir("forkserver-") / "socket"
        env = {k: v for k, v in os.environ.items() if not k.startswith("SAFEBOARD")}
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.forkserver", str(socket_path)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
        )
        assert process.stdout is not None
        ready = process.stdout.readline()
        if ready != _READY:
            process.kill()
            raise AssertionError(f"the fork server did not start: {ready!r}")
        atexit.register(process.terminate)
        _server = (process, socket_path)
        return socket_path


# The fork server itself: ``python -m tests.support.forkserver SOCKET``.


def _serve(socket_path: str) -> None:
    import importlib
    import pkgutil

    import safeboard.cli

    commands = [f"safeboard.cli.{m.name}" for m in pkgutil.iter_modules(safeboard.cli.__path__)]
    for name in (*_PRELOAD, *commands):  # and every command's module: CLI commands fork too
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from safeboard.api import app

    for group in app._ROUTERS:
        app._shared_routes(group)
    parent = os.getppid()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(socket_path)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    statuses: dict[int, str] = {}
    sys.stdout.buffer.write(_READY)
    sys.stdout.flush()
    while os.getppid() == parent:  # the test worker is gone: so are its tests
        ready, _, _ = select.select([listener, wake_read], [], [], 1.0)
        if wake_read in ready:
            os.read(wake_read, 4096)
        _reap(statuses)
        if listener in ready:
            conn, _ = listener.accept()
            with conn:
                request, fds = _receive(conn)
                pid = os.fork()
                if pid == 0:
                    for fd in (listener.fileno(), conn.fileno(), wake_read, wake_write):
                        os.close(fd)
                    _child(request, fds)  # never returns
                for fd in fds:  # the child's now
                    os.close(fd)
                statuses[pid] = request["status"]
                conn.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request: a line of JSON, and with a CLI command's, its three pipes' ends."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while not data.endswith(b"\n"):
        more = conn.recv(1 << 16)
        if not more:
            break
        data += more
    return json.loads(data), list(fds)


def _reap(statuses: dict[int, str]) -> None:
    while statuses:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            return
        path = Path(statuses.pop(pid))
        partial = path.with_name(path.name + ".partial")
        partial.write_text(str(os.waitstatus_to_exitcode(status)))
        partial.rename(path)  # read whole or not at all


def _child(request: dict[str, Any], fds: list[int]) -> None:
    code: int = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if fds:  # a CLI command: the test's pipes
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
                os.close(fd)
        else:  # a server: its log file
            log = os.open(request["log"], os.O_WRONLY | os.O_CREAT, 0o644)
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
            os.close(devnull)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        import safeboard.__main__ as entry

        sys.argv = [str(entry.__file__), *request["args"]]
        try:
            entry.run()
            code = 0
        except SystemExit as stop:
            code = _exit_code(stop.code)
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
    except BaseException:  # noqa: BLE001  (as the interpreter: printed, status 1)
        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _exit_code(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    sys.stderr.write(f"{code}\n")
    return 1


if __name__ == "__main__":
    _serve(sys.argv[1])
