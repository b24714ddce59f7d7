"""``client/reach.py``: whether anything accepts a connection at a server's address, with
the C probe (``_writes.connects``) and with Python's own calls, to the same answers."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from safeboard.client import config, reach


@pytest.fixture(params=["C", "Python"])
def probe(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "Python":
        monkeypatch.setattr(config, "WRITES", None)
    else:
        assert config.WRITES is not None, "the C module is not built: python3 hatch_build.py"
    return str(request.param)


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        return int(sock.getsockname()[1])


def test_a_listening_port_is_found_and_a_closed_one_is_not(probe: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert reach.listening(("127.0.0.1", port), 2.0)
        assert reach.listening(("localhost", port), 2.0)  # each of the name's addresses
    assert not reach.listening(("127.0.0.1", port), 2.0)
    assert not reach.listening(("127.0.0.1", _closed_port()), 2.0)


def test_a_unix_socket_is_found_until_it_closes_or_goes(probe: str, tmp_path: Path) -> None:
    path = tmp_path / "server.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen()
        assert reach.listening(str(path), 2.0)
    assert not reach.listening(str(path), 2.0)  # the file is left, nobody listens
    path.unlink()
    assert not reach.listening(str(path), 2.0)


def test_nothing_is_sent_to_what_listens(probe: str) -> None:
    """The probe connects and closes: the other end reads end of file at once."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(5)
        assert reach.listening(server.getsockname(), 2.0)
        accepted, _ = server.accept()
        with accepted:
            accepted.settimeout(5)
            assert accepted.recv(1) == b""


def test_the_address_of_a_url() -> None:
    assert reach.address_of("https://example.org") == ("example.org", 443)
    assert reach.address_of("http://127.0.0.1") == ("127.0.0.1", 80)
    assert reach.address_of("https://127.0.0.1:8443/") == ("127.0.0.1", 8443)
    assert reach.address_of("http://[::1]:9000") == ("::1", 9000)
    assert reach.address_of("ftp://example.org") is None
