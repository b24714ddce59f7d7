"""The import socket's framing (safeboard/importsock/protocol.py) over a real socket pair,
and when the command uses the socket at all (importsock/command.py: only where the local
server's discovery key would be used anyway)."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from safeboard.importsock import protocol
from safeboard.importsock.command import LocalServer, local_server


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        a.settimeout(10)
        b.settimeout(10)
        yield a, b


def test_messages_and_descriptors_arrive_in_order(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    a, b = pair
    files = []
    for i in range(protocol.FDS_PER_SEND + 3):  # more than one group
        path = tmp_path / f"f{i}"
        path.write_bytes(str(i).encode())
        files.append(os.open(path, os.O_RDONLY))
    try:
        protocol.send(a, {"version": 1, "files": len(files)})
        protocol.send_fds(a, files)
        protocol.send(a, {"after": True})
        assert protocol.receive(b) == {"version": 1, "files": len(files)}
        got = protocol.receive_fds(b, len(files))
        try:
            assert [os.pread(fd, 10, 0) for fd in got] == [
                str(i).encode() for i in range(len(files))
            ]
        finally:
            protocol.close_all(got)
        assert protocol.receive(b) == {"after": True}
    finally:
        protocol.close_all(files)


def test_fewer_descriptors_than_announced_is_a_protocol_error(
    pair: tuple[socket.socket, socket.socket], tmp_path: Path
) -> None:
    a, b = pair
    path = tmp_path / "one"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        protocol.send_fds(a, [fd])
        a.shutdown(socket.SHUT_WR)
        with pytest.raises(protocol.ProtocolError, match="2 descriptors announced"):
            protocol.receive_fds(b, 2)
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        (struct.pack(">I", protocol.MAX_MESSAGE + 1), "at most"),
        (struct.pack(">I", 4) + b"[1]\n", "not a JSON object"),
        (struct.pack(">I", 3) + b"{no", "not JSON"),
        (struct.pack(">I", 30_003) + b"[" * 30_000 + b"]" * 3, "not JSON"),  # too deep
    ],
)
def test_broken_messages_are_protocol_errors(
    pair: tuple[socket.socket, socket.socket], raw: bytes, problem: str
) -> None:
    a, b = pair
    a.sendall(raw)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(protocol.ProtocolError, match=problem):
        protocol.receive(b)


def test_a_message_cut_short_or_too_slow_means_the_other_side_is_gone(
    pair: tuple[socket.socket, socket.socket],
) -> None:
    a, b = pair
    a.sendall(struct.pack(">I", 10) + b"{}")
    with pytest.raises(protocol.Gone, match=r"timed out|too slow"):  # all of it by a deadline
        protocol.receive(b, deadline=time.monotonic() + 0.2)
    a.shutdown(socket.SHUT_WR)
    with pytest.raises(protocol.Gone, match="closed the connection"):
        protocol.receive(b)


@pytest.fixture
def discovery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("SAFEBOARD_URL", "SAFEBOARD_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    monkeypatch.setenv("SAFEBOARD_DATA_DIR", str(data))
    monkeypatch.setenv("SAFEBOARD_CONFIG_DIR", str(tmp_path / "config"))
    path = data / "discovery.json"
    path.write_text(json.dumps({"url": "https://127.0.0.1:1", "api_key": "sb_k",
                                "import_socket": str(data / "import.sock")}))  # fmt: skip
    path.chmod(0o600)
    return path


def test_the_socket_is_used_with_the_discovery_key_only(
    discovery: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert local_server() == LocalServer(discovery.parent / "import.sock", "sb_k")
    monkeypatch.setenv("SAFEBOARD_URL", "https://elsewhere:8443")
    assert local_server() is None
    monkeypatch.delenv("SAFEBOARD_URL")
    monkeypatch.setenv("SAFEBOARD_API_KEY", "sb_other")
    assert local_server() is None
    monkeypatch.delenv("SAFEBOARD_API_KEY")
    stored = tmp_path / "config" / "credentials"
    stored.mkdir(parents=True)
    (stored / "https_elsewhere_8443.json").write_text("{}")
    assert local_server() is None  # a stored login: the resolver decides, over HTTP
    (stored / "https_elsewhere_8443.json").unlink()
    assert local_server() is not None
    discovery.chmod(0o644)  # readable by others: refused by the HTTP path, with its fix
    assert local_server() is None
    discovery.chmod(0o600)
    discovery.write_text(json.dumps({"url": "https://127.0.0.1:1", "api_key": "sb_k"}))
    assert local_server() is None  # a server from before the import socket


def fake_server(path: Path, answer: bytes | None) -> threading.Thread:
    """A socket at ``path`` that takes one connection, reads the request, then answers
    ``answer`` (raw) and closes, or closes at once (None)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                if answer is not None:
                    protocol.receive(conn)
                    conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread


def logdir(tmp_path: Path) -> dict[str, Path]:
    run = tmp_path / "logs" / "run"
    run.mkdir(parents=True)
    (run / "events.out.tfevents.1.host").write_bytes(b"")
    return {"run": run}


@pytest.mark.parametrize(
    ("answer", "over_http"),
    [
        (None, True),  # closed before anything was made: a server that refused the peer
        (protocol.encode({"error": {"code": "busy", "message": "busy"}}), True),
        (protocol.encode({"error": {"code": "unsupported", "message": "protocol 1"}}), True),
        (protocol.encode({"error": {"code": "key_invalid", "message": "invalid API key"}}),
         False),
    ],
)  # fmt: skip
def test_the_command_goes_over_http_when_the_server_does_not_take_the_import(
    tmp_path: Path, answer: bytes | None, over_http: bool
) -> None:
    from safeboard.errors import SafeboardError
    from safeboard.importsock.command import import_through_socket

    path = tmp_path / "import.sock"
    thread = fake_server(path, answer)
    server = LocalServer(path, "sb_k")
    if over_http:
        assert import_through_socket(server, logdir(tmp_path), "p", say=print) is None
    else:
        with pytest.raises(SafeboardError, match="invalid API key"):
            import_through_socket(server, logdir(tmp_path), "p", say=print)
    thread.join(10)


def test_a_request_longer_than_a_message_goes_over_http_unsent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safeboard.importsock.command import import_through_socket

    monkeypatch.setattr(protocol, "MAX_MESSAGE", 100)
    server = LocalServer(tmp_path / "nothing-listens-here.sock", "sb_k")
    assert import_through_socket(server, logdir(tmp_path), "p" * 200, say=print) is None


def test_a_server_gone_after_making_the_runs_is_said(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from safeboard.errors import SafeboardError

    monkeypatch.setenv("SAFEBOARD_SPOOL_DIR", str(tmp_path / "spool"))
    from safeboard.importsock.command import import_through_socket

    path = tmp_path / "import.sock"
    thread = fake_server(path, protocol.encode({"runs": {"run": "0" * 32}}))
    with pytest.raises(SafeboardError, match="ended the import early"):
        import_through_socket(LocalServer(path, "sb_k"), logdir(tmp_path), "p", say=print)
    thread.join(10)
