"""Issue 15, P7: ``safeboard import tensorboard`` on the server's machine hands the event
files' descriptors to the server through ``import.sock`` (safeboard/importsock). The same
runs come out as over HTTP (``--url``), an import begun one way and finished the other
stores nothing twice, and the socket refuses what it must (docs/security.md, "S19 The
import socket"): a pipe's or a directory's descriptor, a revoked key, a read-only key, a
key without a grant in the project, a broken request, another OS account."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from safeboard.client import Client
from safeboard.client.credentials import read_discovery
from safeboard.datadir import SocketAddress
from safeboard.importsock import protocol
from safeboard.logdirs import run_id_for
from safeboard.sdk.tbrun import WINDOW
from tests.e2e.conftest import ServerProcess, cli_env, run_cli
from tests.e2e.test_tensorboard_import import client, scalar_event, server
from tests.support.eventfiles import tensorboard_tf2_run, tensorboardx_run

pytestmark = pytest.mark.e2e

__all__ = ["client", "server"]  # the fixtures, shared with test_tensorboard_import

USED = "over the import socket by"  # the server's log line for each import it ran


def cli(server: ServerProcess, tmp_path: Path, *args: str, fresh: bool = False) -> str:
    env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
    env["SAFEBOARD_CONFIG_DIR"] = str(tmp_path / "config")
    done = run_cli("import", "tensorboard", *args, env=env, timeout=180, fresh=fresh)
    assert "Traceback" not in done.stderr
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def imports_seen(server: ServerProcess) -> int:
    return server.log.count(USED)


def snapshot(client: Client, run_id: str) -> dict[str, Any]:
    run = client.run(run_id)
    metrics = {m.key: client.points(run_id, m.key) for m in run.metrics}
    return {
        "name": run.name, "status": run.status.value, "config": run.config, "notes": run.notes,
        "points": {k: (p.steps, p.values) for k, p in metrics.items()},
        "artifacts": sorted((a.name, a.kind.value, a.size) for a in client.artifacts(run_id)),
    }  # fmt: skip


def test_the_socket_and_http_make_the_same_runs(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    logdir = tmp_path / "logs"
    tensorboard_tf2_run(logdir / "tf2")
    tensorboardx_run(logdir / "tbx")
    before = imports_seen(server)
    cli(server, tmp_path, str(logdir), "-p", "viasock")
    assert imports_seen(server) == before + 1  # the server imported it
    cli(server, tmp_path, str(logdir), "-p", "viahttp", "--url", server.url)
    assert imports_seen(server) == before + 1  # --url: over HTTP
    for name in ("tf2", "tbx", "tbx/hp"):
        directory = logdir / name
        sock = snapshot(client, run_id_for("viasock", directory))
        http = snapshot(client, run_id_for("viahttp", directory))
        assert sock == http
        assert sock["points"]  # something was compared
    # the event files kept for the TensorBoard button, beside the server's reading
    kept = [a for a in snapshot(client, run_id_for("viasock", logdir / "tf2"))["artifacts"]
            if a[0].startswith("tensorboard/")]  # fmt: skip
    assert len(kept) == 1
    # again through the socket: nothing stored twice
    cli(server, tmp_path, str(logdir), "-p", "viasock")
    assert imports_seen(server) == before + 2
    again = snapshot(client, run_id_for("viasock", logdir / "tf2"))
    assert again == snapshot(client, run_id_for("viahttp", logdir / "tf2"))


def test_an_import_begun_one_way_and_finished_the_other_stores_nothing_twice(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    """The ledger's cuts go both ways (R1): the socket's cut reaches the command's ledger
    and HTTP's reaches the server, so the batches of a file that grew keep their ids."""
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir = tmp_path / "grow"
    writer = EventFileWriter(str(logdir / "run"))
    step = 0

    def write(count: int) -> None:
        nonlocal step
        for _ in range(count):
            writer.add_event(scalar_event("loss", float(step), step))
            step += 1
        writer.flush()

    run_id = run_id_for("grow", logdir / "run")
    write(50)
    cli(server, tmp_path, str(logdir), "-p", "grow", "--url", server.url)  # HTTP
    write(50)
    cli(server, tmp_path, str(logdir), "-p", "grow")  # the socket
    write(50)
    cli(server, tmp_path, str(logdir), "-p", "grow", "--url", server.url)  # HTTP again
    writer.close()
    cli(server, tmp_path, str(logdir), "-p", "grow")
    points = client.points(run_id, "loss")
    assert list(points.steps) == list(range(150))
    assert list(points.values) == [float(s) for s in range(150)]


