"""The import socket's framing (safeboard/importsock/protocol.py) over a real socket pair,
and when the command uses the socket at all (importsock/command.py: only where the local
server's discovery key would be used anyway)."""

from __future__ import annotations

import json
import os
import socket
import struct
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
        (struct.pack(">I", 10) + b"{}", "closed the connection"),
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
