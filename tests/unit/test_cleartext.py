"""No credential over plain HTTP off loopback (S13): one check, ``client/cleartext.py``,
refuses before a byte is sent, whichever way the address came (argument, ``SAFEBOARD_URL``,
``safeboard.init(url=...)``, ``download_artifact(url=...)``, ``ApiClient``)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

import safeboard
from safeboard.client import (
    ApiClient,
    CredentialStore,
    PlainHttpRefused,
    TrustStore,
    require_private_transport,
    resolve_server,
)
from safeboard.errors import ConfigError, SafeboardError

KEY = "sb_abc123_" + "k" * 43
OFF_LOOPBACK = [
    "http://board.example:8080",
    "http://10.0.0.5:8080",
    "http://0.0.0.0:8080",
    "http://[2001:db8::1]:8080",
    "HTTP://Board.Example",
    "http://127.0.0.1.nip.io:8080",
    "http://localhost.evil.example",
]
LOOPBACK = ["http://127.0.0.1:8080", "http://127.9.9.9", "http://[::1]:8080", "http://localhost:1"]


@pytest.mark.parametrize("url", OFF_LOOPBACK)
def test_plain_http_off_loopback_is_refused_with_the_fix(url: str) -> None:
    with pytest.raises(PlainHttpRefused) as refused:
        require_private_transport(url)
    assert "https://" in refused.value.message
    assert "nothing was sent" in refused.value.message
    assert isinstance(refused.value, ConfigError)
    assert isinstance(refused.value, SafeboardError)
    assert refused.value.code == "plain_http"


@pytest.mark.parametrize("url", [*LOOPBACK, "https://board.example:8443", "https://10.0.0.5"])
def test_https_and_loopback_http_pass(url: str) -> None:
    require_private_transport(url)


@pytest.mark.parametrize("url", OFF_LOOPBACK[:3])
def test_the_api_client_sends_nothing_to_plain_http_off_loopback(url: str) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    with pytest.raises(PlainHttpRefused):
        ApiClient(url, KEY, transport=httpx.MockTransport(record)).get("/api/v1/projects")
    assert seen == []


def test_the_api_client_still_talks_to_loopback_http() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        return httpx.Response(200, json={"ok": True})

    with ApiClient("http://127.0.0.1:8080", KEY, transport=httpx.MockTransport(answer)) as client:
        assert client.get("/api/v1/projects").json() == {"ok": True}


def _resolve(tmp_path: Path, url: str | None = None, **env: str) -> object:
    store = CredentialStore(tmp_path / "config" / "credentials")
    trust = TrustStore(tmp_path / "config" / "trust")
    return resolve_server(
        url, environ=env, store=store, trust=trust, data_dir=tmp_path / "no-server"
    )


def test_safeboard_url_over_plain_http_off_loopback_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PlainHttpRefused, match=r"https://board\.example:8080"):
        _resolve(tmp_path, SAFEBOARD_URL="http://board.example:8080", SAFEBOARD_API_KEY=KEY)
    with pytest.raises(PlainHttpRefused):
        _resolve(tmp_path, "http://board.example:8080")
    _resolve(tmp_path, SAFEBOARD_URL="http://127.0.0.1:8080", SAFEBOARD_API_KEY=KEY)


def test_sdk_init_and_download_refuse_plain_http_off_loopback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAFEBOARD_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("SAFEBOARD_DATA_DIR", str(tmp_path / "no-server"))
    monkeypatch.delenv("SAFEBOARD_MODE", raising=False)
    with pytest.raises(PlainHttpRefused):
        safeboard.init("p", url="http://board.example:8080", api_key=KEY, spool_dir=tmp_path)
    with pytest.raises(PlainHttpRefused):
        safeboard.download_artifact("a" * 32, tmp_path, url="http://board.example", api_key=KEY)
    monkeypatch.setenv("SAFEBOARD_URL", "http://10.1.2.3:8080")
    monkeypatch.setenv("SAFEBOARD_API_KEY", KEY)
    with pytest.raises(PlainHttpRefused):
        safeboard.init("p", spool_dir=tmp_path)


def test_the_local_servers_socket_is_not_refused(tmp_path: Path) -> None:
    """A discovery file naming a Unix socket: nothing crosses a network, whatever the URL
    (a server bound to a LAN address behind a proxy writes its http:// URL there)."""
    from safeboard.client.credentials import ServerAccess
    from safeboard.client.local_socket import LocalSocketTransport

    url = "http://10.0.0.5:8080"
    with pytest.raises(PlainHttpRefused):
        ServerAccess(url, KEY, True, "discovery")
    access = ServerAccess(url, KEY, True, "discovery", tmp_path / "server.sock")
    access.client().close()  # built, not refused
    with pytest.raises(PlainHttpRefused):  # any other transport is still refused
        ApiClient(url, KEY, transport=httpx.MockTransport(lambda _: httpx.Response(200)))
    ApiClient(url, KEY, transport=LocalSocketTransport(tmp_path / "server.sock")).close()