def test_the_command_loads_neither_httpx_nor_numpy(
    server: ServerProcess, client: Client, tmp_path: Path
) -> None:
    """What P7 times: the command's start. Through the socket (and without the copies for
    the TensorBoard button, which go over HTTP) it imports no HTTP client and no numpy."""
    logdir = tmp_path / "logs"
    tensorboardx_run(logdir / "lean", steps=3)
    env = {**cli_env(server.data_dir), "SAFEBOARD_SPOOL_DIR": str(tmp_path / "spool")}
    env["SAFEBOARD_CONFIG_DIR"] = str(tmp_path / "config")
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    done = run_cli("import", "tensorboard", str(logdir), "-p", "lean", "--no-keep-event-files",
                   env=env, timeout=180, fresh=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert "safeboard.importsock.command" in imported
    assert {"httpx", "numpy", "safeboard.client"}.isdisjoint(imported)
    assert len(client.points(run_id_for("lean", logdir / "lean"), "loss").steps) == 3


# --- the socket's refusals, spoken to directly -------------------------------------------


def talk(
    server: ServerProcess, request: dict[str, Any], fds: list[int], *, at_cut: str = "ok"
) -> list[dict[str, Any]]:
    """One request to the import socket, answered as the command answers (``at_cut``
    "close": hang up at the first cut instead); every message."""
    address = SocketAddress(server.data_dir / protocol.IMPORT_SOCKET)
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(address.address)
            with contextlib.suppress(protocol.Gone):  # refused before it took them all
                protocol.send(sock, request)
                protocol.send_fds(sock, fds)
            messages = []
            while True:
                message = protocol.receive(sock)
                messages.append(message)
                if "runs" in message:
                    protocol.send(sock, {"ledgers": {}})
                elif "cut" in message and at_cut == "close":
                    return messages
                elif "cut" in message:
                    protocol.send(sock, {"ok": True})
                elif "done" in message or "error" in message:
                    return messages
    finally:
        address.close()


def request_for(key: str, project: str, directory: Path, files: list[str]) -> dict[str, Any]:
    return {
        "version": protocol.VERSION, "api_key": key, "project": project,
        "runs": [{"name": "r", "dir": str(directory), "files": [{"name": f} for f in files]}],
    }  # fmt: skip


def error_of(messages: list[dict[str, Any]]) -> str:
    assert "error" in messages[-1], messages
    return str(messages[-1]["error"]["message"])


def new_key(server: ServerProcess, *args: str) -> str:
    made = run_cli("key", "create", "--name", "sock", *args, data_dir=server.data_dir)
    assert made.returncode == 0, made.stderr
    return made.stdout.strip()


@pytest.fixture
def event_file(tmp_path: Path) -> Path:
    return next((tensorboardx_run(tmp_path / "one", steps=3)).glob("*tfevents*"))


def test_a_good_request_spoken_directly_imports(
    server: ServerProcess, client: Client, event_file: Path
) -> None:
    key = new_key(server)
    with event_file.open("rb") as handle:
        messages = talk(server, request_for(key, "direct", event_file.parent, [event_file.name]),
                        [handle.fileno()])  # fmt: skip
    (done,) = messages[-1]["done"]
    assert done["counts"]["points"] == 3
    assert len(client.points(done["run_id"], "loss").steps) == 3


def test_a_pipe_a_directory_or_a_file_not_open_for_reading_is_refused(
    server: ServerProcess, event_file: Path
) -> None:
    key = new_key(server)
    read, write = os.pipe()
    try:
        messages = talk(server, request_for(key, "pipes", event_file.parent, ["p.tfevents.x"]),
                        [read])  # fmt: skip
    finally:
        os.close(read)
        os.close(write)
    assert error_of(messages).endswith("p.tfevents.x: not a regular file")
    directory = os.open(event_file.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        messages = talk(server, request_for(key, "pipes", event_file.parent, ["d.tfevents.x"]),
                        [directory])  # fmt: skip
    finally:
        os.close(directory)
    assert error_of(messages).endswith("d.tfevents.x: not a regular file")
    for flags in (os.O_PATH, os.O_WRONLY):
        fd = os.open(event_file, flags)
        try:
            messages = talk(server, request_for(key, "pipes", event_file.parent, [event_file.name]),
                            [fd])  # fmt: skip
        finally:
            os.close(fd)
        assert error_of(messages).endswith(f"{event_file.name}: not open for reading")


def test_keys_that_may_not_write_there_are_refused(
    server: ServerProcess, client: Client, event_file: Path
) -> None:
    def attempt(key: str, project: str) -> str:
        """The refusal's words; "" when the import was done."""
        with event_file.open("rb") as handle:
            request = request_for(key, project, event_file.parent, [event_file.name])
            messages = talk(server, request, [handle.fileno()])
        return "" if "done" in messages[-1] else error_of(messages)

    assert "invalid API key" in attempt("sb_not_a_key_at_all", "refused")
    revoked = new_key(server)
    assert attempt(revoked, "before-revoking") == ""  # works until revoked
    done = run_cli("key", "revoke", revoked.split("_")[1], data_dir=server.data_dir)
    assert done.returncode == 0, done.stderr
    started = time.monotonic()  # a key verified within the last second is trusted that long
    while not (refusal := attempt(revoked, "before-revoking")):
        assert time.monotonic() - started < 1.5, "the revoked key still imports"
        time.sleep(0.05)
    assert "API key" in refusal
    read_only = new_key(server, "--scope", "read")
    assert "has read scope, so it may not write" in attempt(read_only, "refused")
    added = run_cli("user", "add", "mallory", data_dir=server.data_dir)
    assert added.returncode == 0, added.stderr
    client.create_project("private-to-root")
    mallory = new_key(server, "--user", "mallory")
    assert attempt(mallory, "private-to-root") == "no such project"  # not even its existence
    assert not list(client.runs("private-to-root"))
    assert not any(p.name == "refused" for p in client.projects())


def test_broken_requests_are_refused_and_the_socket_goes_on(
    server: ServerProcess, client: Client, event_file: Path
) -> None:
    key = new_key(server)
    good = request_for(key, "broken", event_file.parent, [event_file.name])
    with event_file.open("rb") as handle:
        assert "protocol 9" in error_of(talk(server, {**good, "version": 9}, [handle.fileno()]))
        path_name = request_for(key, "broken", event_file.parent, ["../../etc/passwd"])
        assert "not a path" in error_of(talk(server, path_name, [handle.fileno()]))
        relative = {**good, "runs": [{**good["runs"][0], "dir": "relative/dir"}]}
        assert "absolute" in error_of(talk(server, relative, [handle.fileno()]))
    # fewer descriptors than announced: the server gives up on this connection only
    two = request_for(key, "broken", event_file.parent, [event_file.name, "b.tfevents.x"])
    address = SocketAddress(server.data_dir / protocol.IMPORT_SOCKET)
    with event_file.open("rb") as handle, socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(address.address)
        protocol.send(sock, two)
        protocol.send_fds(sock, [handle.fileno()])
        sock.shutdown(socket.SHUT_WR)
        assert "descriptors announced" in error_of([protocol.receive(sock)])
    address.close()
    # a ledger's cut that is no number (JSON's 1e999 is infinite)
    with event_file.open("rb") as handle, socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(address.address)
        protocol.send(sock, good)
        protocol.send_fds(sock, [handle.fileno()])
        (run_id,) = protocol.receive(sock)["runs"].values()
        raw = b'{"ledgers":{"%s":{"f":[1e999]}}}' % run_id.encode()
        sock.sendall(len(raw).to_bytes(4, "big") + raw)
        assert "cuts are not numbers" in error_of([protocol.receive(sock)])
    address.close()
    with event_file.open("rb") as handle:
        (done,) = talk(server, good, [handle.fileno()])[-1]["done"]
    assert done["counts"]["points"] == 3


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another account")
def test_another_account_cannot_reach_the_socket(server: ServerProcess) -> None:
    """The socket is 0600 in the 0700 data directory: a process of another OS account
    cannot connect (and the server checks the peer's uid again)."""
    code = (
        "import os, socket, sys; os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n"
    )
    path = str(server.data_dir / protocol.IMPORT_SOCKET)
    done = subprocess.run([sys.executable, "-c", code, path], capture_output=True, timeout=60,
                          check=False)  # fmt: skip
    assert done.returncode == 3, done.stderr


@pytest.mark.postgres
def test_an_import_through_the_socket_on_postgresql(
    server_factory: Callable[..., ServerProcess], pg_url: str, tmp_path: Path
) -> None:
    data_dir = tmp_path / "srv"
    data_dir.mkdir(mode=0o700)
    (data_dir / "safeboard.toml").write_text(f'[database]\nurl = "{pg_url}"\n')
    server = server_factory()
    logdir = tmp_path / "logs"
    tensorboard_tf2_run(logdir / "tf2")
    cli(server, tmp_path, str(logdir), "-p", "pg")
    cli(server, tmp_path, str(logdir), "-p", "pg")  # again: nothing twice
    assert imports_seen(server) == 2
    local = read_discovery(data_dir)
    assert local is not None
    with Client(local.client()) as client:
        run_id = run_id_for("pg", logdir / "tf2")
        points = client.points(run_id, "acc")
        assert list(zip(points.steps, points.values, strict=True)) == [(0, 0.5), (1, 1.5), (2, 2.5)]
        assert client.run(run_id).config == {"lr": 0.01, "act": "relu", "deep": True}


def big_event_file(directory: Path, points: int) -> Path:
    """One file of ``points`` scalars: more than a window's bytes (tbrun.WINDOW), so that
    batches are posted before the last cut."""
    from tensorboard.compat.proto import event_pb2, summary_pb2

    from safeboard.eventfiles import masked_crc32c

    def frame(data: bytes) -> bytes:
        length = struct.pack("<Q", len(data))
        return (length + struct.pack("<I", masked_crc32c(length)) + data
                + struct.pack("<I", masked_crc32c(data)))  # fmt: skip

    records = []
    for step in range(points):
        value = summary_pb2.Summary.Value(tag="loss", simple_value=float(step))
        event = event_pb2.Event(
            wall_time=1.7e9, step=step, summary=summary_pb2.Summary(value=[value])
        )
        records.append(frame(event.SerializeToString()))
    directory.mkdir(parents=True)
    path = directory / "events.out.tfevents.1.big"
    path.write_bytes(b"".join(records))
    return path


def test_an_import_abandoned_by_the_command_leaves_no_thread_behind(
    server: ServerProcess, tmp_path: Path
) -> None:
    """The command hangs up in the middle (at a cut, after the file's first batches were
    posted): the server's threads for that import, its posting threads too, end."""
    event_file = big_event_file(tmp_path / "big", 80_000)
    assert event_file.stat().st_size > WINDOW
    key = new_key(server)
    tasks = Path(f"/proc/{server.process.pid}/task")

    def threads() -> int:
        return len(list(tasks.iterdir()))

    with event_file.open("rb") as handle:  # once, so that every thread the server keeps
        talk(server, request_for(key, "abandon", event_file.parent, [event_file.name]),
             [handle.fileno()])  # fmt: skip
    time.sleep(0.5)
    before = threads()
    for round_ in range(3):
        with event_file.open("rb") as handle:
            messages = talk(
                server, request_for(key, f"abandon{round_}", event_file.parent,
                                    [event_file.name]),
                [handle.fileno()], at_cut="close",
            )  # fmt: skip
        assert "cut" in messages[-1]
    deadline = time.monotonic() + 10
    while threads() > before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert threads() <= before
